//! Identifiers: token ids (UUIDv7, time-ordered), user ids and enterprise ids.

use std::fmt;

use uuid::Uuid;

use crate::error::{Error, Result, reason};

/// Defines a UUIDv7 id newtype (time-ordered, so ids sort roughly by creation time).
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses a UUID (any form `uuid` accepts; displayed hyphenated); `field` names the
            /// request field for errors.
            pub fn parse(raw: &str, field: &str) -> Result<Self> {
                parse_uuid(raw, field).map(Self)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A token's id (the JWT's `jti`).
    TokenId
);
uuid_id!(
    /// A template's id.
    TemplateId
);

/// The id of a signing key (the JWT header's `kid`), as the key manager made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Wraps a key id made by the key manager or read from the store.
    pub fn new(kid: impl Into<String>) -> Self {
        Self(kid.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_uuid(raw: &str, field: &str) -> Result<Uuid> {
    if raw.is_empty() {
        return Err(Error::invalid(
            field,
            reason::INVALID_ID,
            format!("{field} is required"),
        ));
    }
    Uuid::try_parse(raw).map_err(|_| {
        Error::invalid(
            field,
            reason::INVALID_ID,
            format!("{field} must be an id (a UUID)"),
        )
        .with_meta("id", crate::error::truncate(raw, 64))
    })
}

/// Checks the shape shared by user and enterprise ids: 1-128 printable characters, no whitespace
/// (`tokenmint_jwt::ids`, the rule every verifier applies to a token's `sub` and `ent`).
fn parse_opaque_id(raw: &str, what: &str, field: &str, reason: &'static str) -> Result<String> {
    if tokenmint_jwt::ids::is_opaque_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(Error::invalid(
            field,
            reason,
            format!("{what} must be 1-128 characters without spaces or control characters"),
        ))
    }
}

/// The id of a user (the `sub` claim). Opaque to tokenmint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Validates a user id.
    pub fn parse(raw: &str) -> Result<Self> {
        parse_opaque_id(raw, "a user id", "user_id", reason::INVALID_ID).map(Self)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of an enterprise. Opaque to tokenmint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnterpriseId(String);

impl EnterpriseId {
    /// Validates an enterprise id; `field` names the request field for errors.
    pub fn parse(raw: &str, field: &str) -> Result<Self> {
        parse_opaque_id(raw, "enterprise_id", field, reason::INVALID_ENTERPRISE_ID).map(Self)
    }

    /// Parses an optional enterprise id: empty means none.
    pub fn parse_optional(raw: &str, field: &str) -> Result<Option<Self>> {
        if raw.is_empty() {
            Ok(None)
        } else {
            Self::parse(raw, field).map(Some)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnterpriseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_round_trip_and_reject_garbage() {
        let id = TokenId::generate();
        assert_eq!(TokenId::parse(&id.to_string(), "id").unwrap(), id);
        let err = TokenId::parse("nope", "id").unwrap_err();
        assert_eq!(err.reason, reason::INVALID_ID);
        assert_eq!(err.violations[0].field, "id");
    }

    #[test]
    fn user_ids_refuse_spaces_and_empty() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
    }
}
