//! Replaces the index on every token's `expires_at` with a partial one over the tokens that must
//! not verify (suspended, revoked or deleted).
//!
//! The full index served one reader, the start-up (and stream snapshot) query for unexpired
//! denied tokens, yet every CreateToken paid for it: one more B-tree insert per minted token,
//! about as much server CPU as the status-list index that migration 8 added. Minted tokens are
//! active, so a partial index over denied rows costs a mint nothing; the rows enter it only when
//! a lifecycle RPC denies them. The query side must repeat the predicate word for word
//! (`DENIED_ROWS` in `src/store/tokens.rs`) for SQLite to use the index; a test there checks
//! the plan.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tokens_denied_expires ON tokens (expires_at) \
             WHERE status <> 'active' OR deleted_at IS NOT NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tokens_expires")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tokens_expires ON tokens (expires_at)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tokens_denied_expires")
            .await?;
        Ok(())
    }
}
