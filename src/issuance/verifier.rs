//! JWT policy in one place: what makes a token's signature and claims acceptable, and which
//! [`InactiveReason`] each failure maps to. The algorithm comes from the key the `kid` names,
//! never from the header alone; `none` and HMAC are never accepted.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::domain::{EnterpriseId, IpRestriction, ScopeSet, Timestamp, TokenId, UserId};
use crate::issuance::claims::Audience;
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

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

/// The claims a verification reads. Every claim [`crate::issuance::claims::Claims`] requires must
/// be present; strings borrow from the decoded payload unless an escape forces a copy.
#[derive(Deserialize)]
struct ClaimsView<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    aud: Audience,
    #[serde(borrow)]
    sub: Cow<'a, str>,
    #[serde(rename = "client_id")]
    _client_id: IgnoredAny,
    #[serde(borrow)]
    jti: Cow<'a, str>,
    #[serde(rename = "iat")]
    _iat: IgnoredAny,
    nbf: i64,
    exp: i64,
    #[serde(borrow)]
    scope: Cow<'a, str>,
    #[serde(default)]
    adm: bool,
    #[serde(default)]
    ips: Option<Vec<String>>,
    #[serde(default, borrow)]
    ent: Option<Cow<'a, str>>,
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
    ///
    /// The signature is checked with ring directly against the key parsed when the ring was
    /// loaded, and the claims are parsed once, borrowing from the decoded payload: the same checks
    /// `jsonwebtoken::decode` makes, without its second header parse, its per-call verifier
    /// allocation and its second pass over the claims.
    pub fn verify_signature(
        &self,
        raw: &str,
        ring: &KeyRing,
    ) -> Result<VerifiedToken, InactiveReason> {
        let (signing_input, signature) = raw.rsplit_once('.').ok_or(InactiveReason::Malformed)?;
        let (header, payload) = signing_input
            .split_once('.')
            .filter(|(_, payload)| !payload.contains('.'))
            .ok_or(InactiveReason::Malformed)?;
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
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| InactiveReason::Malformed)?;
        if !key.verifies(signing_input.as_bytes(), &signature) {
            return Err(InactiveReason::BadSignature);
        }
        let payload_json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| InactiveReason::Malformed)?;
        let claims: ClaimsView<'_> =
            serde_json::from_slice(&payload_json).map_err(|_| InactiveReason::Malformed)?;
        if !header.typ.as_deref().is_some_and(is_access_token_typ) {
            return Err(InactiveReason::InvalidClaims);
        }
        if claims.iss != self.issuer || !claims.aud.contains(&self.audience) {
            return Err(InactiveReason::InvalidClaims);
        }
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

#[cfg(test)]
mod tests {
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
            let token = policy()
                .verify_signature(&sign(&ring, &claims()), &ring)
                .unwrap();
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
        let token = policy()
            .verify_signature(&sign_payload(&ring, payload.as_bytes()), &ring)
            .unwrap();
        assert!(token.scopes.grants("wallet_view"));
    }

    #[test]
    fn an_audience_list_must_name_ours() {
        let [ring, _] = rings();
        let mut listed = claims();
        listed["aud"] = json!(["billing", "api"]);
        assert!(
            policy()
                .verify_signature(&sign(&ring, &listed), &ring)
                .is_ok()
        );
        listed["aud"] = json!(["billing"]);
        let err = policy().verify_signature(&sign(&ring, &listed), &ring);
        assert_eq!(err.unwrap_err(), InactiveReason::InvalidClaims);
    }

    #[test]
    fn every_required_claim_must_be_present() {
        let [ring, _] = rings();
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
            let mut partial = claims();
            partial.as_object_mut().unwrap().remove(claim);
            let err = policy().verify_signature(&sign(&ring, &partial), &ring);
            assert_eq!(
                err.unwrap_err(),
                InactiveReason::Malformed,
                "without {claim}"
            );
        }
        let mut minimal = claims();
        for optional in ["adm", "ips"] {
            minimal.as_object_mut().unwrap().remove(optional);
        }
        let token = policy()
            .verify_signature(&sign(&ring, &minimal), &ring)
            .unwrap();
        assert!(!token.admin && token.ips.is_unrestricted());
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
            let result = policy().verify_signature(&damaged, &ring);
            assert_eq!(result.unwrap_err(), reason, "{damaged}");
        }
        // A signature from another key with our kid, and a token from another ring altogether.
        let [other, _] = rings();
        let foreign = sign(&other, &claims());
        let (_, foreign_signature) = foreign.rsplit_once('.').unwrap();
        let result = policy().verify_signature(&format!("{input}.{foreign_signature}"), &ring);
        assert_eq!(result.unwrap_err(), InactiveReason::BadSignature);
        let result = policy().verify_signature(&foreign, &ring);
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
    use crate::issuance::claims::{Claims, sign};

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
            tpl in proptest::option::of(".{0,40}"),
            ips in proptest::option::of(vec(network(), 0..4)),
            many_audiences in any::<bool>(),
        ) -> Claims {
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
                sub,
                client_id,
                jti: uuid::Uuid::from_u128(jti).to_string(),
                iat,
                nbf,
                exp,
                scope: scopes.join(" "),
                ent,
                adm,
                tpl,
                ips,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn a_signed_token_verifies_to_its_claims(claims in claims(), algorithm in algorithm()) {
            let ring = ring(algorithm);
            let token = sign(&claims, &ring.signing).unwrap();
            let verified = policy().verify_signature(token.expose(), ring).unwrap();
            prop_assert_eq!(verified.id.to_string(), claims.jti);
            prop_assert_eq!(verified.user_id.as_str(), claims.sub.as_str());
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
            let result = policy().verify_signature(&changed, ring);
            prop_assert!(result.is_err(), "byte {} changed to {:#04x} still verifies", at, byte);
        }
    }
}
