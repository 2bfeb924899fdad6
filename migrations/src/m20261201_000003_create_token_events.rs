//! `token_events`: the change log every server polls, so that a revocation (or a key rotation) made
//! by another process on the same database reaches it within the poll interval.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(TokenEvents::Seq))
                    .col(string(TokenEvents::Kind))
                    .col(string_null(TokenEvents::TokenId))
                    .col(big_integer(TokenEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_token_events_created")
                    .table(TokenEvents::Table)
                    .col(TokenEvents::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum TokenEvents {
    Table,
    Seq,
    Kind,
    TokenId,
    CreatedAt,
}
