//! The shapes of the ids a token carries, one rule for the server (which checks them on every
//! request that names an id) and every verifier (which checks the ids a signed token claims).

/// Whether `raw` is a token or template id: a UUID (tokenmint writes the hyphenated form; any
/// form `uuid` accepts reads as the same id).
pub fn is_uuid(raw: &str) -> bool {
    uuid::Uuid::try_parse(raw).is_ok()
}

/// The longest user or enterprise id, in characters.
pub const MAX_OPAQUE_ID_CHARS: usize = 128;

/// Whether `raw` is a user or enterprise id: 1–128 characters, none of them whitespace or a
/// control character. tokenmint attaches no other meaning to these ids.
pub fn is_opaque_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.chars().count() <= MAX_OPAQUE_ID_CHARS
        && raw.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_in_any_standard_form_and_nothing_else() {
        assert!(is_uuid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        assert!(is_uuid("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"));
        for bad in [
            "",
            "t1",
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",
            "not a uuid",
        ] {
            assert!(!is_uuid(bad), "{bad:?}");
        }
    }

    #[test]
    fn opaque_ids_are_short_printable_words() {
        assert!(is_opaque_id("alice"));
        assert!(is_opaque_id("svc:billing@acme"));
        assert!(is_opaque_id(&"é".repeat(128)), "characters, not bytes");
        for bad in ["", "a b", "tab\there", "bell\u{7}", &"x".repeat(129)] {
            assert!(!is_opaque_id(bad), "{bad:?}");
        }
    }
}
