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
//! - A log that went back in time: the database was restored from a backup, and the positions
//!   after the backup are being handed out again to other changes. An epoch number stored in the
//!   database cannot reveal that (the backup holds the old number too), so the cursor remembers
//!   the newest entry it applied as it was written (position and write time, [`LogEntryMark`]).
//!   When the log no longer holds that entry at that position, the feed has read a history that
//!   is gone: it drops everything it learnt from the log, reloads the deny list and the keys, and
//!   starts again from the log's newest position.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use crate::domain::LogEntryMark;
use crate::domain::Timestamp;
use crate::domain::{ChangeCursor, ChangeEvent};
use crate::error::Result;
use crate::issuance::caches::MetadataCache;
use crate::issuance::change_stream::{ChangeHub, Interruption, LogChanges};
use crate::issuance::deny_list::DenyList;
use crate::issuance::keys::KeyManager;
use crate::store::Store;
use crate::store::events::LogShape;

/// How long a skipped log position is re-read before it is taken for a rolled-back transaction.
/// A position is taken just before its transaction commits, so a commit that outlasts this is
/// one that stalled between its last statement and `COMMIT`.
pub const GAP_PATIENCE: Duration = Duration::from_secs(60);

/// How many log positions before the newest one read at start-up (or after a rewind) the feed
/// re-applies: changes that took earlier positions may still have been committing then.
const START_LOOKBACK: i64 = 1_000;

/// The most events one poll reads after the cursor; the next poll continues.
const BATCH: u64 = 5_000;

/// The most skipped positions remembered; beyond it the oldest are given up first.
const MAX_GAPS: usize = 10_000;

/// Whether the log described by `shape` is no longer the history in which `newest` was the
/// newest entry applied: the entry at its position was written at another time, or is gone
/// while positions at or before it are still there (pruning only removes whole prefixes) or
/// the log now ends before it.
pub(crate) fn is_rewound(newest: LogEntryMark, shape: &LogShape) -> bool {
    match shape.written_at {
        Some(written_at) => written_at != newest.written_at,
        None => shape.latest < newest.seq || shape.oldest.is_none_or(|oldest| oldest <= newest.seq),
    }
}

/// Which change-log positions a feed has applied: every one up to `high`, except `gaps`.
#[derive(Debug)]
pub struct LogCursor {
    high: i64,
    /// Skipped positions, with when each was first seen skipped (this server's clock).
    gaps: BTreeMap<i64, Instant>,
    /// The newest entry applied, once one has been read.
    newest: Option<LogEntryMark>,
    /// Skipped positions below this were covered by a full reload: they no longer make one.
    reloaded_below: i64,
}

impl LogCursor {
    /// A cursor that has applied every position up to `seq`.
    pub fn after(seq: i64) -> Self {
        Self {
            high: seq,
            gaps: BTreeMap::new(),
            newest: None,
            reloaded_below: 0,
        }
    }

    /// Where a feed starts reading a log of extent `shape` whose current state it has just
    /// loaded: [`START_LOOKBACK`] positions before the newest (changes with earlier positions may
    /// still have been committing), but not before the oldest left.
    pub fn starting_at(shape: &LogShape) -> Self {
        let oldest = shape.oldest.unwrap_or(0);
        Self::after((shape.latest - START_LOOKBACK).max(oldest - 1).max(0))
    }

    /// The newest entry applied, if any was read.
    pub fn newest(&self) -> Option<LogEntryMark> {
        self.newest
    }

    /// The position up to which every change has been applied: just before the first gap, or
    /// `high`. A state read from the database stands for this position: the feed re-reads
    /// every change after it.
    pub fn applied_through(&self) -> i64 {
        self.gaps
            .first_key_value()
            .map_or(self.high, |(gap, _)| gap - 1)
    }

    /// Whether a log that now starts at `oldest` lost positions this cursor has not applied: the
    /// ones after `high`, and skipped ones still waited for that no reload covered yet. A
    /// skipped position below `oldest` is either a change that committed after a later one was
    /// read and was pruned before it was read (a read that raced the pruning transaction sees
    /// exactly that), or a transaction still committing.
    pub fn lost_to_pruning(&self, oldest: i64) -> bool {
        // An empty or reversed range would panic: the log can start below where a reload
        // stood, once a transaction still committing then has committed.
        oldest > self.high + 1
            || (oldest > self.reloaded_below
                && self
                    .gaps
                    .range(self.reloaded_below..oldest)
                    .next()
                    .is_some())
    }

