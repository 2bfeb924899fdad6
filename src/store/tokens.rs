//! The token repository: metadata rows, status changes (each with a change-log event in the same
//! transaction), keyset-paginated listing, last-used updates and the start-up deny list.

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::sqlx::{self, AssertSqlSafe};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use super::entities::tokens::{self, Column, Entity as Tokens};
use super::events::{self, EventKind};
use super::{ListCursor, Store, db_error, newest_first_page};
use crate::domain::{
    Description, EnterpriseId, IpRestriction, Label, ScopeSet, StoredStatus, Timestamp, TokenId,
    TokenLimits, TokenRecord, UserId,
};
use crate::error::{Error, Result};

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

/// Which tokens a list returns, by the status the caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every non-deleted token.
    Any,
    /// Active and not expired.
    Active,
    /// Suspended and not expired.
    Suspended,
    /// Revoked.
    Revoked,
    /// Active or suspended, past expiry.
    Expired,
}

/// A label/description change.
#[derive(Debug, Clone, Default)]
pub struct TokenUpdate {
    /// New label, if it changes.
    pub label: Option<Label>,
    /// New description, if it changes.
    pub description: Option<Description>,
}

/// A token that must not verify although it has not expired: suspended, revoked or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedToken {
    /// The token.
    pub id: TokenId,
    /// Its stored status.
    pub status: StoredStatus,
    /// Whether it was deleted.
    pub deleted: bool,
    /// When it expires (after which it can be forgotten).
    pub expires_at: Timestamp,
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
            super::Backend::Sqlite => {
                let mut txn = self.db().get_sqlite_connection_pool().begin().await?;
                let mut inserted = 0;
                for chunk in power_of_two_chunks(rows, SQLITE_CHUNK_ROWS) {
                    let sql = insert_sql(chunk.len(), |_| "?".to_owned());
                    let query = chunk
                        .iter()
                        .fold(sqlx::query(AssertSqlSafe(sql)), |q, row| bind_row!(q, row));
                    inserted += query.execute(&mut *txn).await?.rows_affected();
                }
                txn.commit().await?;
                inserted
            }
            super::Backend::Postgres => {
                let mut txn = self.db().get_postgres_connection_pool().begin().await?;
                let mut inserted = 0;
                for chunk in power_of_two_chunks(rows, POSTGRES_CHUNK_ROWS) {
                    let sql = insert_sql(chunk.len(), |n| format!("${n}"));
                    let query = chunk
                        .iter()
                        .fold(sqlx::query(AssertSqlSafe(sql)), |q, row| bind_row!(q, row));
                    inserted += query.execute(&mut *txn).await?.rows_affected();
                }
                txn.commit().await?;
                inserted
            }
        })
    }

    /// The token `id` if its row exists (deleted tokens included: check `deleted_at`), whoever owns it.
    #[tracing::instrument(level = "debug", name = "db.find_token", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn find_token(&self, id: TokenId) -> Result<Option<TokenRecord>> {
        let model = Tokens::find_by_id(id.to_string())
            .one(self.db())
            .await
            .map_err(db_error)?;
        model.map(from_model).transpose()
    }

    /// `user`'s non-deleted tokens, newest first (ties by id, descending), after `cursor`.
    #[tracing::instrument(level = "debug", name = "db.list_tokens", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn list_tokens(
        &self,
        user: &UserId,
        filter: StatusFilter,
        cursor: Option<ListCursor>,
        limit: u64,
        now: Timestamp,
    ) -> Result<Vec<TokenRecord>> {
        let mut query = Tokens::find()
            .filter(Column::UserId.eq(user.as_str()))
            .filter(Column::DeletedAt.is_null());
        query = match filter {
            StatusFilter::Any => query,
            StatusFilter::Active => query
                .filter(Column::Status.eq("active"))
                .filter(Column::ExpiresAt.gt(now.0)),
            StatusFilter::Suspended => query
                .filter(Column::Status.eq("suspended"))
                .filter(Column::ExpiresAt.gt(now.0)),
            StatusFilter::Revoked => query.filter(Column::Status.eq("revoked")),
            StatusFilter::Expired => query
                .filter(Column::Status.ne("revoked"))
                .filter(Column::ExpiresAt.lte(now.0)),
        };
        let models = newest_first_page(query, Column::CreatedAt, Column::Id, cursor, limit)
            .all(self.db())
            .await
            .map_err(db_error)?;
        models.into_iter().map(from_model).collect()
    }

    /// Changes label/description of `user`'s non-deleted token; false if there is no such token.
    #[tracing::instrument(level = "debug", name = "db.update_token_text", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn update_token_text(
        &self,
        id: TokenId,
        user: &UserId,
        update: &TokenUpdate,
        now: Timestamp,
    ) -> Result<bool> {
        let txn = self.db().begin().await.map_err(db_error)?;
        let mut statement = Tokens::update_many()
            .col_expr(Column::UpdatedAt, Expr::value(now.0))
            .col_expr(Column::UpdatedBy, Expr::value(user.as_str()));
        if let Some(label) = &update.label {
            statement = statement.col_expr(Column::Label, Expr::value(label.as_str()));
        }
        if let Some(description) = &update.description {
            statement = statement.col_expr(Column::Description, Expr::value(description.as_str()));
        }
        let result = statement
            .filter(Column::Id.eq(id.to_string()))
            .filter(Column::UserId.eq(user.as_str()))
            .filter(Column::DeletedAt.is_null())
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Ok(false);
        }
        events::append(&txn, EventKind::TokenChanged, Some(id), now)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Moves `user`'s token from status `from` to `to` (compare-and-set: a concurrent change makes
    /// this return false) and logs the change.
    #[tracing::instrument(level = "debug", name = "db.set_token_status", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn set_token_status(
        &self,
        id: TokenId,
        user: &UserId,
        from: StoredStatus,
        to: StoredStatus,
        now: Timestamp,
    ) -> Result<bool> {
        let txn = self.db().begin().await.map_err(db_error)?;
        let result = Tokens::update_many()
            .col_expr(Column::Status, Expr::value(to.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(now.0))
            .col_expr(Column::UpdatedBy, Expr::value(user.as_str()))
            .filter(Column::Id.eq(id.to_string()))
            .filter(Column::UserId.eq(user.as_str()))
            .filter(Column::Status.eq(from.as_str()))
            .filter(Column::DeletedAt.is_null())
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Ok(false);
        }
        events::append(&txn, EventKind::TokenChanged, Some(id), now)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Marks `user`'s token deleted (a tombstone that keeps id and expiry) and logs the change.
    #[tracing::instrument(level = "debug", name = "db.delete_token", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn delete_token(&self, id: TokenId, user: &UserId, now: Timestamp) -> Result<bool> {
        let txn = self.db().begin().await.map_err(db_error)?;
        let result = Tokens::update_many()
            .col_expr(Column::DeletedAt, Expr::value(now.0))
            .col_expr(Column::UpdatedAt, Expr::value(now.0))
            .col_expr(Column::UpdatedBy, Expr::value(user.as_str()))
            .filter(Column::Id.eq(id.to_string()))
            .filter(Column::UserId.eq(user.as_str()))
            .filter(Column::DeletedAt.is_null())
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Ok(false);
        }
        events::append(&txn, EventKind::TokenChanged, Some(id), now)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Writes a batch of last-used times and addresses in one transaction.
    pub async fn record_last_used(
        &self,
        batch: &[(TokenId, Timestamp, Option<String>)],
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db().begin().await.map_err(db_error)?;
        for (id, at, ip) in batch {
            Tokens::update_many()
                .col_expr(Column::LastUsedAt, Expr::value(at.0))
                .col_expr(Column::LastUsedIp, Expr::value(ip.clone()))
                .filter(Column::Id.eq(id.to_string()))
                .exec(&txn)
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)
    }

    /// Every token that has not expired but must not verify (suspended, revoked or deleted).
    pub async fn denied_tokens(&self, now: Timestamp) -> Result<Vec<DeniedToken>> {
        let models = Tokens::find()
            .select_only()
            .columns([
                Column::Id,
                Column::Status,
                Column::DeletedAt,
                Column::ExpiresAt,
            ])
            .filter(Column::ExpiresAt.gt(now.0))
            .filter(
                Column::Status
                    .ne("active")
                    .or(Column::DeletedAt.is_not_null()),
            )
            .into_tuple::<(String, String, Option<i64>, i64)>()
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(models.into_iter().filter_map(denied_from_row).collect())
    }

    /// The current deny state of each of `ids` (for applying change-log events).
    pub async fn token_states(&self, ids: &[TokenId]) -> Result<Vec<DeniedToken>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = Tokens::find()
            .select_only()
            .columns([
                Column::Id,
                Column::Status,
                Column::DeletedAt,
                Column::ExpiresAt,
            ])
            .filter(Column::Id.is_in(ids.iter().map(ToString::to_string)))
            .into_tuple::<(String, String, Option<i64>, i64)>()
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().filter_map(denied_from_row).collect())
    }

    /// Removes tombstones of tokens that expired before `cutoff` (nothing can verify them anymore).
    pub async fn purge_expired_tombstones(&self, cutoff: Timestamp) -> Result<u64> {
        let statement = Query::delete()
            .from_table(Tokens)
            .and_where(Expr::col(Column::DeletedAt).is_not_null())
            .and_where(Expr::col(Column::ExpiresAt).lt(cutoff.0))
            .to_owned();
        let result = self.db().execute(&statement).await.map_err(db_error)?;
        Ok(result.rows_affected())
    }
}

