//! The key manager: loads the key ring from the store (upgrading and authenticating its rows,
//! see `issuance::key_rows`), makes the first key, rotates, and reloads when another process
//! changed the key set — under one reload turn, so that an older read never replaces a newer —
//! or when a token names a key this server does not know (in the background, briefly waited
//! for). Also the offline `keys rotate` and `keys retire` commands.
//!
//! (Length: the second half of this file is the tests of reloading and retiring, which need the
//! manager's private state.)
//!
//! Length: the manager is the first ~270 lines; the rest are its tests (reload races included).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::domain::KeyAlgorithm;
use crate::domain::Timestamp;
use crate::error::Result;
use crate::issuance::key_rows;
use crate::issuance::keys::{KeyRing, build_ring, generate};
use crate::issuance::sealing::MasterKey;
use crate::store::{Store, StoredKey, StoredKeySet};

/// Owns the key ring: loads it from the store, makes the first key, rotates, and reloads when
/// another process rotated.
pub struct KeyManager {
    store: Store,
    master: MasterKey,
    algorithm: KeyAlgorithm,
    /// How long a retired key keeps verifying: the longest token lifetime plus leeway.
    retention_secs: i64,
    ring: RwLock<Arc<KeyRing>>,
    /// Held by a reload from before it reads the keys until it has installed its ring, so
    /// that a reload that read an older key set never installs it over one that read a newer
    /// (a key retired meanwhile would come back).
    reload_turn: tokio::sync::Mutex<()>,
    /// The re-read of the keys that tokens naming an unknown key started last.
    unknown_key_refresh: Mutex<UnknownKeyRefresh>,
    /// How long a caller waits for that re-read ([`UNKNOWN_KEY_WAIT`]; longer in unit tests).
    unknown_key_wait: Duration,
}

/// The least time between two re-reads of the keys caused by tokens naming an unknown key: a
/// client sending made-up `kid`s costs the database one small query per this interval.
pub const UNKNOWN_KEY_REFRESH: Duration = Duration::from_secs(1);

/// How long after a re-read for an unknown key started its callers may wait for it. The re-read
/// runs in a task of its own; past this, callers are answered at once (the token's key is
/// unknown) however long the database takes, so tokens with made-up `kid`s cannot tie up
/// requests (`server.max_in_flight_requests`) while the database is slow. A key rotated in on
/// another server is normally read within a few milliseconds.
pub const UNKNOWN_KEY_WAIT: Duration = Duration::from_millis(100);

/// The latest re-read of the keys started for a token naming an unknown key.
#[derive(Debug, Default)]
struct UnknownKeyRefresh {
    /// When it started.
    started: Option<Instant>,
    /// Turns true when it has ended (successfully or not).
    done: Option<tokio::sync::watch::Receiver<bool>>,
}

impl UnknownKeyRefresh {
    /// Whether it is still running (a task that ended without saying so, panicking, is not).
    fn running(&self) -> bool {
        self.done
            .as_ref()
            .is_some_and(|done| done.has_changed().is_ok() && !*done.borrow())
    }
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl KeyManager {
    /// Loads the keys, generating the first signing key if the store has none. Rows made before
    /// rows were authenticated are upgraded first ([`key_rows::upgrade`]); fails when the store
    /// has keys and `master` authenticates none of them.
    pub async fn load(
        store: Store,
        master: MasterKey,
        algorithm: KeyAlgorithm,
        retention_secs: i64,
    ) -> anyhow::Result<Self> {
        key_rows::upgrade(&store, &master).await?;
        let mut stored = store.key_set().await?;
        key_rows::ensure_master_key_matches(&master, &stored.keys)?;
        if !stored.keys.iter().any(|k| k.retired_at.is_none()) {
            let key = generate(&master, algorithm)?;
            if store.store_first_key(&key).await? {
                tracing::info!(kid = %key.kid, algorithm = algorithm.name(), "generated the first signing key");
            }
            stored = store.key_set().await?;
        }
        let ring = build_ring(&master, &stored.keys, retention_secs, Timestamp::now())?
            .with_version(stored.version);
        Ok(Self {
            store,
            master,
            algorithm,
            retention_secs,
            ring: RwLock::new(Arc::new(ring)),
            reload_turn: tokio::sync::Mutex::new(()),
            unknown_key_refresh: Mutex::new(UnknownKeyRefresh::default()),
            unknown_key_wait: UNKNOWN_KEY_WAIT,
        })
    }

    /// The current key ring.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the keys from the store (after a rotation elsewhere). When the key set read has
    /// no usable signing key, the ring in service stays.
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.reload_from(|| self.store.key_set()).await
    }