    /// Records a full reload made when the log started at `oldest`: positions before it no
    /// longer make a reload. Skipped ones below it are still waited for, with the usual
    /// patience: one may be a transaction that had not committed when the reload read the
    /// tokens, whose change the reload did not see either.
    pub fn reloaded_at(&mut self, oldest: i64) {
        self.high = self.high.max(oldest - 1);
        self.reloaded_below = self.reloaded_below.max(oldest);
    }

    /// The highest position applied.
    pub fn high(&self) -> i64 {
        self.high
    }

    /// The skipped positions still waited for, lowest first.
    pub fn gaps(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }

    /// Records that the `entries` (in any order) were applied at `now`: a skipped one is no
    /// longer waited for, and the positions a new one jumps over are.
    pub fn advance(&mut self, entries: &[LogEntryMark], now: Instant) {
        let mut newer: Vec<i64> = Vec::with_capacity(entries.len());
        for entry in entries {
            let seq = entry.seq;
            if seq <= self.high {
                self.gaps.remove(&seq);
            } else {
                newer.push(seq);
            }
            if seq >= self.high && self.newest.is_none_or(|newest| seq > newest.seq) {
                self.newest = Some(*entry);
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
    log_rewinds: AtomicU64,
    position: AtomicI64,
    listening: AtomicBool,
}

impl FeedHealth {
    /// Key-set reloads that failed (each is retried at the next poll).
    pub fn key_reload_failures(&self) -> u64 {
        self.key_reload_failures.load(Ordering::Relaxed)
    }

    /// Full deny-list reloads: after the log was pruned past this server's position, or went
    /// back in time.
    pub fn deny_list_resyncs(&self) -> u64 {
        self.deny_list_resyncs.load(Ordering::Relaxed)
    }

    /// Whether this server hears PostgreSQL change notifications now (never on SQLite).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Records whether change notifications are heard.
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Relaxed);
    }

    /// The change-log position this server has applied every change up to (gaps aside).
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Relaxed)
    }

    /// Times the log no longer held the newest entry this server had applied (a database
    /// restored from a backup).
    pub fn log_rewinds(&self) -> u64 {
        self.log_rewinds.load(Ordering::Relaxed)
    }
}

/// What the feed keeps up to date with the log.
pub struct FeedTargets {
    /// Revoked, suspended and deleted tokens, for VerifyToken.
    pub deny: Arc<DenyList>,
    /// Token metadata served from memory.
    pub metadata: Arc<MetadataCache>,
    /// The signing keys.
    pub keys: Arc<KeyManager>,
    /// Where the changes applied go on to the change streams.
    pub hub: Arc<ChangeHub>,
}

/// The poller's state.
pub struct ChangeFeed {
    store: Store,
    targets: FeedTargets,
    health: Arc<FeedHealth>,
    /// How long after expiry a token still passes the time check (its deny entry must stay).
    leeway_secs: i64,
    /// Where the log has been read up to.
    cursor: LogCursor,
    /// A key-set change was read and the keys could not be reloaded since.
    keys_pending: bool,
    /// While a key-set change read from the log waits for its reload: the stream cursor from
    /// before it. Streams are handed no cursor past the change meanwhile, so a client that
    /// resumes before the reload succeeds reads the change from the log again.
    keys_hold: Option<ChangeCursor>,
}

impl ChangeFeed {
    /// A feed that updates `targets` and reports to `health`, reading the log from `loaded_at` (its extent read before those were loaded): from its newest position
    /// less [`START_LOOKBACK`], for changes with earlier positions still committing then, but
    /// not from before its oldest (pruned positions are not gaps to wait for).
    pub fn new(
        store: Store,
        targets: FeedTargets,
        health: Arc<FeedHealth>,
        leeway_secs: i64,
        loaded_at: &LogShape,
    ) -> Self {
        Self {
            store,
            targets,
            health,
            leeway_secs,
            cursor: LogCursor::starting_at(loaded_at),
            keys_pending: false,
            keys_hold: None,
        }
    }

