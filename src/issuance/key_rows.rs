//! Authenticated key rows: every `signing_keys` row carries an HMAC, under a key derived from the
//! master key, over its kid, algorithm, public key, sealed private key and lifecycle
//! (`created_at`, `retired_at`). A server trusts a row only if its MAC matches, so write access
//! to the database is not enough to make it accept a public key (an attacker's key inserted as
//! "retired", say) or to move a key's lifecycle: a row that fails is left out of the key ring and
//! the JWKS, logged, and counted (`tokenmint_signing_keys_untrusted`).
//!
//! Rows made before the MAC existed are upgraded once by a process holding the master key
//! ([`upgrade`], at server and CLI start): a row is MAC'd only if its sealed private key opens
//! under the master key and is the private half of its public key, which no one without the
//! master key can arrange. What a database writer can still do: delete rows; put back a row
//! (with its MAC) that existed before; or clear a genuine row's MAC so that the next start
//! authenticates it again with the lifecycle they wrote. None of these gives them a key they can
//! sign with: the kid, algorithm and public key of a trusted row are always those of a key made
//! with the master key.

use crate::domain::Timestamp;
use crate::issuance::keys;
use crate::issuance::sealing::MasterKey;
use crate::store::{Store, StoredKey};

/// Prefix of every MAC'd message: names what is authenticated, and its encoding's version.
const DOMAIN: &[u8] = b"tokenmint signing_keys row v1\0";

/// The canonical bytes of a row: every field, length-prefixed, in a fixed order.
fn encode(key: &StoredKey) -> Vec<u8> {
    let fields: [&[u8]; 4] = [
        key.kid.as_bytes(),
        key.algorithm.as_bytes(),
        &key.public_key,
        &key.sealed_private_key,
    ];
    let mut out =
        Vec::with_capacity(DOMAIN.len() + 64 + fields.iter().map(|f| f.len()).sum::<usize>());
    out.extend_from_slice(DOMAIN);
    for field in fields {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&key.created_at.0.to_be_bytes());
    match key.retired_at {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&at.0.to_be_bytes());
        }
    }
    out
}

/// The MAC `key` must carry (whatever it carries now).
pub fn mac_of(master: &MasterKey, key: &StoredKey) -> Vec<u8> {
    master.row_mac(&encode(key))
}

/// `key` with its MAC set.
pub fn authenticated(master: &MasterKey, mut key: StoredKey) -> StoredKey {
    key.mac = Some(mac_of(master, &key));
    key
}

/// Whether `key` carries the right MAC under `master`.
pub fn is_authentic(master: &MasterKey, key: &StoredKey) -> bool {
    key.mac
        .as_deref()
        .is_some_and(|mac| master.row_mac_matches(&encode(key), mac))
}

/// The MAC `row` carries once retired at `at`, if it is authentic now; `None` leaves an
/// unauthentic row unauthentic (re-MACing it would launder it).
pub fn retired_mac(master: &MasterKey, row: &StoredKey, at: Timestamp) -> Option<Vec<u8>> {
    if !is_authentic(master, row) {
        tracing::warn!(kid = %row.kid, "retiring a signing-key row that is not authentic; it stays untrusted");
        return None;
    }
    let retired = StoredKey {
        retired_at: Some(at),
        ..row.clone()
    };
    Some(mac_of(master, &retired))
}

/// The rows of `stored` that are authentic under `master`, and how many are not. Each one that
/// is not is logged: someone wrote it without the master key (or under another master key).
pub fn trusted<'a>(master: &MasterKey, stored: &'a [StoredKey]) -> (Vec<&'a StoredKey>, usize) {
    let mut trusted = Vec::with_capacity(stored.len());
    let mut untrusted = 0;
    for key in stored {
        if is_authentic(master, key) {
            trusted.push(key);
        } else {
            untrusted += 1;
            tracing::warn!(
                kid = %key.kid,
                algorithm = %key.algorithm,
                mac = if key.mac.is_some() { "wrong" } else { "missing" },
                "signing-key row is not authentic under the master key: ignored (not used to \
                 verify, not published)"
            );
        }
    }
    (trusted, untrusted)
}

