//! Signing keys: generation (ring), sealing at rest, the in-memory key ring, rotation and JWKs.
//!
//! Each key pair is parsed once when the ring is loaded; signing uses it directly, so no PKCS#8
//! parsing happens per token.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, UnparsedPublicKey, VerificationAlgorithm,
};
use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::issuance::key_rows;
use crate::issuance::sealing::MasterKey;
use crate::store::{Store, StoredKey};

/// The signature algorithms tokenmint signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8037), the default.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

impl KeyAlgorithm {
    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }

    /// Parses a JWS `alg` name (only the two we sign with).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            _ => None,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

enum KeyPairKind {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
}

/// A private key ready to sign, with its precomputed JWS header.
pub struct SigningKey {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub algorithm: KeyAlgorithm,
    /// base64url of the JWS header `{"alg","kid","typ":"at+jwt"}`.
    pub encoded_header: String,
    /// When the key was made.
    pub created_at: Timestamp,
    pair: KeyPairKind,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Signs `message` (the JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match &self.pair {
            KeyPairKind::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            KeyPairKind::Es256(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::internal("ES256 signing failed")),
        }
    }
}

/// A public key that verifies tokens of its one algorithm.
pub struct VerifyingKey {
    /// Key id.
    pub kid: String,
    /// The only algorithm this key verifies.
    pub algorithm: KeyAlgorithm,
    /// Raw public key (32-byte Ed25519 key or 65-byte SEC1 point).
    pub public_key: Vec<u8>,
}

impl VerifyingKey {
    fn new(kid: String, algorithm: KeyAlgorithm, public_key: Vec<u8>) -> Self {
        Self {
            kid,
            algorithm,
            public_key,
        }
    }

    /// Whether `signature` is this key's signature over `message` (the JWS signing input). A
    /// key of the wrong length or form never verifies anything.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &'static dyn VerificationAlgorithm = match self.algorithm {
            KeyAlgorithm::EdDSA => &ED25519,
            KeyAlgorithm::ES256 => &ECDSA_P256_SHA256_FIXED,
        };
        UnparsedPublicKey::new(algorithm, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }

    /// The public key as a JWK.
    pub fn to_jwk(&self) -> Jwk {
        let (kty, crv, x, y) = match self.algorithm {
            KeyAlgorithm::EdDSA => (
                "OKP",
                "Ed25519",
                URL_SAFE_NO_PAD.encode(&self.public_key),
                String::new(),
            ),
            KeyAlgorithm::ES256 => {
                let point = self.public_key.get(1..).unwrap_or_default();
                let (x, y) = point.split_at(point.len() / 2);
                (
                    "EC",
                    "P-256",
                    URL_SAFE_NO_PAD.encode(x),
                    URL_SAFE_NO_PAD.encode(y),
                )
            }
        };
        Jwk {
            kty: kty.into(),
            crv: crv.into(),
            x,
            y,
            kid: self.kid.clone(),
            alg: self.algorithm.name().into(),
            use_: "sig".into(),
        }
    }
}

/// A public key in JWK form (RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    /// Key type.
    pub kty: String,
    /// Curve.
    pub crv: String,
    /// Public key or x coordinate.
    pub x: String,
    /// y coordinate (EC only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub y: String,
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// Use (`sig`).
    #[serde(rename = "use")]
    pub use_: String,
}

/// The keys of one moment: the one that signs and every one that may still verify.
#[derive(Debug)]
pub struct KeyRing {
    /// The key new tokens are signed with.
    pub signing: Arc<SigningKey>,
    /// Oldest first. A handful of keys at most (the current one and those retired within the
    /// retention), so a scan beats hashing the `kid` on every verification.
    verifying: Vec<Arc<VerifyingKey>>,
    /// Rows of the key set this ring was built from that were not authentic (left out).
    untrusted_rows: usize,
}

