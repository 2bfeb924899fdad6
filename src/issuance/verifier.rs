//! JWT policy in one place: what makes a token's signature and claims acceptable, and which
//! [`InactiveReason`] each failure maps to. The algorithm comes from the key the `kid` names,
//! never from the header alone; `none` and HMAC are never accepted.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use crate::domain::{IpRestriction, ScopeSet, Timestamp, TokenId, UserId};
use crate::issuance::claims::Claims;
use crate::issuance::keys::KeyRing;

/// The media type RFC 9068 requires in the `typ` header.
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Why a token is not active (the VerifyToken reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InactiveReason {
    /// Not a well-formed JWT, or required claims are missing.
    Malformed,
    /// The signature or algorithm is wrong for the key.
    BadSignature,
    /// No key with that `kid`.
    UnknownKey,
    /// Past `exp`.
    Expired,
    /// Before `nbf`.
    NotYetValid,
    /// Revoked.
    Revoked,
    /// Suspended.
    Suspended,
    /// Deleted or unknown id.
    UnknownToken,
    /// Client address not allowed.
    IpNotAllowed,
    /// A required scope is missing.
    InsufficientScope,
    /// Wrong `typ`, `iss` or `aud`.
    InvalidClaims,
}

impl InactiveReason {
    /// The name used in error metadata and logs.
    pub fn as_str(self) -> &'static str {
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
        }
    }
}

/// A token whose signature, `typ`, `iss` and `aud` have been checked. Times, status, IP and
/// scopes are checked on every use, not here, so this may be cached.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The token id.
    pub id: TokenId,
    /// The user.
    pub user_id: UserId,
    /// Granted scopes.
    pub scopes: Arc<ScopeSet>,
    /// Allowed networks.
    pub ips: IpRestriction,
    /// Admin rights.
    pub admin: bool,
    /// Not before.
    pub nbf: Timestamp,
    /// Expiry.
    pub exp: Timestamp,
    /// The key that signed it (a cached verification holds only while that key is in the ring).
    pub kid: String,
}

impl VerifiedToken {
    /// Whether `addr` may use the token; an unknown address never may when the token is restricted.
    pub fn allows_ip(&self, addr: Option<IpAddr>) -> bool {
        match addr {
            Some(addr) => self.ips.allows(addr),
            None => self.ips.is_unrestricted(),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

/// The verification policy: issuer, audience and clock leeway.
#[derive(Debug, Clone)]
pub struct JwtPolicy {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` member.
    pub audience: String,
    /// Clock leeway for `exp`/`nbf`, in seconds.
    pub leeway_secs: i64,
}

impl JwtPolicy {
    /// Checks form, key, algorithm, signature, `typ`, `iss` and `aud`, in that order.
    pub fn verify_signature(
        &self,
        raw: &str,
        ring: &KeyRing,
    ) -> Result<VerifiedToken, InactiveReason> {
        let mut parts = raw.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InactiveReason::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| InactiveReason::Malformed)?;
        let header: Header =
            serde_json::from_slice(&header_json).map_err(|_| InactiveReason::Malformed)?;
        let kid = header.kid.as_deref().ok_or(InactiveReason::UnknownKey)?;
        let key = ring.verifying_key(kid).ok_or(InactiveReason::UnknownKey)?;
        if header.alg != key.algorithm.name() {
            return Err(InactiveReason::BadSignature);
        }
        let data = jsonwebtoken::decode::<Claims>(raw, &key.decoding_key, &key.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::InvalidKeyFormat
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidEcdsaKey => InactiveReason::BadSignature,
                _ => InactiveReason::Malformed,
            })?;
        let claims = data.claims;
        if !header.typ.as_deref().is_some_and(is_access_token_typ) {
            return Err(InactiveReason::InvalidClaims);
        }
        if claims.iss != self.issuer || !claims.aud.contains(&self.audience) {
            return Err(InactiveReason::InvalidClaims);
        }
        let id = TokenId::parse(&claims.jti, "jti").map_err(|_| InactiveReason::Malformed)?;
        let user_id = UserId::parse(&claims.sub).map_err(|_| InactiveReason::Malformed)?;
        Ok(VerifiedToken {
            id,
            user_id,
            scopes: Arc::new(ScopeSet::from_claim(&claims.scope)),
            ips: IpRestriction::from_trusted(claims.ips.as_deref().unwrap_or_default()),
            admin: claims.adm,
            nbf: Timestamp::from_secs(claims.nbf),
            exp: Timestamp::from_secs(claims.exp),
            kid: kid.to_owned(),
        })
    }

    /// Checks `nbf` and `exp` against `now`, with leeway.
    pub fn check_time(&self, token: &VerifiedToken, now: Timestamp) -> Result<(), InactiveReason> {
        if token.nbf > now.plus_secs(self.leeway_secs) {
            return Err(InactiveReason::NotYetValid);
        }
        if token.exp <= now.plus_secs(-self.leeway_secs) {
            return Err(InactiveReason::Expired);
        }
        Ok(())
    }
}

/// `at+jwt`, case-insensitively, with or without the `application/` prefix (RFC 9068 §2.1).
fn is_access_token_typ(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ == ACCESS_TOKEN_TYP || typ == "application/at+jwt"
}
