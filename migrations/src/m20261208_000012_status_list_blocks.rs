//! Status lists rendered from committed-position bitmaps instead of an index over every token.
//!
//! Migration 8 indexed `tokens.status_list_id` so that a list could be rendered from its rows;
//! every CreateToken paid one B-tree insert in random order for it, the largest share of what
//! status lists added to a mint. Now:
//!
//! - `status_list_blocks` holds, per list and per block of 64 consecutive *positions*
//!   (`BLOCK_POSITIONS` in `src/store/status_blocks.rs`; positions are what the list's
//!   permutation turns into indices), one bit per committed token, in a `BIGINT`. The group
//!   commit ORs its batch's bits into them in the batch's own transaction, one statement for
//!   the few rows a batch touches, not one index entry per token.
//! - `tokens.status_pos` keeps each new token's position (to clear its bit when its tombstone is
//!   purged, and to tell new rows from those minted before this migration).
//!
//! The indexes are migration 13's: on PostgreSQL this migration's `ADD COLUMN` takes an
//! exclusive lock on `tokens` (reads wait too) until its transaction commits, so it must not
//! also build an index over every row. Each step runs in a transaction on SQLite as well, so a
//! crash cannot leave the column added but the migration unrecorded.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatusListBlocks::Table)
                    .if_not_exists()
                    .col(string(StatusListBlocks::ListId))
                    .col(big_integer(StatusListBlocks::FirstPos))
                    .col(big_integer(StatusListBlocks::Bits))
                    .primary_key(
                        Index::create()
                            .col(StatusListBlocks::ListId)
                            .col(StatusListBlocks::FirstPos),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(big_integer_null(Tokens::StatusPos))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Tokens::StatusPos)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(StatusListBlocks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum StatusListBlocks {
    Table,
    ListId,
    FirstPos,
    Bits,
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    StatusPos,
}
