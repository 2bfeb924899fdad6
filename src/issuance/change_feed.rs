//! Keeps a server's in-memory state (deny list, metadata cache, key ring) in step with changes
//! made by other processes on the same database: the CLI, or other replicas.
//!
//! Every change appends to `token_events` in its own transaction and takes the next log position
//! (`seq`) there, just before its commit. The poller reads the events after the highest position
//! it has applied, and re-reads the positions it skipped on the way ([`LogCursor`]): on
//! PostgreSQL a transaction can commit after one that took a later position, and the poller
//! waits [`GAP_PATIENCE`] for it before taking the position for a rolled-back one. Nothing
//! depends on the writers' clocks, nor on how long a change waited for a lock before its commit,
//! nor on how long the poller was unable to read. For each changed token the poller re-reads the
//! token's *current* state: applying is idempotent and order-independent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::TokenId;
use crate::error::Result;
use crate::issuance::caches::MetadataCache;
use crate::issuance::deny_list::DenyList;
use crate::issuance::keys::KeyManager;
use crate::store::Store;
use crate::store::events::{ChangeEvent, EventKind};

/// How long a skipped log position is re-read before it is taken for a rolled-back transaction.
/// A position is taken just before its transaction commits, so a commit that outlasts this is
/// one that stalled between its last statement and `COMMIT`.
pub const GAP_PATIENCE: Duration = Duration::from_secs(60);

/// How many log positions before the newest the first poll re-applies: the changes that may
/// have committed after start-up read the deny list, and before the first poll.
const START_LOOKBACK: i64 = 1_000;

/// The most events one poll reads after the cursor; the next poll continues.
const BATCH: u64 = 5_000;

/// The most skipped positions remembered; beyond it the oldest are given up first.
const MAX_GAPS: usize = 10_000;

/// Which change-log positions a feed has applied: every one up to `high`, except `gaps`.
#[derive(Debug)]
pub struct LogCursor {
    high: i64,
    /// Skipped positions, with when each was first seen skipped (this server's clock).
    gaps: BTreeMap<i64, Instant>,
}

impl LogCursor {
    /// A cursor that has applied every position up to `seq`.
    pub fn after(seq: i64) -> Self {
        Self {
            high: seq,
            gaps: BTreeMap::new(),
        }
    }

    /// The highest position applied.
    pub fn high(&self) -> i64 {
        self.high
    }

    /// The skipped positions still waited for, lowest first.
    pub fn gaps(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }

    /// Records that the events at `seqs` (in any order) were applied at `now`: a skipped one is
    /// no longer waited for, and the positions a new one jumps over are.
    pub fn advance(&mut self, seqs: &[i64], now: Instant) {
        let mut newer: Vec<i64> = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if seq <= self.high {
                self.gaps.remove(&seq);
            } else {
                newer.push(seq);
            }
        }
        newer.sort_unstable();
        for seq in newer {
            // Only the last MAX_GAPS of a long jump can be remembered anyway.
            let first_skipped = (self.high + 1).max(seq - MAX_GAPS as i64);
            for skipped in first_skipped..seq {
                self.gaps.insert(skipped, now);
            }
            self.high = self.high.max(seq);
        }
        while self.gaps.len() > MAX_GAPS {
            self.gaps.pop_first();
        }
    }

    /// Stops waiting for positions skipped for longer than `patience`; returns how many.
    pub fn give_up_older_than(&mut self, patience: Duration, now: Instant) -> usize {
        let before = self.gaps.len();
        self.gaps
            .retain(|_, seen| now.saturating_duration_since(*seen) <= patience);
        before - self.gaps.len()
    }
}

/// The poller's state.
pub struct ChangeFeed {
    store: Store,
    deny: Arc<DenyList>,
    metadata: Arc<MetadataCache>,
    keys: Arc<KeyManager>,
    /// Where the log has been read up to; `None` until the first poll.
    cursor: Option<LogCursor>,
}

impl ChangeFeed {
    /// A feed that updates `deny`, `metadata` and `keys`.
    pub fn new(
        store: Store,
        deny: Arc<DenyList>,
        metadata: Arc<MetadataCache>,
        keys: Arc<KeyManager>,
    ) -> Self {
        Self {
            store,
            deny,
            metadata,
            keys,
            cursor: None,
        }
    }