    /// [`Self::reload`] with the key set `read` returns. `read` runs after this reload's turn
    /// begins, and the ring is installed before it ends: of two reloads, the one that installs
    /// last read last.
    async fn reload_from<F, R>(&self, read: F) -> anyhow::Result<()>
    where
        F: FnOnce() -> R,
        R: Future<Output = Result<StoredKeySet>>,
    {
        let _turn = self.reload_turn.lock().await;
        let stored = read().await?;
        let ring = build_ring(
            &self.master,
            &stored.keys,
            self.retention_secs,
            Timestamp::now(),
        )?
        .with_version(stored.version);
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        Ok(())
    }

    /// Called when a token names a key this server does not know: another server may have
    /// rotated in a key this one has not learnt of from the change feed yet. Starts a re-read of
    /// the keys in a task of its own, unless one is running or one started less than
    /// [`UNKNOWN_KEY_REFRESH`] ago, and waits for it until [`UNKNOWN_KEY_WAIT`] after it started,
    /// no longer. Returns whether the ring changed since `seen` (the ring the caller checked the
    /// token against), so that checking again is worthwhile.
    pub async fn refresh_for_unknown_key(self: &Arc<Self>, seen: &Arc<KeyRing>) -> bool {
        if !Arc::ptr_eq(&self.ring(), seen) {
            return true;
        }
        let (started, mut done) = {
            let mut refresh = self
                .unknown_key_refresh
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let recent = refresh
                .started
                .is_some_and(|at| now.duration_since(at) < UNKNOWN_KEY_REFRESH);
            if !recent && !refresh.running() {
                let (finished, done) = tokio::sync::watch::channel(false);
                *refresh = UnknownKeyRefresh {
                    started: Some(now),
                    done: Some(done),
                };
                let keys = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = keys.reload().await {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "re-reading the keys for a token naming an unknown key failed"
                        );
                    }
                    let _ = finished.send(true);
                });
            }
            match (refresh.started, refresh.done.clone()) {
                (Some(started), Some(done)) => (started, done),
                _ => return false,
            }
        };
        let deadline = tokio::time::Instant::from_std(started + self.unknown_key_wait);
        // Ended, or the wait is over: either way the ring in service now is the answer.
        let _ = tokio::time::timeout_at(deadline, done.wait_for(|done| *done)).await;
        !Arc::ptr_eq(&self.ring(), seen)
    }

    /// Makes a new signing key; earlier keys keep verifying until their tokens have expired.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        let kid = rotate_offline(&self.store, &self.master, self.algorithm).await?;
        self.reload().await?;
        Ok(kid)
    }
}

/// Rotates the signing key of `store` without a running server (the `keys rotate` command).
/// Rows made before rows were authenticated are upgraded first; refused when the store has keys
/// and `master` authenticates none of them (they are sealed under another master key).
pub async fn rotate_offline(
    store: &Store,
    master: &MasterKey,
    algorithm: KeyAlgorithm,
) -> anyhow::Result<String> {
    key_rows::upgrade(store, master).await?;
    key_rows::ensure_master_key_matches(master, &store.list_keys().await?)?;
    let key = generate(master, algorithm)?;
    let retired_mac = |row: &StoredKey, at: Timestamp| key_rows::retired_mac(master, row, at);
    store.rotate_in_key(&key, &retired_mac).await?;
    Ok(key.kid)
}

/// Why `keys retire` refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetireRefusal {
    /// No key has that id.
    #[error("no signing key {0} (see `tokenmint keys list`)")]
    Unknown(String),
    /// The key signs new tokens.
    #[error("key {0} signs new tokens: run `tokenmint keys rotate` first, then retire it")]
    Signing(String),
    /// Live tokens would stop verifying.
    #[error(
        "{count} unexpired, unrevoked token(s) were signed by key {kid} and would stop verifying; \
         revoke them or wait until they expire, or pass --force"
    )]
    InUse {
        /// The key.
        kid: String,
        /// Tokens signed by it that could still verify.
        count: u64,
    },
}

