//! A compact JWS (`header.payload.signature`) taken apart, and its signature checked.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::error::JwtError;

/// A public key that can check a token's signature. The server's key ring and
/// `tokenmint-verify`'s JWKS cache each implement it for their own key type.
pub trait VerifyingKey {
    /// The JOSE `alg` this key verifies (`EdDSA`, `ES256`): the only one a token signed with it
    /// may name.
    fn algorithm(&self) -> &str;

    /// Whether `signature` is this key's signature of `message`.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool;
}

/// The JOSE header fields tokenmint reads; others are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    /// The signature algorithm.
    pub alg: String,
    /// The signing key's id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The token type (`at+jwt` for access tokens).
    #[serde(default)]
    pub typ: Option<String>,
}

/// A token split into its three parts, with its header decoded. Nothing is verified yet. Its
/// `Debug` shows the header only: the rest is the bearer token itself.
pub struct Compact<'a> {
    /// `header.payload`: the signed bytes.
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
    header: Header,
}

impl<'a> Compact<'a> {
    /// Splits `token` into exactly three parts and decodes the header (base64url without
    /// padding, then JSON).
    pub fn parse(token: &'a str) -> Result<Self, JwtError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header, payload) = signing_input
            .split_once('.')
            .filter(|(_, payload)| !payload.contains('.'))
            .ok_or(JwtError::Malformed)?;
        let header = serde_json::from_slice(&decode(header)?).map_err(|_| JwtError::Malformed)?;
        Ok(Self {
            signing_input,
            payload,
            signature,
            header,
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The id of the key the token says signed it; a token without one names no key.
    pub fn kid(&self) -> Result<&str, JwtError> {
        self.header.kid.as_deref().ok_or(JwtError::UnknownKey)
    }

    /// Checks that the header's `alg` is `key`'s algorithm (so `none`, HMAC or another curve are
    /// refused whatever the signature) and that the signature verifies, then returns the decoded
    /// payload for [`crate::Claims::from_payload`].
    pub fn verify_with<K: VerifyingKey + ?Sized>(&self, key: &K) -> Result<Vec<u8>, JwtError> {
        if self.header.alg != key.algorithm() {
            return Err(JwtError::BadSignature);
        }
        let signature = decode(self.signature)?;
        if !key.verifies(self.signing_input.as_bytes(), &signature) {
            return Err(JwtError::BadSignature);
        }
        decode(self.payload)
    }
}

impl fmt::Debug for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compact")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// base64url without padding, as JWS requires.
fn decode(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Signs" by appending the message's length: enough to tell a right signature from a wrong one.
    struct LengthKey;

    impl VerifyingKey for LengthKey {
        fn algorithm(&self) -> &str {
            "EdDSA"
        }

        fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
            signature == message.len().to_be_bytes()
        }
    }

    fn token(header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = URL_SAFE_NO_PAD.encode(input.len().to_be_bytes());
        format!("{input}.{signature}")
    }

    #[test]
    fn a_well_formed_token_gives_back_its_payload() {
        let raw = token(r#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}"#, "{}");
        let compact = Compact::parse(&raw).unwrap();
        assert_eq!(compact.kid(), Ok("k1"));
        assert_eq!(compact.header().typ.as_deref(), Some("at+jwt"));
        assert_eq!(compact.verify_with(&LengthKey).unwrap(), b"{}");
        let shown = format!("{compact:?}");
        let signature = raw.rsplit('.').next().unwrap();
        assert!(!shown.contains(signature), "Debug leaks the token: {shown}");
    }

    #[test]
    fn exactly_three_base64url_parts_with_a_json_header() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA"}"#);
        for bad in [
            String::new(),
            format!("{header}.e30"),
            format!("{header}.e30.AA.AA"),
            "e3+.e30.AA".to_owned(),
            "e30=.e30.AA".to_owned(),
            format!("{}.e30.AA", URL_SAFE_NO_PAD.encode("not json")),
        ] {
            assert_eq!(
                Compact::parse(&bad).unwrap_err(),
                JwtError::Malformed,
                "{bad:?}"
            );
        }
        let no_alg = token(r#"{"kid":"k1"}"#, "{}");
        assert_eq!(Compact::parse(&no_alg).unwrap_err(), JwtError::Malformed);
        let no_kid = token(r#"{"alg":"EdDSA"}"#, "{}");
        assert_eq!(
            Compact::parse(&no_kid).unwrap().kid(),
            Err(JwtError::UnknownKey)
        );
    }

    #[test]
    fn the_alg_must_be_the_keys_and_the_signature_must_verify() {
        for alg in ["none", "HS256", "ES256", "eddsa"] {
            let raw = token(&format!(r#"{{"alg":"{alg}","kid":"k1"}}"#), "{}");
            let compact = Compact::parse(&raw).unwrap();
            assert_eq!(
                compact.verify_with(&LengthKey),
                Err(JwtError::BadSignature),
                "{alg}"
            );
        }
        let raw = token(r#"{"alg":"EdDSA","kid":"k1"}"#, "{}");
        let (input, _) = raw.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode([0u8; 8]));
        assert_eq!(
            Compact::parse(&forged).unwrap().verify_with(&LengthKey),
            Err(JwtError::BadSignature)
        );
        let unreadable = format!("{input}.!!");
        assert_eq!(
            Compact::parse(&unreadable).unwrap().verify_with(&LengthKey),
            Err(JwtError::Malformed)
        );
    }
}
