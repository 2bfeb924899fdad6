//! The group commit's transaction: a batch of new tokens in multi-row INSERTs, then the batch's
//! changes to existing tokens (`token_changes`), issued straight through sqlx on SeaORM's pool.
//! SeaORM's `InsertMany` (active models, cloned `sea_query` values, the SQL text rebuilt per
//! batch) cost more of a CreateToken than SQLite's own work did (ARCHITECTURE.md, "Group
//! commit").
//!
//! (Length: about half of this file is the tests of atomic batches, kept connections and the
//! write turn, which drive the writer's private parts.)
//!
//! Length: the batch SQL is the first ~290 lines; the rest are its tests, which run each
//! statement shape on both databases.

use std::sync::Arc;

use sea_orm::sqlx::{self, AssertSqlSafe, pool::PoolConnection};

use super::Store;
use super::batching::{POSTGRES_CHUNK_ROWS, SQLITE_CHUNK_ROWS, power_of_two_chunks};
use super::status_blocks::{BlockChange, changes_for_records, set_block_bits};
use super::token_changes::{ChangeStatements, apply_changes};
use crate::domain::TokenChange;
use crate::domain::TokenRecord;

/// The columns a new token row sets, in the order [`bind_row!`] binds them.
const INSERT_COLUMNS: [&str; 26] = [
    "id",
    "user_id",
    "label",
    "description",
    "scopes",
    "enterprise_id",
    "ip_restrict",
    "token_limits",
    "admin",
    "template_id",
    "template_version",
    "status",
    "checksum",
    "key_id",
    "created_by",
    "updated_by",
    "created_at",
    "updated_at",
    "expires_at",
    "last_used_at",
    "last_used_ip",
    "deleted_at",
    "parent_id",
    "status_list_id",
    "status_idx",
    "status_pos",
];

/// A new token's column values: the rendered ones owned, the rest borrowed from its record.
struct NewRow<'a> {
    record: &'a TokenRecord,
    id: String,
    scopes: String,
    enterprise_id: Option<String>,
    ip_restrict: String,
    token_limits: String,
    parent_id: Option<String>,
    status_list_id: Option<&'a str>,
    status_idx: Option<i64>,
    status_pos: Option<i64>,
}

impl<'a> NewRow<'a> {
    fn of(record: &'a TokenRecord) -> Self {
        Self {
            record,
            id: record.id.to_string(),
            scopes: record.scopes.to_claim(),
            enterprise_id: record.enterprise_id.as_ref().map(ToString::to_string),
            ip_restrict: serde_json::to_string(record.ip_restrict.as_strings())
                .unwrap_or_else(|_| "[]".into()),
            token_limits: serde_json::to_string(&record.limits).unwrap_or_else(|_| "{}".into()),
            parent_id: record.parent_id.as_ref().map(ToString::to_string),
            status_list_id: record.status_entry.as_ref().map(|e| e.list.as_str()),
            status_idx: record.status_entry.as_ref().map(|e| i64::from(e.index)),
            status_pos: record.status_position.map(i64::from),
        }
    }
}

/// Binds one [`NewRow`] to a query, in [`INSERT_COLUMNS`] order (a macro: the same code for
/// both backends' argument types).
macro_rules! bind_row {
    ($query:expr, $row:expr) => {{
        let row: &NewRow<'_> = $row;
        let r = row.record;
        $query
            .bind(row.id.as_str())
            .bind(r.user_id.as_str())
            .bind(r.label.as_str())
            .bind(r.description.as_str())
            .bind(row.scopes.as_str())
            .bind(row.enterprise_id.as_deref())
            .bind(row.ip_restrict.as_str())
            .bind(row.token_limits.as_str())
            .bind(r.admin)
            .bind(r.template_id.map(|t| t.to_string()))
            .bind(r.template_version)
            .bind(r.status.as_str())
            .bind(r.checksum.as_str())
            .bind(r.key_id.as_str())
            .bind(r.created_by.as_str())
            .bind(r.updated_by.as_str())
            .bind(r.created_at.0)
            .bind(r.updated_at.0)
            .bind(r.expires_at.0)
            .bind(r.last_used_at.map(|t| t.0))
            .bind(r.last_used_ip.map(|ip| ip.to_string()))
            .bind(r.deleted_at.map(|t| t.0))
            .bind(row.parent_id.as_deref())
            .bind(row.status_list_id)
            .bind(row.status_idx)
            .bind(row.status_pos)
    }};
}

