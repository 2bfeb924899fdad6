//! The change log (`token_events`): every status or metadata change, and every key-set change,
//! is appended in the same transaction as the change itself. Servers poll it (see
//! `issuance::change_feed`) so that changes made elsewhere reach their in-memory state.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entities::token_events::{self, Column, Entity as TokenEvents};
use super::{Store, db_error};
use crate::domain::{ChangeEvent, EventKind, Timestamp, TokenId};
use crate::error::Result;

impl From<token_events::Model> for ChangeEvent {
    fn from(m: token_events::Model) -> Self {
        Self {
            seq: m.seq,
            kind: if m.kind == EventKind::KeysChanged.as_str() {
                EventKind::KeysChanged
            } else {
                EventKind::TokenChanged
            },
            token_id: m
                .token_id
                .as_deref()
                .and_then(|id| TokenId::parse(id, "token_id").ok()),
            created_at: Timestamp(m.created_at),
        }
    }
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
    /// Up to `limit` events after log position `seq`, in log order.
    pub async fn events_after(&self, seq: i64, limit: u64) -> Result<Vec<ChangeEvent>> {
        let models = TokenEvents::find()
            .filter(Column::Seq.gt(seq))
            .order_by_asc(Column::Seq)
            .limit(limit)
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(models.into_iter().map(ChangeEvent::from).collect())
    }

    /// The events at log positions `seqs` that exist (committed), in log order.
    pub async fn events_at(&self, seqs: &[i64]) -> Result<Vec<ChangeEvent>> {
        let mut events = Vec::new();
        for chunk in seqs.chunks(500) {
            let models = TokenEvents::find()
                .filter(Column::Seq.is_in(chunk.iter().copied()))
                .order_by_asc(Column::Seq)
                .all(self.db())
                .await
                .map_err(db_error)?;
            events.extend(models.into_iter().map(ChangeEvent::from));
        }
        Ok(events)
    }

    /// The highest committed log position, 0 for an empty log.
    pub async fn latest_event_seq(&self) -> Result<i64> {
        let latest = TokenEvents::find()
            .order_by_desc(Column::Seq)
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(latest.map_or(0, |m| m.seq))
    }

    /// The lowest committed log position, `None` for an empty log.
    pub async fn oldest_event_seq(&self) -> Result<Option<i64>> {
        let oldest = TokenEvents::find()
            .order_by_asc(Column::Seq)
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(oldest.map(|m| m.seq))
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
