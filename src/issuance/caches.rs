//! Bounded caches on the verification hot path.
//!
//! - [`VerifiedCache`]: tokens whose signature and static claims were already checked, keyed by
//!   a cryptographic hash of the token (the token itself is never kept). Expiry, status, IP and scopes are
//!   still checked on every call, so a cached entry never outlives a revocation.
//! - [`MetadataCache`]: the stored metadata VerifyToken returns for active tokens, refreshed at
//!   most once per token per TTL and invalidated by every change (local or from the change feed).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::{Cache, EntryAction, EntryResult};

use crate::domain::{TokenId, TokenRecord};
use crate::error::Result;
use crate::issuance::verifier::VerifiedToken;

/// A 256-bit digest of a raw token (SHA-256 or BLAKE3, one of them for the whole process).
pub type TokenHash = [u8; 32];

/// Hashes a raw token for use as a cache key. A collision would let a forged token borrow a
/// verified one's signature, so the hash must be cryptographic. Every VerifyToken hashes two
/// tokens (the caller's and the subject), so the faster of two strong hashes is used: SHA-256
/// where the CPU computes it in hardware (x86 SHA extensions, ARMv8 SHA2), BLAKE3 elsewhere. On
/// a 580-byte token, SHA-256 without the extensions costs about five times BLAKE3's
/// instructions, and with them about 0.6 of BLAKE3's time; `cargo bench --bench crypto --
/// cache_key` compares them on the machine at hand (ARCHITECTURE.md, "Caches and their
/// invalidation").
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

    /// The record of `id`: the cached one while it is fresh, else the one `load` reads from the
    /// database. Concurrent callers for the same token share one `load` (the others wait for it)
    /// instead of each reading the same row: a hot token going stale under load, or a hot set
    /// right after a restart, costs one read per token. A record invalidated while it was being
    /// read is returned to its reader but not cached (callers waiting for it read the row again),
    /// so a change that lands during the read is never hidden for a TTL. `Ok(None)`: no such
    /// token.
    pub async fn get_or_load<F, Fut>(
        &self,
        id: TokenId,
        load: F,
    ) -> Result<Option<Arc<TokenRecord>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<TokenRecord>>>,
    {
        if let Some(record) = self.get(&id) {
            return Ok(Some(record));
        }
        if self.ttl.is_zero() {
            return Ok(load().await?.map(Arc::new));
        }
        let now = Instant::now();
        let guard = match self
            .cache
            .entry_async(&id, |_, (record, stale_at)| {
                if now < *stale_at {
                    EntryAction::Retain(record.clone())
                } else {
                    EntryAction::ReplaceWithGuard
                }
            })
            .await
        {
            EntryResult::Retained(record) => return Ok(Some(record)),
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => Some(guard),
            EntryResult::Removed(..) | EntryResult::Timeout => None,
        };
        let Some(record) = load().await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        if let Some(guard) = guard {
            // An error means the entry was invalidated during the read: leave it uncached.
            let _ = guard.insert((record.clone(), Instant::now() + self.lifetime(&id)));
        }
        Ok(Some(record))
    }

    /// Caches `record`.
    pub fn insert(&self, record: Arc<TokenRecord>) {
        let stale_at = Instant::now() + self.lifetime(&record.id);
        self.cache.insert(record.id, (record, stale_at));
    }

    /// Caches `record` as already stale (tests of the refresh path, without waiting for a TTL).
    #[cfg(test)]
    fn insert_stale(&self, record: Arc<TokenRecord>) {
        self.cache.insert(record.id, (record, Instant::now()));
    }

    /// Drops `id`'s entry (after a change).
    pub fn invalidate(&self, id: &TokenId) {
        self.cache.remove(id);
    }

    /// Drops every entry (after the change log went back in time).
    pub fn clear(&self) {
        self.cache.clear();
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

    /// Many verifications of a token that is not cached read its row once, together; later
    /// ones are served from the cache. The read is held open until every caller has arrived
    /// (a current-thread runtime runs each spawned lookup to its first wait on a yield), so
    /// without the shared read all 16 would read.
    #[tokio::test]
    async fn concurrent_misses_for_one_token_share_one_read() {
        let cache = Arc::new(MetadataCache::new(16, Duration::from_secs(30)));
        let record = TokenRecord::sample(1);
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let lookups: Vec<_> = (0..16)
            .map(|_| {
                let (cache, record) = (cache.clone(), record.clone());
                let (reads, release) = (reads.clone(), release.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load(record.id, || async move {
                            reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let _permit = release.acquire().await.unwrap();
                            Ok(Some(record))
                        })
                        .await
                })
            })
            .collect();
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        release.add_permits(16);
        for lookup in lookups {
            let found = lookup.await.unwrap().unwrap().unwrap();
            assert_eq!(*found, record);
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        let cached = cache
            .get_or_load(record.id, || async { panic!("read again") })
            .await;
        assert_eq!(cached.unwrap().as_deref(), Some(&record));
    }

    /// A change that lands while the row is being read drops the entry being loaded: the stale
    /// row is returned to that caller (it was read before the change) but never cached. A token
    /// that is not stored caches nothing.
    #[tokio::test]
    async fn a_record_invalidated_during_its_read_is_not_cached() {
        let cache = MetadataCache::new(16, Duration::from_secs(30));
        let record = TokenRecord::sample(1);
        let read = cache.get_or_load(record.id, || async {
            cache.invalidate(&record.id);
            Ok(Some(record.clone()))
        });
        assert_eq!(read.await.unwrap().as_deref(), Some(&record));
        assert_eq!(cache.get(&record.id), None);

        let unknown = TokenId::generate();
        let missing = cache.get_or_load(unknown, || async { Ok(None) }).await;
        assert_eq!(missing.unwrap(), None);
        assert_eq!(cache.get(&unknown), None);
    }

    /// A stale entry is read again, and a failed read is reported and caches nothing.
    #[tokio::test]
    async fn stale_entries_are_read_again_and_read_errors_surface() {
        let cache = MetadataCache::new(16, Duration::from_secs(30));
        let record = TokenRecord::sample(1);
        cache.insert_stale(Arc::new(record.clone()));
        assert_eq!(cache.get(&record.id), None, "a stale entry is not served");
        let mut changed = record.clone();
        changed.label = crate::domain::Label::parse("renamed").unwrap();
        let reread = cache
            .get_or_load(record.id, || async { Ok(Some(changed.clone())) })
            .await;
        assert_eq!(reread.unwrap().as_deref(), Some(&changed));

        let other = TokenId::generate();
        let failed = cache
            .get_or_load(other, || async {
                Err(crate::error::Error::store("database unavailable"))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(cache.get(&other), None);
    }
}
