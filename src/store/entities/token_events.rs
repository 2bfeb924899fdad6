//! The `token_events` table: the change log polled by every server.

use sea_orm::entity::prelude::*;

/// One change: a token's status or metadata changed, or the key set changed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "token_events")]
pub struct Model {
    /// The position in the log (increasing; replicas read from their cursor).
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// `token` (a token changed) or `keys` (the key set changed).
    pub kind: String,
    /// The changed token, for `token` events.
    pub token_id: Option<String>,
    /// Unix seconds; old entries are pruned.
    pub created_at: i64,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
