//! Why a token failed one of the verification steps.

use std::fmt;

/// Why a token is not a valid tokenmint access token. Each verifier maps it to its own reason
/// type (the server's `InactiveReason`, `tokenmint-verify`'s `VerifyError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not a well-formed token: wrong number of parts, bad base64url or JSON, a missing claim,
    /// or a claim in a form tokenmint never writes.
    Malformed,
    /// The header names no key (no `kid`), or a key the verifier does not know.
    UnknownKey,
    /// The header's `alg` is not the key's algorithm, or the signature does not verify.
    BadSignature,
    /// Wrong `typ`, `iss` or `aud`.
    InvalidClaims,
    /// Before `nbf`, beyond the leeway.
    NotYetValid,
    /// Past `exp`, beyond the leeway.
    Expired,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the token is not a well-formed JWT",
            Self::UnknownKey => "the token names an unknown signing key",
            Self::BadSignature => "the token's signature or algorithm does not match its key",
            Self::InvalidClaims => "the token's type, issuer or audience is wrong",
            Self::NotYetValid => "the token is not valid yet",
            Self::Expired => "the token has expired",
        })
    }
}

impl std::error::Error for JwtError {}
