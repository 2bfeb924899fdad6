//! `signing_keys.mac`: an HMAC under a key derived from the master key over each row's kid,
//! algorithm, public key, sealed private key and lifecycle, so that a row written by someone
//! without the master key is never trusted. `NULL` on rows made before this column existed: the
//! first server or CLI start with the master key fills it in for rows whose sealed private key
//! proves them genuine (`issuance::key_rows::upgrade`); a migration has no master key.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .add_column(blob_null(SigningKeys::Mac))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .drop_column(SigningKeys::Mac)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Mac,
}