    /// Reads the events not applied yet and applies them; returns how many were applied. When it
    /// fails, nothing counts as applied and the next poll reads the same events again.
    pub async fn poll(&mut self) -> Result<usize> {
        let mut cursor = match self.cursor.take() {
            Some(cursor) => cursor,
            None => {
                let latest = self.store.latest_event_seq().await?;
                LogCursor::after((latest - START_LOOKBACK).max(0))
            }
        };
        let read = self.read_and_apply(&cursor).await;
        if let Ok(seqs) = &read {
            let now = Instant::now();
            cursor.advance(seqs, now);
            let given_up = cursor.give_up_older_than(GAP_PATIENCE, now);
            if given_up > 0 {
                tracing::debug!(given_up, "change-log positions taken for rolled back");
            }
        }
        self.cursor = Some(cursor);
        read.map(|seqs| seqs.len())
    }

    /// Reads the events after `cursor` and at its gaps, applies them, and returns their
    /// positions.
    async fn read_and_apply(&self, cursor: &LogCursor) -> Result<Vec<i64>> {
        let mut events = self.store.events_at(&cursor.gaps()).await?;
        events.extend(self.store.events_after(cursor.high(), BATCH).await?);
        if !events.is_empty() {
            self.apply(&events).await?;
        }
        Ok(events.iter().map(|e| e.seq).collect())
    }

    /// Brings the deny list, the metadata cache and the key ring up to date with `events`.
    async fn apply(&self, events: &[ChangeEvent]) -> Result<()> {
        // Each changed token, with the latest log position seen for it: the state read below is
        // at least that recent, and the deny list ignores it if it already holds a later one.
        let mut tokens: HashMap<TokenId, i64> = HashMap::new();
        let mut keys_changed = false;
        for event in events {
            match (event.kind, event.token_id) {
                (EventKind::TokenChanged, Some(id)) => {
                    let seq = tokens.entry(id).or_insert(event.seq);
                    *seq = (*seq).max(event.seq);
                }
                (EventKind::TokenChanged, None) => {}
                (EventKind::KeysChanged, _) => keys_changed = true,
            }
        }
        let ids: Vec<TokenId> = tokens.keys().copied().collect();
        for state in self.store.token_states(&ids).await? {
            self.deny.apply(&state, tokens[&state.id]);
        }
        for id in &ids {
            self.metadata.invalidate(id);
        }
        if keys_changed {
            self.keys
                .reload()
                .await
                .map_err(crate::error::Error::store)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_jumped_over_are_waited_for_until_they_commit() {
        let t0 = Instant::now();
        let mut cursor = LogCursor::after(10);
        cursor.advance(&[11, 14], t0);
        assert_eq!(cursor.high(), 14);
        assert_eq!(cursor.gaps(), [12, 13], "12 and 13 have not committed yet");

        cursor.advance(&[13, 15], t0);
        assert_eq!(cursor.high(), 15);
        assert_eq!(cursor.gaps(), [12], "13 committed late and was read");
    }

    #[test]
    fn events_read_out_of_order_leave_no_false_gaps() {
        let mut cursor = LogCursor::after(0);
        cursor.advance(&[3, 1, 2], Instant::now());
        assert_eq!(cursor.high(), 3);
        assert!(cursor.gaps().is_empty());
    }

    #[test]
    fn a_position_never_committed_is_given_up_after_the_patience() {
        let t0 = Instant::now();
        let mut cursor = LogCursor::after(0);
        cursor.advance(&[2], t0);
        cursor.advance(&[4], t0 + Duration::from_secs(30));
        let patience = Duration::from_secs(60);

        assert_eq!(cursor.give_up_older_than(patience, t0 + patience), 0);
        assert_eq!(cursor.gaps(), [1, 3]);
        let later = t0 + patience + Duration::from_secs(1);
        assert_eq!(cursor.give_up_older_than(patience, later), 1);
        assert_eq!(cursor.gaps(), [3], "3 was skipped 30 s after 1");
    }

    #[test]
    fn a_long_jump_remembers_only_the_latest_gaps() {
        let mut cursor = LogCursor::after(0);
        let far = 3 * MAX_GAPS as i64;
        cursor.advance(&[far], Instant::now());
        let gaps = cursor.gaps();
        assert_eq!(gaps.len(), MAX_GAPS);
        assert_eq!(gaps.first(), Some(&(far - MAX_GAPS as i64)));
        assert_eq!(gaps.last(), Some(&(far - 1)));
    }
}
