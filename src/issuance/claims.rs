//! Signing an access token's claims (defined in `tokenmint-jwt`, with every verifier), and the
//! signed token that is shown once.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::issuance::keys::SigningKey;

pub use tokenmint_jwt::{Audience, Claims};

/// A signed token. Shown to the client once; its `Debug` never prints it, and it is wiped on drop.
pub struct RawToken(Zeroizing<String>);

impl RawToken {
    /// Wraps a signed token.
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    /// The token text (to send to the client, never to log).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last 6 characters: the human-facing checksum.
    pub fn checksum(&self) -> String {
        let start = self.0.char_indices().rev().nth(5).map_or(0, |(at, _)| at);
        self.0[start..].to_owned()
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawToken(…{})", self.checksum())
    }
}

/// Signs `claims` with `key`: base64url(header) . base64url(claims) . base64url(signature).
pub fn sign(claims: &Claims<'_>, key: &SigningKey) -> Result<RawToken> {
    let payload = serde_json::to_vec(claims).map_err(Error::internal)?;
    let mut token = String::with_capacity(key.encoded_header.len() + payload.len() * 4 / 3 + 100);
    token.push_str(&key.encoded_header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(RawToken::new(token))
}