    /// Reads the events not applied yet and applies them; returns how many were applied. When
    /// reading or applying token changes fails, nothing counts as applied and the next poll reads
    /// the same events again; a key-set reload that fails does not hold them up (it is retried
    /// at each poll until it succeeds).
    pub async fn poll(&mut self) -> Result<usize> {
        let newest = self.cursor.newest();
        let shape = self
            .store
            .log_shape(newest.map_or(0, |mark| mark.seq))
            .await?;
        if let Some(mark) = newest
            && is_rewound(mark, &shape)
        {
            self.start_over(mark, &shape).await?;
        } else if shape
            .oldest
            .is_some_and(|oldest| self.cursor.lost_to_pruning(oldest))
        {
            self.resync_after_prune(&shape).await?;
        }
        let before = self.stream_cursor();
        let (applied, changes) = match self.read_and_apply().await {
            Ok((entries, (changes, keys_changed))) => {
                let now = Instant::now();
                self.cursor.advance(&entries, now);
                let given_up = self.cursor.give_up_older_than(GAP_PATIENCE, now);
                if given_up > 0 {
                    tracing::debug!(given_up, "change-log positions taken for rolled back");
                }
                self.health
                    .position
                    .store(self.cursor.high(), Ordering::Relaxed);
                self.keys_pending |= keys_changed;
                if keys_changed && self.keys_hold.is_none() {
                    self.keys_hold = Some(before);
                }
                (Ok(entries.len()), changes)
            }
            Err(error) => (Err(error), Vec::new()),
        };
        // Streams hear of a key-set change once this server's own key set has it: a verifier
        // told earlier would refetch this server's JWKS before it changed, keep trusting a
        // retired key, and never be told again.
        let keys_reloaded = self.keys_pending && self.reload_keys().await;
        if keys_reloaded {
            self.keys_hold = None;
        }
        if applied.is_ok() || keys_reloaded {
            let cursor = self.keys_hold.unwrap_or_else(|| self.stream_cursor());
            self.targets.hub.publish(changes, keys_reloaded, cursor);
        }
        applied
    }

    /// [`stream_cursor`](Self::stream_cursor) of a feed that has not polled yet, made for a log
    /// of extent `loaded_at`.
    pub fn stream_cursor_at_start(loaded_at: &LogShape) -> ChangeCursor {
        ChangeCursor {
            resume_after: LogCursor::starting_at(loaded_at).applied_through(),
            newest: None,
        }
    }

    /// Where a change stream that has been sent everything this feed applied resumes.
    pub fn stream_cursor(&self) -> ChangeCursor {
        ChangeCursor {
            resume_after: self.cursor.applied_through(),
            newest: self.cursor.newest(),
        }
    }

