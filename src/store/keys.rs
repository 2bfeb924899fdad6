//! The signing-key repository. Private keys arrive here already sealed, and each row's MAC
//! already computed; this module never sees plaintext key material nor the master key.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Statement, TransactionTrait,
};

use super::entities::signing_keys::{self, Column, Entity as SigningKeys};
use super::events;
use super::{Backend, Store, db_error};
use crate::domain::EventKind;
use crate::domain::Timestamp;
use crate::error::Result;

/// Whether [`Store::put_signing_key`] replaces a current signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// A rotation: the new key always becomes the signing key.
    Always,
    /// The first key: stored only if there is no signing key.
    IfNone,
}

/// Makes `txn` the only transaction changing the key set until it ends: on PostgreSQL with a
/// transaction-scoped advisory lock, on SQLite by taking the database's write lock with a first
/// statement that writes nothing (so that what the transaction reads next is the latest).
async fn lock_key_set(txn: &DatabaseTransaction, backend: Backend) -> Result<()> {
    let sql = match backend {
        Backend::Postgres => "SELECT pg_advisory_xact_lock(7318245077)",
        Backend::Sqlite => "UPDATE signing_keys SET kid = kid WHERE 1 = 0",
    };
    txn.execute_unprepared(sql).await.map_err(db_error)?;
    Ok(())
}

/// Moves the key-set version up, in the transaction `txn` (a key change's: the migration that
/// made the counter says why; the row's lock also orders concurrent key changes). The new
/// version is the old one plus one, or the database's clock in milliseconds when that is
/// higher: one clock for every writer (an operator host's skewed clock cannot push the counter
/// ahead of the servers'), and after a restore from a backup the counter moves past every
/// version handed out before it ([`Store::advance_key_set_version`]).
async fn bump_key_set_version<C: ConnectionTrait>(txn: &C) -> Result<()> {
    let sql = match txn.get_database_backend() {
        DbBackend::Postgres => {
            "UPDATE key_set_version SET version = \
             GREATEST(version + 1, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint) \
             WHERE id = 1"
        }
        _ => {
            "UPDATE key_set_version SET version = \
             MAX(version + 1, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) \
             WHERE id = 1"
        }
    };
    txn.execute_unprepared(sql).await.map_err(db_error)?;
    Ok(())
}

/// The key set as read at one moment, with its version.
#[derive(Debug, Clone)]
pub struct StoredKeySet {
    /// The key-set version read before the keys: the keys reflect every change up to it (and
    /// perhaps one or more after it, committed between the two reads).
    pub version: u64,
    /// Every key, oldest first.
    pub keys: Vec<StoredKey>,
}

/// A signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id (`kid`).
    pub kid: String,
    /// JWS algorithm name (`EdDSA` or `ES256`).
    pub algorithm: String,
    /// Public key bytes (raw Ed25519 key or SEC1 point).
    pub public_key: Vec<u8>,
    /// Nonce and AES-256-GCM ciphertext of the PKCS#8 private key.
    pub sealed_private_key: Vec<u8>,
    /// When the key was made.
    pub created_at: Timestamp,
    /// When a newer key replaced it for signing; `None` for the signing key.
    pub retired_at: Option<Timestamp>,
    /// HMAC of the fields above under the master key (`issuance::key_rows`); `None` for a row
    /// made before rows were authenticated, until the upgrade fills it in.
    pub mac: Option<Vec<u8>>,
}

