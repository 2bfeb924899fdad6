//! The `tokens` table.

use sea_orm::entity::prelude::*;

/// One token's metadata row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub description: String,
    /// Space-separated scope names.
    pub scopes: String,
    pub enterprise_id: Option<String>,
    /// JSON array of CIDR strings.
    pub ip_restrict: String,
    /// JSON of `domain::TokenLimits`.
    pub token_limits: String,
    pub admin: bool,
    pub template_id: Option<String>,
    pub template_version: i64,
    pub status: String,
    pub checksum: String,
    pub key_id: String,
    pub created_by: String,
    pub updated_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
    pub deleted_at: Option<i64>,
    /// The minting token's id; `None` for a root token.
    pub parent_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
