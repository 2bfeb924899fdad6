//! The `status_list_blocks` table.

use sea_orm::entity::prelude::*;

/// Which positions of one block of a status list hold a committed token.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "status_list_blocks")]
pub struct Model {
    /// The list.
    #[sea_orm(primary_key, auto_increment = false)]
    pub list_id: String,
    /// The block's first position (a multiple of `status_blocks::BLOCK_POSITIONS`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub first_pos: i64,
    /// One bit per position (`first_pos + n` at bit `n`; bit 63 is the sign bit): set once the
    /// token holding that position is committed.
    pub bits: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
