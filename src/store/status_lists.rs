//! Status lists: blocks of positions reserved for a server's new tokens, and the entries a
//! list is rendered from.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};

use super::entities::status_lists::{self, Column, Entity as StatusLists};
use super::entities::tokens::{Column as TokenColumn, Entity as Tokens};
use super::{Store, db_error};
use crate::domain::{StatusListId, StoredStatus, Timestamp};
use crate::error::{Error, Result};

/// A status list as stored (or to be opened, when no open list has room for a block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListRow {
    /// The list's id.
    pub id: StatusListId,
    /// The URI its tokens carry (and its `sub`).
    pub uri: String,
    /// Entries in the list.
    pub size: u32,
    /// Bits per entry.
    pub bits: u8,
    /// The index permutation's key.
    pub perm_key: Vec<u8>,
}

/// Positions `[start, start + len)` of a list, reserved for one server.
#[derive(Debug, Clone)]
pub struct ReservedBlock {
    /// The list.
    pub list: StatusListRow,
    /// The first position.
    pub start: u32,
    /// How many positions.
    pub len: u32,
}

/// How many times a reservation looks for an open list before opening one: another server may
/// take the last block of the list it found between the read and the update.
const RESERVE_ATTEMPTS: usize = 3;

impl Store {
    /// Reserves `len` consecutive positions in the oldest open list with room whose URI is
    /// `fresh`'s base (`<base>/<id>`), or opens `fresh` with its first `len` positions reserved.
    /// A position is never handed out twice: the counter moves in one conditional UPDATE. Lists
    /// under another base (a changed `status_list.base_uri`, another test server's address)
    /// are left alone, so that a token's URI always follows the configuration it was minted
    /// under.
    #[tracing::instrument(level = "debug", name = "db.reserve_status_block", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn reserve_status_block(
        &self,
        len: u32,
        fresh: StatusListRow,
    ) -> Result<ReservedBlock> {
        let _turn = self.write_turn().await;
        let base = fresh
            .uri
            .strip_suffix(fresh.id.as_str())
            .ok_or_else(|| Error::internal("a new status list's URI does not end in its id"))?;
        for _ in 0..RESERVE_ATTEMPTS {
            let open = StatusLists::find()
                .filter(Column::Closed.eq(false))
                .filter(
                    Expr::col(Column::NextPos)
                        .add(i64::from(len))
                        .lte(Expr::col(Column::Size)),
                )
                .order_by_asc(Column::CreatedAt)
                .all(self.db())
                .await
                .map_err(db_error)?;
            let same_base = open
                .into_iter()
                .find(|list| list.uri.strip_suffix(list.id.as_str()) == Some(base));
            let Some(open) = same_base else { break };
            if let Some(start) = self.take_positions(&open.id, len).await? {
                return Ok(ReservedBlock {
                    list: row_of(open)?,
                    start,
                    len,
                });
            }
        }
        let list = status_lists::ActiveModel {
            id: Set(fresh.id.to_string()),
            uri: Set(fresh.uri.clone()),
            size: Set(i64::from(fresh.size)),
            bits: Set(i32::from(fresh.bits)),
            perm_key: Set(hex::encode(&fresh.perm_key)),
            next_pos: Set(i64::from(len)),
            closed: Set(false),
            created_at: Set(Timestamp::now().0),
        };
        StatusLists::insert(list)
            .exec_without_returning(self.db())
            .await
            .map_err(db_error)?;
        Ok(ReservedBlock {
            list: fresh,
            start: 0,
            len,
        })
    }

    /// Moves list `id`'s counter on by `len` if it is open and has room; the first position
    /// taken, or `None` if another server got there first.
    async fn take_positions(&self, id: &str, len: u32) -> Result<Option<u32>> {
        let backend = self.db().get_database_backend();
        let len = i64::from(len);
        let (sql, values): (&str, Vec<sea_orm::Value>) = match backend {
            DbBackend::Postgres => (
                "UPDATE status_lists SET next_pos = next_pos + $1 \
                 WHERE id = $2 AND NOT closed AND next_pos + $1 <= size RETURNING next_pos",
                vec![len.into(), id.into()],
            ),
            // SQLite numbers each `?` on its own: the length is bound twice.
            _ => (
                "UPDATE status_lists SET next_pos = next_pos + ? \
                 WHERE id = ? AND NOT closed AND next_pos + ? <= size RETURNING next_pos",
                vec![len.into(), id.into(), len.into()],
            ),
        };
        let row = self
            .db()
            .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let next: i64 = row.try_get("", "next_pos").map_err(db_error)?;
        let start = u32::try_from(next - len)
            .map_err(|_| Error::internal(format!("status list {id} has a corrupt counter")))?;
        Ok(Some(start))
    }

    /// Closes every open list: no more blocks are handed out from them (blocks already held
    /// stay valid). A server does this when it starts and when it sees the change log go back
    /// in time, because a database restored from a backup has counters that went back too,
    /// and would hand the indices of tokens lost in the restore out again.
    pub async fn close_open_status_lists(&self) -> Result<u64> {
        let _turn = self.write_turn().await;
        let result = StatusLists::update_many()
            .col_expr(Column::Closed, Expr::value(true))
            .filter(Column::Closed.eq(false))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected)
    }

    /// The list `id`, if it exists.
    pub async fn status_list(&self, id: &StatusListId) -> Result<Option<StatusListRow>> {
        StatusLists::find_by_id(id.to_string())
            .one(self.db())
            .await
            .map_err(db_error)?
            .map(row_of)
            .transpose()
    }

    /// The entries of list `id` whose tokens are usable or suspended at `now` (not deleted,
    /// not revoked, not expired), with their stored status. Every other entry of the list
    /// reads INVALID.
    #[tracing::instrument(level = "debug", name = "db.status_list_entries", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn status_list_entries(
        &self,
        id: &StatusListId,
        now: Timestamp,
    ) -> Result<Vec<(u32, StoredStatus)>> {
        let rows: Vec<(Option<i64>, String)> = Tokens::find()
            .select_only()
            .column(TokenColumn::StatusIdx)
            .column(TokenColumn::Status)
            .filter(TokenColumn::StatusListId.eq(id.as_str()))
            .filter(TokenColumn::DeletedAt.is_null())
            .filter(TokenColumn::ExpiresAt.gt(now.0))
            .filter(TokenColumn::Status.is_in([
                StoredStatus::Active.as_str(),
                StoredStatus::Suspended.as_str(),
            ]))
            .into_tuple()
            .all(self.db())
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(index, status)| {
                let index = index.and_then(|i| u32::try_from(i).ok());
                match (index, StoredStatus::parse(&status)) {
                    (Some(index), Some(status)) => Ok((index, status)),
                    _ => Err(Error::internal(format!(
                        "a token of status list {id} has an unreadable entry"
                    ))),
                }
            })
            .collect()
    }
}

