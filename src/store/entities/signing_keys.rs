//! The `signing_keys` table.

use sea_orm::entity::prelude::*;

/// One signing key; the private half is sealed (AES-256-GCM under the master key).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    /// The key id, the JWT header's `kid`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub algorithm: String,
    /// The public key (raw Ed25519 bytes or an uncompressed P-256 point).
    pub public_key: Vec<u8>,
    /// The private key, sealed under the master key with the `kid` as associated data.
    pub sealed_private_key: Vec<u8>,
    /// When the key was made (Unix seconds); the newest unretired key signs.
    pub created_at: i64,
    /// When the key stopped signing (Unix seconds); its tokens verify until they expire.
    pub retired_at: Option<i64>,
    /// HMAC of the other columns under the master key (`issuance::key_rows`); `NULL` before
    /// the upgrade that fills it in.
    pub mac: Option<Vec<u8>>,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
