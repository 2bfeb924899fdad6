//! The claims of a tokenmint access token: what the server signs and every verifier reads.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::JwtError;
use crate::ids;

/// The `aud` claim: one audience or several (RFC 7519 §4.1.3 allows both forms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` is among the audiences.
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Self::One(a) => a == aud,
            Self::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// The `status` claim (IETF Token Status List): where a verifier reads whether the token has
/// been revoked or suspended since it was signed. Other status mechanisms a token might carry
/// beside `status_list` are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusClaim<'a> {
    /// The token's entry in a status list.
    #[serde(borrow)]
    pub status_list: StatusListReference<'a>,
}

/// A token's entry in a Status List Token: the list's URI and the index within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusListReference<'a> {
    /// The entry's index in the list.
    pub idx: u64,
    /// Where the list is published; the list's `sub` is exactly this string.
    #[serde(borrow)]
    pub uri: Cow<'a, str>,
}

/// The claims tokenmint puts in every token: the RFC 9068 profile plus tokenmint's own.
///
/// Strings borrow from the decoded payload unless an escape forces a copy (no copy on the
/// verification path but `ips`); a signer fills them with [`Cow::Borrowed`] or [`Cow::Owned`]
/// as it likes. Every registered
/// claim is required when reading: a token without one is [`JwtError::Malformed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<'a> {
    /// Issuer (the server's `tokens.issuer`).
    #[serde(borrow)]
    pub iss: Cow<'a, str>,
    /// Audience (the server's `tokens.audience`).
    pub aud: Audience,
    /// The user the token acts for.
    #[serde(borrow)]
    pub sub: Cow<'a, str>,
    /// The token id again (RFC 9068 `client_id`).
    #[serde(borrow)]
    pub client_id: Cow<'a, str>,
    /// The token id.
    #[serde(borrow)]
    pub jti: Cow<'a, str>,
    /// Issued at (seconds since the Unix epoch).
    pub iat: i64,
    /// Not before (seconds since the Unix epoch).
    pub nbf: i64,
    /// Expiry (seconds since the Unix epoch).
    pub exp: i64,
    /// Space-separated scopes; `all` stands for every scope.
    #[serde(borrow)]
    pub scope: Cow<'a, str>,
    /// The enterprise the token is bound to, if any.
    #[serde(
        default,
        borrow,
        deserialize_with = "optional_borrowed",
        skip_serializing_if = "Option::is_none"
    )]
    pub ent: Option<Cow<'a, str>>,
    /// Admin rights.
    #[serde(default)]
    pub adm: bool,
    /// The template the token was minted from, if any.
    #[serde(
        default,
        borrow,
        deserialize_with = "optional_borrowed",
        skip_serializing_if = "Option::is_none"
    )]
    pub tpl: Option<Cow<'a, str>>,
    /// The networks the token may be used from (CIDR blocks), present only when it is
    /// restricted. Read them with [`crate::ip::Networks`].
    #[serde(
        default,
        deserialize_with = "present_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub ips: Option<Vec<String>>,
    /// The token's entry in a status list; absent on tokens minted before status lists
    /// existed.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusClaim<'a>>,
}

/// An optional string that borrows from the payload like a plain `Cow<str>` field does (serde
/// borrows only for a field whose type is exactly `Cow<str>`, not inside an `Option`).
fn optional_borrowed<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(deserializer)?.map(|b| b.0))
}

/// A list that, when present, is a list: `null` is refused rather than read as "absent", which
/// for `ips` would mean "anywhere".
fn present_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    Vec::<String>::deserialize(deserializer).map(Some)
}

impl<'a> Claims<'a> {
    /// Reads the claims from a verified payload (JSON). Besides missing or mistyped claims, these
    /// are malformed, for every verifier alike:
    /// - an `ips` claim that is present but empty or `null`: tokenmint writes `ips` only for a
    ///   restricted token, and reading either as "anywhere" would fail open;
    /// - an id of the wrong shape ([`crate::ids`]): `jti` and `tpl` are UUIDs, `sub` and `ent`
    ///   are 1–128 printable characters (an empty `ent` is not "no enterprise").
    pub fn from_payload(payload: &'a [u8]) -> Result<Self, JwtError> {
        let claims: Self = serde_json::from_slice(payload).map_err(|_| JwtError::Malformed)?;
        if claims.ips.as_ref().is_some_and(Vec::is_empty) || !claims.ids_are_well_formed() {
            return Err(JwtError::Malformed);
        }
        Ok(claims)
    }

