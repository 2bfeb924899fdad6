//! The token repository: metadata rows, keyset-paginated listing and the start-up deny list. New
//! tokens and changes to existing ones are written by the group commit (`token_writer`).

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::tokens::{self, Column, Entity as Tokens};
use super::{Store, db_error, newest_first_page};
use crate::domain::{DeniedToken, ListCursor};
use crate::domain::{
    Description, EnterpriseId, IpRestriction, KeyId, Label, ScopeSet, StatusEntry, StatusListId,
    StoredStatus, TemplateId, Timestamp, TokenId, TokenLimits, TokenRecord, UserId,
};
use crate::error::{Error, Result};
use sea_orm::sqlx::{self, AssertSqlSafe};

use super::status_blocks::{changes_of, clear_block_bits};

/// Where a page of [`Store::denied_unlisted_tokens`] ends: the last row's expiry and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedRowKey {
    /// The row's `expires_at`.
    pub expires_at: Timestamp,
    /// The row's id, as stored.
    pub id: String,
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

impl Store {
    /// The token `id` if its row exists (deleted tokens included: check `deleted_at`), whoever owns it.
    #[tracing::instrument(level = "debug", name = "db.find_token", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn find_token(&self, id: TokenId) -> Result<Option<TokenRecord>> {
        let model = Tokens::find_by_id(id.to_string())
            .one(self.db())
            .await
            .map_err(db_error)?;
        model.map(from_model).transpose()
    }

    /// `user`'s non-deleted tokens (only `parent`'s children, when given), newest first (ties by
    /// id, descending), after `cursor`.
    #[tracing::instrument(level = "debug", name = "db.list_tokens", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn list_tokens(
        &self,
        user: &UserId,
        filter: StatusFilter,
        parent: Option<TokenId>,
        cursor: Option<ListCursor>,
        limit: u64,
        now: Timestamp,
    ) -> Result<Vec<TokenRecord>> {
        let mut query = Tokens::find()
            .filter(Column::UserId.eq(user.as_str()))
            .filter(Column::DeletedAt.is_null());
        if let Some(parent) = parent {
            query = query.filter(Column::ParentId.eq(parent.to_string()));
        }
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

    /// Up to `limit` of `user`'s tokens minted by any of `parents` (deleted ones included), in id
    /// order after `after`: one page of a walk down a token tree.
    #[tracing::instrument(level = "debug", name = "db.children_of", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn children_of(
        &self,
        user: &UserId,
        parents: &[TokenId],
        after: Option<TokenId>,
        limit: u64,
    ) -> Result<Vec<TokenRecord>> {
        let mut query = Tokens::find()
            .filter(Column::UserId.eq(user.as_str()))
            .filter(Column::ParentId.is_in(parents.iter().map(ToString::to_string)));
        if let Some(after) = after {
            query = query.filter(Column::Id.gt(after.to_string()));
        }
        let models = query
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(self.db())
            .await
            .map_err(db_error)?;
        models.into_iter().map(from_model).collect()
    }

    /// Every token that has not expired but must not verify (suspended, revoked or deleted).
    pub async fn denied_tokens(&self, now: Timestamp) -> Result<Vec<DeniedToken>> {
        let rows = denied_since(now)
            .into_tuple::<StateRow>()
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().filter_map(denied_from_row).collect())
    }

    /// A page of the tokens [`denied_tokens`](Self::denied_tokens) returns for `now` that have
    /// no status list entry (minted before tokenmint published lists), in (expiry, id) order
    /// after `after`: what a change stream started from scratch sends first, since no list
    /// speaks for them. Also returns where the next page starts, if the page was full (counted
    /// in rows read, so that an unreadable row does not end the paging early).
    pub async fn denied_unlisted_tokens(
        &self,
        now: Timestamp,
        after: Option<&DeniedRowKey>,
        limit: u64,
    ) -> Result<(Vec<DeniedToken>, Option<DeniedRowKey>)> {
        let rows = unlisted_denied_page(now, after, limit)
            .into_tuple::<StateRow>()
            .all(self.db())
            .await
            .map_err(db_error)?;
        let next = (rows.len() as u64 >= limit)
            .then(|| {
                rows.last().map(|(id, _, _, expires_at)| DeniedRowKey {
                    expires_at: Timestamp(*expires_at),
                    id: id.clone(),
                })
            })
            .flatten();
        Ok((rows.into_iter().filter_map(denied_from_row).collect(), next))
    }

    /// The current deny state of each of `ids` (for applying change-log events).
    pub async fn token_states(&self, ids: &[TokenId]) -> Result<Vec<DeniedToken>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = state_columns()
            .filter(Column::Id.is_in(ids.iter().map(ToString::to_string)))
            .into_tuple::<StateRow>()
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().filter_map(denied_from_row).collect())
    }

    /// Removes tombstones of tokens that expired before `cutoff` (nothing can verify them
    /// anymore), and clears their bits in their status lists' committed-position bitmaps in the
    /// same transaction, so that their entries keep reading INVALID once the rows are gone.
    pub async fn purge_expired_tombstones(&self, cutoff: Timestamp) -> Result<u64> {
        let postgres = self.backend() == super::Backend::Postgres;
        // `DENIED_ROWS` is implied by `deleted_at IS NOT NULL`; spelled out so that the partial
        // index serves the query.
        let sql = format!(
            "DELETE FROM tokens WHERE deleted_at IS NOT NULL AND {DENIED_ROWS} AND expires_at < {} \
             RETURNING status_list_id, status_pos",
            if postgres { "$1" } else { "?" }
        );
        let _turn = self.write_turn().await;
        let result: std::result::Result<u64, sqlx::Error> = async {
            macro_rules! purge {
                ($txn:expr) => {{
                    let mut txn = $txn;
                    let purged: Vec<(Option<String>, Option<i64>)> =
                        sqlx::query_as(AssertSqlSafe(sql.as_str()))
                            .bind(cutoff.0)
                            .fetch_all(&mut *txn)
                            .await?;
                    let mut listed = Vec::new();
                    for (list, position) in &purged {
                        if let (Some(list), Some(position)) = (list, position) {
                            // An unreadable position would leave a bit set without its row:
                            // fail the purge (and roll it back) instead.
                            let position = u32::try_from(*position).map_err(|_| {
                                sqlx::Error::Decode("a token's status_pos is out of range".into())
                            })?;
                            listed.push((list.as_str(), position));
                        }
                    }
                    clear_block_bits!(txn, &changes_of(listed), postgres);
                    txn.commit().await?;
                    purged.len() as u64
                }};
            }
            Ok(if postgres {
                purge!(self.db().get_postgres_connection_pool().begin().await?)
            } else {
                purge!(self.db().get_sqlite_connection_pool().begin().await?)
            })
        }
        .await;
        result.map_err(|e| db_error(super::from_sqlx(e)))
    }
}