/// Inserts `rows` on a sqlx connection in one transaction, at most `max` rows per statement,
/// `statements[k]` being the INSERT of 2^k rows, sets the new rows' bits in their status lists'
/// committed-position bitmaps (`status_blocks`), then applies `changes` in the same transaction;
/// evaluates to the rows inserted and whether each change applied (a macro: the connection and
/// argument types differ per backend). The transaction commits only if every row was inserted:
/// otherwise it rolls back, so that a batch whose callers are told it failed left nothing behind.
macro_rules! write_in_chunks {
    ($conn:expr, $statements:expr, $rows:expr, $max:expr, $blocks:expr, $postgres:expr, $change_statements:expr, $changes:expr) => {{
        let mut txn = sqlx::Connection::begin(&mut **$conn).await?;
        let mut inserted = 0;
        for chunk in power_of_two_chunks($rows, $max) {
            let sql = AssertSqlSafe($statements[chunk.len().ilog2() as usize].clone());
            let query = chunk
                .iter()
                .fold(sqlx::query(sql), |q, row| bind_row!(q, row));
            inserted += query.execute(&mut *txn).await?.rows_affected();
        }
        set_block_bits!(txn, $blocks, $postgres);
        let applied = apply_changes!(txn, $change_statements, $changes);
        if inserted == $rows.len() as u64 {
            txn.commit().await?;
        } else {
            txn.rollback().await?;
        }
        (inserted, applied)
    }};
}

/// `INSERT INTO tokens (…) VALUES (…), …` for `rows` rows; `placeholder(n)` writes the n-th
/// (1-based) parameter.
fn insert_sql(rows: usize, placeholder: &impl Fn(usize) -> String) -> String {
    let width = INSERT_COLUMNS.len();
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=width)
                .map(|col| placeholder(row * width + col))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO tokens ({}) VALUES {}",
        INSERT_COLUMNS.join(", "),
        values.join(", ")
    )
}

/// A connection of the pool, kept by the group-commit writer from one batch to the next.
enum WriterConnection {
    Sqlite(PoolConnection<sqlx::Sqlite>),
    Postgres(PoolConnection<sqlx::Postgres>),
}

/// Writes the group-commit writer's batches (new tokens, then changes to existing ones), each in
/// one transaction, on a connection it keeps.
///
/// Keeping one connection matters on SQLite: a connection drops its whole page cache when another
/// connection has written since its last transaction, so a writer that took whichever pool
/// connection was idle started every batch cold, re-reading the path to the last page of the
/// table and of each index. It also keeps the prepared INSERTs of one connection warm. After a
/// failed batch the connection is closed and the next batch takes a fresh one. A pool of a single
/// connection is not held between batches: every other query would wait for it.
pub(crate) struct BatchWriter {
    store: Store,
    connection: Option<WriterConnection>,
    /// Whether the connection is kept between batches (the pool has others for everyone else).
    keep: bool,
    /// `statements[k]`: the INSERT of 2^k rows, with this backend's placeholders.
    statements: Vec<Arc<str>>,
    /// The UPDATEs of token changes and their change-log INSERT.
    change_statements: ChangeStatements,
}

impl BatchWriter {
    /// A writer on `store`; it takes a connection with its first batch.
    pub(crate) fn new(store: Store) -> Self {
        let (statements, change_statements) = match store.backend() {
            super::Backend::Sqlite => (
                insert_statements(SQLITE_CHUNK_ROWS, |_| "?".to_owned()),
                ChangeStatements::new(|_| "?".to_owned()),
            ),
            super::Backend::Postgres => (
                insert_statements(POSTGRES_CHUNK_ROWS, |n| format!("${n}")),
                ChangeStatements::new(|n| format!("${n}")),
            ),
        };
        let keep = store.pool_usage().max >= 2;
        Self {
            store,
            connection: None,
            keep,
            statements,
            change_statements,
        }
    }

