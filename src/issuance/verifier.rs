//! The server's token verification: `tokenmint-jwt`'s steps (the same `tokenmint-verify` runs)
//! with this server's key ring, the claims read into domain values, and which
//! [`InactiveReason`] each failure maps to. The algorithm comes from the key the `kid` names,
//! never from the header alone; `none` and HMAC are never accepted.
//!
//! Length: the code is the first ~170 lines; the rest are its tests and sign → verify properties.

use std::net::IpAddr;
use std::sync::Arc;

use tokenmint_jwt::{Claims, Compact, JwtError};

use crate::domain::{EnterpriseId, IpRestriction, ScopeSet, Timestamp, TokenId, UserId};
use crate::issuance::keys::{KeyRing, VerifyingKey};

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
    /// The enterprise it is bound to (`ent`).
    pub enterprise: Option<EnterpriseId>,
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

/// The verification policy (issuer, audience, clock leeway): `tokenmint-jwt`'s, shared with
/// `tokenmint-verify`.
pub use tokenmint_jwt::Policy as JwtPolicy;

impl From<JwtError> for InactiveReason {
    fn from(error: JwtError) -> Self {
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

impl tokenmint_jwt::VerifyingKey for VerifyingKey {
    fn algorithm(&self) -> &str {
        self.algorithm.name()
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        VerifyingKey::verifies(self, message, signature)
    }
}

/// Checks `raw`'s form, key, algorithm, signature, claims, `typ`, `iss` and `aud`, in that
/// order (the steps of `tokenmint-jwt`, with this server's key `ring`), and reads the claims
/// into domain values.
///
/// The signature is checked with ring against the key parsed when the ring was loaded, and the
/// claims are parsed once, borrowing from the decoded payload.
pub fn verify_signature(
    policy: &JwtPolicy,
    raw: &str,
    ring: &KeyRing,
) -> Result<VerifiedToken, InactiveReason> {
    let compact = Compact::parse(raw)?;
    let kid = compact.kid()?;
    let key = ring.verifying_key(kid).ok_or(InactiveReason::UnknownKey)?;
    let payload = compact.verify_with(key.as_ref())?;
    let claims = Claims::from_payload(&payload)?;
    policy.check_claims(compact.header(), &claims)?;
    let id = TokenId::parse(&claims.jti, "jti").map_err(|_| InactiveReason::Malformed)?;
    let user_id = UserId::parse(&claims.sub).map_err(|_| InactiveReason::Malformed)?;
    let enterprise = claims
        .ent
        .as_deref()
        .map(|e| EnterpriseId::parse(e, "ent"))
        .transpose()
        .map_err(|_| InactiveReason::Malformed)?;
    Ok(VerifiedToken {
        id,
        user_id,
        scopes: Arc::new(ScopeSet::from_claim(&claims.scope)),
        ips: IpRestriction::from_trusted(claims.ips.as_deref().unwrap_or_default()),
        admin: claims.adm,
        enterprise,
        nbf: Timestamp::from_secs(claims.nbf),
        exp: Timestamp::from_secs(claims.exp),
        kid: kid.to_owned(),
    })
}

/// Checks `token`'s `nbf` and `exp` against `now`, with the policy's leeway.
pub fn check_time(
    policy: &JwtPolicy,
    token: &VerifiedToken,
    now: Timestamp,
) -> Result<(), InactiveReason> {
    Ok(policy.check_time(token.nbf.as_secs(), token.exp.as_secs(), now.as_secs())?)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::KeyAlgorithm;

    fn policy() -> JwtPolicy {
        JwtPolicy {
            issuer: "https://tokens.example".into(),
            audience: "api".into(),
            leeway_secs: 30,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://tokens.example", "aud": "api", "sub": "alice",
            "client_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "jti": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "iat": 1_700_000_000, "nbf": 1_700_000_000, "exp": 1_800_000_000,
            "scope": "wallet_view trade_view", "adm": true, "ips": ["10.0.0.0/8"]
        })
    }

    /// Signs `payload` (raw JSON bytes) as the ring's signing key would.
    fn sign_payload(ring: &KeyRing, payload: &[u8]) -> String {
        let key = &ring.signing;
        let input = format!("{}.{}", key.encoded_header, URL_SAFE_NO_PAD.encode(payload));
        let signature = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn sign(ring: &KeyRing, claims: &Value) -> String {
        sign_payload(ring, claims.to_string().as_bytes())
    }

    fn rings() -> [KeyRing; 2] {
        [
            KeyRing::ephemeral(KeyAlgorithm::EdDSA).unwrap(),
            KeyRing::ephemeral(KeyAlgorithm::ES256).unwrap(),
        ]
    }

    #[test]
    fn a_signed_token_yields_its_claims_for_both_algorithms() {
        for ring in rings() {
            let token = verify_signature(&policy(), &sign(&ring, &claims()), &ring).unwrap();
            assert_eq!(token.id.to_string(), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
            assert_eq!(token.user_id.as_str(), "alice");
            assert!(token.scopes.grants("trade_view") && !token.scopes.grants("wallet_spend"));
            assert!(token.admin);
            assert_eq!(token.ips.as_strings(), ["10.0.0.0/8"]);
            assert_eq!(token.nbf, Timestamp::from_secs(1_700_000_000));
            assert_eq!(token.exp, Timestamp::from_secs(1_800_000_000));
            assert_eq!(token.kid, ring.signing.kid);
        }
    }

    #[test]
    fn escaped_strings_are_read_like_plain_ones() {
        let [ring, _] = rings();
        // JSON escapes make serde copy instead of borrowing; the meaning must not change.
        let payload = claims()
            .to_string()
            .replace("https://tokens.example", "https:\\/\\/tokens.example")
            .replace("wallet_view", "w\\u0061llet_view");
        let token =
            verify_signature(&policy(), &sign_payload(&ring, payload.as_bytes()), &ring).unwrap();
        assert!(token.scopes.grants("wallet_view"));
    }

    #[test]
    fn an_audience_list_must_name_ours() {
        let [ring, _] = rings();
        let mut listed = claims();
        listed["aud"] = json!(["billing", "api"]);
        assert!(verify_signature(&policy(), &sign(&ring, &listed), &ring).is_ok());
        listed["aud"] = json!(["billing"]);
        let err = verify_signature(&policy(), &sign(&ring, &listed), &ring);
        assert_eq!(err.unwrap_err(), InactiveReason::InvalidClaims);
    }

    #[test]
    fn a_missing_claim_is_malformed_and_optional_ones_may_be_left_out() {
        // Each required claim is tested in `tokenmint-jwt` (`claims.rs`); here, the mapping.
        let [ring, _] = rings();
        let mut partial = claims();
        partial.as_object_mut().unwrap().remove("exp");
        let err = verify_signature(&policy(), &sign(&ring, &partial), &ring);
        assert_eq!(err.unwrap_err(), InactiveReason::Malformed);
        let mut minimal = claims();
        for optional in ["adm", "ips"] {
            minimal.as_object_mut().unwrap().remove(optional);
        }
        let token = verify_signature(&policy(), &sign(&ring, &minimal), &ring).unwrap();
        assert!(!token.admin && token.ips.is_unrestricted());
    }

    #[test]
    fn an_empty_ips_claim_is_refused_rather_than_read_as_anywhere() {
        let [ring, _] = rings();
        let mut empty = claims();
        empty["ips"] = json!([]);
        let err = verify_signature(&policy(), &sign(&ring, &empty), &ring);
        assert_eq!(err.unwrap_err(), InactiveReason::Malformed);
    }

    #[test]
    fn damaged_tokens_are_refused_with_the_right_reason() {
        let [ring, _] = rings();
        let token = sign(&ring, &claims());
        let (input, signature) = token.rsplit_once('.').unwrap();
        let (header, payload) = input.split_once('.').unwrap();
        let other_payload =
            URL_SAFE_NO_PAD.encode(claims().to_string().replace("alice", "mallory"));
        let short_signature = URL_SAFE_NO_PAD.encode([7u8; 10]);
        let cases = [
            (format!("{token}.{signature}"), InactiveReason::Malformed),
            (input.to_owned(), InactiveReason::Malformed),
            (format!("{input}.not*base64"), InactiveReason::Malformed),
            (
                format!("{input}.{short_signature}"),
                InactiveReason::BadSignature,
            ),
            (
                format!("{header}.{other_payload}.{signature}"),
                InactiveReason::BadSignature,
            ),
            (
                format!("{header}.{payload}x.{signature}"),
                InactiveReason::BadSignature,
            ),
        ];
        for (damaged, reason) in cases {
            let result = verify_signature(&policy(), &damaged, &ring);
            assert_eq!(result.unwrap_err(), reason, "{damaged}");
        }
        // A signature from another key with our kid, and a token from another ring altogether.
        let [other, _] = rings();
        let foreign = sign(&other, &claims());
        let (_, foreign_signature) = foreign.rsplit_once('.').unwrap();
        let result = verify_signature(&policy(), &format!("{input}.{foreign_signature}"), &ring);
        assert_eq!(result.unwrap_err(), InactiveReason::BadSignature);
        let result = verify_signature(&policy(), &foreign, &ring);
        assert_eq!(result.unwrap_err(), InactiveReason::UnknownKey);
    }
}

/// Sign → verify round trips over arbitrary claims, for both algorithms.
#[cfg(test)]
mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::KeyAlgorithm;
    use crate::issuance::claims::{Audience, Claims, sign};

    fn policy() -> JwtPolicy {
        JwtPolicy {
            issuer: "https://tokens.example".into(),
            audience: "api".into(),
            leeway_secs: 30,
        }
    }

    /// One ring per algorithm, made once (key generation is the slow part).
    fn ring(algorithm: KeyAlgorithm) -> &'static KeyRing {
        static RINGS: std::sync::OnceLock<[KeyRing; 2]> = std::sync::OnceLock::new();
        let rings = RINGS.get_or_init(|| {
            [
                KeyRing::ephemeral(KeyAlgorithm::EdDSA).unwrap(),
                KeyRing::ephemeral(KeyAlgorithm::ES256).unwrap(),
            ]
        });
        &rings[usize::from(algorithm == KeyAlgorithm::ES256)]
    }

    fn algorithm() -> impl Strategy<Value = KeyAlgorithm> {
        prop_oneof![Just(KeyAlgorithm::EdDSA), Just(KeyAlgorithm::ES256)]
    }

    /// An address or CIDR block, normalised as the server stores and signs them.
    fn network() -> impl Strategy<Value = String> {
        prop_oneof![
            (any::<[u8; 4]>(), 0..=32u8)
                .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv4Addr::from(a))),
            (any::<[u8; 16]>(), 0..=128u8)
                .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
        ]
    }

    prop_compose! {
        /// Claims as `Minter::create` writes them, with arbitrary values where the server
        /// takes them from the request or the caller.
        fn claims()(
            sub in "[^\\s\\p{C}]{1,40}",
            jti in any::<u128>(),
            client_id in ".{0,20}",
            iat in any::<i64>(),
            nbf in any::<i64>(),
            exp in any::<i64>(),
            scopes in vec("[a-z0-9_.:-]{1,16}", 0..6),
            ent in proptest::option::of("[^\\s\\p{C}]{1,40}"),
            adm in any::<bool>(),
            tpl in proptest::option::of(any::<u128>()),
            ips in proptest::option::of(vec(network(), 1..4)),
            many_audiences in any::<bool>(),
        ) -> Claims<'static> {
            let ips = ips.map(|ips| {
                IpRestriction::parse(&ips, "ips").unwrap().to_strings()
            });
            Claims {
                iss: "https://tokens.example".into(),
                aud: if many_audiences {
                    Audience::Many(vec!["billing".into(), "api".into()])
                } else {
                    Audience::One("api".into())
                },
                sub: sub.into(),
                client_id: client_id.into(),
                jti: uuid::Uuid::from_u128(jti).to_string().into(),
                iat,
                nbf,
                exp,
                scope: scopes.join(" ").into(),
                ent: ent.map(Into::into),
                adm,
                tpl: tpl.map(|tpl| uuid::Uuid::from_u128(tpl).to_string().into()),
                ips,
                status: None,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn a_signed_token_verifies_to_its_claims(claims in claims(), algorithm in algorithm()) {
            let ring = ring(algorithm);
            let token = sign(&claims, &ring.signing).unwrap();
            let verified = verify_signature(&policy(), token.expose(), ring).unwrap();
            prop_assert_eq!(verified.id.to_string(), claims.jti);
            prop_assert_eq!(verified.user_id.as_str(), &*claims.sub);
            prop_assert_eq!(&*verified.scopes, &ScopeSet::from_claim(&claims.scope));
            prop_assert_eq!(verified.scopes.to_claim(), {
                let mut names: Vec<&str> = claims.scope.split(' ').filter(|s| !s.is_empty()).collect();
                names.sort_unstable();
                names.dedup();
                names.join(" ")
            });
            prop_assert_eq!(verified.admin, claims.adm);
            prop_assert_eq!(verified.enterprise.as_ref().map(|e| e.as_str()), claims.ent.as_deref());
            prop_assert_eq!(verified.ips.as_strings(), claims.ips.as_deref().unwrap_or_default());
            prop_assert_eq!(verified.nbf, Timestamp::from_secs(claims.nbf));
            prop_assert_eq!(verified.exp, Timestamp::from_secs(claims.exp));
            prop_assert_eq!(&verified.kid, &ring.signing.kid);
        }

        #[test]
        fn any_single_byte_change_is_refused(
            claims in claims(),
            algorithm in algorithm(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let ring = ring(algorithm);
            let token = sign(&claims, &ring.signing).unwrap();
            let mut bytes = token.expose().as_bytes().to_vec();
            let at = at.index(bytes.len());
            prop_assume!(bytes[at] != byte);
            bytes[at] = byte;
            let changed = String::from_utf8_lossy(&bytes);
            let result = verify_signature(&policy(), &changed, ring);
            prop_assert!(result.is_err(), "byte {} changed to {:#04x} still verifies", at, byte);
        }
    }
}
