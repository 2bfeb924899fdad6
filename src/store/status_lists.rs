//! Status lists: each one filled by the server process that opened it, in blocks of positions
//! reserved by a compare-and-set on its counter; and what a list is rendered from (its
//! committed-position bitmaps, `status_blocks`, and its denied rows).

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::entities::status_list_blocks::{Column as BlockColumn, Entity as StatusListBlocks};
use super::entities::status_lists::{self, Column, Entity as StatusLists};
use super::entities::tokens::{Column as TokenColumn, Entity as Tokens};
use super::tokens::DENIED_ROWS;
use super::{Store, db_error};
use crate::domain::{StatusListId, StoredStatus, Timestamp};
use crate::error::{Error, Result};

/// A status list as stored (or about to be opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListRow {
    /// The list's id.
    pub id: StatusListId,
    /// The URI its tokens carry (and its `sub`).
    pub uri: String,
    /// Entries in the list.
    pub size: u32,
    /// Bits per entry.
    pub bits: u8,
    /// The index permutation's key.
    pub perm_key: Vec<u8>,
}

impl Store {
    /// Opens `list` for `owner`, its first `reserved` positions taken.
    #[tracing::instrument(level = "debug", name = "db.open_status_list", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn open_status_list(
        &self,
        list: &StatusListRow,
        owner: &str,
        reserved: u32,
    ) -> Result<()> {
        let row = status_lists::ActiveModel {
            id: Set(list.id.to_string()),
            uri: Set(list.uri.clone()),
            size: Set(i64::from(list.size)),
            bits: Set(i32::from(list.bits)),
            perm_key: Set(hex::encode(&list.perm_key)),
            next_pos: Set(i64::from(reserved)),
            owner: Set(owner.to_owned()),
            created_at: Set(Timestamp::now().0),
        };
        let _turn = self.write_turn().await;
        StatusLists::insert(row)
            .exec_without_returning(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Reserves positions `[reserved, reserved + len)` of `owner`'s list `id`: a compare-and-set
    /// on its counter, which must stand at `reserved` (where the owner's last reservation
    /// ended) and leave room. False when it does not: the list is full, or the counter moved
    /// under its owner, which only a database restored from a backup does (the positions after
    /// it may belong to tokens the restore lost), or the row is gone.
    #[tracing::instrument(level = "debug", name = "db.extend_status_list", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn extend_status_list(
        &self,
        id: &StatusListId,
        owner: &str,
        reserved: u32,
        len: u32,
    ) -> Result<bool> {
        let (reserved, len) = (i64::from(reserved), i64::from(len));
        let _turn = self.write_turn().await;
        let result = StatusLists::update_many()
            .col_expr(Column::NextPos, Expr::value(reserved + len))
            .filter(Column::Id.eq(id.as_str()))
            .filter(Column::Owner.eq(owner))
            .filter(Column::NextPos.eq(reserved))
            .filter(Expr::col(Column::Size).gte(reserved + len))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    /// Every list (to answer for an id without a query per unknown id).
    pub async fn status_lists(&self) -> Result<Vec<StatusListRow>> {
        StatusLists::find()
            .all(self.db())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(row_of)
            .collect()
    }

    /// The list `id`, if it exists.
    pub async fn status_list(&self, id: &StatusListId) -> Result<Option<StatusListRow>> {
        StatusLists::find_by_id(id.to_string())
            .one(self.db())
            .await
            .map_err(db_error)?
            .map(row_of)
            .transpose()
    }

    /// What list `id` is rendered from, read in this order: its denied rows, its rows minted
    /// before the bitmaps, then its committed-position bitmaps.
    ///
    /// The reads are separate statements, so the order is what keeps the result safe. Read
    /// denied rows first, and each entry shows its state as of that first read or later: a bit
    /// is only ever set by a new token's commit (correctly VALID), or cleared by the purge of a
    /// row that was already deleted at the first read (INVALID either way). Read bits first,
    /// and a tombstone purged in between would read VALID, its bit seen but its row gone.
    #[tracing::instrument(level = "debug", name = "db.status_list_contents", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn status_list_contents(
        &self,
        id: &StatusListId,
        now: Timestamp,
    ) -> Result<StatusListContents> {
        self.status_list_contents_around(id, now, async {}).await
    }

    /// [`Store::status_list_contents`], running `between` after the rows are read and before
    /// the bitmaps are (for tests of what may commit in between).
    async fn status_list_contents_around(
        &self,
        id: &StatusListId,
        now: Timestamp,
        between: impl Future<Output = ()>,
    ) -> Result<StatusListContents> {
        let denied = entry_rows(id, now, self.db(), DENIED_ROWS).await?;
        let legacy = entry_rows(id, now, self.db(), LEGACY_ROWS).await?;
        between.await;
        let blocks = StatusListBlocks::find()
            .filter(BlockColumn::ListId.eq(id.as_str()))
            .all(self.db())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|block| (block.first_pos, block.bits))
            .collect();
        Ok(StatusListContents {
            blocks,
            legacy,
            denied,
        })
    }
}

