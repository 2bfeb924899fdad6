//! Persistence: SeaORM entities and the repositories built on them. The only code that speaks SQL.
//!
//! Every function takes and returns domain types; callers never see a SeaORM model.

mod batching;
pub mod enterprises;
pub mod entities;
pub mod events;
pub mod keys;
pub mod notify;
pub mod status_blocks;
pub mod status_lists;
pub mod templates;
mod token_batch;
mod token_changes;
pub mod token_writer;
pub mod tokens;
mod usage_batch;
mod write_gate;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::ExprTrait;
use sea_orm::sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, SqlxPostgresConnector, SqlxSqliteConnector,
};

pub use keys::{RetiredMac, StoredKey, StoredKeySet};
pub use token_writer::TokenWriter;
pub use usage_batch::LastUse;
pub(crate) use write_gate::WriteTurn;

use crate::domain::ListCursor;
use crate::error::Error;
use write_gate::WriteGate;

/// Orders `query` newest first (creation time, then id, both descending), continues after
/// `cursor` and takes `limit` rows: the keyset pagination of every list.
pub(crate) fn newest_first_page<E: EntityTrait>(
    query: Select<E>,
    created_at: E::Column,
    id: E::Column,
    cursor: Option<ListCursor>,
    limit: u64,
) -> Select<E> {
    let query = match cursor {
        Some(c) => query.filter(
            created_at
                .lt(c.created_at.0)
                .or(created_at.eq(c.created_at.0).and(id.lt(c.id))),
        ),
        None => query,
    };
    query
        .order_by_desc(created_at)
        .order_by_desc(id)
        .limit(limit)
}

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (the default).
    Sqlite,
    /// PostgreSQL server (production; shared by replicas).
    Postgres,
}

impl Backend {
    /// The OpenTelemetry `db.system.name` of the engine.
    pub fn otel_name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}

/// Most pooled connections to an SQLite file: it has a single writer, and each connection costs
/// a worker thread and its own page cache.
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// Key of the PostgreSQL advisory lock that serialises migrations across replicas
/// (the bytes of "tokenmnt").
const MIGRATION_LOCK_ID: i64 = 0x746f_6b65_6e6d_6e74;

/// Connection settings for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long to wait for a connection before giving up.
    pub connect_timeout: Duration,
}

/// A handle on the database; cheap to clone.
///
/// Every write transaction takes its turn first ([`Store::write_turn`]); reads never wait.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    write_gate: WriteGate,
}

