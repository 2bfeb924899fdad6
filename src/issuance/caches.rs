//! Bounded caches on the verification hot path.
//!
//! - [`VerifiedCache`]: tokens whose signature and static claims were already checked, keyed by
//!   a cryptographic hash of the token (the token itself is never kept). Expiry, status, IP and scopes are
//!   still checked on every call, so a cached entry never outlives a revocation.
//! - [`MetadataCache`]: the stored metadata VerifyToken returns for active tokens, refreshed at
//!   most once per token per TTL and invalidated by every change (local or from the change feed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use crate::domain::{TokenId, TokenRecord};
use crate::issuance::verifier::VerifiedToken;

/// A 256-bit digest of a raw token (SHA-256 or BLAKE3, one of them for the whole process).
pub type TokenHash = [u8; 32];

/// Hashes a raw token for use as a cache key. A collision would let a forged token borrow a
/// verified one's signature, so the hash must be cryptographic. Every VerifyToken hashes two
/// tokens (the caller's and the subject), so the faster of two strong hashes is used: SHA-256
/// where the CPU computes it in hardware (x86 SHA extensions, ARMv8 SHA2), BLAKE3 elsewhere. On
/// a 580-byte token, SHA-256 took 23,000 instructions without the extensions against BLAKE3's
/// 4,900 (session 5's VM), and 518 ns against BLAKE3's 851 ns with them (session 6's);
/// `cargo bench --bench crypto -- cache_key`.
pub fn token_hash(raw: &str) -> TokenHash {
    if sha256_in_hardware() {
        let digest = ring::digest::digest(&ring::digest::SHA256, raw.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        hash
    } else {
        *blake3::hash(raw.as_bytes()).as_bytes()
    }
}

/// Whether this CPU has SHA-256 instructions (the standard library caches the answer).
pub fn sha256_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Verified signatures, by token hash.
pub struct VerifiedCache {
    cache: Cache<TokenHash, Arc<VerifiedToken>>,
}

impl VerifiedCache {
    /// A cache holding at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: Cache::new(capacity.max(1)),
        }
    }

    /// The verified token for `hash`, if cached.
    pub fn get(&self, hash: &TokenHash) -> Option<Arc<VerifiedToken>> {
        self.cache.get(hash)
    }

    /// Remembers a verified token.
    pub fn insert(&self, hash: TokenHash, token: Arc<VerifiedToken>) {
        self.cache.insert(hash, token);
    }
}

/// Token metadata for VerifyToken responses, by id, with a time-to-live.
pub struct MetadataCache {
    /// Each record with the moment its entry stops being served.
    cache: Cache<TokenId, (Arc<TokenRecord>, Instant)>,
    ttl: Duration,
}

impl MetadataCache {
    /// A cache of at most `capacity` tokens whose entries live up to `ttl` (see
    /// [`MetadataCache::lifetime`]).
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            cache: Cache::new(capacity.max(1)),
            ttl,
        }
    }

    /// The cached record, if present and fresh.
    pub fn get(&self, id: &TokenId) -> Option<Arc<TokenRecord>> {
        self.cache
            .get(id)
            .filter(|(_, stale_at)| Instant::now() < *stale_at)
            .map(|(r, _)| r)
    }

    /// Caches `record`.
    pub fn insert(&self, record: Arc<TokenRecord>) {
        let stale_at = Instant::now() + self.lifetime(&record.id);
        self.cache.insert(record.id, (record, stale_at));
    }

    /// Drops `id`'s entry (after a change).
    pub fn invalidate(&self, id: &TokenId) {
        self.cache.remove(id);
    }

    /// How long `id`'s entry lives: between 3/4 of the TTL and all of it, fixed per token by the
    /// random low bits of its id. Tokens first verified together (a hot set right after a
    /// restart, a freshly minted pool) would otherwise go stale together and be read from the
    /// database in one burst, and again one TTL later, for as long as they stay hot.
    fn lifetime(&self, id: &TokenId) -> Duration {
        let spread = (id.as_uuid().as_u128() % 1024) as u32;
        self.ttl
            .saturating_sub((self.ttl / 4096).saturating_mul(spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_the_digest_this_cpu_computes_fastest() {
        let token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        let expected: TokenHash = if sha256_in_hardware() {
            ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
                .as_ref()
                .try_into()
                .unwrap()
        } else {
            *blake3::hash(token.as_bytes()).as_bytes()
        };
        assert_eq!(token_hash(token), expected);
        assert_eq!(token_hash(token), token_hash(token));
        assert_ne!(token_hash(token), token_hash(&token.replace('e', "f")));
    }

    /// Metadata entries do not all go stale at once: each token's lifetime is its own, within
    /// the last quarter of the TTL, and the same every time it is cached.
    #[test]
    fn metadata_lifetimes_are_spread_over_the_last_quarter_of_the_ttl() {
        let ttl = Duration::from_secs(30);
        let cache = MetadataCache::new(16, ttl);
        let lifetimes: Vec<Duration> = (0..200)
            .map(|_| cache.lifetime(&TokenId::generate()))
            .collect();
        assert!(
            lifetimes.iter().all(|l| *l <= ttl && *l > ttl * 3 / 4),
            "{lifetimes:?}"
        );
        let (shortest, longest) = (
            lifetimes.iter().min().unwrap(),
            lifetimes.iter().max().unwrap(),
        );
        assert!(
            *longest - *shortest > ttl / 8,
            "200 tokens' lifetimes all within {:?}",
            *longest - *shortest
        );
        let id = TokenId::generate();
        assert_eq!(cache.lifetime(&id), cache.lifetime(&id));
    }

    /// A fresh entry is served until invalidated; a TTL of zero caches nothing.
    #[test]
    fn metadata_entries_are_served_fresh_and_dropped_on_change() {
        let cache = MetadataCache::new(16, Duration::from_secs(30));
        let record = Arc::new(TokenRecord::sample(1));
        cache.insert(record.clone());
        assert_eq!(cache.get(&record.id), Some(record.clone()));
        cache.invalidate(&record.id);
        assert_eq!(cache.get(&record.id), None);
        let uncached = MetadataCache::new(16, Duration::ZERO);
        uncached.insert(record.clone());
        assert_eq!(uncached.get(&record.id), None);
    }
}
