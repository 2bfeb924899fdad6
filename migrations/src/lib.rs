//! tokenmint's database schema as SeaORM migrations, one migration per file.
//!
//! Timestamps are stored as `BIGINT` microseconds since the Unix epoch: the same type and ordering
//! on SQLite and PostgreSQL, and cheap to compare on the hot path.

pub use sea_orm_migration::prelude::*;

mod m20261201_000001_create_signing_keys;
mod m20261201_000002_create_tokens;
mod m20261201_000003_create_token_events;
mod m20261201_000004_create_enterprise_members;
mod m20261201_000005_create_templates;
mod m20261206_000006_token_lineage;
mod m20261206_000007_add_signing_key_mac;
mod m20261207_000008_status_lists;
mod m20261207_000009_partial_denied_index;
mod m20261207_000010_key_set_version;
mod m20261207_000011_unlisted_denied_index;
mod m20261208_000012_status_list_blocks;
mod m20261208_000013_status_list_block_indexes;

/// Applies every migration in order; `Migrator::up(&db, None)` brings a database up to date.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261201_000001_create_signing_keys::Migration),
            Box::new(m20261201_000002_create_tokens::Migration),
            Box::new(m20261201_000003_create_token_events::Migration),
            Box::new(m20261201_000004_create_enterprise_members::Migration),
            Box::new(m20261201_000005_create_templates::Migration),
            Box::new(m20261206_000006_token_lineage::Migration),
            Box::new(m20261206_000007_add_signing_key_mac::Migration),
            Box::new(m20261207_000008_status_lists::Migration),
            Box::new(m20261207_000009_partial_denied_index::Migration),
            Box::new(m20261207_000010_key_set_version::Migration),
            Box::new(m20261207_000011_unlisted_denied_index::Migration),
            Box::new(m20261208_000012_status_list_blocks::Migration),
            Box::new(m20261208_000013_status_list_block_indexes::Migration),
        ]
    }
}