    /// Reloads the keys and says whether that worked; on failure logs, counts, and leaves the
    /// reload pending for the next poll.
    async fn reload_keys(&mut self) -> bool {
        match self.targets.keys.reload().await {
            Ok(()) => {
                self.keys_pending = false;
                true
            }
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
                false
            }
        }
    }

    /// Changes after the cursor may have been pruned from the log before this server read them
    /// (the oldest position left is past the next one it expects): reloads the deny list and the
    /// keys in full. A position skipped for a rolled-back transaction can make this reload when
    /// nothing was missed; that costs a read, never a change.
    async fn resync_after_prune(&mut self, shape: &LogShape) -> Result<()> {
        tracing::warn!(
            read_up_to = self.cursor.high(),
            oldest_left = shape.oldest,
            "the change log was pruned past what this server had read: reloading the deny list \
             and the keys in full"
        );
        let denied = self.store.denied_tokens(self.horizon()).await?;
        if let Some(oldest) = shape.oldest {
            self.cursor.reloaded_at(oldest);
        }
        // The state read stands for every position the feed will not read again: a change at a
        // later one (even one still committing at a lower position than the newest) re-applies.
        self.targets
            .deny
            .resync(&denied, self.cursor.applied_through());
        // Before the streams end: their clients refetch the keys when they resync.
        self.reload_keys().await;
        self.keys_hold = None;
        self.targets
            .hub
            .interrupt(Interruption::Missed, self.stream_cursor());
        self.health
            .deny_list_resyncs
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The log no longer holds the newest entry this server applied (module docs): forgets all
    /// it learnt from the log, reloads the deny list and the keys, and reads on from the log's
    /// newest position (less the look-back for changes still committing).
    async fn start_over(&mut self, lost: LogEntryMark, shape: &LogShape) -> Result<()> {
        tracing::warn!(
            applied_up_to = lost.seq,
            log_now_ends_at = shape.latest,
            "the change log went back in time (a database restored from a backup?): reloading \
             the deny list and the keys, and dropping cached token metadata"
        );
        let denied = self.store.denied_tokens(self.horizon()).await?;
        // The restored key-set counter may stand below versions verifiers already hold, which
        // would make them refuse the restored key set as older.
        self.store.advance_key_set_version(Timestamp::now()).await?;
        let cursor = LogCursor::starting_at(shape);
        // Stamped with where the feed reads on from: the changes after it re-apply.
        self.targets.deny.reset(&denied, cursor.applied_through());
        self.targets.metadata.clear();
        self.cursor = cursor;
        // Before the streams end: their clients refetch the keys when they resync.
        self.reload_keys().await;
        self.keys_hold = None;
        self.targets
            .hub
            .interrupt(Interruption::Rewound, self.stream_cursor());
        self.health.log_rewinds.fetch_add(1, Ordering::Relaxed);
        self.health
            .deny_list_resyncs
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Expired tokens whose deny entries still matter: they pass the time check until then.
    fn horizon(&self) -> Timestamp {
        Timestamp::now().plus_secs(-self.leeway_secs)
    }

    /// Reads the events after the cursor and at its gaps, applies them, and returns their marks
    /// and what they changed (for the change streams).
    async fn read_and_apply(&mut self) -> Result<(Vec<LogEntryMark>, StreamChanges)> {
        let mut events = self.store.events_at(&self.cursor.gaps()).await?;
        events.extend(self.store.events_after(self.cursor.high(), BATCH).await?);
        let applied = if events.is_empty() {
            (Vec::new(), false)
        } else {
            self.apply(&events).await?
        };
        Ok((events.iter().map(LogEntryMark::of).collect(), applied))
    }

    /// Brings the deny list and the metadata cache up to date with `events`, and says whether
    /// the key set changed (`poll` reloads it).
    async fn apply(&mut self, events: &[ChangeEvent]) -> Result<StreamChanges> {
        // Each changed token's state is read with the latest log position seen for it: the
        // state is at least that recent, and the deny list ignores it if it already holds a
        // later one.
        let read = LogChanges::read(&self.store, events).await?;
        for change in &read.changes {
            self.targets.deny.apply(&change.token, change.position);
        }
        for id in &read.tokens {
            self.targets.metadata.invalidate(id);
        }
        Ok((read.changes, read.keys_changed))
    }
}

/// What one poll publishes to the change streams: token states, and whether the keys changed.
type StreamChanges = (Vec<crate::domain::TokenStateChange>, bool);

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries at `seqs`, each written at a time derived from its position.
    fn marks(seqs: &[i64]) -> Vec<LogEntryMark> {
        seqs.iter()
            .map(|&seq| LogEntryMark {
                seq,
                written_at: Timestamp(1_000_000 + seq),
            })
            .collect()
    }

    /// The shape of a log holding `oldest..=latest`, whose entry at the asked position was
    /// written at `written_at`.
    fn shape(oldest: i64, latest: i64, written_at: Option<i64>) -> LogShape {
        LogShape {
            oldest: Some(oldest),
            latest,
            written_at: written_at.map(Timestamp),
        }
    }

    #[test]
    fn the_cursor_remembers_the_newest_entry_it_applied() {
        let mut cursor = LogCursor::after(10);
        assert_eq!(cursor.newest(), None, "nothing read yet");
        cursor.advance(&marks(&[12, 11]), Instant::now());
        assert_eq!(cursor.newest(), Some(marks(&[12])[0]));
        cursor.advance(&marks(&[9]), Instant::now());
        assert_eq!(
            cursor.newest(),
            Some(marks(&[12])[0]),
            "an older one changes nothing"
        );
    }

    #[test]
    fn a_feed_starts_before_the_newest_position_but_not_before_the_oldest() {
        let busy = shape(1, 5_000, None);
        assert_eq!(LogCursor::starting_at(&busy).high(), 5_000 - START_LOOKBACK);
        // An idle log pruned down to its newest entry: nothing below it to wait for.
        let idle = shape(5_000, 5_000, None);
        assert_eq!(LogCursor::starting_at(&idle).high(), 4_999);
        let empty = LogShape {
            oldest: None,
            latest: 0,
            written_at: None,
        };
        assert_eq!(LogCursor::starting_at(&empty).high(), 0);
    }

    #[test]
    fn a_pruned_position_still_waited_for_counts_as_lost() {
        let now = Instant::now();
        let mut cursor = LogCursor::after(0);
        // Read 3 with 1 and 2 not visible yet (committing, or racing a prune).
        cursor.advance(&marks(&[3]), now);
        assert!(!cursor.lost_to_pruning(1));
        assert!(
            cursor.lost_to_pruning(3),
            "1 and 2 were waited for: pruned, they may be changes never read"
        );
        cursor.reloaded_at(3);
        assert!(!cursor.lost_to_pruning(3), "the reload covered them");
        assert_eq!(
            cursor.gaps(),
            [1, 2],
            "one may still commit: still waited for"
        );
        assert!(
            !cursor.lost_to_pruning(4),
            "the log starts right after what was applied"
        );
        assert!(cursor.lost_to_pruning(5));
        // A transaction still committing at 2 when the reload ran commits: the log starts
        // below where the reload stood again.
        assert!(!cursor.lost_to_pruning(2));
    }

    #[test]
    fn a_state_read_stands_for_the_positions_before_the_first_gap() {
        let mut cursor = LogCursor::after(10);
        cursor.advance(&marks(&[11, 14]), Instant::now());
        assert_eq!(cursor.applied_through(), 11, "12 may still commit");
        cursor.reloaded_at(20);
        assert_eq!(cursor.high(), 19);
        assert_eq!(
            cursor.applied_through(),
            11,
            "12 and 13 are still waited for"
        );
        cursor.give_up_older_than(Duration::ZERO, Instant::now() + Duration::from_secs(1));
        assert_eq!(cursor.applied_through(), 19);
    }

    #[test]
    fn a_log_that_no_longer_holds_the_newest_entry_applied_went_back_in_time() {
        let newest = marks(&[50])[0];
        let written = Some(newest.written_at.0);
        assert!(
            !is_rewound(newest, &shape(1, 60, written)),
            "the same history, grown"
        );
        assert!(
            !is_rewound(newest, &shape(1, 50, written)),
            "the same history, idle"
        );
        assert!(
            is_rewound(newest, &shape(1, 60, Some(newest.written_at.0 + 7))),
            "restored, and position 50 handed out again to another change"
        );
        assert!(
            is_rewound(newest, &shape(1, 40, None)),
            "restored, and not written since"
        );
        let empty = LogShape {
            oldest: None,
            latest: 0,
            written_at: None,
        };
        assert!(
            is_rewound(newest, &empty),
            "restored from before any change"
        );
        assert!(
            is_rewound(newest, &shape(30, 60, None)),
            "entry 50 is gone while 30 is left: not pruning, which removes the oldest first"
        );
        assert!(
            !is_rewound(newest, &shape(55, 60, None)),
            "pruned past entry 50: the prune check's case, not a rewind"
        );
    }

    #[test]
    fn positions_jumped_over_are_waited_for_until_they_commit() {
        let t0 = Instant::now();
        let mut cursor = LogCursor::after(10);
        cursor.advance(&marks(&[11, 14]), t0);
        assert_eq!(cursor.high(), 14);
        assert_eq!(cursor.gaps(), [12, 13], "12 and 13 have not committed yet");

        cursor.advance(&marks(&[13, 15]), t0);
        assert_eq!(cursor.high(), 15);
        assert_eq!(cursor.gaps(), [12], "13 committed late and was read");
    }

    #[test]
    fn events_read_out_of_order_leave_no_false_gaps() {
        let mut cursor = LogCursor::after(0);
        cursor.advance(&marks(&[3, 1, 2]), Instant::now());
        assert_eq!(cursor.high(), 3);
        assert!(cursor.gaps().is_empty());
    }

    #[test]
    fn a_position_never_committed_is_given_up_after_the_patience() {
        let t0 = Instant::now();
        let mut cursor = LogCursor::after(0);
        cursor.advance(&marks(&[2]), t0);
        cursor.advance(&marks(&[4]), t0 + Duration::from_secs(30));
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
        cursor.advance(&marks(&[far]), Instant::now());
        let gaps = cursor.gaps();
        assert_eq!(gaps.len(), MAX_GAPS);
        assert_eq!(gaps.first(), Some(&(far - MAX_GAPS as i64)));
        assert_eq!(gaps.last(), Some(&(far - 1)));
    }
}
