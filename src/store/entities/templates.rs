//! The `templates` table.

use sea_orm::entity::prelude::*;

/// One template row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub enterprise_id: Option<String>,
    pub description: String,
    /// Space-separated scope names.
    pub token_scopes: String,
    /// JSON array of CIDR strings.
    pub allowed_ips: String,
    /// JSON of `domain::TokenLimits`.
    pub token_limits: String,
    pub default_duration_seconds: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: String,
    pub updated_by: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
