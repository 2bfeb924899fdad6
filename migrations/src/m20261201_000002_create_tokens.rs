//! `tokens`: token metadata. The signed token itself is never stored. A deleted token keeps its row
//! (`deleted_at` set) as a tombstone until it would have expired anyway.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tokens::Table)
                    .if_not_exists()
                    .col(string(Tokens::Id).primary_key())
                    .col(string(Tokens::UserId))
                    .col(string(Tokens::Label))
                    .col(text(Tokens::Description))
                    .col(text(Tokens::Scopes))
                    .col(string_null(Tokens::EnterpriseId))
                    .col(text(Tokens::IpRestrict))
                    .col(text(Tokens::TokenLimits))
                    .col(boolean(Tokens::Admin))
                    .col(string_null(Tokens::TemplateId))
                    .col(big_integer(Tokens::TemplateVersion))
                    .col(string(Tokens::Status))
                    .col(string(Tokens::Checksum))
                    .col(string(Tokens::KeyId))
                    .col(string(Tokens::CreatedBy))
                    .col(string(Tokens::UpdatedBy))
                    .col(big_integer(Tokens::CreatedAt))
                    .col(big_integer(Tokens::UpdatedAt))
                    .col(big_integer(Tokens::ExpiresAt))
                    .col(big_integer_null(Tokens::LastUsedAt))
                    .col(string_null(Tokens::LastUsedIp))
                    .col(big_integer_null(Tokens::DeletedAt))
                    .to_owned(),
            )
            .await?;
        // ListTokens: a user's tokens newest first, ties broken by id (keyset pagination).
        manager
            .create_index(
                Index::create()
                    .name("idx_tokens_user_created")
                    .table(Tokens::Table)
                    .col(Tokens::UserId)
                    .col(Tokens::CreatedAt)
                    .col(Tokens::Id)
                    .to_owned(),
            )
            .await?;
        // Start-up: load the not-yet-expired tokens that must not verify.
        manager
            .create_index(
                Index::create()
                    .name("idx_tokens_expires")
                    .table(Tokens::Table)
                    .col(Tokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tokens::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    UserId,
    Label,
    Description,
    Scopes,
    EnterpriseId,
    IpRestrict,
    TokenLimits,
    Admin,
    TemplateId,
    TemplateVersion,
    Status,
    Checksum,
    KeyId,
    CreatedBy,
    UpdatedBy,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    LastUsedAt,
    LastUsedIp,
    DeletedAt,
}
