//! The indexes that go with the committed-position bitmaps (migration 12):
//!
//! - `idx_tokens_status_list_denied` holds only the denied rows (suspended, revoked, deleted) of
//!   each list: a mint (an active row) never writes to it. Rendering sets the bitmap's entries
//!   VALID and then overrides the denied ones.
//! - The index of migration 8 becomes partial (`status_pos IS NULL`): rows minted before
//!   migration 12, whose lists have no blocks, keep rendering through it; new rows skip it.
//!
//! Both partial indexes are used only by queries that repeat their predicates word for word
//! (`src/store/status_lists.rs`; a test there checks the plans). On PostgreSQL an index build
//! holds a share lock on `tokens`: writes wait for it, reads do not (`docs/upgrading.md`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tokens_status_list_denied ON tokens (status_list_id) \
             WHERE status <> 'active' OR deleted_at IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tokens_status_list_legacy ON tokens (status_list_id) \
             WHERE status_pos IS NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tokens_status_list")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tokens_status_list ON tokens (status_list_id)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tokens_status_list_legacy")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tokens_status_list_denied")
            .await?;
        Ok(())
    }
}
