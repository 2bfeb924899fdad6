//! Committing a change to an existing token and bringing this server's memory in line with it.

use std::sync::Arc;

use tokio::sync::Notify;
use tracing::Instrument;

use crate::domain::{DeniedToken, TokenChange};
use crate::error::{Error, Result};
use crate::issuance::caches::MetadataCache;
use crate::issuance::deny_list::DenyList;
use crate::store::TokenWriter;

/// Commits token changes through the group-commit writer and applies each committed one to the
/// deny list and the metadata cache, then wakes the change feed (which tells the change
/// streams; on SQLite it would otherwise hear of the change only at its next poll). Cheap to
/// clone.
#[derive(Clone)]
pub struct ChangeCommitter {
    writer: TokenWriter,
    deny: Arc<DenyList>,
    metadata: Arc<MetadataCache>,
    feed: Arc<Notify>,
}

impl ChangeCommitter {
    /// Writes through `writer`; applies to `deny` and `metadata`; wakes `feed`.
    pub fn new(
        writer: TokenWriter,
        deny: Arc<DenyList>,
        metadata: Arc<MetadataCache>,
        feed: Arc<Notify>,
    ) -> Self {
        Self {
            writer,
            deny,
            metadata,
            feed,
        }
    }

    /// Commits `change` and, if it applied, brings this server's memory in line: the deny list
    /// takes `denied` (the token's new state) at the change's log position, and the cached
    /// metadata is dropped. Returns that position, or `None` if the change did not apply.
    ///
    /// Runs as a task of its own, so that a caller who gives up (a cancelled RPC, an expired
    /// deadline) cannot leave a committed change unapplied here until the change feed's next
    /// poll: on SQLite the change is committed by the writer task whether or not anyone waits.
    pub async fn commit(
        &self,
        change: TokenChange,
        denied: Option<DeniedToken>,
    ) -> Result<Option<i64>> {
        let Self {
            writer,
            deny,
            metadata,
            feed,
        } = self.clone();
        let id = change.id;
        let task = tokio::spawn(
            async move {
                let seq = writer.change(change).await?;
                if let Some(seq) = seq {
                    if let Some(denied) = &denied {
                        deny.apply(denied, seq);
                    }
                    metadata.invalidate(&id);
                    feed.notify_one();
                }
                Ok(seq)
            }
            .instrument(tracing::Span::current()),
        );
        task.await
            .map_err(|e| Error::internal(format!("a token change task failed: {e}")))?
    }
}
