//! A partial index over the denied tokens that have no status-list entry (minted before
//! tokenmint published lists): what a change stream opened from scratch sends first.
//!
//! That snapshot used to page through `idx_tokens_denied_expires` (every suspended, revoked or
//! deleted token) and drop the listed ones row by row, so its cost grew with every revoke of a
//! listed token, on every stream open, to return the same few pre-list rows. This index holds
//! only the rows it returns, in the order it pages them (expiry, id). Mints cost it nothing
//! (minted tokens are active and listed). The query repeats the predicate word for word
//! (`DENIED_ROWS` and `UNLISTED_ROWS` in `src/store/tokens.rs`): SQLite uses a partial index
//! only for a query that states its terms; a test there checks the plan.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_tokens_unlisted_denied ON tokens (expires_at, id) \
                 WHERE (status <> 'active' OR deleted_at IS NOT NULL) \
                 AND COALESCE(status_list_id, '') = ''",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS idx_tokens_unlisted_denied")
            .await?;
        Ok(())
    }
}
