//! The last-used flush: every token verified since the previous flush gets its `last_used_at` and
//! `last_used_ip` in a few multi-row UPDATEs of one transaction, straight through sqlx.
//!
//! Under verification load the flush touches every token in use once a second; one SeaORM UPDATE
//! per token (a statement built, a round trip to the database thread) cost several percent of the
//! server's CPU (ARCHITECTURE.md, "Last-used recording"). The batches join a `VALUES` list to
//! `tokens` by id, which SQLite (3.33+) and PostgreSQL both accept. On PostgreSQL, where several
//! servers flush the same tokens, a flush skips the rows another one is writing and hands them
//! back to be written next time ([`LOCK_UNLESS_HELD`]).

use sea_orm::sqlx::{self, AssertSqlSafe};

use super::Store;
use super::batching::{POSTGRES_CHUNK_ROWS, SQLITE_CHUNK_ROWS, power_of_two_chunks};
use std::collections::HashSet;
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

/// Applies `rows` in the open sqlx transaction `$txn`, at most `max` rows per statement;
/// `placeholder(n)` writes the n-th parameter (a macro: the transactions differ per backend).
macro_rules! update_in_chunks {
    ($txn:expr, $rows:expr, $max:expr, $placeholder:expr) => {{
        for chunk in power_of_two_chunks($rows, $max) {
            let sql = AssertSqlSafe(update_sql(chunk.len(), $placeholder));
            bind_uses!(sqlx::query(sql), chunk)
                .execute(&mut *$txn)
                .await?;
        }
    }};
}

/// Locks the rows of a flush that no other transaction holds, and returns their ids
/// (PostgreSQL). Several servers flush the last use of the same tokens (a caller's, a popular
/// token's) every second: waiting on each other's row locks stalled their flushes, and locking
/// in different orders deadlocked them. A row another writer holds is left for the next flush.
const LOCK_UNLESS_HELD: &str =
    "SELECT id FROM tokens WHERE id = ANY($1) FOR NO KEY UPDATE SKIP LOCKED";

/// Which of the ids still exist (PostgreSQL): a skipped row that no longer exists is not retried.
const STILL_THERE: &str = "SELECT id FROM tokens WHERE id = ANY($1)";

/// `WITH used(id, at, ip) AS (VALUES …) UPDATE tokens … FROM used WHERE tokens.id = used.id` for
/// `rows` rows, never moving a token's last use back in time (another server may have written a
/// later one); `placeholder(n)` writes the n-th (1-based) parameter.
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
         FROM used WHERE tokens.id = used.id \
         AND (tokens.last_used_at IS NULL OR tokens.last_used_at <= used.at)",
        values.join(", ")
    )
}

impl Store {
    /// Writes a batch of last-used times and addresses in one transaction (each token at most
    /// once in `batch`). Returns the tokens it did not write because another server was writing
    /// them at that moment (PostgreSQL only): the caller keeps those for its next flush.
    pub async fn record_last_used(&self, batch: &[LastUse]) -> crate::error::Result<Vec<TokenId>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64, Option<String>)> = batch
            .iter()
            .map(|(id, at, ip)| (id.to_string(), at.0, ip.map(|ip| ip.to_string())))
            .collect();
        let _turn = self.write_turn().await;
        let result: Result<Vec<TokenId>, sqlx::Error> = async {
            match self.backend() {
                super::Backend::Sqlite => {
                    let mut txn = self.db().get_sqlite_connection_pool().begin().await?;
                    update_in_chunks!(txn, &rows, SQLITE_CHUNK_ROWS, |_| "?".to_owned());
                    txn.commit().await?;
                    Ok(Vec::new())
                }
                super::Backend::Postgres => {
                    let pool = self.db().get_postgres_connection_pool();
                    let ids: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
                    let mut txn = pool.begin().await?;
                    let locked: Vec<String> = sqlx::query_scalar(LOCK_UNLESS_HELD)
                        .bind(&ids)
                        .fetch_all(&mut *txn)
                        .await?;
                    let locked: HashSet<&str> = locked.iter().map(String::as_str).collect();
                    let (mine, held): (Vec<_>, Vec<_>) = rows
                        .iter()
                        .cloned()
                        .partition(|row| locked.contains(row.0.as_str()));
                    update_in_chunks!(txn, &mine, POSTGRES_CHUNK_ROWS, |n| format!("${n}"));
                    txn.commit().await?;
                    if held.is_empty() {
                        return Ok(Vec::new());
                    }
                    let held: Vec<&str> = held.iter().map(|row| row.0.as_str()).collect();
                    // The flush has committed: if this check fails, hand every held row back
                    // (one that is gone is then dropped by a later flush) rather than fail.
                    let existing: Vec<String> = sqlx::query_scalar(STILL_THERE)
                        .bind(&held)
                        .fetch_all(pool)
                        .await
                        .unwrap_or_else(|_| held.iter().map(|id| (*id).to_owned()).collect());
                    Ok(existing
                        .iter()
                        .filter_map(|id| TokenId::parse(id, "id").ok())
                        .collect())
                }
            }
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
        assert!(
            sql.ends_with("WHERE tokens.id = used.id AND (tokens.last_used_at IS NULL OR tokens.last_used_at <= used.at)"),
            "{sql}"
        );
    }

    /// Another server may have written a later use first: an older one never replaces it.
    #[tokio::test]
    async fn an_older_use_does_not_replace_a_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_connections: 2,
            connect_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), &options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let token = record(0);
        BatchWriter::new(store.clone())
            .write(std::slice::from_ref(&token), &[])
            .await
            .unwrap();
        let (later, earlier) = (
            Timestamp(1_750_000_002_000_000),
            Timestamp(1_750_000_001_000_000),
        );
        let later_ip: IpAddr = "10.0.0.2".parse().unwrap();

        store
            .record_last_used(&[(token.id, later, Some(later_ip))])
            .await
            .unwrap();
        store
            .record_last_used(&[(token.id, earlier, None)])
            .await
            .unwrap();

        let stored = store.find_token(token.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.last_used_at, stored.last_used_ip),
            (Some(later), Some(later_ip))
        );
    }
}
