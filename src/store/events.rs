//! The change log (`token_events`): every status or metadata change, and every key-set change,
//! is appended in the same transaction as the change itself. Servers poll it (see
//! `issuance::change_feed`) so that changes made elsewhere reach their in-memory state.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};

use super::entities::token_events::{self, Column, Entity as TokenEvents};
use super::{Store, db_error};
use crate::domain::{Timestamp, TokenId};
use crate::error::Result;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A token's status, metadata or deletion.
    TokenChanged,
    /// The set of signing keys (rotation).
    KeysChanged,
}

impl EventKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::TokenChanged => "token",
            Self::KeysChanged => "keys",
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Log position (unique; not necessarily visible in order across concurrent transactions).
    pub seq: i64,
    /// What changed.
    pub kind: EventKind,
    /// The token concerned, for token events.
    pub token_id: Option<TokenId>,
    /// When the change was written.
    pub created_at: Timestamp,
}

/// Appends an event inside the caller's transaction.
pub(crate) async fn append<C: ConnectionTrait>(
    conn: &C,
    kind: EventKind,
    token_id: Option<TokenId>,
    now: Timestamp,
) -> Result<(), DbErr> {
    let event = token_events::ActiveModel {
        kind: Set(kind.as_str().to_owned()),
        token_id: Set(token_id.map(|id| id.to_string())),
        created_at: Set(now.0),
        ..Default::default()
    };
    TokenEvents::insert(event).exec(conn).await.map(|_| ())
}

impl Store {
    /// Events written at or after `since`, oldest first.
    pub async fn events_since(&self, since: Timestamp) -> Result<Vec<ChangeEvent>> {
        let models = TokenEvents::find()
            .filter(Column::CreatedAt.gte(since.0))
            .order_by_asc(Column::Seq)
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(models
            .into_iter()
            .map(|m| ChangeEvent {
                seq: m.seq,
                kind: if m.kind == "keys" {
                    EventKind::KeysChanged
                } else {
                    EventKind::TokenChanged
                },
                token_id: m
                    .token_id
                    .as_deref()
                    .and_then(|id| TokenId::parse(id, "token_id").ok()),
                created_at: Timestamp(m.created_at),
            })
            .collect())
    }

    /// Deletes events older than `cutoff`.
    pub async fn prune_events(&self, cutoff: Timestamp) -> Result<u64> {
        let _turn = self.write_turn().await;
        let result = TokenEvents::delete_many()
            .filter(Column::CreatedAt.lt(cutoff.0))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }
}