/// Gives every row without a MAC whose sealed private key proves it genuine (it opens under
/// `master` and matches the row's public key and algorithm) its MAC; returns how many. Rows that
/// do not prove themselves stay without one, and untrusted.
pub async fn upgrade(store: &Store, master: &MasterKey) -> anyhow::Result<usize> {
    let stored = store.list_keys().await?;
    let mut upgraded = 0;
    for key in stored.iter().filter(|k| k.mac.is_none()) {
        if let Err(error) = keys::sealed_key_matches(master, key) {
            tracing::warn!(kid = %key.kid, error = format!("{error:#}"), "signing-key row without a MAC does not prove itself; left untrusted");
            continue;
        }
        if store.set_key_mac(key, &mac_of(master, key)).await? {
            upgraded += 1;
            tracing::info!(kid = %key.kid, "signing-key row authenticated under the master key");
        }
    }
    Ok(upgraded)
}

/// Fails, saying what to do, when `stored` has keys and `master` authenticates none of them:
/// the keys were sealed under another master key, and anything made with this one would be a
/// key no server can use.
pub fn ensure_master_key_matches(master: &MasterKey, stored: &[StoredKey]) -> anyhow::Result<()> {
    if stored.is_empty() || stored.iter().any(|key| is_authentic(master, key)) {
        return Ok(());
    }
    anyhow::bail!(
        "the {} signing key(s) in this database are sealed under a different master key than \
         the one configured here (keys.master_key / keys.master_key_file, or data_dir/master.key \
         outside production): run this with the servers' configuration, e.g. \
         TOKENMINT__KEYS__MASTER_KEY_FILE=/path/to/the/servers/master.key",
        stored.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> StoredKey {
        StoredKey {
            kid: "k1".into(),
            algorithm: "EdDSA".into(),
            public_key: vec![1; 32],
            sealed_private_key: vec![2; 60],
            created_at: Timestamp(1_000),
            retired_at: None,
            mac: None,
        }
    }

    #[test]
    fn every_field_is_authenticated() {
        let master = MasterKey::from_bytes(&[7; 32]).unwrap();
        let good = authenticated(&master, row());
        assert!(is_authentic(&master, &good));
        let tampered: [fn(&mut StoredKey); 6] = [
            |k| k.kid = "k2".into(),
            |k| k.algorithm = "ES256".into(),
            |k| k.public_key[0] = 9,
            |k| k.sealed_private_key.push(0),
            |k| k.created_at = Timestamp(1_001),
            |k| k.retired_at = Some(Timestamp(0)),
        ];
        for tamper in tampered {
            let mut key = good.clone();
            tamper(&mut key);
            assert!(!is_authentic(&master, &key), "{key:?}");
        }
        let other = MasterKey::from_bytes(&[8; 32]).unwrap();
        assert!(!is_authentic(&other, &good));
        assert!(!is_authentic(&master, &row()), "no MAC, no trust");
    }

    #[test]
    fn fields_cannot_shift_into_each_other() {
        let master = MasterKey::from_bytes(&[7; 32]).unwrap();
        let a = StoredKey {
            kid: "ab".into(),
            algorithm: "c".into(),
            ..row()
        };
        let b = StoredKey {
            kid: "a".into(),
            algorithm: "bc".into(),
            ..row()
        };
        assert_ne!(mac_of(&master, &a), mac_of(&master, &b));
    }

    #[test]
    fn retiring_keeps_an_authentic_row_authentic_and_an_unauthentic_one_not() {
        let master = MasterKey::from_bytes(&[7; 32]).unwrap();
        let good = authenticated(&master, row());
        let at = Timestamp(5_000);
        let retired = StoredKey {
            retired_at: Some(at),
            mac: retired_mac(&master, &good, at),
            ..good.clone()
        };
        assert!(is_authentic(&master, &retired));
        assert_eq!(retired_mac(&master, &row(), at), None);
    }
}
