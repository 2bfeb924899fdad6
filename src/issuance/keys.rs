//! Signing keys: generation (ring), sealing at rest, the in-memory key ring, rotation and JWKs.
//!
//! Each key pair is parsed once when the ring is loaded; signing uses it directly, so no PKCS#8
//! parsing happens per token.

use std::fmt;
use std::sync::{Arc, RwLock};
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
    /// When a token naming an unknown key last made this server re-read the keys (one re-read at
    /// a time, at most one per [`UNKNOWN_KEY_REFRESH`]).
    last_unknown_key_refresh: tokio::sync::Mutex<Option<Instant>>,
}

/// The least time between two re-reads of the keys caused by tokens naming an unknown key: a
/// client sending made-up `kid`s costs the database one small query per this interval.
pub const UNKNOWN_KEY_REFRESH: Duration = Duration::from_secs(1);

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl KeyManager {
    /// Loads the keys, generating the first signing key if the store has none.
    pub async fn load(
        store: Store,
        master: MasterKey,
        algorithm: KeyAlgorithm,
        retention_secs: i64,
    ) -> anyhow::Result<Self> {
        let mut stored = store.list_keys().await?;
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
            last_unknown_key_refresh: tokio::sync::Mutex::new(None),
        })
    }

    /// The current key ring.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the keys from the store (after a rotation elsewhere).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let stored = self.store.list_keys().await?;
        let ring = build_ring(&self.master, &stored, self.retention_secs, Timestamp::now())?;
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        Ok(())
    }

    /// Called when a token names a key this server does not know: another server may have
    /// rotated in a key this one has not learnt of from the change feed yet. Re-reads the keys
    /// unless that was done less than [`UNKNOWN_KEY_REFRESH`] ago; returns whether the ring
    /// changed since `seen` (the ring the caller checked the token against), so that checking
    /// again is worthwhile.
    pub async fn refresh_for_unknown_key(&self, seen: &Arc<KeyRing>) -> bool {
        let mut last = self.last_unknown_key_refresh.lock().await;
        // A re-read that finished while this caller waited for the lock may have brought it.
        if !Arc::ptr_eq(&self.ring(), seen) {
            return true;
        }
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < UNKNOWN_KEY_REFRESH) {
            return false;
        }
        *last = Some(now);
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, "re-reading the keys for a token naming an unknown key failed");
            return false;
        }
        !Arc::ptr_eq(&self.ring(), seen)
    }

    /// Makes a new signing key; earlier keys keep verifying until their tokens have expired.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        let key = generate(&self.master, self.algorithm)?;
        self.store.rotate_in_key(&key).await?;
        self.reload().await?;
        Ok(key.kid)
    }
}

/// Rotates the signing key of `store` without a running server (the `keys rotate` command).
pub async fn rotate_offline(
    store: &Store,
    master: &MasterKey,
    algorithm: KeyAlgorithm,
) -> anyhow::Result<String> {
    let key = generate(master, algorithm)?;
    store.rotate_in_key(&key).await?;
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
    let pair = parse_pair(algorithm, pkcs8.as_ref())?;
    let public_key = match &pair {
        KeyPairKind::Ed25519(p) => p.public_key().as_ref().to_vec(),
        KeyPairKind::Es256(p) => p.public_key().as_ref().to_vec(),
    };
    let sealed_private_key = master.seal(&kid, pkcs8.as_ref())?;
    Ok(StoredKey {
        kid,
        algorithm: algorithm.name().to_owned(),
        public_key,
        sealed_private_key,
        created_at: now,
        retired_at: None,
    })
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

/// Builds the ring from stored keys: the newest unretired key signs; every key that is unretired
/// or was retired less than `retention_secs` ago verifies.
fn build_ring(
    master: &MasterKey,
    stored: &[StoredKey],
    retention_secs: i64,
    now: Timestamp,
) -> anyhow::Result<KeyRing> {
    let newest = stored
        .iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| (k.created_at, k.kid.clone()))
        .ok_or_else(|| anyhow::anyhow!("the store has no current signing key"))?;
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
    for key in stored {
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
    Ok(KeyRing { signing, verifying })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    /// A key manager on a fresh SQLite database in `dir`.
    async fn manager(dir: &std::path::Path) -> KeyManager {
        let options = StoreOptions {
            max_connections: 2,
            connect_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&Store::sqlite_url_in(dir), &options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let master = MasterKey::from_bytes(&[7; 32]).unwrap();
        KeyManager::load(store, master, KeyAlgorithm::EdDSA, 3600)
            .await
            .unwrap()
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
}