    /// Inserts `records` and applies `changes` in one transaction: all of it or none. Returns
    /// the change-log position of each change that applied, `None` for the others (no such token
    /// of that user, or, for a status change, not in the expected status any more).
    pub(crate) async fn write(
        &mut self,
        records: &[TokenRecord],
        changes: &[TokenChange],
    ) -> Result<Vec<Option<i64>>, sea_orm::DbErr> {
        let rows: Vec<NewRow<'_>> = records.iter().map(NewRow::of).collect();
        let blocks = changes_for_records(records);
        let (inserted, applied) = self
            .write_rows(&rows, &blocks, changes)
            .await
            .map_err(|e| {
                if let Some(connection) = self.connection.as_mut() {
                    match connection {
                        WriterConnection::Sqlite(c) => c.close_on_drop(),
                        WriterConnection::Postgres(c) => c.close_on_drop(),
                    }
                }
                self.connection = None;
                super::from_sqlx(e)
            })?;
        if !self.keep {
            self.connection = None;
        }
        if inserted != records.len() as u64 {
            // Rolled back by `write_in_chunks!`: none of the batch is stored.
            tracing::error!(
                expected = records.len(),
                inserted,
                "a token batch inserted fewer rows than it holds; it was rolled back"
            );
            return Err(sea_orm::DbErr::RecordNotInserted);
        }
        Ok(applied)
    }

    /// One transaction of multi-row INSERTs and then the changes, straight through sqlx:
    /// SeaORM's statement building cost more than SQLite's own work for a batch
    /// (ARCHITECTURE.md, "Group commit"). Returns the rows inserted and the change-log
    /// position of each change that applied. The transaction runs in the store's write turn,
    /// which is taken before the connection, as every writer does: a writer holding the pool's
    /// last connection while it waits for the turn would starve the writer that has the turn.
    async fn write_rows(
        &mut self,
        rows: &[NewRow<'_>],
        blocks: &[BlockChange<'_>],
        changes: &[TokenChange],
    ) -> Result<(u64, Vec<Option<i64>>), sqlx::Error> {
        let _turn = self.store.write_turn().await;
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let db = self.store.db();
                let fresh = match self.store.backend() {
                    super::Backend::Sqlite => {
                        WriterConnection::Sqlite(db.get_sqlite_connection_pool().acquire().await?)
                    }
                    super::Backend::Postgres => WriterConnection::Postgres(
                        db.get_postgres_connection_pool().acquire().await?,
                    ),
                };
                self.connection.insert(fresh)
            }
        };
        Ok(match connection {
            WriterConnection::Sqlite(conn) => write_in_chunks!(
                conn,
                self.statements,
                rows,
                SQLITE_CHUNK_ROWS,
                blocks,
                false,
                &self.change_statements,
                changes
            ),
            WriterConnection::Postgres(conn) => write_in_chunks!(
                conn,
                self.statements,
                rows,
                POSTGRES_CHUNK_ROWS,
                blocks,
                true,
                &self.change_statements,
                changes
            ),
        })
    }
}

