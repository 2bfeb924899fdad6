//! The group commit's INSERT: a batch of new tokens in one transaction of multi-row statements,
//! issued straight through sqlx on SeaORM's pool. SeaORM's `InsertMany` (active models, cloned
//! `sea_query` values, the SQL text rebuilt per batch) cost more of a CreateToken than SQLite's own
//! work did (BENCHMARKS.md, session 4).

use sea_orm::sqlx::{self, AssertSqlSafe};

use super::Store;
use crate::domain::TokenRecord;

/// Most rows per INSERT statement of a group commit on SQLite (64 × 22 columns stays far below
/// its 32,766 bound parameters).
const SQLITE_CHUNK_ROWS: usize = 64;

/// Most rows per INSERT statement on PostgreSQL: a message larger than one TCP segment stalls
/// ~40 ms on Nagle + delayed ACK (sqlx does not set TCP_NODELAY).
const POSTGRES_CHUNK_ROWS: usize = 16;

/// The columns a new token row sets, in the order [`bind_row!`] binds them.
const INSERT_COLUMNS: [&str; 22] = [
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
];

/// A new token's column values: the rendered ones owned, the rest borrowed from its record.
struct NewRow<'a> {
    record: &'a TokenRecord,
    id: String,
    scopes: String,
    enterprise_id: Option<String>,
    ip_restrict: String,
    token_limits: String,
}

impl<'a> NewRow<'a> {
    fn of(record: &'a TokenRecord) -> Self {
        Self {
            record,
            id: record.id.to_string(),
            scopes: record.scopes.to_claim(),
            enterprise_id: record.enterprise_id.as_ref().map(ToString::to_string),
            ip_restrict: serde_json::to_string(&record.ip_restrict.to_strings())
                .unwrap_or_else(|_| "[]".into()),
            token_limits: serde_json::to_string(&record.limits).unwrap_or_else(|_| "{}".into()),
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
            .bind(r.template_id.as_deref())
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
            .bind(r.last_used_ip.as_deref())
            .bind(r.deleted_at.map(|t| t.0))
    }};
}

/// Inserts `rows` on a sqlx `pool` in one transaction, at most `max` rows per statement, with
/// `placeholder(n)` as the n-th parameter; evaluates to the rows inserted (a macro: the pools'
/// connection and argument types differ per backend).
macro_rules! insert_in_chunks {
    ($pool:expr, $rows:expr, $max:expr, $placeholder:expr) => {{
        let mut txn = $pool.begin().await?;
        let mut inserted = 0;
        for chunk in power_of_two_chunks($rows, $max) {
            let sql = insert_sql(chunk.len(), $placeholder);
            let query = chunk
                .iter()
                .fold(sqlx::query(AssertSqlSafe(sql)), |q, row| bind_row!(q, row));
            inserted += query.execute(&mut *txn).await?.rows_affected();
        }
        txn.commit().await?;
        inserted
    }};
}

