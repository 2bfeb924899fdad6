//! `enterprise_members`: which users belong to which enterprise.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EnterpriseMembers::Table)
                    .if_not_exists()
                    .col(string(EnterpriseMembers::EnterpriseId))
                    .col(string(EnterpriseMembers::UserId))
                    .col(big_integer(EnterpriseMembers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(EnterpriseMembers::EnterpriseId)
                            .col(EnterpriseMembers::UserId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EnterpriseMembers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum EnterpriseMembers {
    Table,
    EnterpriseId,
    UserId,
    CreatedAt,
}