fn row_of(m: status_lists::Model) -> Result<StatusListRow> {
    let corrupt =
        |what: &str| Error::internal(format!("status list {} has a corrupt {what}", m.id));
    Ok(StatusListRow {
        id: StatusListId::parse(&m.id).ok_or_else(|| corrupt("id"))?,
        uri: m.uri.clone(),
        size: u32::try_from(m.size).map_err(|_| corrupt("size"))?,
        bits: u8::try_from(m.bits).map_err(|_| corrupt("bits"))?,
        perm_key: hex::decode(&m.perm_key).map_err(|_| corrupt("perm_key"))?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn store_in(dir: &std::path::Path) -> Store {
        Store::migrated_sqlite_in(dir, 2, Duration::from_secs(5)).await
    }

    /// A list of 1024 entries under `base`.
    fn fresh(base: &str) -> StatusListRow {
        let id = StatusListId::generate();
        StatusListRow {
            uri: format!("{base}/{id}"),
            id,
            size: 1024,
            bits: 2,
            perm_key: vec![7; 32],
        }
    }

    #[tokio::test]
    async fn blocks_fill_a_list_in_order_then_a_new_list_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let base = "https://t.example/lists";
        let first = store.reserve_status_block(512, fresh(base)).await.unwrap();
        let second = store.reserve_status_block(512, fresh(base)).await.unwrap();
        let third = store.reserve_status_block(512, fresh(base)).await.unwrap();
        assert_eq!((first.start, second.start), (0, 512));
        assert_eq!(
            first.list, second.list,
            "the open list takes blocks until full"
        );
        assert_ne!(third.list.id, first.list.id, "a full list takes no more");
        assert_eq!(third.start, 0);
        assert_eq!(
            store.status_list(&first.list.id).await.unwrap(),
            Some(first.list)
        );
    }

    #[tokio::test]
    async fn closed_lists_and_lists_under_another_base_take_no_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let old = store
            .reserve_status_block(4, fresh("https://old.example/lists"))
            .await
            .unwrap();
        let moved = store
            .reserve_status_block(4, fresh("https://new.example/lists"))
            .await
            .unwrap();
        assert_ne!(
            moved.list.id, old.list.id,
            "a changed base opens its own list"
        );
        assert!(moved.list.uri.starts_with("https://new.example/lists/"));
        assert_eq!(store.close_open_status_lists().await.unwrap(), 2);
        let after = store
            .reserve_status_block(4, fresh("https://new.example/lists"))
            .await
            .unwrap();
        assert_ne!(
            after.list.id, moved.list.id,
            "a closed list takes no more blocks"
        );
        assert_eq!(after.start, 0);
    }
}
