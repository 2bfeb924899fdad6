//! Why a token was not accepted: the names of tokenmint's `InactiveReason`, plus the ways the
//! question could not be answered at all (the keys, the introspection call or the revocation
//! state were unavailable).

/// Why a token was refused, or why no answer could be given.
///
/// The token variants mirror tokenmint's `VerifyToken` reasons (`INACTIVE_REASON_*`) one to one;
/// [`as_str`](Self::as_str) returns the same names. Offline verification ([`crate::Verifier`])
/// produces `Revoked`, `Suspended` and `UnknownToken` only when it watches revocations
/// ([`crate::VerifierBuilder::watch_revocations`]); online verification
/// ([`crate::OnlineVerifier`]) always can.
///
/// Like tokenmint, treat the reason as information for your logs and metrics, not for the caller
/// that presented the token: [`crate::RequireToken`] answers with a generic message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a well-formed JWT: wrong number of parts, bad base64url or JSON, missing claims.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// The signature does not verify with the key named by `kid`, or the header's `alg` is not
    /// that key's algorithm (including `none` and HMAC algorithms).
    #[error("the token's signature or algorithm does not match its key")]
    BadSignature,
    /// The `kid` names no key of the key set, even after refreshing it (or there is no `kid`).
    #[error("the token names an unknown signing key")]
    UnknownKey,
    /// Past `exp`, beyond the configured leeway.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf`, beyond the configured leeway.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token was revoked (online verification only).
    #[error("the token was revoked")]
    Revoked,
    /// The token is suspended (online verification only).
    #[error("the token is suspended")]
    Suspended,
    /// The token was deleted or its id is unknown to tokenmint (online verification only).
    #[error("the token is unknown")]
    UnknownToken,
    /// The token is IP-restricted and the client address is unknown or outside its networks.
    #[error("the token may not be used from this address")]
    IpNotAllowed,
    /// The token lacks one of the required scopes.
    #[error("the token lacks a required scope")]
    InsufficientScope,
    /// Wrong `typ` header, `iss` or `aud` claim.
    #[error("the token's type, issuer or audience is wrong")]
    InvalidClaims,
    /// The key set could not be fetched (at build time, or when an unknown `kid` forced a
    /// refresh): the token could be neither accepted nor refused.
    #[error("cannot fetch the token signing keys: {0}")]
    KeySource(String),
    /// The `VerifyToken` call of online verification failed (transport error, or tokenmint
    /// refused the caller token): the token could be neither accepted nor refused.
    #[error("the VerifyToken call failed: {0}")]
    Introspection(String),
    /// Offline verification with revocations ([`crate::VerifierBuilder::watch_revocations`]):
    /// the token's status list could not be fetched or verified, and no usable copy is cached,
    /// or the change stream could not be opened at build time. The token could be neither
    /// accepted nor refused.
    #[error("cannot learn the token's revocation status: {0}")]
    RevocationSource(String),
}

impl VerifyError {
    /// The stable name: tokenmint's reason name (`EXPIRED`, `BAD_SIGNATURE`, …), or
    /// `KEY_SOURCE` / `INTROSPECTION` / `REVOCATION_SOURCE` for the "no answer" variants.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "MALFORMED",
            Self::BadSignature => "BAD_SIGNATURE",
            Self::UnknownKey => "UNKNOWN_KEY",
            Self::Expired => "EXPIRED",
            Self::NotYetValid => "NOT_YET_VALID",
            Self::Revoked => "REVOKED",
            Self::Suspended => "SUSPENDED",
            Self::UnknownToken => "UNKNOWN_TOKEN",
            Self::IpNotAllowed => "IP_NOT_ALLOWED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
            Self::InvalidClaims => "INVALID_CLAIMS",
            Self::KeySource(_) => "KEY_SOURCE",
            Self::Introspection(_) => "INTROSPECTION",
            Self::RevocationSource(_) => "REVOCATION_SOURCE",
        }
    }

    /// Whether verification could not reach a verdict ([`KeySource`](Self::KeySource),
    /// [`Introspection`](Self::Introspection) or
    /// [`RevocationSource`](Self::RevocationSource)): a temporary condition, not the token's
    /// fault.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::KeySource(_) | Self::Introspection(_) | Self::RevocationSource(_)
        )
    }

    /// Whether the token is valid but not for this use ([`IpNotAllowed`](Self::IpNotAllowed) or
    /// [`InsufficientScope`](Self::InsufficientScope)): "forbidden" rather than "unauthenticated".
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::IpNotAllowed | Self::InsufficientScope)
    }
}

impl From<tokenmint_jwt::JwtError> for VerifyError {
    fn from(error: tokenmint_jwt::JwtError) -> Self {
        use tokenmint_jwt::JwtError;
        match error {
            JwtError::Malformed => Self::Malformed,
            JwtError::UnknownKey => Self::UnknownKey,
            JwtError::BadSignature => Self::BadSignature,
            JwtError::InvalidClaims => Self::InvalidClaims,
            JwtError::NotYetValid => Self::NotYetValid,
            JwtError::Expired => Self::Expired,
        }
    }
}
