//! Token Status List values: a list's id and a token's entry in a list.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A status list's id: 128 random bits in unpadded base64url (22 characters). Random, so that a
/// list opened after a database backup was taken never shares an id (and a URI) with a list
/// the backup knows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusListId(String);

impl StatusListId {
    /// The length of every id, in characters.
    const LEN: usize = 22;

    /// A new random id.
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()))
    }

    /// Reads an id; `None` unless it is 22 characters of unpadded base64url (a path segment or
    /// request field that could not be an id is refused before any lookup).
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == Self::LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StatusListId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token's entry in a status list: the list and the index the token's `status` claim names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusEntry {
    /// The list.
    pub list: StatusListId,
    /// The entry's index in the list.
    pub index: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_differ() {
        let (a, b) = (StatusListId::generate(), StatusListId::generate());
        assert_ne!(a, b);
        assert_eq!(StatusListId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn only_22_characters_of_base64url_are_an_id() {
        for bad in [
            "",
            "short",
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAA/A",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "../../../etc/passwd_xx",
        ] {
            assert_eq!(StatusListId::parse(bad), None, "{bad}");
        }
        assert!(StatusListId::parse("AAAAAAAAAAAAAAAAAAAA-_").is_some());
    }
}