/// What a status list is rendered from ([`Store::status_list_contents`]).
#[derive(Debug, Default)]
pub struct StatusListContents {
    /// Its committed-position bitmaps: each block's first position and bits
    /// (`status_blocks::positions_in` reads them).
    pub blocks: Vec<(i64, i64)>,
    /// Its rows minted before the bitmaps existed (migration 12), each with its index.
    pub legacy: Vec<EntryRow>,
    /// Its suspended, revoked and deleted rows, each with its index.
    pub denied: Vec<EntryRow>,
}

/// One token row's entry: its index, and its stored status if the token is usable or
/// suspended at the time of the read (`None`: deleted, revoked or expired: INVALID).
pub type EntryRow = (u32, Option<StoredStatus>);

/// Rows minted before migration 12: word for word the predicate of
/// `idx_tokens_status_list_legacy`, which SQLite uses only for a query that repeats it.
const LEGACY_ROWS: &str = "status_pos IS NULL";

/// The [`EntryRow`]s of list `id` that match `predicate` (a partial index's own predicate).
async fn entry_rows(
    id: &StatusListId,
    now: Timestamp,
    db: &sea_orm::DatabaseConnection,
    predicate: &'static str,
) -> Result<Vec<EntryRow>> {
    let rows: Vec<(Option<i64>, String, Option<i64>, i64)> = entry_query(id, predicate)
        .into_tuple()
        .all(db)
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(index, status, deleted_at, expires_at)| {
            let index = index.and_then(|i| u32::try_from(i).ok());
            match (index, StoredStatus::parse(&status)) {
                (Some(index), Some(status)) => {
                    let usable = deleted_at.is_none()
                        && expires_at > now.0
                        && status != StoredStatus::Revoked;
                    Ok((index, usable.then_some(status)))
                }
                _ => Err(Error::internal(format!(
                    "a token of status list {id} has an unreadable entry"
                ))),
            }
        })
        .collect()
}

/// The query behind [`entry_rows`].
fn entry_query(id: &StatusListId, predicate: &'static str) -> sea_orm::Select<Tokens> {
    Tokens::find()
        .select_only()
        .column(TokenColumn::StatusIdx)
        .column(TokenColumn::Status)
        .column(TokenColumn::DeletedAt)
        .column(TokenColumn::ExpiresAt)
        .filter(TokenColumn::StatusListId.eq(id.as_str()))
        .filter(Expr::cust(predicate))
}