impl KeyRing {
    /// A ring with one freshly generated key that exists only in memory (benchmarks and tests).
    pub fn ephemeral(algorithm: KeyAlgorithm) -> anyhow::Result<Self> {
        let mut bytes = [0u8; crate::issuance::sealing::MASTER_KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let master = MasterKey::from_bytes(&bytes)?;
        let key = generate(&master, algorithm)?;
        build_ring(&master, &[key], 0, Timestamp::now())
    }

    /// The verifying key named `kid`.
    pub fn verifying_key(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.verifying.iter().find(|key| key.kid == kid)
    }

    /// Every verifying key, oldest first.
    pub fn verifying_keys(&self) -> impl Iterator<Item = &Arc<VerifyingKey>> {
        self.verifying.iter()
    }

    /// How many stored key rows were left out of this ring because their MAC did not match
    /// (see [`key_rows`]).
    pub fn untrusted_rows(&self) -> usize {
        self.untrusted_rows
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

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
        let mut stored = store.list_keys().await?;
        key_rows::ensure_master_key_matches(&master, &stored)?;
        if !stored.iter().any(|k| k.retired_at.is_none()) {
            let key = generate(&master, algorithm)?;
            if store.store_first_key(&key).await? {
                tracing::info!(kid = %key.kid, algorithm = algorithm.name(), "generated the first signing key");
            }
            stored = store.list_keys().await?;
        }
        let ring = build_ring(&master, &stored, retention_secs, Timestamp::now())?;
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
        self.reload_from(|| self.store.list_keys()).await
    }

    /// [`Self::reload`] with the key set `read` returns. `read` runs after this reload's turn
    /// begins, and the ring is installed before it ends: of two reloads, the one that installs
    /// last read last.
    async fn reload_from<F, R>(&self, read: F) -> anyhow::Result<()>
    where
        F: FnOnce() -> R,
        R: Future<Output = Result<Vec<StoredKey>>>,
    {
        let _turn = self.reload_turn.lock().await;
        let stored = read().await?;
        let ring = build_ring(&self.master, &stored, self.retention_secs, Timestamp::now())?;
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

/// Generates a key pair and seals its private half.
fn generate(master: &MasterKey, algorithm: KeyAlgorithm) -> anyhow::Result<StoredKey> {
    let rng = SystemRandom::new();
    let now = Timestamp::now();
    let mut suffix = [0u8; 6];
    rng.fill(&mut suffix)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let kid = format!("{}-{}", chrono_date(now), hex::encode(suffix));
    let pkcs8 = match algorithm {
        KeyAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng),
        KeyAlgorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
    }
    .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    let public_key = public_key_of(&parse_pair(algorithm, pkcs8.as_ref())?);
    let sealed_private_key = master.seal(&kid, pkcs8.as_ref())?;
    let key = StoredKey {
        kid,
        algorithm: algorithm.name().to_owned(),
        public_key,
        sealed_private_key,
        created_at: now,
        retired_at: None,
        mac: None,
    };
    Ok(key_rows::authenticated(master, key))
}

/// The public half of `pair`.
fn public_key_of(pair: &KeyPairKind) -> Vec<u8> {
    match pair {
        KeyPairKind::Ed25519(p) => p.public_key().as_ref().to_vec(),
        KeyPairKind::Es256(p) => p.public_key().as_ref().to_vec(),
    }
}

/// Checks that the sealed private key of `key` opens under `master` and is, for the row's
/// algorithm, the private half of the row's public key: proof that a holder of the master key
/// made the row's kid, algorithm and public key.
pub(crate) fn sealed_key_matches(master: &MasterKey, key: &StoredKey) -> anyhow::Result<()> {
    let algorithm = KeyAlgorithm::parse(&key.algorithm)
        .ok_or_else(|| anyhow::anyhow!("unknown algorithm {}", key.algorithm))?;
    let pkcs8 = master.open(&key.kid, &key.sealed_private_key)?;
    let pair = parse_pair(algorithm, &pkcs8)?;
    anyhow::ensure!(
        public_key_of(&pair) == key.public_key,
        "the public key of {} is not that of its private key",
        key.kid
    );
    Ok(())
}

fn chrono_date(now: Timestamp) -> String {
    chrono::DateTime::from_timestamp(now.as_secs(), 0)
        .map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_else(|| "key".to_owned())
}

fn parse_pair(algorithm: KeyAlgorithm, pkcs8: &[u8]) -> anyhow::Result<KeyPairKind> {
    match algorithm {
        KeyAlgorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map(KeyPairKind::Ed25519)
            .map_err(|e| anyhow::anyhow!("invalid Ed25519 key: {e}")),
        KeyAlgorithm::ES256 => EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map(KeyPairKind::Es256)
        .map_err(|e| anyhow::anyhow!("invalid P-256 key: {e}")),
    }
}

/// Builds the ring from the authentic rows of `stored` (the others are left out and counted):
/// the newest unretired key signs; every key that is unretired or was retired less than
/// `retention_secs` ago verifies.
fn build_ring(
    master: &MasterKey,
    stored: &[StoredKey],
    retention_secs: i64,
    now: Timestamp,
) -> anyhow::Result<KeyRing> {
    let (trusted, untrusted_rows) = key_rows::trusted(master, stored);
    let newest = trusted
        .iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| (k.created_at, k.kid.clone()))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the store has no current signing key authentic under this master key \
                 ({untrusted_rows} key row(s) are not): run `tokenmint keys rotate` with the \
                 servers' master key"
            )
        })?;
    let algorithm = KeyAlgorithm::parse(&newest.algorithm).ok_or_else(|| {
        anyhow::anyhow!(
            "signing key {} has unknown algorithm {}",
            newest.kid,
            newest.algorithm
        )
    })?;
    let pkcs8 = master.open(&newest.kid, &newest.sealed_private_key)?;
    let pair = parse_pair(algorithm, &pkcs8)?;
    let header = serde_json::json!({ "alg": algorithm.name(), "kid": newest.kid, "typ": "at+jwt" });
    let signing = Arc::new(SigningKey {
        kid: newest.kid.clone(),
        algorithm,
        encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
        created_at: newest.created_at,
        pair,
        rng: SystemRandom::new(),
    });
    let mut verifying = Vec::new();
    for key in trusted {
        let still_needed = key
            .retired_at
            .is_none_or(|r| r.plus_secs(retention_secs) > now);
        let Some(algorithm) = KeyAlgorithm::parse(&key.algorithm) else {
            continue;
        };
        if still_needed {
            verifying.push(Arc::new(VerifyingKey::new(
                key.kid.clone(),
                algorithm,
                key.public_key.clone(),
            )));
        }
    }
    Ok(KeyRing {
        signing,
        verifying,
        untrusted_rows,
    })
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use futures_util::FutureExt;

    use super::*;
    use crate::store::StoreOptions;

    /// A store on a fresh SQLite database in `dir`.
    async fn store(dir: &std::path::Path) -> Store {
        let options = StoreOptions {
            max_connections: 2,
            connect_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&Store::sqlite_url_in(dir), &options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
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
        let older = keys.store.list_keys().await.unwrap();
        // ...`keys retire --force` deletes it, and the change feed's reload reads that.
        retire_offline(&keys.store, &first, true, 0).await.unwrap();
        let newer = keys.store.list_keys().await.unwrap();

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

    /// An Ed25519 key pair an attacker holds, and its public key.
    fn attacker_key() -> (Ed25519KeyPair, Vec<u8>) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        (pair, public)
    }

    #[test]
    fn rows_written_without_the_master_key_are_not_trusted() {
        let master = master();
        let signing = generate(&master, KeyAlgorithm::EdDSA).unwrap();
        let now = Timestamp::now();
        let retired = generate(&master, KeyAlgorithm::EdDSA).unwrap();
        let retired = StoredKey {
            retired_at: Some(now),
            mac: key_rows::retired_mac(&master, &retired, now),
            ..retired
        };
        let (_, public_key) = attacker_key();
        let forged = |kid: &str, mac: Option<Vec<u8>>| StoredKey {
            kid: kid.into(),
            algorithm: "EdDSA".into(),
            public_key: public_key.clone(),
            sealed_private_key: vec![0; 64],
            created_at: now,
            retired_at: Some(now),
            mac,
        };
        let un_retired = StoredKey {
            retired_at: None,
            ..retired.clone()
        };
        let stored = [
            signing.clone(),
            retired.clone(),
            forged("no-mac", None),
            forged("bogus-mac", Some(vec![0; 32])),
            // A genuine row's MAC on another row.
            forged("copied-mac", retired.mac.clone()),
        ];
        let ring = build_ring(&master, &stored, 3600, now).unwrap();
        let kids: Vec<&str> = ring.verifying_keys().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [signing.kid.as_str(), retired.kid.as_str()]);
        assert_eq!(ring.untrusted_rows(), 3);

        // A genuine retired key whose lifecycle was changed (brought back to signing) is out.
        let ring = build_ring(&master, &[signing.clone(), un_retired], 3600, now).unwrap();
        assert_eq!(ring.signing.kid, signing.kid);
        assert!(ring.verifying_key(&retired.kid).is_none());
        assert_eq!(ring.untrusted_rows(), 1);
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