    /// Whether `jti`, `sub`, `ent` and `tpl` have the shapes tokenmint gives them.
    fn ids_are_well_formed(&self) -> bool {
        ids::is_uuid(&self.jti)
            && ids::is_opaque_id(&self.sub)
            && self.ent.as_deref().is_none_or(ids::is_opaque_id)
            && self.tpl.as_deref().is_none_or(ids::is_uuid)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const JTI: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    const TPL: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c";

    fn full() -> Value {
        json!({
            "iss": "tokenmint", "aud": "tokenmint", "sub": "alice",
            "client_id": JTI, "jti": JTI, "iat": 1, "nbf": 1, "exp": 2,
            "scope": "wallet_view trade_view", "ent": "acme", "adm": true, "tpl": TPL,
            "ips": ["10.0.0.0/8"],
            "status": {"status_list": {"idx": 7, "uri": "https://tokens.example/statuslists/a"}}
        })
    }

    fn read(value: &Value) -> Result<Claims<'static>, JwtError> {
        let bytes = value.to_string().into_bytes().leak();
        Claims::from_payload(bytes)
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let claims = read(&full()).unwrap();
        let written = serde_json::to_vec(&claims).unwrap();
        assert_eq!(Claims::from_payload(&written).unwrap(), claims);
        assert!(
            matches!(claims.sub, Cow::Borrowed("alice")),
            "strings borrow"
        );
    }

    #[test]
    fn every_registered_claim_is_required() {
        for claim in [
            "iss",
            "aud",
            "sub",
            "client_id",
            "jti",
            "iat",
            "nbf",
            "exp",
            "scope",
        ] {
            let mut partial = full();
            partial.as_object_mut().unwrap().remove(claim);
            assert_eq!(read(&partial), Err(JwtError::Malformed), "without {claim}");
        }
        let mut minimal = full();
        for optional in ["ent", "adm", "tpl", "ips", "status"] {
            minimal.as_object_mut().unwrap().remove(optional);
        }
        let claims = read(&minimal).unwrap();
        assert!(!claims.adm && claims.ips.is_none() && claims.ent.is_none());
        let written = serde_json::to_value(&claims).unwrap();
        assert!(written.get("ips").is_none() && written.get("ent").is_none());
    }

    #[test]
    fn an_empty_or_null_ips_claim_is_malformed() {
        for fail_open in [json!([]), json!(null)] {
            let mut claims = full();
            claims["ips"] = fail_open.clone();
            assert_eq!(read(&claims), Err(JwtError::Malformed), "ips: {fail_open}");
        }
    }

    #[test]
    fn optional_strings_borrow_too_and_escapes_are_read() {
        let claims = read(&full()).unwrap();
        assert!(matches!(claims.ent, Some(Cow::Borrowed("acme"))));
        assert!(matches!(claims.tpl, Some(Cow::Borrowed(TPL))));
        let status = claims.status.expect("the status claim").status_list;
        assert_eq!(status.idx, 7);
        assert!(matches!(
            status.uri,
            Cow::Borrowed("https://tokens.example/statuslists/a")
        ));
        let escaped =
            br#"{"iss":"token\u006dint","aud":"tokenmint","sub":"al\"ice","client_id":"t1",
            "jti":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","iat":1,"nbf":1,"exp":2,"scope":"a","ent":"ac\u006de"}"#;
        let claims = Claims::from_payload(escaped).unwrap();
        assert_eq!(claims.iss, "tokenmint");
        assert_eq!(claims.sub, "al\"ice");
        assert_eq!(claims.ent.as_deref(), Some("acme"));
        let mut null_ent = full();
        null_ent["ent"] = json!(null);
        assert_eq!(read(&null_ent).unwrap().ent, None);
    }

    #[test]
    fn ids_of_the_wrong_shape_are_malformed() {
        let cases = [
            ("jti", json!("t1")),
            ("jti", json!("")),
            ("sub", json!("")),
            ("sub", json!("a b")),
            ("sub", json!("x".repeat(129))),
            ("ent", json!("")),
            ("ent", json!("ac me")),
            ("tpl", json!("")),
            ("tpl", json!("tp1")),
        ];
        for (claim, value) in cases {
            let mut claims = full();
            claims[claim] = value.clone();
            assert_eq!(read(&claims), Err(JwtError::Malformed), "{claim}: {value}");
        }
    }

    #[test]
    fn a_repeated_claim_is_malformed() {
        let twice = br#"{"iss":"tokenmint","aud":"tokenmint","sub":"alice","sub":"root",
            "client_id":"t1","jti":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","iat":1,"nbf":1,"exp":2,
            "scope":"a"}"#;
        assert_eq!(Claims::from_payload(twice), Err(JwtError::Malformed));
    }

    #[test]
    fn one_audience_or_several() {
        let mut many = full();
        many["aud"] = json!(["payments", "tokenmint"]);
        let claims = read(&many).unwrap();
        assert!(claims.aud.contains("tokenmint") && !claims.aud.contains("billing"));
    }

    #[test]
    fn a_status_claim_needs_an_index_and_a_uri_and_ignores_other_mechanisms() {
        for broken in [
            json!({"status_list": {"uri": "https://x/1"}}),
            json!({"status_list": {"idx": -1, "uri": "https://x/1"}}),
            json!({"status_list": {"idx": 1}}),
            json!({"other_mechanism": {}}),
            json!("VALID"),
        ] {
            let mut claims = full();
            claims["status"] = broken.clone();
            assert_eq!(read(&claims), Err(JwtError::Malformed), "status: {broken}");
        }
        let mut claims = full();
        claims["status"]["other_mechanism"] = json!({"id": 3});
        assert_eq!(read(&claims).unwrap().status.unwrap().status_list.idx, 7);
    }
}
