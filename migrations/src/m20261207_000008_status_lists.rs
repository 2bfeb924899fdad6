//! Token Status Lists (IETF draft-ietf-oauth-status-list): the `status_lists` table, one row per
//! published list, and each token's entry in one (`tokens.status_list_id`, `tokens.status_idx`).
//!
//! A list belongs to the server process that opened it (`owner`, random per process), which
//! reserves its positions in blocks by moving `next_pos` with a compare-and-set; a position
//! becomes an index through the list's keyed permutation (`perm_key`), so that indices do not
//! reveal issue order. `tokens.status_list_id` is indexed for rendering a list; the index is
//! not unique on `(list, idx)` because indices are unique by construction, and a unique index
//! in permuted (random) order made every group-commit batch touch pages all over the index.
//! Tokens minted before this migration have no entry.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatusLists::Table)
                    .if_not_exists()
                    .col(string(StatusLists::Id).primary_key())
                    .col(text(StatusLists::Uri))
                    .col(big_integer(StatusLists::Size))
                    .col(integer(StatusLists::Bits))
                    .col(string(StatusLists::PermKey))
                    .col(big_integer(StatusLists::NextPos))
                    .col(string(StatusLists::Owner))
                    .col(big_integer(StatusLists::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(string_null(Tokens::StatusListId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(big_integer_null(Tokens::StatusIdx))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tokens_status_list")
                    .table(Tokens::Table)
                    .col(Tokens::StatusListId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_tokens_status_list")
                    .table(Tokens::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Tokens::StatusIdx, Tokens::StatusListId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tokens::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(StatusLists::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum StatusLists {
    Table,
    Id,
    Uri,
    Size,
    Bits,
    PermKey,
    NextPos,
    Owner,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    StatusListId,
    StatusIdx,
}