/// Withdraws the key `kid` from `store` (the `keys retire` command): the row, private key
/// included, is deleted and the change logged, so running servers drop it from verification and
/// the JWKS within a poll interval. Refused for the current signing key, and while tokens that
/// could still verify (not revoked, not deleted, not expired before now minus `leeway_secs`)
/// depend on it, unless `force`. Returns how many such tokens were cut off.
///
/// The dependent-token count is a snapshot: a replica that has not yet seen the rotation may sign
/// a last token with the old key afterwards. Retire some seconds after rotating.
pub async fn retire_offline(
    store: &Store,
    kid: &str,
    force: bool,
    leeway_secs: i64,
) -> anyhow::Result<u64> {
    let keys = store.list_keys().await?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| RetireRefusal::Unknown(kid.to_owned()))?;
    if key.retired_at.is_none() {
        return Err(RetireRefusal::Signing(kid.to_owned()).into());
    }
    let horizon = Timestamp::now().plus_secs(-leeway_secs);
    let count = store.count_live_tokens_signed_by(kid, horizon).await?;
    if count > 0 && !force {
        return Err(RetireRefusal::InUse {
            kid: kid.to_owned(),
            count,
        }
        .into());
    }
    anyhow::ensure!(
        store.delete_key(kid, Timestamp::now()).await?,
        "key {kid} was removed meanwhile"
    );
    tracing::info!(kid, cut_off_tokens = count, "signing key retired");
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use futures_util::FutureExt;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use sea_orm::ConnectionTrait as _;

    use super::*;

    /// A store on a fresh SQLite database in `dir`.
    async fn store(dir: &std::path::Path) -> Store {
        Store::migrated_sqlite_in(dir, 2, Duration::from_secs(5)).await
    }

    fn master() -> MasterKey {
        MasterKey::from_bytes(&[7; 32]).unwrap()
    }

    /// A key manager on a fresh SQLite database in `dir`; callers of
    /// [`KeyManager::refresh_for_unknown_key`] wait as long as a re-read takes (up to 10 s),
    /// so that a slow machine does not decide these tests.
    async fn manager(dir: &std::path::Path) -> Arc<KeyManager> {
        let mut keys = KeyManager::load(store(dir).await, master(), KeyAlgorithm::EdDSA, 3600)
            .await
            .unwrap();
        keys.unknown_key_wait = Duration::from_secs(10);
        Arc::new(keys)
    }

    #[tokio::test]
    async fn tokens_naming_unknown_keys_make_at_most_one_key_read_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let keys = manager(dir.path()).await;

        let before = keys.ring();
        assert!(keys.refresh_for_unknown_key(&before).await, "re-read");
        let reloaded = keys.ring();
        assert!(!Arc::ptr_eq(&before, &reloaded));

        assert!(
            !keys.refresh_for_unknown_key(&reloaded).await,
            "a second made-up kid within the interval reads nothing"
        );
        assert!(Arc::ptr_eq(&reloaded, &keys.ring()));
        assert!(
            keys.refresh_for_unknown_key(&before).await,
            "a caller that checked against the older ring is told to check again"
        );
    }

    #[tokio::test]
    async fn callers_naming_unknown_keys_do_not_wait_for_a_stuck_key_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys =
            KeyManager::load(store(dir.path()).await, master(), KeyAlgorithm::EdDSA, 3600)
                .await
                .unwrap();
        keys.unknown_key_wait = Duration::from_millis(50);
        let keys = Arc::new(keys);
        // A reload that never ends (a database that does not answer) holds the reload turn.
        let turn = keys.reload_turn.lock().await;
        let seen = keys.ring();
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let (keys, seen) = (keys.clone(), seen.clone());
                tokio::spawn(async move { keys.refresh_for_unknown_key(&seen).await })
            })
            .collect();
        for caller in callers {
            let answered = tokio::time::timeout(Duration::from_secs(10), caller).await;
            assert!(
                !answered
                    .expect("answered while the key read is stuck")
                    .unwrap(),
                "nothing new was read"
            );
        }
        drop(turn);
    }

    #[tokio::test]
    async fn a_reload_that_read_an_older_key_set_never_installs_it_over_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let keys = manager(dir.path()).await;
        let first = keys.ring().signing.kid.clone();
        keys.rotate().await.unwrap();
        // An unknown-kid reload reads the keys while `first` still exists...
        let older = keys.store.key_set().await.unwrap();
        // ...`keys retire --force` deletes it, and the change feed's reload reads that.
        retire_offline(&keys.store, &first, true, 0).await.unwrap();
        let newer = keys.store.key_set().await.unwrap();

        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let mut slow = pin!(keys.reload_from(|| async move {
            released.await.unwrap();
            Ok(older)
        }));
        assert!(
            slow.as_mut().now_or_never().is_none(),
            "the older read is under way"
        );
        let mut fast = pin!(keys.reload_from(|| async move { Ok(newer) }));
        let fast_done = fast.as_mut().now_or_never();
        release.send(()).unwrap();
        slow.await.unwrap();
        match fast_done {
            Some(result) => result.unwrap(),
            None => fast.await.unwrap(),
        }
        assert!(
            keys.ring().verifying_key(&first).is_none(),
            "the retired key must not come back"
        );
    }

    #[tokio::test]
    async fn every_key_set_change_moves_the_ring_version_up() {
        let dir = tempfile::tempdir().unwrap();
        let keys = manager(dir.path()).await;
        let first = keys.ring();
        assert!(first.version() > 0, "a stored key set has a version");
        keys.rotate().await.unwrap();
        let rotated = keys.ring().version();
        assert!(rotated > first.version(), "a rotation moves it");
        retire_offline(&keys.store, &first.signing.kid, true, 0)
            .await
            .unwrap();
        keys.reload().await.unwrap();
        let withdrawn = keys.ring().version();
        assert!(withdrawn > rotated, "a withdrawal moves it");
        keys.reload().await.unwrap();
        assert_eq!(
            keys.ring().version(),
            withdrawn,
            "a reload without a change keeps it"
        );
        // A restore from a backup comes later than the last change it undoes. Versions follow
        // the clock in milliseconds but may run a few ahead of it when changes come faster
        // (max(old + 1, now)), so let the clock pass `withdrawn` first, as any restore would
        // (by 2 ms: SQLite's clock in milliseconds goes through a float, and may read 1 ms low).
        while u64::try_from(Timestamp::now().0 / 1000).unwrap() <= withdrawn + 1 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // The restore took the counter back; the change feed moves it past.
        keys.store
            .db()
            .execute_unprepared("UPDATE key_set_version SET version = 1")
            .await
            .unwrap();
        keys.store
            .advance_key_set_version(Timestamp::now())
            .await
            .unwrap();
        keys.reload().await.unwrap();
        assert!(keys.ring().version() > withdrawn);
    }

    /// An Ed25519 key pair an attacker holds, and its public key.
    fn attacker_key() -> (Ed25519KeyPair, Vec<u8>) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        (pair, public)
    }

    #[tokio::test]
    async fn rows_made_before_rows_were_authenticated_are_upgraded_once_proven() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let old = StoredKey {
            mac: None,
            ..generate(&master(), KeyAlgorithm::ES256).unwrap()
        };
        store.store_first_key(&old).await.unwrap();
        let (_, public_key) = attacker_key();
        let pretender = StoredKey {
            kid: "pretender".into(),
            public_key,
            retired_at: Some(Timestamp::now()),
            mac: None,
            ..generate(&master(), KeyAlgorithm::EdDSA).unwrap()
        };
        // Its sealed private key is genuine, but bound to another kid.
        store.rotate_in_key(&pretender, &|_, _| None).await.unwrap();
        // And this one carries a genuine sealed key for its kid, but someone else's public key.
        let (_, other_public) = attacker_key();
        let swapped = StoredKey {
            public_key: other_public,
            retired_at: Some(Timestamp::now()),
            mac: None,
            ..generate(&master(), KeyAlgorithm::EdDSA).unwrap()
        };
        store.rotate_in_key(&swapped, &|_, _| None).await.unwrap();

        assert_eq!(key_rows::upgrade(&store, &master()).await.unwrap(), 1);
        let stored = store.list_keys().await.unwrap();
        let authentic: Vec<&str> = stored
            .iter()
            .filter(|k| key_rows::is_authentic(&master(), k))
            .map(|k| k.kid.as_str())
            .collect();
        assert_eq!(authentic, [old.kid.as_str()]);
        assert_eq!(
            key_rows::upgrade(&store, &master()).await.unwrap(),
            0,
            "once"
        );
    }

    #[tokio::test]
    async fn a_store_sealed_under_another_master_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = manager(dir.path()).await;
        let other = MasterKey::from_bytes(&[9; 32]).unwrap();
        let refused = rotate_offline(&keys.store, &other, KeyAlgorithm::EdDSA).await;
        let message = format!("{:#}", refused.unwrap_err());
        assert!(message.contains("different master key"), "{message}");
        assert!(
            rotate_offline(&keys.store, &master(), KeyAlgorithm::EdDSA)
                .await
                .is_ok()
        );
    }
}
