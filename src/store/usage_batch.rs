//! The last-used flush: every token verified since the previous flush gets its `last_used_at` and
//! `last_used_ip` in a few multi-row UPDATEs of one transaction, straight through sqlx.
//!
//! Under verification load the flush touches every token in use once a second; one SeaORM UPDATE
//! per token (a statement built, a round trip to the database thread) cost several percent of the
//! server's CPU (ARCHITECTURE.md, "Last-used recording"). The batches join a `VALUES` list to
//! `tokens` by id, which SQLite (3.33+) and PostgreSQL both accept.

use sea_orm::sqlx::{self, AssertSqlSafe};

use super::Store;
use super::batching::{POSTGRES_CHUNK_ROWS, SQLITE_CHUNK_ROWS, power_of_two_chunks};
use std::net::IpAddr;

use crate::domain::{Timestamp, TokenId};

/// One token's last use: id, time, client address.
pub type LastUse = (TokenId, Timestamp, Option<IpAddr>);

/// Binds the rows of `chunk` to `query`, three parameters each (a macro: the argument types
/// differ per backend).
macro_rules! bind_uses {
    ($query:expr, $chunk:expr) => {{
        $chunk
            .iter()
            .fold($query, |q, row: &(String, i64, Option<String>)| {
                q.bind(row.0.as_str()).bind(row.1).bind(row.2.as_deref())
            })
    }};
}

/// Applies `rows` on a sqlx `pool` in one transaction, at most `max` rows per statement;
/// `placeholder(n)` writes the n-th parameter (a macro: the pools differ per backend).
macro_rules! update_in_chunks {
    ($pool:expr, $rows:expr, $max:expr, $placeholder:expr) => {{
        let mut txn = $pool.begin().await?;
        for chunk in power_of_two_chunks($rows, $max) {
            let sql = AssertSqlSafe(update_sql(chunk.len(), $placeholder));
            bind_uses!(sqlx::query(sql), chunk)
                .execute(&mut *txn)
                .await?;
        }
        txn.commit().await?;
    }};
}

/// `WITH used(id, at, ip) AS (VALUES …) UPDATE tokens … FROM used WHERE tokens.id = used.id` for
/// `rows` rows; `placeholder(n)` writes the n-th (1-based) parameter.
fn update_sql(rows: usize, placeholder: impl Fn(usize) -> String) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let n = row * 3;
            format!(
                "({}, CAST({} AS BIGINT), {})",
                placeholder(n + 1),
                placeholder(n + 2),
                placeholder(n + 3)
            )
        })
        .collect();
    format!(
        "WITH used(id, at, ip) AS (VALUES {}) \
         UPDATE tokens SET last_used_at = used.at, last_used_ip = used.ip \
         FROM used WHERE tokens.id = used.id",
        values.join(", ")
    )
}

impl Store {
    /// Writes a batch of last-used times and addresses in one transaction (each token at most
    /// once in `batch`).
    pub async fn record_last_used(&self, batch: &[LastUse]) -> crate::error::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, i64, Option<String>)> = batch
            .iter()
            .map(|(id, at, ip)| (id.to_string(), at.0, ip.map(|ip| ip.to_string())))
            .collect();
        let _turn = self.write_turn().await;
        let result: Result<(), sqlx::Error> = async {
            match self.backend() {
                super::Backend::Sqlite => update_in_chunks!(
                    self.db().get_sqlite_connection_pool(),
                    &rows,
                    SQLITE_CHUNK_ROWS,
                    |_| "?".to_owned()
                ),
                super::Backend::Postgres => update_in_chunks!(
                    self.db().get_postgres_connection_pool(),
                    &rows,
                    POSTGRES_CHUNK_ROWS,
                    |n| format!("${n}")
                ),
            }
            Ok(())
        }
        .await;
        result.map_err(|e| super::db_error(super::from_sqlx(e)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::TokenRecord;
    use crate::store::StoreOptions;
    use crate::store::token_batch::BatchWriter;

    fn record(n: usize) -> TokenRecord {
        TokenRecord::sample(n)
    }

    /// A flush larger than one statement (64 + 16 + 4 rows) updates exactly its tokens, with
    /// each one's own time and address (or none), and leaves the others alone.
    #[tokio::test]
    async fn a_multi_statement_flush_updates_each_token_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_connections: 4,
            connect_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), &options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let records: Vec<TokenRecord> = (0..90).map(record).collect();
        BatchWriter::new(store.clone())
            .write(&records, &[])
            .await
            .unwrap();
        let uses: Vec<LastUse> = records[..84]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ip = (i % 3 != 0).then(|| format!("10.0.0.{i}").parse().unwrap());
                (r.id, Timestamp(1_750_000_000_000_000 + i as i64), ip)
            })
            .collect();
        store.record_last_used(&uses).await.unwrap();
        for (i, record) in records.iter().enumerate() {
            let stored = store.find_token(record.id).await.unwrap().unwrap();
            match uses.get(i) {
                Some((_, at, ip)) => {
                    assert_eq!(stored.last_used_at, Some(*at), "token {i}");
                    assert_eq!(stored.last_used_ip, *ip, "token {i}");
                }
                None => assert_eq!((stored.last_used_at, stored.last_used_ip), (None, None)),
            }
        }
    }

    #[test]
    fn update_statements_number_every_parameter() {
        let sql = update_sql(2, |n| format!("${n}"));
        assert!(
            sql.starts_with("WITH used(id, at, ip) AS (VALUES ($1, CAST($2 AS BIGINT), $3), ($4,")
        );
        assert!(sql.ends_with("WHERE tokens.id = used.id"), "{sql}");
    }
}
