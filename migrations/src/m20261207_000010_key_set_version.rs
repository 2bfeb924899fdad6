//! A counter that every change to the set of signing keys increments in its own transaction:
//! the key set's version, which servers publish with their JWKS and change streams.
//!
//! Replicas learn of a key change at slightly different moments, so a verifier that fetches the
//! JWKS from a replica that has not caught up yet would otherwise get the older set back (a
//! withdrawn key with it). The version orders the sets: a verifier never replaces a set with
//! one of a lower version, and after a stream reports a key change it fetches until the version
//! reaches the one the stream named. The one row is updated in the change's transaction, so its
//! row lock orders concurrent key changes and their commits alike (a log position would not:
//! on PostgreSQL positions can commit out of order).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS key_set_version (\
               id INTEGER PRIMARY KEY CHECK (id = 1), \
               version BIGINT NOT NULL)",
        )
        .await?;
        // Starts at 1: 0 is what a server without the counter reports ("no version").
        db.execute_unprepared(
            "INSERT INTO key_set_version (id, version) VALUES (1, 1) ON CONFLICT (id) DO NOTHING",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS key_set_version")
            .await?;
        Ok(())
    }
}
