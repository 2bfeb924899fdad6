//! SeaORM entities, one per table (see the `migrations` crate for the schema).

pub mod enterprise_members;
pub mod signing_keys;
pub mod status_list_blocks;
pub mod status_lists;
pub mod templates;
pub mod token_events;
pub mod tokens;
