//! Status lists: each one filled by the server process that opened it, in blocks of positions
//! reserved by a compare-and-set on its counter; and the entries a list is rendered from.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::entities::status_lists::{self, Column, Entity as StatusLists};
use super::entities::tokens::{Column as TokenColumn, Entity as Tokens};
use super::{Store, db_error};
use crate::domain::{StatusListId, StoredStatus, Timestamp};
use crate::error::{Error, Result};

/// A status list as stored (or about to be opened).
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

impl Store {
    /// Opens `list` for `owner`, its first `reserved` positions taken.
    #[tracing::instrument(level = "debug", name = "db.open_status_list", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn open_status_list(
        &self,
        list: &StatusListRow,
        owner: &str,
        reserved: u32,
    ) -> Result<()> {
        let row = status_lists::ActiveModel {
            id: Set(list.id.to_string()),
            uri: Set(list.uri.clone()),
            size: Set(i64::from(list.size)),
            bits: Set(i32::from(list.bits)),
            perm_key: Set(hex::encode(&list.perm_key)),
            next_pos: Set(i64::from(reserved)),
            owner: Set(owner.to_owned()),
            created_at: Set(Timestamp::now().0),
        };
        let _turn = self.write_turn().await;
        StatusLists::insert(row)
            .exec_without_returning(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Reserves positions `[reserved, reserved + len)` of `owner`'s list `id`: a compare-and-set
    /// on its counter, which must stand at `reserved` (where the owner's last reservation
    /// ended) and leave room. False when it does not: the list is full, or the counter moved
    /// under its owner, which only a database restored from a backup does (the positions after
    /// it may belong to tokens the restore lost), or the row is gone.
    #[tracing::instrument(level = "debug", name = "db.extend_status_list", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn extend_status_list(
        &self,
        id: &StatusListId,
        owner: &str,
        reserved: u32,
        len: u32,
    ) -> Result<bool> {
        let (reserved, len) = (i64::from(reserved), i64::from(len));
        let _turn = self.write_turn().await;
        let result = StatusLists::update_many()
            .col_expr(Column::NextPos, Expr::value(reserved + len))
            .filter(Column::Id.eq(id.as_str()))
            .filter(Column::Owner.eq(owner))
            .filter(Column::NextPos.eq(reserved))
            .filter(Expr::col(Column::Size).gte(reserved + len))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    /// Every list (to answer for an id without a query per unknown id).
    pub async fn status_lists(&self) -> Result<Vec<StatusListRow>> {
        StatusLists::find()
            .all(self.db())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(row_of)
            .collect()
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

    /// Every token row of list `id`: its index, and its stored status if the token is usable
    /// or suspended at `now` (`None`: deleted, revoked or expired). Every index without a row
    /// reads INVALID.
    #[tracing::instrument(level = "debug", name = "db.status_list_entries", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn status_list_entries(
        &self,
        id: &StatusListId,
        now: Timestamp,
    ) -> Result<Vec<(u32, Option<StoredStatus>)>> {
        let rows: Vec<(Option<i64>, String, Option<i64>, i64)> = Tokens::find()
            .select_only()
            .column(TokenColumn::StatusIdx)
            .column(TokenColumn::Status)
            .column(TokenColumn::DeletedAt)
            .column(TokenColumn::ExpiresAt)
            .filter(TokenColumn::StatusListId.eq(id.as_str()))
            .into_tuple()
            .all(self.db())
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(index, status, deleted_at, expires_at)| {
                let index = index.and_then(|i| u32::try_from(i).ok());
                match (index, StoredStatus::parse(&status)) {
                    (Some(index), Some(status)) => {
                        let usable = deleted_at.is_none()
                            && expires_at > now.0
                            && status != StoredStatus::Revoked;
                        Ok((index, usable.then_some(status)))
                    }
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

    /// A list of 1024 entries.
    fn fresh() -> StatusListRow {
        let id = StatusListId::generate();
        StatusListRow {
            uri: format!("https://t.example/lists/{id}"),
            id,
            size: 1024,
            bits: 2,
            perm_key: vec![7; 32],
        }
    }

    #[tokio::test]
    async fn the_owner_extends_its_list_block_by_block_until_it_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let list = fresh();
        store.open_status_list(&list, "a", 512).await.unwrap();
        assert_eq!(
            store.status_list(&list.id).await.unwrap(),
            Some(list.clone())
        );
        assert!(
            store
                .extend_status_list(&list.id, "a", 512, 256)
                .await
                .unwrap()
        );
        assert!(
            store
                .extend_status_list(&list.id, "a", 768, 256)
                .await
                .unwrap()
        );
        assert!(
            !store
                .extend_status_list(&list.id, "a", 1024, 1)
                .await
                .unwrap(),
            "a full list takes no more"
        );
    }

    #[tokio::test]
    async fn a_counter_that_moved_or_another_owner_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let list = fresh();
        store.open_status_list(&list, "a", 256).await.unwrap();
        assert!(
            !store
                .extend_status_list(&list.id, "b", 256, 256)
                .await
                .unwrap(),
            "only the owner reserves"
        );
        assert!(
            !store
                .extend_status_list(&list.id, "a", 512, 256)
                .await
                .unwrap(),
            "the counter is not where the owner left it (a restore took it back)"
        );
        assert!(
            !store
                .extend_status_list(&fresh().id, "a", 0, 256)
                .await
                .unwrap(),
            "a list that is gone"
        );
        assert!(
            store
                .extend_status_list(&list.id, "a", 256, 256)
                .await
                .unwrap()
        );
        assert_eq!(store.status_lists().await.unwrap(), vec![list]);
    }
}