/// Computes, for the store, the MAC a current signing key must carry once it is retired at the
/// given time, or `None` when the row as stored is not authentic (then it keeps its MAC, and
/// stays untrusted). The store never holds the master key that this takes.
pub type RetiredMac<'a> = &'a (dyn Fn(&StoredKey, Timestamp) -> Option<Vec<u8>> + Send + Sync);

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .field("authenticated", &self.mac.is_some())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Every key, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<StoredKey>> {
        let models = SigningKeys::find()
            .order_by_asc(Column::CreatedAt)
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(models.into_iter().map(stored_key).collect())
    }

    /// Every key, oldest first, with the key-set version read just before them.
    pub async fn key_set(&self) -> Result<StoredKeySet> {
        let backend = self.db().get_database_backend();
        let statement =
            Statement::from_string(backend, "SELECT version FROM key_set_version WHERE id = 1");
        let row = self.db().query_one_raw(statement).await.map_err(db_error)?;
        let version = match row {
            Some(row) => row.try_get::<i64>("", "version").map_err(db_error)?,
            None => 0,
        };
        Ok(StoredKeySet {
            version: u64::try_from(version).unwrap_or(0),
            keys: self.list_keys().await?,
        })
    }

    /// Moves the key-set version past every version handed out before (see
    /// [`bump_key_set_version`]) and records a key-set change, so that every server reloads and
    /// labels its keys with it. The change feed calls this when the log went back in time (a
    /// restore from a backup) before it reloads the keys: verifiers holding a pre-restore
    /// version then take the restored key set.
    pub async fn advance_key_set_version(&self, at: Timestamp) -> Result<()> {
        let _turn = self.write_turn().await;
        let txn = self.db().begin().await.map_err(db_error)?;
        bump_key_set_version(&txn).await?;
        events::append(&txn, EventKind::KeysChanged, None, at)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }

    /// Stores `key` as the new signing key and retires every other current one, atomically;
    /// `retired_mac` gives each retired row its new MAC.
    pub async fn rotate_in_key(&self, key: &StoredKey, retired_mac: RetiredMac<'_>) -> Result<()> {
        self.put_signing_key(key, Replace::Always, retired_mac)
            .await
            .map(|_| ())
    }

    /// Stores `key` as the signing key unless there already is one (another replica starting on
    /// the same database may have stored one first); returns whether `key` was stored.
    pub async fn store_first_key(&self, key: &StoredKey) -> Result<bool> {
        // With no current key there is nothing to retire.
        self.put_signing_key(key, Replace::IfNone, &|_, _| None)
            .await
    }

    /// Sets the MAC of a row that has none, if the row still holds exactly what `key` says
    /// (the upgrade of rows made before rows were authenticated); returns whether it did.
    pub async fn set_key_mac(&self, key: &StoredKey, mac: &[u8]) -> Result<bool> {
        let _turn = self.write_turn().await;
        let retired = match key.retired_at {
            Some(at) => Column::RetiredAt.eq(at.0),
            None => Column::RetiredAt.is_null(),
        };
        let result = SigningKeys::update_many()
            .col_expr(Column::Mac, Expr::value(mac.to_vec()))
            .filter(Column::Kid.eq(key.kid.as_str()))
            .filter(Column::Mac.is_null())
            .filter(Column::Algorithm.eq(key.algorithm.as_str()))
            .filter(Column::PublicKey.eq(key.public_key.clone()))
            .filter(Column::SealedPrivateKey.eq(key.sealed_private_key.clone()))
            .filter(Column::CreatedAt.eq(key.created_at.0))
            .filter(retired)
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    /// Stores `key` as the signing key (see [`Replace`]), retiring every other current one, in a
    /// transaction that excludes every other change of the key set, whatever process makes it:
    /// two concurrent rotations would otherwise each retire what they saw and leave two keys
    /// signing.
    async fn put_signing_key(
        &self,
        key: &StoredKey,
        replace: Replace,
        retired_mac: RetiredMac<'_>,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let txn = self.db().begin().await.map_err(db_error)?;
        lock_key_set(&txn, self.backend()).await?;
        if replace == Replace::IfNone {
            let current = SigningKeys::find()
                .filter(Column::RetiredAt.is_null())
                .count(&txn)
                .await
                .map_err(db_error)?;
            if current > 0 {
                txn.rollback().await.map_err(db_error)?;
                return Ok(false);
            }
        }
        let current = SigningKeys::find()
            .filter(Column::RetiredAt.is_null())
            .all(&txn)
            .await
            .map_err(db_error)?;
        for row in current.into_iter().map(stored_key) {
            let mut retire = SigningKeys::update_many()
                .col_expr(Column::RetiredAt, Expr::value(key.created_at.0))
                .filter(Column::Kid.eq(row.kid.as_str()));
            if let Some(mac) = retired_mac(&row, key.created_at) {
                retire = retire.col_expr(Column::Mac, Expr::value(mac));
            }
            retire.exec(&txn).await.map_err(db_error)?;
        }
        let model = signing_keys::ActiveModel {
            kid: Set(key.kid.clone()),
            algorithm: Set(key.algorithm.clone()),
            public_key: Set(key.public_key.clone()),
            sealed_private_key: Set(key.sealed_private_key.clone()),
            created_at: Set(key.created_at.0),
            retired_at: Set(key.retired_at.map(|t| t.0)),
            mac: Set(key.mac.clone()),
        };
        SigningKeys::insert(model)
            .exec(&txn)
            .await
            .map_err(db_error)?;
        bump_key_set_version(&txn).await?;
        events::append(&txn, EventKind::KeysChanged, None, key.created_at)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Deletes retired keys retired before `cutoff` (no unexpired token can carry their `kid`).
    pub async fn delete_keys_retired_before(&self, cutoff: Timestamp) -> Result<u64> {
        let _turn = self.write_turn().await;
        let result = SigningKeys::delete_many()
            .filter(Column::RetiredAt.lt(cutoff.0))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }

    /// Tokens signed by `kid` that could still verify: not revoked, not deleted, and not expired
    /// before `horizon` (now minus the leeway).
    pub async fn count_live_tokens_signed_by(&self, kid: &str, horizon: Timestamp) -> Result<u64> {
        use super::entities::tokens::{Column as T, Entity as Tokens};
        Tokens::find()
            .filter(T::KeyId.eq(kid))
            .filter(T::Status.ne("revoked"))
            .filter(T::DeletedAt.is_null())
            .filter(T::ExpiresAt.gt(horizon.0))
            .count(self.db())
            .await
            .map_err(db_error)
    }

    /// Deletes the key `kid` and records the change for running servers, atomically. Returns
    /// false when there is no such key.
    pub async fn delete_key(&self, kid: &str, at: Timestamp) -> Result<bool> {
        let _turn = self.write_turn().await;
        let txn = self.db().begin().await.map_err(db_error)?;
        let deleted = SigningKeys::delete_many()
            .filter(Column::Kid.eq(kid))
            .exec(&txn)
            .await
            .map_err(db_error)?
            .rows_affected;
        if deleted == 0 {
            // Ended before the turn is: the DELETE took SQLite's write lock.
            txn.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        bump_key_set_version(&txn).await?;
        events::append(&txn, EventKind::KeysChanged, None, at)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }
}

/// A row as the key layer sees it.
fn stored_key(m: signing_keys::Model) -> StoredKey {
    StoredKey {
        kid: m.kid,
        algorithm: m.algorithm,
        public_key: m.public_key,
        sealed_private_key: m.sealed_private_key,
        created_at: Timestamp(m.created_at),
        retired_at: m.retired_at.map(Timestamp),
        mac: m.mac,
    }
}
