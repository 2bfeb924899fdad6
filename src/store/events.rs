//! The change log (`token_events`): every status or metadata change, and every key-set change,
//! is appended in the same transaction as the change itself. Servers poll it (see
//! `issuance::change_feed`) so that changes made elsewhere reach their in-memory state.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
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

/// Appends an event inside the caller's transaction; on PostgreSQL also notifies every server's
/// change feed, on commit ([`super::notify`]).
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
    TokenEvents::insert(event).exec(conn).await?;
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        conn.execute_unprepared(super::notify::NOTIFY_CHANGE)
            .await?;
    }
    Ok(())
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

    /// The log's oldest and newest positions, and when the entry at `at` was written (`None`
    /// if there is none), in one round trip: what a feed checks before each read.
    pub async fn log_shape(&self, at: i64) -> Result<LogShape> {
        let backend = self.db().get_database_backend();
        let placeholder = if backend == DbBackend::Postgres {
            "$1"
        } else {
            "?"
        };
        let sql = format!(
            "SELECT (SELECT MIN(seq) FROM token_events) AS oldest, \
                    (SELECT MAX(seq) FROM token_events) AS latest, \
                    (SELECT created_at FROM token_events WHERE seq = {placeholder}) AS written_at"
        );
        let statement = Statement::from_sql_and_values(backend, sql, [at.into()]);
        let row = self.db().query_one_raw(statement).await.map_err(db_error)?;
        let get = |column: &str| -> Result<Option<i64>> {
            row.as_ref()
                .map_or(Ok(None), |row| row.try_get::<Option<i64>>("", column))
                .map_err(db_error)
        };
        Ok(LogShape {
            oldest: get("oldest")?,
            latest: get("latest")?.unwrap_or(0),
            written_at: get("written_at")?.map(Timestamp),
        })
    }

    /// Deletes the log's oldest events: every one before the first written at or after
    /// `cutoff`, and never the newest. Only a prefix goes (write times come from several clocks
    /// and are taken before the position is, so they are not in log order), and an idle log is
    /// never left empty: a feed recognises the history it read by its newest entry
    /// (`issuance::change_feed`).
    pub async fn prune_events(&self, cutoff: Timestamp) -> Result<u64> {
        let _turn = self.write_turn().await;
        let first_kept = TokenEvents::find()
            .filter(Column::CreatedAt.gte(cutoff.0))
            .order_by_asc(Column::Seq)
            .one(self.db())
            .await
            .map_err(db_error)?;
        let keep_from = match first_kept {
            Some(event) => event.seq,
            None => self.latest_event_seq().await?,
        };
        let result = TokenEvents::delete_many()
            .filter(Column::Seq.lt(keep_from))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }
}

/// What [`Store::log_shape`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogShape {
    /// The lowest position left, `None` for an empty log.
    pub oldest: Option<i64>,
    /// The highest position, 0 for an empty log.
    pub latest: i64,
    /// When the entry at the asked position was written, `None` if there is none.
    pub written_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A new migrated SQLite store in `dir`.
    async fn store_in(dir: &std::path::Path) -> Store {
        Store::migrated_sqlite_in(dir, 2, Duration::from_secs(5)).await
    }

    /// Appends one event written at `at`.
    async fn append_at(store: &Store, at: i64) {
        append(store.db(), EventKind::TokenChanged, None, Timestamp(at))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn pruning_removes_only_a_prefix_and_never_the_newest_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let first = store.latest_event_seq().await.unwrap() + 1;
        // Write times out of log order, as when clocks or lock waits differ between writers.
        for at in [100, 300, 150, 400] {
            append_at(&store, at).await;
        }
        store.prune_events(Timestamp(200)).await.unwrap();
        let left = store.log_shape(first + 3).await.unwrap();
        assert_eq!(left.oldest, Some(first + 1), "150 stays: it follows 300");
        assert_eq!(left.written_at, Some(Timestamp(400)));

        store.prune_events(Timestamp(1_000)).await.unwrap();
        let left = store.log_shape(first + 3).await.unwrap();
        assert_eq!(
            left.oldest,
            Some(first + 3),
            "an idle log keeps its newest entry"
        );
        assert_eq!(left.latest, first + 3);
    }
}
