//! Signing keys: generation (ring), sealing at rest, the in-memory key ring and JWKs. Loading,
//! rotating and reloading them is `issuance::key_manager`'s job (re-exported here).
//!
//! Each key pair is parsed once when the ring is loaded; signing uses it directly, so no PKCS#8
//! parsing happens per token.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, UnparsedPublicKey, VerificationAlgorithm,
};
use serde::Serialize;

use crate::domain::{KeyAlgorithm, Timestamp};
use crate::error::{Error, Result};
use crate::issuance::key_rows;
use crate::issuance::sealing::MasterKey;
use crate::store::StoredKey;

pub use crate::issuance::key_manager::{
    KeyManager, RetireRefusal, UNKNOWN_KEY_REFRESH, UNKNOWN_KEY_WAIT, retire_offline,
    rotate_offline,
};

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
    /// The stored key-set version this ring was built from (0: none read, e.g. an ephemeral
    /// ring). Published with the JWKS, so that verifiers can tell an older set from a newer.
    version: u64,
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

    /// This ring, labelled as built from key-set `version`.
    pub(crate) fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The stored key-set version this ring was built from (0 when there is none).
    pub fn version(&self) -> u64 {
        self.version
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

/// Generates a key pair and seals its private half (the row comes authenticated).
pub(crate) fn generate(master: &MasterKey, algorithm: KeyAlgorithm) -> anyhow::Result<StoredKey> {
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
pub(crate) fn build_ring(
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
        version: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes(&[7; 32]).unwrap()
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
}
