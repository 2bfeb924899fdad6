//! Sealing private keys at rest: AES-256-GCM (ring) under the master key, with a fresh random
//! nonce per seal and the key id as associated data (so a sealed key cannot be moved to another id).
//! The master key also authenticates whole key rows (public key, algorithm, lifecycle): an
//! HMAC-SHA256 under a key derived from it with HKDF, so that write access to the database is not
//! enough to make a server trust a public key (see `issuance::key_rows`).

use std::fmt;
use std::path::Path;

use anyhow::Context;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use zeroize::Zeroizing;

/// Length of the master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// The HKDF salt and info that derive the key-row MAC key from the master key: a key of its own,
/// never the AES key itself.
const ROW_MAC_SALT: &[u8] = b"tokenmint master key derivation v1";
const ROW_MAC_INFO: &[u8] = b"signing_keys row authentication";

/// The key that seals signing keys and authenticates key rows. Its `Debug` never shows the key.
pub struct MasterKey {
    key: LessSafeKey,
    row_mac: hmac::Key,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Builds a master key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bytes.len() == MASTER_KEY_LEN,
            "the master key must be {MASTER_KEY_LEN} bytes"
        );
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| anyhow::anyhow!("invalid master key"))?;
        let row_mac: hmac::Key = hkdf::Salt::new(hkdf::HKDF_SHA256, ROW_MAC_SALT)
            .extract(bytes)
            .expand(&[ROW_MAC_INFO], hmac::HMAC_SHA256)
            .map_err(|_| anyhow::anyhow!("cannot derive the key-row MAC key"))?
            .into();
        Ok(Self {
            key: LessSafeKey::new(unbound),
            row_mac,
        })
    }

    /// The MAC of `message` (a key row's canonical encoding) under the key-row MAC key.
    pub fn row_mac(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.row_mac, message).as_ref().to_vec()
    }

    /// Whether `mac` is the MAC of `message` (compared in constant time).
    pub fn row_mac_matches(&self, message: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.row_mac, message, mac).is_ok()
    }

    /// Parses the text form: 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> anyhow::Result<Self> {
        let bytes = Zeroizing::new(
            hex::decode(text.trim())
                .map_err(|_| anyhow::anyhow!("the master key must be 64 hexadecimal digits"))?,
        );
        Self::from_bytes(&bytes)
    }

    /// Reads a master key file (64 hex digits).
    pub fn read_file(path: &Path) -> anyhow::Result<Self> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read master key file {}", path.display()))?,
        );
        Self::from_hex(&text)
            .with_context(|| format!("unreadable master key file {}", path.display()))
    }

    /// Reads the master key file at `path`, creating it (0600, 32 random bytes) if it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            return Self::read_file(path);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        }
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let text = Zeroizing::new(hex::encode(bytes.as_ref()));
        // Write a private temporary file, then link it into place: the link fails if another
        // process created the key first, and nobody ever reads a half-written key.
        let mut random = [0u8; 8];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let temporary = path.with_extension(format!("tmp-{}", hex::encode(random)));
        write_private_file(&temporary, text.as_bytes())
            .with_context(|| format!("cannot create master key file {}", path.display()))?;
        let linked = std::fs::hard_link(&temporary, path);
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => Self::from_bytes(bytes.as_ref()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read_file(path),
            Err(e) => {
                Err(e).with_context(|| format!("cannot create master key file {}", path.display()))
            }
        }
    }

    /// Encrypts `plaintext`, binding it to `kid`. Output: nonce || ciphertext || tag.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buffer);
        buffer.iter_mut().for_each(|b| *b = 0);
        Ok(sealed)
    }

    /// Decrypts what [`seal`](Self::seal) produced for the same `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        anyhow::ensure!(sealed.len() > NONCE_LEN, "sealed key {kid} is truncated");
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plaintext_len = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), buffer.as_mut())
            .map_err(|_| {
                anyhow::anyhow!(
                    "cannot unseal signing key {kid}: wrong master key or corrupted key material"
                )
            })?
            .len();
        buffer.truncate(plaintext_len);
        Ok(buffer)
    }
}

/// Writes a file readable only by its owner (0600 on Unix), failing if it already exists.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding_to_kid() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal("k1", b"secret key").unwrap();
        assert_ne!(&sealed[NONCE_LEN..NONCE_LEN + 10], b"secret key");
        assert_eq!(key.open("k1", &sealed).unwrap().as_slice(), b"secret key");
        assert!(
            key.open("k2", &sealed).is_err(),
            "a sealed key must not open under another kid"
        );
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open("k1", &sealed).is_err());
        assert_ne!(
            key.seal("k1", b"secret key").unwrap(),
            sealed,
            "nonces must be fresh"
        );
    }

    #[test]
    fn row_macs_depend_on_the_message_and_the_master_key() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let mac = key.row_mac(b"row");
        assert_eq!(mac.len(), 32);
        assert!(key.row_mac_matches(b"row", &mac));
        assert!(!key.row_mac_matches(b"row2", &mac));
        assert!(!key.row_mac_matches(b"row", &mac[..31]));
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(!other.row_mac_matches(b"row", &mac));
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::sync::Arc::new(dir.path().join("master.key"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    MasterKey::load_or_create(&path).map(|key| key.seal("k", b"x").unwrap())
                })
            })
            .collect();
        let sealed: Vec<Vec<u8>> = handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("every first start succeeds"))
            .collect();
        let key = MasterKey::read_file(&path).unwrap();
        for s in &sealed {
            assert_eq!(
                key.open("k", s).unwrap().as_slice(),
                b"x",
                "all processes use the same key"
            );
        }
    }

    #[test]
    fn created_master_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        let sealed = first.seal("k", b"x").unwrap();
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(again.open("k", &sealed).unwrap().as_slice(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
