//! The token repository: metadata rows, keyset-paginated listing and the start-up deny list. New
//! tokens and changes to existing ones are written by the group commit (`token_writer`).

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::tokens::{self, Column, Entity as Tokens};
use super::{Store, db_error, newest_first_page};
use crate::domain::{DeniedToken, ListCursor};
use crate::domain::{
    Description, EnterpriseId, IpRestriction, KeyId, Label, ScopeSet, StatusEntry, StatusListId,
    StoredStatus, TemplateId, Timestamp, TokenId, TokenLimits, TokenRecord, UserId,
};
use crate::error::{Error, Result};

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

    /// A page of the tokens [`denied_tokens`](Self::denied_tokens) returns for `now` that have
    /// no status list entry (minted before tokenmint published lists), in id order after
    /// `after`: what a change stream started from scratch sends first, since no list speaks for
    /// them. Also returns where the next page starts, if the page was full (counted in rows
    /// read, so that an unreadable row does not end the paging early).
    pub async fn denied_unlisted_tokens(
        &self,
        now: Timestamp,
        after: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<DeniedToken>, Option<String>)> {
        let mut query = Tokens::find()
            .select_only()
            .columns([
                Column::Id,
                Column::Status,
                Column::DeletedAt,
                Column::ExpiresAt,
            ])
            .filter(Column::StatusListId.is_null())
            .filter(Column::ExpiresAt.gt(now.0))
            .filter(
                Column::Status
                    .ne("active")
                    .or(Column::DeletedAt.is_not_null()),
            );
        if let Some(after) = after {
            query = query.filter(Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(Column::Id)
            .limit(limit)
            .into_tuple::<(String, String, Option<i64>, i64)>()
            .all(self.db())
            .await
            .map_err(db_error)?;
        let next = (rows.len() as u64 >= limit)
            .then(|| rows.last().map(|row| row.0.clone()))
            .flatten();
        Ok((rows.into_iter().filter_map(denied_from_row).collect(), next))
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
        let _turn = self.write_turn().await;
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
    })
}
