//! The `enterprise_members` table.

use sea_orm::entity::prelude::*;

/// A user's membership of an enterprise.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "enterprise_members")]
pub struct Model {
    /// The enterprise.
    #[sea_orm(primary_key, auto_increment = false)]
    pub enterprise_id: String,
    /// The member.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// When the membership was recorded (Unix seconds).
    pub created_at: i64,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
