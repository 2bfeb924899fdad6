//! `templates`: reusable token recipes. `(user_id, name)` is unique: the database, not a
//! read-then-insert, decides which of several concurrent creates of one name wins.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Templates::Table)
                    .if_not_exists()
                    .col(string(Templates::Id).primary_key())
                    .col(string(Templates::UserId))
                    .col(string(Templates::Name))
                    .col(string_null(Templates::EnterpriseId))
                    .col(text(Templates::Description))
                    .col(text(Templates::TokenScopes))
                    .col(text(Templates::AllowedIps))
                    .col(text(Templates::TokenLimits))
                    .col(big_integer(Templates::DefaultDurationSeconds))
                    .col(big_integer(Templates::Version))
                    .col(big_integer(Templates::CreatedAt))
                    .col(big_integer(Templates::UpdatedAt))
                    .col(string(Templates::CreatedBy))
                    .col(string(Templates::UpdatedBy))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_templates_user_name")
                    .table(Templates::Table)
                    .col(Templates::UserId)
                    .col(Templates::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_templates_user_created")
                    .table(Templates::Table)
                    .col(Templates::UserId)
                    .col(Templates::CreatedAt)
                    .col(Templates::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Templates::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Templates {
    Table,
    Id,
    UserId,
    Name,
    EnterpriseId,
    Description,
    TokenScopes,
    AllowedIps,
    TokenLimits,
    DefaultDurationSeconds,
    Version,
    CreatedAt,
    UpdatedAt,
    CreatedBy,
    UpdatedBy,
}
