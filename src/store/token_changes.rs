//! Changes to existing tokens (status, label and description, deletion), each with its change-log
//! event. On SQLite the group commit applies them inside its batch transaction: a RevokeToken
//! shares the commit and the sync of the CreateTokens around it instead of queueing for SQLite's
//! single write lock with a transaction of its own (ARCHITECTURE.md, "Group commit"). On
//! PostgreSQL, whose writers don't exclude each other, a change commits alone ([`apply_alone`]):
//! waiting for a batch there only lengthened the tail (p99 of `mixed` +17%). There it also
//! notifies every server's change feed ([`super::notify`]).

use std::sync::Arc;

use sea_orm::sqlx::{self, AssertSqlSafe};

use super::Store;
use crate::domain::{EventKind, TokenChange};

/// The statements of [`ChangeKind`]s and of their change-log event, with one backend's
/// placeholders.
#[derive(Debug)]
pub(crate) struct ChangeStatements {
    pub(crate) status: Arc<str>,
    pub(crate) text: Arc<str>,
    pub(crate) delete: Arc<str>,
    pub(crate) event: Arc<str>,
}

impl ChangeStatements {
    /// The statements; `placeholder(n)` writes the n-th (1-based) parameter.
    pub(crate) fn new(placeholder: impl Fn(usize) -> String) -> Self {
        let p: Vec<String> = (1..=6).map(placeholder).collect();
        Self {
            status: format!(
                "UPDATE tokens SET status = {}, updated_at = {}, updated_by = {} \
                 WHERE id = {} AND user_id = {} AND status = {} AND deleted_at IS NULL",
                p[0], p[1], p[2], p[3], p[4], p[5]
            )
            .into(),
            text: format!(
                "UPDATE tokens SET label = COALESCE({}, label), \
                 description = COALESCE({}, description), updated_at = {}, updated_by = {} \
                 WHERE id = {} AND user_id = {} AND deleted_at IS NULL",
                p[0], p[1], p[2], p[3], p[4], p[5]
            )
            .into(),
            delete: format!(
                "UPDATE tokens SET deleted_at = {}, updated_at = {}, updated_by = {} \
                 WHERE id = {} AND user_id = {} AND deleted_at IS NULL",
                p[0], p[1], p[2], p[3], p[4]
            )
            .into(),
            event: format!(
                "INSERT INTO token_events (kind, token_id, created_at) VALUES ({}, {}, {}) \
                 RETURNING seq",
                p[0], p[1], p[2]
            )
            .into(),
        }
    }
}

/// The change-log kind every token change records.
pub(crate) const EVENT_KIND: EventKind = EventKind::TokenChanged;

/// Applies `$changes` (a slice of [`TokenChange`]) in the open sqlx transaction `$txn` with
/// `$statements` ([`ChangeStatements`]), logging an event for each one that applied; evaluates to
/// the change-log position of each one that applied, `None` for the others (a macro: the
/// transaction and argument types differ per backend).
macro_rules! apply_changes {
    ($txn:expr, $statements:expr, $changes:expr) => {{
        use $crate::domain::ChangeKind;
        use $crate::store::token_changes::EVENT_KIND;
        let statements: &$crate::store::token_changes::ChangeStatements = $statements;
        let mut applied = Vec::with_capacity($changes.len());
        for change in $changes {
            let id = change.id.to_string();
            let (user, at) = (change.user.as_str(), change.at.0);
            let query = match &change.kind {
                ChangeKind::Status { from, to } => {
                    sqlx::query(AssertSqlSafe(statements.status.clone()))
                        .bind(to.as_str())
                        .bind(at)
                        .bind(user)
                        .bind(id.as_str())
                        .bind(user)
                        .bind(from.as_str())
                }
                ChangeKind::Text(update) => sqlx::query(AssertSqlSafe(statements.text.clone()))
                    .bind(update.label.as_ref().map(|l| l.as_str()))
                    .bind(update.description.as_ref().map(|d| d.as_str()))
                    .bind(at)
                    .bind(user)
                    .bind(id.as_str())
                    .bind(user),
                ChangeKind::Delete => sqlx::query(AssertSqlSafe(statements.delete.clone()))
                    .bind(at)
                    .bind(at)
                    .bind(user)
                    .bind(id.as_str())
                    .bind(user),
            };
            let changed = query.execute(&mut *$txn).await?.rows_affected() == 1;
            let seq = if changed {
                let seq: i64 = sqlx::query_scalar(AssertSqlSafe(statements.event.clone()))
                    .bind(EVENT_KIND.as_str())
                    .bind(id.as_str())
                    .bind(at)
                    .fetch_one(&mut *$txn)
                    .await?;
                Some(seq)
            } else {
                None
            };
            applied.push(seq);
        }
        applied
    }};
}
pub(crate) use apply_changes;

/// Applies `change` in a transaction of its own on PostgreSQL (see the module's doc); returns
/// its change-log position if it applied.
pub(crate) async fn apply_alone(
    store: &Store,
    statements: &ChangeStatements,
    change: &TokenChange,
) -> Result<Option<i64>, sqlx::Error> {
    let _turn = store.write_turn().await;
    let mut txn = store.db().get_postgres_connection_pool().begin().await?;
    let applied = apply_changes!(txn, statements, std::slice::from_ref(change));
    if applied[0].is_some() {
        sqlx::query(super::notify::NOTIFY_CHANGE)
            .execute(&mut *txn)
            .await?;
    }
    txn.commit().await?;
    Ok(applied[0])
}
