//! The `tokens` table.

use sea_orm::entity::prelude::*;

/// One token's metadata row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    /// The token id, the JWT's `jti`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// A name for people.
    pub label: String,
    /// Free text.
    pub description: String,
    /// Space-separated scope names.
    pub scopes: String,
    /// The enterprise the token is bound to, if any.
    pub enterprise_id: Option<String>,
    /// JSON array of CIDR strings.
    pub ip_restrict: String,
    /// JSON of `domain::TokenLimits`.
    pub token_limits: String,
    /// Whether the token may act for other users.
    pub admin: bool,
    /// The template it was minted from, if any.
    pub template_id: Option<String>,
    /// The template's version at minting (0 without a template).
    pub template_version: i64,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    /// A short checksum of the raw token, to recognise it by; never the token itself.
    pub checksum: String,
    /// The `kid` of the key that signed it.
    pub key_id: String,
    /// The id of the token that minted it.
    pub created_by: String,
    /// The id of the token that last changed it.
    pub updated_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it last authenticated (Unix seconds, written in batches).
    pub last_used_at: Option<i64>,
    /// The client address of that use.
    pub last_used_ip: Option<String>,
    /// Set by DeleteToken (Unix seconds); the row stays.
    pub deleted_at: Option<i64>,
    /// The minting token's id; `None` for a root token.
    pub parent_id: Option<String>,
    /// The status list holding the token's entry (`None` before status lists existed).
    pub status_list_id: Option<String>,
    /// The token's index in that list.
    pub status_idx: Option<i64>,
    /// The position the index was made from (migration 12); `None` for tokens minted before it,
    /// whose lists are rendered from their rows rather than from `status_list_blocks`.
    pub status_pos: Option<i64>,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