/// The INSERTs of 1, 2, 4 … `max` rows.
fn insert_statements(max: usize, placeholder: impl Fn(usize) -> String) -> Vec<Arc<str>> {
    (0..=max.ilog2())
        .map(|k| insert_sql(1 << k, &placeholder).into())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{
        Description, EnterpriseId, IpRestriction, ScopeSet, Timestamp, TokenLimits,
    };

    /// A record that sets every column, `n` making it distinct.
    fn record(n: usize) -> TokenRecord {
        let ips = ["10.0.0.0/8".to_owned(), "192.0.2.7".to_owned()];
        let limits = [("ETH".to_owned(), format!("{n}000"))];
        TokenRecord {
            description: Description::parse("batch test").unwrap(),
            scopes: ScopeSet::from_trusted(["wallet_view", "trade_view"]),
            enterprise_id: EnterpriseId::parse_optional("acme", "enterprise_id").unwrap(),
            ip_restrict: IpRestriction::parse(&ips, "ip_restrict").unwrap(),
            limits: TokenLimits::parse(&limits, Some("100"), "token_limits").unwrap(),
            admin: n.is_multiple_of(2),
            template_id: Some(crate::domain::TemplateId::generate()),
            template_version: n as i64,
            parent_id: Some(crate::domain::TokenId::generate()),
            status_entry: Some(crate::domain::StatusEntry {
                list: crate::domain::StatusListId::generate(),
                index: n as u32,
            }),
            status_position: Some(n as u32),
            created_at: Timestamp(1_700_000_000_000_000 + n as i64),
            updated_at: Timestamp(1_700_000_000_000_000 + n as i64),
            ..TokenRecord::sample(n)
        }
    }

    async fn sqlite_store(dir: &std::path::Path) -> Store {
        Store::migrated_sqlite_in(dir, 4, Duration::from_secs(5)).await
    }

    /// A store whose pool has one connection, given up by a waiter after a second.
    async fn single_connection_store(dir: &std::path::Path) -> Store {
        Store::migrated_sqlite_in(dir, 1, Duration::from_secs(1)).await
    }

    /// A batch larger than one statement (64 + 32 + 4 rows) lands whole, every column intact.
    #[tokio::test]
    async fn a_multi_statement_batch_stores_every_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let records: Vec<TokenRecord> = (0..100).map(record).collect();
        BatchWriter::new(store.clone())
            .write(&records, &[])
            .await
            .unwrap();
        for record in &records {
            let stored = store.find_token(record.id).await.unwrap();
            assert_eq!(stored.as_ref(), Some(record));
        }
    }

    /// Changes ride in the batch's transaction: each applies only to its user's non-deleted token
    /// (a status change only from the status its caller saw), each one that applies logs one
    /// change event, and a label change keeps the description.
    #[tokio::test]
    async fn changes_apply_in_the_batch_with_their_events() {
        use crate::domain::ChangeKind;
        use crate::domain::TokenUpdate;
        use crate::domain::{Label, StoredStatus, Timestamp, UserId};
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let tokens: Vec<TokenRecord> = (0..4).map(record).collect();
        let mut writer = BatchWriter::new(store.clone());
        writer.write(&tokens, &[]).await.unwrap();
        let at = Timestamp(1_750_000_000_000_000);
        let change = |token: &TokenRecord, kind| TokenChange {
            id: token.id,
            user: token.user_id.clone(),
            at,
            kind,
        };
        let revoke = ChangeKind::Status {
            from: StoredStatus::Active,
            to: StoredStatus::Revoked,
        };
        let relabel = ChangeKind::Text(TokenUpdate {
            label: Some(Label::parse("renamed").unwrap()),
            description: None,
        });
        let someone_else = TokenChange {
            user: UserId::parse("mallory").unwrap(),
            ..change(&tokens[3], ChangeKind::Delete)
        };
        let newcomer = record(10);
        let changes = [
            change(&tokens[0], revoke.clone()),
            change(&tokens[0], revoke), // the status is no longer the one its caller saw
            change(&tokens[1], relabel),
            change(&tokens[2], ChangeKind::Delete),
            change(&tokens[2], ChangeKind::Delete), // already deleted
            someone_else,
        ];
        let applied = writer
            .write(std::slice::from_ref(&newcomer), &changes)
            .await
            .unwrap();
        let positions: Vec<Option<i64>> = store
            .events_after(0, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| Some(e.seq))
            .collect();
        assert_eq!(
            applied,
            [positions[0], None, positions[1], positions[2], None, None],
            "each applied change answers with its own event's position"
        );

        let stored = |n: usize| {
            let store = store.clone();
            let id = tokens[n].id;
            async move { store.find_token(id).await.unwrap().unwrap() }
        };
        let revoked = stored(0).await;
        assert_eq!(revoked.status, StoredStatus::Revoked);
        assert_eq!(
            (revoked.updated_at, &revoked.updated_by),
            (at, &tokens[0].user_id)
        );
        let relabelled = stored(1).await;
        assert_eq!(relabelled.label.as_str(), "renamed");
        assert_eq!(relabelled.description, tokens[1].description);
        assert_eq!(stored(2).await.deleted_at, Some(at));
        assert_eq!(
            stored(3).await,
            tokens[3],
            "another user's token is untouched"
        );
        assert_eq!(store.find_token(newcomer.id).await.unwrap(), Some(newcomer));

        let events = store.events_after(0, 10_000).await.unwrap();
        let logged: Vec<_> = events.iter().map(|e| e.token_id).collect();
        assert_eq!(
            logged,
            [Some(tokens[0].id), Some(tokens[1].id), Some(tokens[2].id)]
        );
    }

    /// One bad row fails the whole batch: none of its tokens is stored (their callers are told
    /// the create failed, so none may exist).
    #[tokio::test]
    async fn a_failing_row_rolls_back_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let existing = record(0);
        let mut writer = BatchWriter::new(store.clone());
        writer
            .write(std::slice::from_ref(&existing), &[])
            .await
            .unwrap();
        let mut batch: Vec<TokenRecord> = (1..80).map(record).collect();
        batch[70].id = existing.id; // a duplicate key in the second statement
        assert!(writer.write(&batch, &[]).await.is_err());
        for (i, record) in batch.iter().enumerate() {
            if i != 70 {
                assert_eq!(store.find_token(record.id).await.unwrap(), None);
            }
        }
        assert_eq!(store.find_token(existing.id).await.unwrap(), Some(existing));
        // The writer recovers: its next batch, on a fresh connection, lands.
        let after = record(100);
        writer
            .write(std::slice::from_ref(&after), &[])
            .await
            .unwrap();
        assert_eq!(store.find_token(after.id).await.unwrap(), Some(after));
    }

    /// A batch whose INSERTs store fewer rows than it holds (here a trigger silently drops one;
    /// in general anything that makes the count come short) fails as a whole and leaves nothing
    /// behind: its callers are told the write failed, so none of its tokens or changes may be
    /// committed.
    #[tokio::test]
    async fn a_short_row_count_fails_the_batch_before_it_commits() {
        use crate::domain::ChangeKind;
        use crate::domain::StoredStatus;
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let mut writer = BatchWriter::new(store.clone());
        let existing = record(0);
        writer
            .write(std::slice::from_ref(&existing), &[])
            .await
            .unwrap();
        let events_before = store.events_after(0, 10_000).await.unwrap().len();
        {
            let _turn = store.write_turn().await;
            let mut conn = store
                .db()
                .get_sqlite_connection_pool()
                .acquire()
                .await
                .unwrap();
            sqlx::query(
                "CREATE TRIGGER drop_one BEFORE INSERT ON tokens \
                 WHEN NEW.label = 'dropped' BEGIN SELECT RAISE(IGNORE); END",
            )
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        let mut batch: Vec<TokenRecord> = (1..6).map(record).collect();
        batch[3].label = crate::domain::Label::parse("dropped").unwrap();
        let revoke = TokenChange {
            id: existing.id,
            user: existing.user_id.clone(),
            at: Timestamp(1_750_000_000_000_000),
            kind: ChangeKind::Status {
                from: StoredStatus::Active,
                to: StoredStatus::Revoked,
            },
        };
        let outcome = writer.write(&batch, std::slice::from_ref(&revoke)).await;
        assert!(outcome.is_err(), "the short batch is reported failed");
        for record in &batch {
            assert_eq!(
                store.find_token(record.id).await.unwrap(),
                None,
                "a token of a failed batch was committed"
            );
        }
        assert_eq!(
            store.find_token(existing.id).await.unwrap(),
            Some(existing),
            "the change of a failed batch was committed"
        );
        assert_eq!(
            store.events_after(0, 10_000).await.unwrap().len(),
            events_before,
            "a change event of a failed batch was committed"
        );
        for record in &batch {
            let list = &record.status_entry.as_ref().unwrap().list;
            let contents = store.status_list_contents(list, Timestamp::now()).await;
            assert!(
                contents.unwrap().blocks.is_empty(),
                "a status list bit of a failed batch was committed"
            );
        }
    }

    /// The committed positions of `list`, read back from its blocks.
    async fn committed_positions(store: &Store, list: &crate::domain::StatusListId) -> Vec<u64> {
        let contents = store
            .status_list_contents(list, Timestamp::now())
            .await
            .unwrap();
        contents
            .blocks
            .iter()
            .flat_map(|(first, bits)| crate::store::status_blocks::positions_in(*first, *bits))
            .collect()
    }

    /// `n` records of one list at `positions`.
    fn listed(list: &crate::domain::StatusListId, positions: &[u32]) -> Vec<TokenRecord> {
        positions
            .iter()
            .map(|&position| {
                let mut record = record(position as usize);
                record.status_entry = Some(crate::domain::StatusEntry {
                    list: list.clone(),
                    index: position,
                });
                record.status_position = Some(position);
                record
            })
            .collect()
    }

    /// Each batch sets exactly its tokens' bits in their list's blocks, also across a block's
    /// edge, and keeps the bits of earlier batches.
    #[tokio::test]
    async fn committed_tokens_set_their_positions_bits_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let list = crate::domain::StatusListId::generate();
        let mut writer = BatchWriter::new(store.clone());
        writer.write(&listed(&list, &[3, 62]), &[]).await.unwrap();
        writer
            .write(&listed(&list, &[63, 64, 4, 9000]), &[])
            .await
            .unwrap();
        let other = crate::domain::StatusListId::generate();
        writer.write(&listed(&other, &[7]), &[]).await.unwrap();
        assert_eq!(
            committed_positions(&store, &list).await,
            [3, 4, 62, 63, 64, 9000]
        );
        assert_eq!(committed_positions(&store, &other).await, [7]);
    }

    /// A batch adds its bits to the stored block, never writes back bits it remembers: after a
    /// restore took a token and its bit away, the next batch must not set that bit again.
    #[tokio::test]
    async fn a_batch_sets_bits_on_the_stored_block_not_a_remembered_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let list = crate::domain::StatusListId::generate();
        let mut writer = BatchWriter::new(store.clone());
        writer.write(&listed(&list, &[0]), &[]).await.unwrap();
        let lost = listed(&list, &[1]);
        writer.write(&lost, &[]).await.unwrap();
        {
            // What a restore from a backup taken between the two batches leaves.
            let _turn = store.write_turn().await;
            let mut conn = store
                .db()
                .get_sqlite_connection_pool()
                .acquire()
                .await
                .unwrap();
            sqlx::query("UPDATE status_list_blocks SET bits = 1")
                .execute(&mut *conn)
                .await
                .unwrap();
            sqlx::query("DELETE FROM tokens WHERE id = ?")
                .bind(lost[0].id.to_string())
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        writer.write(&listed(&list, &[2]), &[]).await.unwrap();
        assert_eq!(committed_positions(&store, &list).await, [0, 2]);
    }

    /// The writer keeps its connection between batches (a warm page cache), unless the pool has
    /// only that one: then every other query would wait for it.
    #[tokio::test]
    async fn the_connection_is_kept_only_when_the_pool_has_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let mut writer = BatchWriter::new(store.clone());
        writer.write(&[record(1)], &[]).await.unwrap();
        assert!(writer.connection.is_some(), "kept after the batch");
        // The pool sees it too, once the connections used by the migrations are back: sqlx
        // returns a dropped connection from a spawned task, so the count settles a moment later.
        let settled = std::time::Instant::now();
        while store.pool_usage().in_use != 1 && settled.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.pool_usage().in_use, 1, "the pool counts it in use");

        let dir = tempfile::tempdir().unwrap();
        let store = single_connection_store(dir.path()).await;
        let mut writer = BatchWriter::new(store.clone());
        let first = record(1);
        writer
            .write(std::slice::from_ref(&first), &[])
            .await
            .unwrap();
        assert!(writer.connection.is_none(), "a pool of one is not held");
        assert_eq!(store.find_token(first.id).await.unwrap(), Some(first));
        writer.write(&[record(2)], &[]).await.unwrap();
    }

    /// With a pool of one connection, a batch waiting for the write turn must not hold that
    /// connection: whoever has the turn needs it to write, and both would wait until the pool's
    /// acquire timeout.
    #[tokio::test]
    async fn a_batch_waits_for_the_turn_before_taking_a_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_connection_store(dir.path()).await;
        let mut writer = BatchWriter::new(store.clone());
        let token = record(1);

        let turn = store.write_turn().await;
        let mut batch = Box::pin(writer.write(std::slice::from_ref(&token), &[]));
        // Let the batch run as far as it can: it stops at the turn (or, taking the connection
        // first, holds it while it waits).
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(50) {
            tokio::select! {
                biased;
                _ = &mut batch => panic!("the batch committed while another writer had the turn"),
                _ = tokio::task::yield_now() => {}
            }
        }
        let before_commit = store
            .find_token(token.id)
            .await
            .expect("the turn's holder gets the connection");
        assert_eq!(before_commit, None);
        drop(turn);
        batch.await.unwrap();
        assert_eq!(store.find_token(token.id).await.unwrap(), Some(token));
    }

    #[test]
    fn insert_statements_number_every_parameter() {
        let sql = insert_sql(2, &|n| format!("${n}"));
        assert!(sql.starts_with("INSERT INTO tokens (id, user_id, label,"));
        assert!(sql.contains("($1, $2, $3,"));
        assert!(sql.ends_with("$51, $52)"), "{sql}");
        assert_eq!(insert_sql(3, &|_| "?".into()).matches('?').count(), 78);
    }
}
