//! The `signing_keys` table.

use sea_orm::entity::prelude::*;

/// One signing key; the private half is sealed (AES-256-GCM under the master key).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    pub algorithm: String,
    pub public_key: Vec<u8>,
    pub sealed_private_key: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// HMAC of the other columns under the master key (`issuance::key_rows`); `NULL` before
    /// the upgrade that fills it in.
    pub mac: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
