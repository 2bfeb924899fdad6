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
//!
//! Two things can still stop a feed from learning of a change, and neither may go unnoticed:
//! - A change it cannot apply. Token changes only need a read of the tokens' state; a key-set
//!   change that cannot be applied (no usable signing key in what is stored, say) is logged,
//!   counted, and retried at every poll on its own, while the token changes after it keep being
//!   applied ([`FeedHealth`]).
//! - A change pruned from the log before this server read it (a server that could not poll for
//!   longer than the log is kept). When the oldest position left is past the one it read up to,
//!   the feed reloads the deny list and the keys in full.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::domain::{ChangeEvent, EventKind};
use crate::domain::{Timestamp, TokenId};
use crate::error::Result;
use crate::issuance::caches::MetadataCache;
use crate::issuance::deny_list::DenyList;
use crate::issuance::keys::KeyManager;
use crate::store::Store;

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

/// What a feed could not do, since start (for the metrics).
#[derive(Debug, Default)]
pub struct FeedHealth {
    key_reload_failures: AtomicU64,
    deny_list_resyncs: AtomicU64,
}

impl FeedHealth {
    /// Key-set reloads that failed (each is retried at the next poll).
    pub fn key_reload_failures(&self) -> u64 {
        self.key_reload_failures.load(Ordering::Relaxed)
    }

    /// Full deny-list reloads after the log was pruned past this server's position.
    pub fn deny_list_resyncs(&self) -> u64 {
        self.deny_list_resyncs.load(Ordering::Relaxed)
    }
}

/// The poller's state.
pub struct ChangeFeed {
    store: Store,
    deny: Arc<DenyList>,
    metadata: Arc<MetadataCache>,
    keys: Arc<KeyManager>,
    health: Arc<FeedHealth>,
    /// How long after expiry a token still passes the time check (its deny entry must stay).
    leeway_secs: i64,
    /// Where the log has been read up to; `None` until the first poll.
    cursor: Option<LogCursor>,
    /// A key-set change was read and the keys could not be reloaded since.
    keys_pending: bool,
}

impl ChangeFeed {
    /// A feed that updates `deny`, `metadata` and `keys`, and reports to `health`.
    pub fn new(
        store: Store,
        deny: Arc<DenyList>,
        metadata: Arc<MetadataCache>,
        keys: Arc<KeyManager>,
        health: Arc<FeedHealth>,
        leeway_secs: i64,
    ) -> Self {
        Self {
            store,
            deny,
            metadata,
            keys,
            health,
            leeway_secs,
            cursor: None,
            keys_pending: false,
        }
    }

    /// Reads the events not applied yet and applies them; returns how many were applied. When
    /// reading or applying token changes fails, nothing counts as applied and the next poll reads
    /// the same events again; a key-set reload that fails does not hold them up (it is retried
    /// at each poll until it succeeds).
    pub async fn poll(&mut self) -> Result<usize> {
        let mut cursor = match self.cursor.take() {
            Some(cursor) => cursor,
            None => {
                let latest = self.store.latest_event_seq().await?;
                LogCursor::after((latest - START_LOOKBACK).max(0))
            }
        };
        if let Err(error) = self.resync_if_pruned(&cursor).await {
            self.cursor = Some(cursor);
            return Err(error);
        }
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
        if self.keys_pending {
            self.reload_keys().await;
        }
        read.map(|seqs| seqs.len())
    }

    /// Reloads the keys; on failure logs, counts, and leaves the reload pending for the next
    /// poll.
    async fn reload_keys(&mut self) {
        match self.keys.reload().await {
            Ok(()) => self.keys_pending = false,
            Err(error) => {
                self.keys_pending = true;
                self.health
                    .key_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = format!("{error:#}"),
                    "a key-set change could not be applied; keeping the keys in service and \
                     retrying at the next poll (token changes are still applied)"
                );
            }
        }
    }

    /// When changes after `cursor` may have been pruned from the log before this server read
    /// them (the oldest position left is past the next one it expects), reloads the deny list
    /// and the keys in full. A position skipped for a rolled-back transaction can make this
    /// reload when nothing was missed; that costs a read, never a change.
    async fn resync_if_pruned(&mut self, cursor: &LogCursor) -> Result<()> {
        let Some(oldest) = self.store.oldest_event_seq().await? else {
            return Ok(());
        };
        if oldest <= cursor.high() + 1 {
            return Ok(());
        }
        tracing::warn!(
            read_up_to = cursor.high(),
            oldest_left = oldest,
            "the change log was pruned past what this server had read: reloading the deny list \
             and the keys in full"
        );
        // Read before the deny list: the state read below is at least this recent.
        let as_of = self.store.latest_event_seq().await?;
        let horizon = Timestamp::now().plus_secs(-self.leeway_secs);
        let denied = self.store.denied_tokens(horizon).await?;
        self.deny.resync(&denied, as_of);
        self.health
            .deny_list_resyncs
            .fetch_add(1, Ordering::Relaxed);
        self.reload_keys().await;
        Ok(())
    }

    /// Reads the events after `cursor` and at its gaps, applies them, and returns their
    /// positions.
    async fn read_and_apply(&mut self, cursor: &LogCursor) -> Result<Vec<i64>> {
        let mut events = self.store.events_at(&cursor.gaps()).await?;
        events.extend(self.store.events_after(cursor.high(), BATCH).await?);
        if !events.is_empty() {
            self.apply(&events).await?;
        }
        Ok(events.iter().map(|e| e.seq).collect())
    }

    /// Brings the deny list, the metadata cache and the key ring up to date with `events`.
    async fn apply(&mut self, events: &[ChangeEvent]) -> Result<()> {
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
            self.reload_keys().await;
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