/// The rows that must not verify: suspended, revoked or deleted. Word for word the predicate of
/// the partial index `idx_tokens_denied_expires` (migration 9), which SQLite uses only for a
/// query that repeats it; a bound parameter in place of `'active'` would not match either.
pub(super) const DENIED_ROWS: &str = "(status <> 'active' OR deleted_at IS NOT NULL)";

/// Rows without a status-list entry, as the predicate of `idx_tokens_unlisted_denied` (migration
/// 11) states it, together with [`DENIED_ROWS`]. Not `status_list_id IS NULL`: SQLite would then
/// answer from the status-list index, every token minted before lists, expired ones included.
const UNLISTED_ROWS: &str = "COALESCE(status_list_id, '') = ''";

/// A token's id, status, deletion time and expiry: what its deny state is made of.
type StateRow = (String, String, Option<i64>, i64);

/// A query for the [`StateRow`] of tokens.
fn state_columns() -> sea_orm::Select<Tokens> {
    Tokens::find().select_only().columns([
        Column::Id,
        Column::Status,
        Column::DeletedAt,
        Column::ExpiresAt,
    ])
}

/// The [`StateRow`]s of the denied tokens that expire after `now`, read through the partial
/// index on denied rows (a mint never writes to it).
fn denied_since(now: Timestamp) -> sea_orm::Select<Tokens> {
    state_columns()
        .filter(Expr::cust(DENIED_ROWS))
        .filter(Column::ExpiresAt.gt(now.0))
}

/// One page of [`Store::denied_unlisted_tokens`].
fn unlisted_denied_page(
    now: Timestamp,
    after: Option<&DeniedRowKey>,
    limit: u64,
) -> sea_orm::Select<Tokens> {
    let mut query = denied_since(now).filter(Expr::cust(UNLISTED_ROWS));
    if let Some(after) = after {
        query = query
            .filter(Column::ExpiresAt.gte(after.expires_at.0))
            .filter(
                Condition::any()
                    .add(Column::ExpiresAt.gt(after.expires_at.0))
                    .add(Column::Id.gt(after.id.as_str())),
            );
    }
    query
        .order_by_asc(Column::ExpiresAt)
        .order_by_asc(Column::Id)
        .limit(limit)
}

