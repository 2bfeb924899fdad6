//! Status lists rendered from committed-position bitmaps instead of an index over every token.
//!
//! Migration 8 indexed `tokens.status_list_id` so that a list could be rendered from its rows;
//! every CreateToken paid one B-tree insert in random order for it, the largest share of what
//! status lists added to a mint. Now:
//!
//! - `status_list_blocks` holds, per list and per block of 4,096 consecutive *positions*
//!   (`BLOCK_POSITIONS` in `src/store/status_lists.rs`; positions are what the list's
//!   permutation turns into indices), one bit per committed token. The group commit sets the bits of its batch in the batch's own transaction: one row
//!   per batch (two at a block's edge), not one index entry per token.
//! - `tokens.status_pos` keeps each new token's position (to clear its bit when its tombstone is
//!   purged, and to tell new rows from those minted before this migration).
//! - `idx_tokens_status_list_denied` holds only the denied rows (suspended, revoked, deleted) of
//!   each list: a mint (an active row) never writes to it. Rendering sets the bitmap's entries
//!   VALID and then overrides the denied ones.
//! - The old index becomes partial (`status_pos IS NULL`): rows minted before this migration,
//!   whose lists have no blocks, keep rendering through it; new rows skip it.
//!
//! Both partial indexes are used only by queries that repeat their predicates word for word
//! (`src/store/status_lists.rs`; a test there checks the plans).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatusListBlocks::Table)
                    .if_not_exists()
                    .col(string(StatusListBlocks::ListId))
                    .col(big_integer(StatusListBlocks::FirstPos))
                    .col(binary(StatusListBlocks::Bits))
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
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tokens_status_list_denied ON tokens (status_list_id) \
             WHERE status <> 'active' OR deleted_at IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tokens_status_list_legacy ON tokens (status_list_id) \
             WHERE status_pos IS NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tokens_status_list")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tokens_status_list ON tokens (status_list_id)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tokens_status_list_legacy")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tokens_status_list_denied")
            .await?;
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