/// How long an SQLite write waits for the lock held by another process on the same file (within
/// one process, writers take turns instead; see [`write_gate`]).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`). SQLite runs in WAL mode with
    /// `synchronous=FULL`, so a committed token survives power loss; it syncs with `fdatasync`
    /// (built so by `.cargo/config.toml`), which leaves out the file's timestamps.
    pub async fn connect(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        let shown = redact_url(url);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)
                .with_context(|| format!("invalid database URL {shown}"))?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.connect_timeout)
                .connect_with(connect)
                .await
                .with_context(|| format!("database unreachable at {shown}"))?;
            Ok(Self {
                db: SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
                backend: Backend::Postgres,
                write_gate: WriteGate::open(),
            })
        } else if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, options, SQLITE_BUSY_TIMEOUT).await
        } else {
            anyhow::bail!("unsupported database URL {shown}: expected sqlite:// or postgres://")
        }
    }

    /// Opens the SQLite database at `url`; a write that finds another process's lock gives up
    /// after `busy_timeout`.
    async fn connect_sqlite(
        url: &str,
        options: &StoreOptions,
        busy_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let shown = redact_url(url);
        let connect = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL {shown}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy_timeout)
            .foreign_keys(true)
            // 1 MiB of page cache per connection (SQLite's default is 2 MiB): the hot rows
            // live in tokenmint's own caches, and memory is budgeted (ARCHITECTURE.md, "Caches and
            // their invalidation"; the resident-set target in BENCHMARKS.md).
            .pragma("cache_size", "-1024");
        // SQLite has one writer; a few connections serve the readers of WAL mode.
        let pool = SqlitePoolOptions::new()
            .max_connections(Ord::min(options.max_connections, SQLITE_MAX_CONNECTIONS))
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .with_context(|| format!("cannot open SQLite database {shown}"))?;
        Ok(Self {
            db: SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
            backend: Backend::Sqlite,
            write_gate: WriteGate::one_at_a_time(),
        })
    }

    /// [`Store::connect`] on SQLite with a chosen busy timeout (tests: zero makes any collision
    /// between writers an error).
    #[cfg(test)]
    pub(crate) async fn connect_sqlite_with_busy_timeout(
        url: &str,
        options: &StoreOptions,
        busy_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::connect_sqlite(url, options, busy_timeout).await
    }

    /// A migrated SQLite store on a new database in `dir` (tests).
    #[cfg(test)]
    pub(crate) async fn migrated_sqlite_in(
        dir: &Path,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Self {
        let options = StoreOptions {
            max_connections,
            connect_timeout,
        };
        let store = Self::connect(&Self::sqlite_url_in(dir), &options)
            .await
            .expect("an SQLite store");
        store.migrate().await.expect("migrations apply");
        store
    }

    /// Waits until this process may start a write transaction (on SQLite, one at a time, in
    /// arrival order; on PostgreSQL at once). Hold the turn until the transaction has ended.
    pub(crate) async fn write_turn(&self) -> WriteTurn {
        self.write_gate.turn().await
    }

    /// The SQLite URL for the embedded database in `data_dir`.
    pub fn sqlite_url_in(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("tokenmint.db").display())
    }

    /// Applies pending migrations.
    ///
    /// Replicas starting together must not race: on PostgreSQL a session advisory lock, held on
    /// one connection for the whole run, lets one process migrate while the others wait (and
    /// then find nothing to do); on SQLite the migration runs under the database's write lock.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                let mut lock = pool.acquire().await.context("database unreachable")?;
                sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(MIGRATION_LOCK_ID)
                    .execute(&mut *lock)
                    .await
                    .context("cannot take the migration lock")?;
                let result = Migrator::up(&self.db, None).await;
                let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(MIGRATION_LOCK_ID)
                    .execute(&mut *lock)
                    .await;
                result.context("database migration failed")?;
                unlocked.context("cannot release the migration lock")?;
                Ok(())
            }
            Backend::Sqlite => {
                // A second process may have applied the same migrations a moment earlier;
                // retry once, when its work is visible and ours is a no-op.
                match Migrator::up(&self.db, None).await {
                    Ok(()) => Ok(()),
                    Err(_) => Migrator::up(&self.db, None)
                        .await
                        .context("database migration failed"),
                }
            }
        }
    }

    /// The engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying connection, for repositories.
    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the pool (after pending writes are done).
    pub async fn close(self) {
        match self.backend {
            Backend::Sqlite => self.db.get_sqlite_connection_pool().close().await,
            Backend::Postgres => self.db.get_postgres_connection_pool().close().await,
        }
    }

    /// The connection pool's state, for metrics and diagnostics.
    pub fn pool_usage(&self) -> PoolUsage {
        let (open, idle, max) = match self.backend {
            Backend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            Backend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        PoolUsage {
            in_use: open.saturating_sub(idle),
            idle,
            max,
        }
    }
}

/// Connection pool state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections lent out.
    pub in_use: u32,
    /// Open connections waiting for work.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// Query parameters of a database URL that carry a secret (libpq's `password` and
/// `sslpassword`, which sqlx's PostgreSQL URLs accept too), compared case-insensitively.
const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];

/// Hides the passwords of a database URL before it is shown anywhere: the one in the user
/// information (`postgres://user:***@host/db`) and those given as query parameters
/// (`?password=***`).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &base[..scheme_end + 3],
                    &userinfo[..colon],
                    &base[at..]
                ),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _))
                    if SECRET_PARAMETERS
                        .iter()
                        .any(|secret| key.eq_ignore_ascii_case(secret)) =>
                {
                    format!("{key}=***")
                }
                _ => parameter.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&parameters.join("&"));
    }
    shown
}

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Maps a database error to the API error (UNAVAILABLE; the cause is logged, not returned).
pub(crate) fn db_error(err: DbErr) -> Error {
    Error::store(err)
}

/// Wraps an error of a query issued straight through sqlx (the batched writes) as SeaORM's.
pub(crate) fn from_sqlx(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db",
            "an unencoded @ in the password"
        );
    }

    #[test]
    fn passwords_in_query_parameters_are_redacted() {
        assert_eq!(
            redact_url("postgres://u@h/db?password=secret"),
            "postgres://u@h/db?password=***"
        );
        assert_eq!(
            redact_url("postgres://h/db?sslmode=require&user=u&PASSWORD=s3&sslpassword=k"),
            "postgres://h/db?sslmode=require&user=u&PASSWORD=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://u:a@h/db?password=p@ss"),
            "postgres://u:***@h/db?password=***",
            "an @ in the query is not mistaken for the end of the user information"
        );
        assert_eq!(
            redact_url("postgres://h/db?application_name=tokenmint"),
            "postgres://h/db?application_name=tokenmint"
        );
    }
}