fn denied_from_row((id, status, deleted_at, expires_at): StateRow) -> Option<DeniedToken> {
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
        template_id: m
            .template_id
            .as_deref()
            .map(|t| TemplateId::parse(t, "template_id"))
            .transpose()
            .map_err(|_| corrupt("template_id"))?,
        template_version: m.template_version,
        status: StoredStatus::parse(&m.status).ok_or_else(|| corrupt("status"))?,
        checksum: m.checksum.clone(),
        key_id: KeyId::new(m.key_id.clone()),
        created_by: UserId::parse(&m.created_by).map_err(|_| corrupt("created_by"))?,
        updated_by: UserId::parse(&m.updated_by).map_err(|_| corrupt("updated_by"))?,
        created_at: Timestamp(m.created_at),
        updated_at: Timestamp(m.updated_at),
        expires_at: Timestamp(m.expires_at),
        last_used_at: m.last_used_at.map(Timestamp),
        last_used_ip: m
            .last_used_ip
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| corrupt("last_used_ip"))?,
        deleted_at: m.deleted_at.map(Timestamp),
        parent_id: m
            .parent_id
            .as_deref()
            .map(|p| TokenId::parse(p, "parent_id"))
            .transpose()
            .map_err(|_| corrupt("parent_id"))?,
        status_entry: match (m.status_list_id.as_deref(), m.status_idx) {
            (None, None) => None,
            (Some(list), Some(index)) => Some(StatusEntry {
                list: StatusListId::parse(list).ok_or_else(|| corrupt("status_list_id"))?,
                index: u32::try_from(index).map_err(|_| corrupt("status_idx"))?,
            }),
            _ => return Err(corrupt("status_list_id")),
        },
        status_position: m
            .status_pos
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("status_pos"))?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::{ConnectionTrait, QueryTrait, Statement};

    use super::*;

    /// The query plan SQLite chooses for `query`, one line per step.
    async fn plan_of(store: &Store, query: sea_orm::Select<Tokens>) -> String {
        let built = query.build(store.db().get_database_backend());
        let explain = Statement::from_sql_and_values(
            built.db_backend,
            format!("EXPLAIN QUERY PLAN {}", built.sql),
            built.values.map(|v| v.0).unwrap_or_default(),
        );
        let rows = store.db().query_all_raw(explain).await.unwrap();
        rows.iter()
            .map(|row| row.try_get::<String>("", "detail").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The start-up deny list and a stream's opening snapshot read the denied rows through the
    /// partial index, never a scan of every live token (which is what they did when the index
    /// covered every row and a mint paid to maintain it).
    #[tokio::test]
    async fn denied_token_queries_read_only_the_denied_rows_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::migrated_sqlite_in(dir.path(), 1, Duration::from_secs(5)).await;
        let now = Timestamp::now();
        let after = DeniedRowKey {
            expires_at: now,
            id: TokenId::generate().to_string(),
        };
        let plan = plan_of(&store, denied_since(now)).await;
        assert!(
            plan.contains("USING INDEX idx_tokens_denied_expires"),
            "{plan}"
        );
        // A stream's snapshot reads only the unlisted ones, in its order (no sort step): its
        // cost does not grow with the revokes of listed tokens.
        for query in [
            unlisted_denied_page(now, None, 1_000),
            unlisted_denied_page(now, Some(&after), 1_000),
        ] {
            let plan = plan_of(&store, query).await;
            assert!(
                plan.contains("USING INDEX idx_tokens_unlisted_denied")
                    && !plan.contains("TEMP B-TREE"),
                "{plan}"
            );
        }
    }

    /// A stream's opening snapshot pages through every denied token without a list entry, once
    /// each: not the active ones, not the listed ones, not those expired before the horizon.
    #[tokio::test]
    async fn the_unlisted_denied_tokens_come_page_by_page_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::migrated_sqlite_in(dir.path(), 1, Duration::from_secs(5)).await;
        let now = Timestamp(1_700_000_000_000_000);
        let records: Vec<TokenRecord> = (0..12)
            .map(|n| {
                let mut record = TokenRecord::sample(n);
                // Three tokens share each expiry, so pages split ties on the id.
                record.expires_at = now.plus_secs(1 + (n / 3) as i64);
                record.status = if n % 4 == 3 {
                    StoredStatus::Active
                } else {
                    StoredStatus::Revoked
                };
                if n == 5 {
                    record.status_entry = Some(StatusEntry {
                        list: StatusListId::generate(),
                        index: 1,
                    });
                }
                record
            })
            .collect();
        let mut expired = TokenRecord::sample(99);
        expired.status = StoredStatus::Suspended;
        expired.expires_at = now;
        let mut all = records.clone();
        all.push(expired);
        crate::store::token_batch::BatchWriter::new(store.clone())
            .write(&all, &[])
            .await
            .unwrap();

        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = store
                .denied_unlisted_tokens(now, after.as_ref(), 2)
                .await
                .unwrap();
            assert!(page.len() <= 2);
            seen.extend(page.into_iter().map(|token| token.id));
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let expected: Vec<TokenId> = records
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 4 != 3 && *n != 5)
            .map(|(_, record)| record.id)
            .collect();
        let mut sorted = seen.clone();
        sorted.sort();
        let mut wanted = expected.clone();
        wanted.sort();
        assert_eq!(sorted, wanted);
        assert_eq!(seen.len(), expected.len(), "no token twice");
    }
}
