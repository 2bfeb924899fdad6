//! The JWT claims of an access token (RFC 9068 profile plus tokenmint's own), and signing.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::issuance::keys::SigningKey;

/// The `aud` claim: one audience or several.
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

/// The claims tokenmint puts in every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (config `tokens.issuer`).
    pub iss: String,
    /// Audience (config `tokens.audience`).
    pub aud: Audience,
    /// The user the token acts for.
    pub sub: String,
    /// The token id (RFC 9068 `client_id`).
    pub client_id: String,
    /// The token id.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before (seconds).
    pub nbf: i64,
    /// Expiry (seconds).
    pub exp: i64,
    /// Space-separated scopes.
    pub scope: String,
    /// Enterprise id, when bound to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ent: Option<String>,
    /// Admin rights.
    #[serde(default)]
    pub adm: bool,
    /// Template id, when minted from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpl: Option<String>,
    /// Allowed client networks (CIDR), when restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
}

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
pub fn sign(claims: &Claims, key: &SigningKey) -> Result<RawToken> {
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
