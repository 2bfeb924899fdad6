//! PostgreSQL notifications that wake every server's change feed as soon as a change that
//! affects verification commits (ARCHITECTURE.md, "The change feed").
//!
//! A writer runs [`NOTIFY_CHANGE`] in the transaction that appends the change's event: PostgreSQL
//! delivers it to every listener on commit, and never for a transaction that rolled back. The
//! notification carries nothing: it says "read the log now", and the log stays the only source of
//! truth (a lost notification costs at most one poll interval). CreateToken batches do not
//! notify: a new token changes nothing a server has in memory, and NOTIFY takes a lock at commit
//! that would serialise the group commits.

use sea_orm::sqlx::postgres::PgListener;

use super::{db_error, from_sqlx};
use crate::error::Result;

/// The channel every server listens on.
pub(crate) const CHANNEL: &str = "tokenmint_changes";

/// The statement a writer runs in its transaction (delivered on commit; repeats within one
/// transaction fold into one).
pub(crate) const NOTIFY_CHANGE: &str = "NOTIFY tokenmint_changes";

/// What a listener heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A change committed somewhere: read the log.
    Changed,
    /// The listening connection was lost and has been re-established: notifications sent in
    /// between are lost, so read the log to catch up.
    Reconnected,
}

/// A dedicated connection listening on [`CHANNEL`] (outside the pool: it is held for good).
pub struct ChangeNotifications {
    listener: PgListener,
}

impl std::fmt::Debug for ChangeNotifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeNotifications")
            .finish_non_exhaustive()
    }
}

impl ChangeNotifications {
    /// Connects to the PostgreSQL database at `url` and starts listening.
    pub async fn listen(url: &str) -> Result<Self> {
        let mut listener = PgListener::connect(url)
            .await
            .map_err(|e| db_error(from_sqlx(e)))?;
        listener
            .listen(CHANNEL)
            .await
            .map_err(|e| db_error(from_sqlx(e)))?;
        Ok(Self { listener })
    }

    /// Checks that the connection still answers (a connection cut without a word, by a NAT or
    /// a proxy timing out, would otherwise look like a quiet database forever).
    pub async fn ping(&mut self) -> Result<()> {
        sea_orm::sqlx::query("SELECT 1")
            .execute(&mut self.listener)
            .await
            .map(|_| ())
            .map_err(|e| db_error(from_sqlx(e)))
    }

    /// Waits for the next [`Signal`]. An error means the connection is down and could not be
    /// re-established yet; calling again tries again.
    pub async fn next(&mut self) -> Result<Signal> {
        match self.listener.try_recv().await {
            Ok(Some(_)) => Ok(Signal::Changed),
            Ok(None) => Ok(Signal::Reconnected),
            Err(error) => Err(db_error(from_sqlx(error))),
        }
    }
}
