//! Bounded caches on the verification hot path.
//!
//! - [`VerifiedCache`]: tokens whose signature and static claims were already checked, keyed by
//!   the BLAKE3 hash of the token (the token itself is never kept). Expiry, status, IP and scopes are
//!   still checked on every call, so a cached entry never outlives a revocation.
//! - [`MetadataCache`]: the stored metadata VerifyToken returns for active tokens, refreshed at
//!   most once per token per TTL and invalidated by every change (local or from the change feed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use crate::domain::{TokenId, TokenRecord};
use crate::issuance::verifier::VerifiedToken;

/// A 256-bit BLAKE3 digest of a raw token.
pub type TokenHash = [u8; 32];

/// Hashes a raw token for use as a cache key. A collision would let a forged token borrow a
/// verified one's signature, so the hash must be cryptographic; BLAKE3 is, and it costs a fraction
/// of SHA-256 on CPUs without SHA extensions (every VerifyToken hashes two tokens: the caller's
/// and the subject; `cargo bench --bench crypto -- cache_key`).
pub fn token_hash(raw: &str) -> TokenHash {
    *blake3::hash(raw.as_bytes()).as_bytes()
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
    cache: Cache<TokenId, (Arc<TokenRecord>, Instant)>,
    ttl: Duration,
}

impl MetadataCache {
    /// A cache of at most `capacity` tokens whose entries live `ttl`.
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
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(r, _)| r)
    }

    /// Caches `record`.
    pub fn insert(&self, record: Arc<TokenRecord>) {
        self.cache.insert(record.id, (record, Instant::now()));
    }

    /// Drops `id`'s entry (after a change).
    pub fn invalidate(&self, id: &TokenId) {
        self.cache.remove(id);
    }
}
