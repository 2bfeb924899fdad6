//! The `templates` table.

use sea_orm::entity::prelude::*;

/// One template row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "templates")]
pub struct Model {
    /// The template id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// Unique per owner.
    pub name: String,
    /// The enterprise its tokens are bound to, if any.
    pub enterprise_id: Option<String>,
    /// Free text.
    pub description: String,
    /// Space-separated scope names.
    pub token_scopes: String,
    /// JSON array of CIDR strings.
    pub allowed_ips: String,
    /// JSON of `domain::TokenLimits`.
    pub token_limits: String,
    /// The lifetime of a token minted without one.
    pub default_duration_seconds: i64,
    /// Bumped by every update (optimistic concurrency).
    pub version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// The id of the token that created it.
    pub created_by: String,
    /// The id of the token that last changed it.
    pub updated_by: String,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