fn denied_from_row(
    (id, status, deleted_at, expires_at): (String, String, Option<i64>, i64),
) -> Option<DeniedToken> {
    Some(DeniedToken {
        id: TokenId::parse(&id, "id").ok()?,
        status: StoredStatus::parse(&status)?,
        deleted: deleted_at.is_some(),
        expires_at: Timestamp(expires_at),
    })
}

fn from_model(m: tokens::Model) -> Result<TokenRecord> {
    let corrupt =
        |what: &str| Error::internal(format!("token {} has an unreadable {what} column", m.id));
    let ips: Vec<String> =
        serde_json::from_str(&m.ip_restrict).map_err(|_| corrupt("ip_restrict"))?;
    let limits: TokenLimits =
        serde_json::from_str(&m.token_limits).map_err(|_| corrupt("token_limits"))?;
    Ok(TokenRecord {
        id: TokenId::parse(&m.id, "id").map_err(|_| corrupt("id"))?,
        user_id: UserId::parse(&m.user_id).map_err(|_| corrupt("user_id"))?,
        label: Label::from_stored(m.label.clone()),
        description: Description::from_stored(m.description.clone()),
        scopes: ScopeSet::from_claim(&m.scopes),
        enterprise_id: m
            .enterprise_id
            .as_deref()
            .map(|e| EnterpriseId::parse(e, "enterprise_id"))
            .transpose()?,
        ip_restrict: IpRestriction::from_trusted(&ips),
        limits,
        admin: m.admin,
        template_id: m.template_id.clone(),
        template_version: m.template_version,
        status: StoredStatus::parse(&m.status).ok_or_else(|| corrupt("status"))?,
        checksum: m.checksum.clone(),
        key_id: m.key_id.clone(),
        created_by: UserId::parse(&m.created_by).map_err(|_| corrupt("created_by"))?,
        updated_by: UserId::parse(&m.updated_by).map_err(|_| corrupt("updated_by"))?,
        created_at: Timestamp(m.created_at),
        updated_at: Timestamp(m.updated_at),
        expires_at: Timestamp(m.expires_at),
        last_used_at: m.last_used_at.map(Timestamp),
        last_used_ip: m.last_used_ip.clone(),
        deleted_at: m.deleted_at.map(Timestamp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