fn row_of(m: status_lists::Model) -> Result<StatusListRow> {
    let corrupt =
        |what: &str| Error::internal(format!("status list {} has a corrupt {what}", m.id));
    Ok(StatusListRow {
        id: StatusListId::parse(&m.id).ok_or_else(|| corrupt("id"))?,
        uri: m.uri.clone(),
        size: u32::try_from(m.size).map_err(|_| corrupt("size"))?,
        bits: u8::try_from(m.bits).map_err(|_| corrupt("bits"))?,
        perm_key: hex::decode(&m.perm_key).map_err(|_| corrupt("perm_key"))?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn store_in(dir: &std::path::Path) -> Store {
        Store::migrated_sqlite_in(dir, 2, Duration::from_secs(5)).await
    }

    /// A list of 1024 entries.
    fn fresh() -> StatusListRow {
        let id = StatusListId::generate();
        StatusListRow {
            uri: format!("https://t.example/lists/{id}"),
            id,
            size: 1024,
            bits: 2,
            perm_key: vec![7; 32],
        }
    }

    #[tokio::test]
    async fn the_owner_extends_its_list_block_by_block_until_it_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let list = fresh();
        store.open_status_list(&list, "a", 512).await.unwrap();
        assert_eq!(
            store.status_list(&list.id).await.unwrap(),
            Some(list.clone())
        );
        assert!(
            store
                .extend_status_list(&list.id, "a", 512, 256)
                .await
                .unwrap()
        );
        assert!(
            store
                .extend_status_list(&list.id, "a", 768, 256)
                .await
                .unwrap()
        );
        assert!(
            !store
                .extend_status_list(&list.id, "a", 1024, 1)
                .await
                .unwrap(),
            "a full list takes no more"
        );
    }

    #[tokio::test]
    async fn a_counter_that_moved_or_another_owner_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let list = fresh();
        store.open_status_list(&list, "a", 256).await.unwrap();
        assert!(
            !store
                .extend_status_list(&list.id, "b", 256, 256)
                .await
                .unwrap(),
            "only the owner reserves"
        );
        assert!(
            !store
                .extend_status_list(&list.id, "a", 512, 256)
                .await
                .unwrap(),
            "the counter is not where the owner left it (a restore took it back)"
        );
        assert!(
            !store
                .extend_status_list(&fresh().id, "a", 0, 256)
                .await
                .unwrap(),
            "a list that is gone"
        );
        assert!(
            store
                .extend_status_list(&list.id, "a", 256, 256)
                .await
                .unwrap()
        );
        assert_eq!(store.status_lists().await.unwrap(), vec![list]);
    }

    /// A render reads a list's legacy rows and its denied rows each through its own partial
    /// index, never through a scan or an index a mint writes to.
    #[tokio::test]
    async fn a_render_reads_only_the_partial_indexes() {
        use sea_orm::{ConnectionTrait, QueryTrait, Statement};
        let dir = tempfile::tempdir().unwrap();
        // One connection, the one that migrated: SQLite writes EXPLAIN's plan when it prepares
        // the statement, and a connection that has not read since the migration prepares it on
        // the schema it last saw (a real query is prepared again when it runs; EXPLAIN's
        // output is not).
        let store = Store::migrated_sqlite_in(dir.path(), 1, Duration::from_secs(5)).await;
        let id = StatusListId::generate();
        for (predicate, index) in [
            (LEGACY_ROWS, "idx_tokens_status_list_legacy"),
            (DENIED_ROWS, "idx_tokens_status_list_denied"),
        ] {
            let built = entry_query(&id, predicate).build(store.db().get_database_backend());
            let explain = Statement::from_sql_and_values(
                built.db_backend,
                format!("EXPLAIN QUERY PLAN {}", built.sql),
                built.values.map(|v| v.0).unwrap_or_default(),
            );
            let plan: Vec<String> = store
                .db()
                .query_all_raw(explain)
                .await
                .unwrap()
                .iter()
                .map(|row| row.try_get::<String>("", "detail").unwrap())
                .collect();
            assert!(
                plan.iter()
                    .any(|step| step.contains(&format!("USING INDEX {index} "))),
                "{predicate}: {plan:?}"
            );
        }
    }

    /// A tombstone purged while a list is being read must not read VALID: not in the denied
    /// rows (gone) yet set in the bitmap (read before the purge).
    #[tokio::test]
    async fn a_purge_during_a_render_leaves_the_tombstone_invalid() {
        use crate::domain::{StatusEntry, TokenRecord};
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let list = StatusListId::generate();
        let now = Timestamp(1_750_000_000_000_000);
        let mut tombstone = TokenRecord::sample(0);
        tombstone.status_entry = Some(StatusEntry {
            list: list.clone(),
            index: 40,
        });
        tombstone.status_position = Some(0);
        tombstone.deleted_at = Some(now);
        tombstone.expires_at = now;
        crate::store::token_batch::BatchWriter::new(store.clone())
            .write(&[tombstone], &[])
            .await
            .unwrap();
        let purge = async {
            let purged = store.purge_expired_tombstones(now.plus_secs(1)).await;
            assert_eq!(purged.unwrap(), 1);
        };
        let contents = store
            .status_list_contents_around(&list, now, purge)
            .await
            .unwrap();
        let set: Vec<u64> = contents
            .blocks
            .iter()
            .flat_map(|(first, bits)| crate::store::status_blocks::positions_in(*first, *bits))
            .collect();
        let denied: Vec<u32> = contents.denied.iter().map(|(index, _)| *index).collect();
        assert!(
            set.is_empty() || denied == [40],
            "the purged tombstone reads VALID: bits {set:?}, denied {denied:?}"
        );
    }

    /// A token minted before the bitmaps (no position) is read from its row, with its status
    /// and expiry; one with a position only through the bitmap (and its row when denied).
    #[tokio::test]
    async fn rows_minted_before_the_bitmaps_are_read_from_the_rows() {
        use crate::domain::{StatusEntry, TokenRecord};
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let list = StatusListId::generate();
        let now = Timestamp(1_750_000_000_000_000);
        let records: Vec<TokenRecord> = (0..4u32)
            .map(|n| {
                let mut record = TokenRecord::sample(n as usize);
                record.status_entry = Some(StatusEntry {
                    list: list.clone(),
                    index: 10 + n,
                });
                // 0 and 1 from before the bitmaps (1 expired), 2 and 3 after (3 suspended).
                record.status_position = (n >= 2).then_some(n);
                if n == 1 {
                    record.expires_at = now;
                }
                if n == 3 {
                    record.status = StoredStatus::Suspended;
                }
                record
            })
            .collect();
        crate::store::token_batch::BatchWriter::new(store.clone())
            .write(&records, &[])
            .await
            .unwrap();
        let contents = store.status_list_contents(&list, now).await.unwrap();
        let mut legacy = contents.legacy.clone();
        legacy.sort_by_key(|(index, _)| *index);
        assert_eq!(legacy, [(10, Some(StoredStatus::Active)), (11, None)]);
        assert_eq!(contents.denied, [(13, Some(StoredStatus::Suspended))]);
        let positions: Vec<u64> = contents
            .blocks
            .iter()
            .flat_map(|(first, bits)| crate::store::status_blocks::positions_in(*first, *bits))
            .collect();
        assert_eq!(positions, [2, 3]);
    }

    /// Purging a tombstone clears its bit with its row, so its entry keeps reading INVALID;
    /// the bits of live tokens and of tombstones still kept stay set.
    #[tokio::test]
    async fn purging_a_tombstone_clears_its_bit() {
        use crate::domain::{StatusEntry, TokenRecord};
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let list = StatusListId::generate();
        let now = Timestamp(1_750_000_000_000_000);
        let records: Vec<TokenRecord> = (0..3u32)
            .map(|n| {
                let mut record = TokenRecord::sample(n as usize);
                record.status_entry = Some(StatusEntry {
                    list: list.clone(),
                    index: 100 + n,
                });
                record.status_position = Some(n);
                record.deleted_at = (n != 1).then_some(now);
                // Token 0 expired before the cutoff, 1 and 2 after it.
                record.expires_at = if n == 0 { now } else { now.plus_secs(3600) };
                record
            })
            .collect();
        crate::store::token_batch::BatchWriter::new(store.clone())
            .write(&records, &[])
            .await
            .unwrap();
        assert_eq!(
            store
                .purge_expired_tombstones(now.plus_secs(1))
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.find_token(records[0].id).await.unwrap(), None);
        let contents = store.status_list_contents(&list, now).await.unwrap();
        let positions: Vec<u64> = contents
            .blocks
            .iter()
            .flat_map(|(first, bits)| crate::store::status_blocks::positions_in(*first, *bits))
            .collect();
        assert_eq!(positions, [1, 2]);
        assert_eq!(
            contents.denied,
            [(102, None)],
            "the kept tombstone reads INVALID"
        );
        assert!(contents.legacy.is_empty());
    }
}
