//! The first step of every verification: a token's signature and static claims, checked once
//! per token and then served from a cache.

use std::sync::Arc;

use crate::domain::Timestamp;
use crate::issuance::InactiveReason;
use crate::issuance::caches::{VerifiedCache, token_hash};
use crate::issuance::keys::{KeyManager, KeyRing};
use crate::issuance::verifier::{self, JwtPolicy, VerifiedToken};

/// Checks signatures against the current key ring through a cache of verified tokens.
///
/// The authenticator (RPC callers) and the introspector (VerifyToken subjects) each own one,
/// with its own cache, so that a flood of distinct subjects never evicts the callers' tokens.
pub struct SignatureCheck {
    keys: Arc<KeyManager>,
    policy: JwtPolicy,
    cache: VerifiedCache,
}

impl SignatureCheck {
    /// Checks against `keys` under `policy`, caching up to `capacity` verified tokens.
    pub fn new(keys: Arc<KeyManager>, policy: JwtPolicy, capacity: usize) -> Self {
        Self {
            keys,
            policy,
            cache: VerifiedCache::new(capacity),
        }
    }

    /// The signature and claim policy.
    pub fn policy(&self) -> &JwtPolicy {
        &self.policy
    }

    /// `raw`'s signature and static claims (not its time window: [`Self::check_time`]). When
    /// the token names a key this server does not know, the keys are read again once: another
    /// server may have rotated one in that this server's change feed has not brought yet.
    pub async fn verified(&self, raw: &str) -> Result<Arc<VerifiedToken>, InactiveReason> {
        let ring = self.keys.ring();
        match self.verified_by(raw, &ring) {
            Err(InactiveReason::UnknownKey) if self.keys.refresh_for_unknown_key(&ring).await => {
                self.verified_by(raw, &self.keys.ring())
            }
            result => result,
        }
    }

    /// Whether `token` is inside its validity window at `now` (with the policy's leeway).
    pub fn check_time(&self, token: &VerifiedToken, now: Timestamp) -> Result<(), InactiveReason> {
        verifier::check_time(&self.policy, token, now)
    }

    /// Signature and static claims against `ring`, through the cache.
    fn verified_by(&self, raw: &str, ring: &KeyRing) -> Result<Arc<VerifiedToken>, InactiveReason> {
        let hash = token_hash(raw);
        if let Some(hit) = self.cache.get(&hash) {
            // A retired key takes its signatures with it, cached or not.
            return match ring.verifying_key(&hit.kid) {
                Some(_) => Ok(hit),
                None => Err(InactiveReason::UnknownKey),
            };
        }
        let token = {
            let _span = tracing::debug_span!("verify_signature").entered();
            Arc::new(verifier::verify_signature(&self.policy, raw, ring)?)
        };
        self.cache.insert(hash, token.clone());
        Ok(token)
    }
}
