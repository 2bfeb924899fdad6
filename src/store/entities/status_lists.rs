//! The `status_lists` table.

use sea_orm::entity::prelude::*;

/// One published Token Status List.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "status_lists")]
pub struct Model {
    /// 128 random bits, base64url: the last segment of the list's URI.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The URI baked into every token of the list, as it was when the list opened.
    pub uri: String,
    /// Entries in the list.
    pub size: i64,
    /// Bits per entry.
    pub bits: i32,
    /// The index permutation's key, hex (hides issue order; not a secret).
    pub perm_key: String,
    /// Positions reserved so far (in blocks, by the owner).
    pub next_pos: i64,
    /// The server process that fills the list (random per process): no other reserves in it.
    pub owner: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