/// `INSERT INTO tokens (…) VALUES (…), …` for `rows` rows; `placeholder(n)` writes the n-th
/// (1-based) parameter.
fn insert_sql(rows: usize, placeholder: impl Fn(usize) -> String) -> String {
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

/// Splits `rows` into chunks of at most `max` rows whose sizes are powers of two, so that each
/// connection prepares at most log2(max) + 1 distinct INSERT statements and reuses them from
/// sqlx's statement cache.
fn power_of_two_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if rest.len() >= max {
            max
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

impl Store {
    /// Inserts tokens in one transaction (the group-commit writer's batch).
    pub(crate) async fn insert_tokens(
        &self,
        records: &[TokenRecord],
    ) -> Result<(), sea_orm::DbErr> {
        let rows: Vec<NewRow<'_>> = records.iter().map(NewRow::of).collect();
        let inserted = self.insert_rows(&rows).await.map_err(|e| {
            sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e)))
        })?;
        if inserted != records.len() as u64 {
            return Err(sea_orm::DbErr::RecordNotInserted);
        }
        Ok(())
    }

    /// One transaction of multi-row INSERTs, straight through sqlx: SeaORM's statement building
    /// cost more than SQLite's own work for a batch (BENCHMARKS.md, session 4). Returns the rows
    /// inserted.
    async fn insert_rows(&self, rows: &[NewRow<'_>]) -> Result<u64, sqlx::Error> {
        Ok(match self.backend() {
            super::Backend::Sqlite => insert_in_chunks!(
                self.db().get_sqlite_connection_pool(),
                rows,
                SQLITE_CHUNK_ROWS,
                |_| "?".to_owned()
            ),
            super::Backend::Postgres => insert_in_chunks!(
                self.db().get_postgres_connection_pool(),
                rows,
                POSTGRES_CHUNK_ROWS,
                |n| format!("${n}")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{
        Description, EnterpriseId, IpRestriction, Label, ScopeSet, StoredStatus, Timestamp,
        TokenId, TokenLimits, UserId,
    };
    use crate::store::StoreOptions;

    /// A record that sets every column, `n` making it distinct.
    fn record(n: usize) -> TokenRecord {
        let user = UserId::parse("alice").unwrap();
        let ips = ["10.0.0.0/8".to_owned(), "192.0.2.7".to_owned()];
        let limits = [("ETH".to_owned(), format!("{n}000"))];
        TokenRecord {
            id: TokenId::generate(),
            user_id: user.clone(),
            label: Label::parse(&format!("token {n}")).unwrap(),
            description: Description::parse("batch test").unwrap(),
            scopes: ScopeSet::from_trusted(["wallet_view", "trade_view"]),
            enterprise_id: EnterpriseId::parse_optional("acme", "enterprise_id").unwrap(),
            ip_restrict: IpRestriction::parse(&ips, "ip_restrict").unwrap(),
            limits: TokenLimits::parse(&limits, Some("100"), "token_limits").unwrap(),
            admin: n.is_multiple_of(2),
            template_id: Some(format!("template-{n}")),
            template_version: n as i64,
            status: StoredStatus::Active,
            checksum: format!("{n:06}"),
            key_id: "k1".into(),
            created_by: user.clone(),
            updated_by: user,
            created_at: Timestamp(1_700_000_000_000_000 + n as i64),
            updated_at: Timestamp(1_700_000_000_000_000 + n as i64),
            expires_at: Timestamp(1_800_000_000_000_000),
            last_used_at: None,
            last_used_ip: None,
            deleted_at: None,
        }
    }

    async fn sqlite_store(dir: &std::path::Path) -> Store {
        let options = StoreOptions {
            max_connections: 4,
            connect_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&Store::sqlite_url_in(dir), &options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A batch larger than one statement (64 + 32 + 4 rows) lands whole, every column intact.
    #[tokio::test]
    async fn a_multi_statement_batch_stores_every_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let records: Vec<TokenRecord> = (0..100).map(record).collect();
        store.insert_tokens(&records).await.unwrap();
        for record in &records {
            let stored = store.find_token(record.id).await.unwrap();
            assert_eq!(stored.as_ref(), Some(record));
        }
    }

    /// One bad row fails the whole batch: none of its tokens is stored (their callers are told
    /// the create failed, so none may exist).
    #[tokio::test]
    async fn a_failing_row_rolls_back_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let existing = record(0);
        store
            .insert_tokens(std::slice::from_ref(&existing))
            .await
            .unwrap();
        let mut batch: Vec<TokenRecord> = (1..80).map(record).collect();
        batch[70].id = existing.id; // a duplicate key in the second statement
        assert!(store.insert_tokens(&batch).await.is_err());
        for (i, record) in batch.iter().enumerate() {
            if i != 70 {
                assert_eq!(store.find_token(record.id).await.unwrap(), None);
            }
        }
        assert_eq!(store.find_token(existing.id).await.unwrap(), Some(existing));
    }

    #[test]
    fn batches_split_into_power_of_two_statements() {
        let rows: Vec<usize> = (0..203).collect();
        let sizes: Vec<usize> = power_of_two_chunks(&rows, 64).map(<[usize]>::len).collect();
        assert_eq!(sizes, [64, 64, 64, 8, 2, 1]);
        let rejoined: Vec<usize> = power_of_two_chunks(&rows, 64).flatten().copied().collect();
        assert_eq!(rejoined, rows, "every row once, in order");
        assert_eq!(power_of_two_chunks(&rows[..0], 64).count(), 0);
    }

    #[test]
    fn insert_statements_number_every_parameter() {
        let sql = insert_sql(2, |n| format!("${n}"));
        assert!(sql.starts_with("INSERT INTO tokens (id, user_id, label,"));
        assert!(sql.contains("($1, $2, $3,"));
        assert!(sql.ends_with("$43, $44)"), "{sql}");
        assert_eq!(insert_sql(3, |_| "?".into()).matches('?').count(), 66);
    }
}
