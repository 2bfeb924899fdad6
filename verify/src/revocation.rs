//! What an offline [`Verifier`](crate::Verifier) knows of tokens beyond their signatures: the
//! states tokenmint's change stream (`WatchTokenChanges`) reported, and the Token Status Lists
//! the tokens point into.
//!
//! A token is refused when the stream said it is not active; otherwise, when its entry in its
//! status list is not VALID. The stream brings every change within one round trip of its
//! commit; the lists are the snapshot for tokens the stream has not mentioned since it (re)started
//! from scratch, and the fallback while it is down (then a change is seen up to the list's `ttl`
//! late). See [`decide`] for the rules and why each is safe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokenmint_jwt::status_list::{StatusList, TokenStatus};

use crate::claims::Claims;
use crate::error::VerifyError;

/// A token's state as the change stream last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Verifies.
    Active,
    /// Suspended until activated again.
    Suspended,
    /// Revoked for good.
    Revoked,
    /// Deleted: never verifies again.
    Deleted,
}

/// One reported state.
#[derive(Debug, Clone, Copy)]
struct Known {
    standing: Standing,
    /// The token's log position the state was read after.
    position: i64,
    /// The token's expiry (seconds); the state can be forgotten after it.
    expires_at: i64,
}

/// One state change as the stream reports it.
#[derive(Debug, Clone)]
pub(crate) struct ReportedState {
    /// The token's id (`jti`).
    pub(crate) token_id: String,
    /// Its state.
    pub(crate) standing: Standing,
    /// Its log position.
    pub(crate) position: i64,
    /// Its expiry (seconds since the epoch).
    pub(crate) expires_at: i64,
}

/// A status list whose Status List Token was verified, and what the token said about it.
#[derive(Debug)]
pub(crate) struct CachedList {
    /// The entries.
    pub(crate) list: StatusList,
    /// When the server rendered it (seconds): a token issued at or after this cannot be in it.
    pub(crate) iat: i64,
    /// When it stops being usable (seconds).
    pub(crate) exp: i64,
    /// How long it may be used before fetching it again.
    pub(crate) ttl: Duration,
    /// When it was fetched here.
    pub(crate) fetched_at: Instant,
}

impl CachedList {
    /// Whether the list is past its `exp`: it must not be used at all.
    pub(crate) fn expired(&self, now_secs: i64) -> bool {
        now_secs >= self.exp
    }

    /// Whether the list is older than its `ttl`: fetch it again (it may still be used meanwhile).
    pub(crate) fn stale(&self) -> bool {
        self.fetched_at.elapsed() >= self.ttl
    }
}

/// What the view says about one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It may be used.
    Accept,
    /// It may not: the reason.
    Refuse(Refusal),
    /// Its list must be fetched before anything can be said.
    NeedList,
    /// Its list says INVALID, but the list was rendered no later than the token was issued: fetch
    /// the list again if allowed; if the newest list still cannot know the token, accept it when
    /// the stream `covered` its issue (a revoke since is on the stream), else answer "not yet".
    NotYetListed {
        /// The token was issued after the stream started covering changes.
        covered: bool,
    },
}

/// The refusals a view can give (a `Copy` subset of [`VerifyError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// [`VerifyError::Revoked`].
    Revoked,
    /// [`VerifyError::Suspended`].
    Suspended,
    /// [`VerifyError::UnknownToken`] (deleted).
    UnknownToken,
}

impl From<Refusal> for VerifyError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Revoked => Self::Revoked,
            Refusal::Suspended => Self::Suspended,
            Refusal::UnknownToken => Self::UnknownToken,
        }
    }
}

/// Seconds a token's `iat` may trail a list's `iat` while the list still may not know the token:
/// a token is signed before its row commits, and replicas' clocks differ a little.
pub(crate) const ISSUE_SLACK_SECS: i64 = 2;

/// Whole seconds by which two tokenmint servers' clocks may disagree, on top of the rounding of
/// whole-second times: every comparison of one server's time (a list's `iat`, a token's `iat`)
/// with another's (the stream's heartbeats) gives the other this much in the direction that
/// could accept a token wrongly. Servers kept in sync by NTP disagree by milliseconds.
pub(crate) const CLOCK_SLACK_SECS: i64 = 1;

/// What `decide` needs to know of the stream (server time, unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamTimes {
    /// Since when every change is on the stream (its start from scratch), if it ever caught up
    /// since its last resync.
    pub(crate) covers_since: Option<i64>,
    /// The stream is connected and caught up now.
    pub(crate) connected: bool,
    /// The server time of the stream's last message (0: none).
    pub(crate) last_heard: i64,
}

/// The rules, in order. "Later" across two servers' clocks means later by more than
/// [`CLOCK_SLACK_SECS`].
/// 1. A list rendered no later than the second the stream started covering changes in is not
///    used: it may miss a change the feed had applied before the stream subscribed, which the
///    stream will never send. (Without a stream that ever covered anything, lists are all
///    there is.)
/// 2. A revoke or deletion the stream reported is final. Another state it reported wins while
///    the stream is connected, unless the list was rendered in a later second than the
///    stream's last message: then the list is newer than anything the stream said. While the
///    stream is down, the list decides (fetched if none is held). An INVALID entry in a list
///    rendered more than [`ISSUE_SLACK_SECS`] after the token's issue is final too: the stream
///    cannot undo it (a stream that calls such a token active has missed a change).
/// 3. A token without a list entry (minted before tokenmint published lists) has only the
///    stream: accepted unless the stream said otherwise, even while it is down (a stream
///    started from scratch opens with every such token that must not verify).
/// 4. VALID accepts, SUSPENDED refuses, anything else (INVALID, an index past the list's end, a
///    value the draft leaves to applications) refuses as revoked: lists fail closed.
/// 5. Except INVALID in a list rendered no more than [`ISSUE_SLACK_SECS`] after the token was
///    issued (whole seconds), for a token the stream never mentioned: it may simply be newer
///    than the list (minting is not a change on the stream). The caller fetches the list
///    again (rate-limited) and, if the newest list still cannot know the token, accepts it
///    only while the stream is connected and the token was issued in a later second than the
///    one the stream started covering changes in: a revoke since its issue is then on the
///    stream. Otherwise it gets "not yet" (an unavailable error) until a newer list tells. A
///    token lost in a restore is older than every list rendered after the restore.
pub(crate) fn decide(
    reported: Option<Standing>,
    claims: &Claims,
    list: Option<&CachedList>,
    stream: StreamTimes,
) -> Verdict {
    let later = |time: i64, than: i64| time > than.saturating_add(CLOCK_SLACK_SECS);
    let list = list.filter(|list| {
        stream
            .covers_since
            .is_none_or(|since| later(list.iat, since))
    });
    let list_is_newer = list.is_some_and(|list| later(list.iat, stream.last_heard));
    // INVALID is final for a committed token: no lifecycle change turns it back to VALID. A
    // list rendered well after the token was issued, that reads INVALID, therefore outweighs
    // a stream that still calls the token active: that stream missed a change.
    let invalid_for_good = claims
        .status_list
        .as_ref()
        .zip(list)
        .is_some_and(|(entry, list)| {
            list.iat > claims.iat.saturating_add(ISSUE_SLACK_SECS)
                && usize::try_from(entry.idx)
                    .ok()
                    .and_then(|index| list.list.get(index))
                    == Some(TokenStatus::Invalid)
        });
    match reported {
        // Final: no later state can undo them.
        Some(Standing::Revoked) => return Verdict::Refuse(Refusal::Revoked),
        Some(Standing::Deleted) => return Verdict::Refuse(Refusal::UnknownToken),
        // Only while the stream is up: a stream that is down would not report a revoke since,
        // so the list path decides (and fetches a list when none is held).
        Some(Standing::Active) if stream.connected && !list_is_newer && !invalid_for_good => {
            return Verdict::Accept;
        }
        Some(Standing::Suspended) if stream.connected && !list_is_newer => {
            return Verdict::Refuse(Refusal::Suspended);
        }
        _ => {}
    }
    let Some(entry) = &claims.status_list else {
        // No list speaks for it: the stream's last word stands, connected or not.
        return match reported {
            Some(Standing::Suspended) => Verdict::Refuse(Refusal::Suspended),
            _ => Verdict::Accept,
        };
    };
    let Some(list) = list else {
        return Verdict::NeedList;
    };
    let status = usize::try_from(entry.idx)
        .ok()
        .and_then(|index| list.list.get(index));
    match status {
        Some(TokenStatus::Valid) => Verdict::Accept,
        Some(TokenStatus::Suspended) => Verdict::Refuse(Refusal::Suspended),
        // A token the stream reported on was committed: its INVALID is not "not yet".
        Some(TokenStatus::Invalid)
            if reported.is_none() && list.iat <= claims.iat.saturating_add(ISSUE_SLACK_SECS) =>
        {
            Verdict::NotYetListed {
                covered: stream.connected
                    && stream
                        .covers_since
                        .is_some_and(|since| later(claims.iat, since)),
            }
        }
        _ => Verdict::Refuse(Refusal::Revoked),
    }
}

/// The verifier's view: reported states and cached lists, plus the stream's health.
#[derive(Debug, Default)]
pub(crate) struct RevocationView {
    states: RwLock<HashMap<String, Known>>,
    lists: RwLock<HashMap<String, Arc<CachedList>>>,
    /// When each list was last fetched or tried (fetches are rate-limited per list).
    attempts: Mutex<HashMap<String, Instant>>,
    pub(crate) health: StreamHealth,
}

impl RevocationView {
    /// The state the stream last reported for token `jti`.
    pub(crate) fn standing(&self, jti: &str) -> Option<Standing> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        states.get(jti).map(|known| known.standing)
    }

    /// Applies reported states, each only if its position is later than the one held.
    pub(crate) fn apply(&self, reports: impl IntoIterator<Item = ReportedState>) {
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        for report in reports {
            let newer = states
                .get(&report.token_id)
                .is_none_or(|known| known.position < report.position);
            if newer {
                states.insert(
                    report.token_id,
                    Known {
                        standing: report.standing,
                        position: report.position,
                        expires_at: report.expires_at,
                    },
                );
            }
        }
    }

    /// Forgets the states of tokens, and the lists, that expired before `before` (seconds). An
    /// expired list is never used; a token that names one fetches it again.
    pub(crate) fn forget_expired(&self, before: i64) {
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        states.retain(|_, known| known.expires_at >= before);
        drop(states);
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        lists.retain(|_, list| list.exp >= before);
    }

    /// Forgets every reported state that a later change could undo (the history they came
    /// from is gone). Revokes and deletions stay: they are final, and a token without a list
    /// entry has nothing else to refuse it by until the next stream's snapshot.
    pub(crate) fn clear_undoable_states(&self) {
        self.states
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, known| matches!(known.standing, Standing::Revoked | Standing::Deleted));
    }

    /// Forgets every cached list: the next use of each fetches it again.
    pub(crate) fn clear_lists(&self) {
        self.lists
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The cached list at `uri`.
    pub(crate) fn list(&self, uri: &str) -> Option<Arc<CachedList>> {
        let lists = self.lists.read().unwrap_or_else(|e| e.into_inner());
        lists.get(uri).cloned()
    }

    /// Caches `list` as the list at `uri`, unless a list rendered later is cached already.
    pub(crate) fn install_list(&self, uri: &str, list: CachedList) -> Arc<CachedList> {
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        match lists.get(uri) {
            Some(held) if held.iat > list.iat => held.clone(),
            _ => {
                let list = Arc::new(list);
                lists.insert(uri.to_owned(), list.clone());
                list
            }
        }
    }

    /// Whether the list at `uri` may be fetched now (at most once per `interval`); records the
    /// attempt when it may.
    pub(crate) fn may_fetch(&self, uri: &str, interval: Duration) -> bool {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if attempts
            .get(uri)
            .is_some_and(|at| now.duration_since(*at) < interval)
        {
            return false;
        }
        // Bounded: tokens can name many lists only if the issuer signed them all.
        if attempts.len() >= 10_000 {
            attempts.retain(|_, at| now.duration_since(*at) < interval);
        }
        attempts.insert(uri.to_owned(), now);
        true
    }

    /// How many token states and lists are held.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner()).len();
        let lists = self.lists.read().unwrap_or_else(|e| e.into_inner()).len();
        (states, lists)
    }
}

/// What the change stream did, for [`crate::RevocationHealth`].
#[derive(Debug, Default)]
pub(crate) struct StreamHealth {
    pub(crate) connected: AtomicBool,
    pub(crate) disconnects: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) changes_applied: AtomicU64,
    /// The highest token position applied.
    pub(crate) position: AtomicI64,
    /// The server time (unix seconds) of the stream's last message.
    last_heard: AtomicI64,
    /// The server's time (unix seconds) when the stream, started from scratch, caught up:
    /// every change committed after it is on the stream. 0 while no stream covers anything.
    covers_since: AtomicI64,
    pub(crate) last_message: Mutex<Option<Instant>>,
}

impl StreamHealth {
    /// The second since which every change is on the stream, if any (see [`decide`]).
    pub(crate) fn covers_since(&self) -> Option<i64> {
        Some(self.covers_since.load(Ordering::Relaxed)).filter(|since| *since > 0)
    }

    /// The stream covers every change committed after `server_time` (unix seconds).
    pub(crate) fn cover_since(&self, server_time: i64) {
        self.covers_since
            .store(server_time.max(1), Ordering::Relaxed);
    }

    /// A message with `server_time` (unix seconds) arrived.
    pub(crate) fn heard_at(&self, server_time: i64) {
        self.last_heard.fetch_max(server_time, Ordering::Relaxed);
    }

    /// What [`decide`] needs to know of the stream now.
    pub(crate) fn times(&self) -> StreamTimes {
        StreamTimes {
            covers_since: self.covers_since(),
            connected: self.connected.load(Ordering::Relaxed),
            last_heard: self.last_heard.load(Ordering::Relaxed),
        }
    }

    /// The stream's history is gone: it covers nothing until it starts again.
    pub(crate) fn cover_nothing(&self) {
        self.covers_since.store(0, Ordering::Relaxed);
    }

    pub(crate) fn saw_message(&self) {
        *self.last_message.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

/// How an offline verifier's view of revocations is doing: export it as metrics, alert on
/// `stream_connected == false` for long.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevocationHealth {
    /// Whether the change stream is connected and caught up. While it is not, revocations are
    /// seen through the status lists only: up to their `ttl` late (60 s by default) while
    /// lists can be fetched, and up to their `exp` (600 s by default) when fetching fails
    /// (each failed refresh is logged at warn level).
    pub stream_connected: bool,
    /// Times the stream was lost since the verifier was built.
    pub stream_disconnects: u64,
    /// Times the view was dropped and rebuilt from the status lists (the change log no longer
    /// covered the stream's cursor, or the database was restored from a backup).
    pub resyncs: u64,
    /// Token states received from the stream.
    pub changes_applied: u64,
    /// Token states held (until their tokens expire).
    pub tracked_tokens: usize,
    /// Status lists cached.
    pub cached_lists: usize,
    /// Time since the stream's last message (changes or heartbeat).
    pub since_last_message: Option<Duration>,
}

impl RevocationView {
    /// A snapshot of the stream's health and the view's size.
    pub(crate) fn health(&self) -> RevocationHealth {
        let (tracked_tokens, cached_lists) = self.sizes();
        let health = &self.health;
        RevocationHealth {
            stream_connected: health.connected.load(Ordering::Relaxed),
            stream_disconnects: health.disconnects.load(Ordering::Relaxed),
            resyncs: health.resyncs.load(Ordering::Relaxed),
            changes_applied: health.changes_applied.load(Ordering::Relaxed),
            tracked_tokens,
            cached_lists,
            since_last_message: health
                .last_message
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|at| at.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::StatusListEntry;

    fn claims(iat: i64, entry: Option<u64>) -> Claims {
        Claims {
            iat,
            nbf: iat,
            exp: iat + 3600,
            status_list: entry.map(|idx| StatusListEntry {
                uri: "https://t.example/statuslists/x".into(),
                idx,
            }),
            ..Claims::of_alice()
        }
    }

    /// A connected stream that started covering changes long before every token and list here,
    /// and spoke after them.
    const STREAM: StreamTimes = StreamTimes {
        covers_since: Some(10),
        connected: true,
        last_heard: 1_000,
    };

    /// A list of 16 entries rendered at `iat`: 0 VALID, 1 SUSPENDED, every other INVALID.
    fn list(iat: i64) -> CachedList {
        let mut list = StatusList::filled(2, 4, TokenStatus::Invalid);
        list.set(0, TokenStatus::Valid);
        list.set(1, TokenStatus::Suspended);
        CachedList {
            list,
            iat,
            exp: iat + 600,
            ttl: Duration::from_secs(60),
            fetched_at: Instant::now(),
        }
    }

    #[test]
    fn a_state_from_the_stream_wins_over_the_list() {
        let listed = list(100);
        let valid = claims(50, Some(0));
        let refused = [
            (Standing::Suspended, Refusal::Suspended),
            (Standing::Revoked, Refusal::Revoked),
            (Standing::Deleted, Refusal::UnknownToken),
        ];
        for (standing, why) in refused {
            assert_eq!(
                decide(Some(standing), &valid, Some(&listed), STREAM),
                Verdict::Refuse(why)
            );
        }
        assert_eq!(
            decide(
                Some(Standing::Active),
                &claims(50, Some(2)),
                Some(&listed),
                STREAM
            ),
            Verdict::Refuse(Refusal::Revoked),
            "INVALID long after the token's issue is final: the stream missed a change"
        );
        assert_eq!(
            decide(
                Some(Standing::Active),
                &claims(98, Some(2)),
                Some(&listed),
                STREAM
            ),
            Verdict::Accept,
            "issued just before the render: maybe committed after it, and the stream knows"
        );
        let suspended_in_list = claims(50, Some(1));
        assert_eq!(
            decide(
                Some(Standing::Active),
                &suspended_in_list,
                Some(&listed),
                STREAM
            ),
            Verdict::Accept,
            "activated after the list was rendered"
        );
    }

    #[test]
    fn the_list_decides_for_tokens_the_stream_did_not_mention() {
        let listed = list(100);
        assert_eq!(
            decide(None, &claims(50, Some(0)), Some(&listed), STREAM),
            Verdict::Accept
        );
        assert_eq!(
            decide(None, &claims(50, Some(1)), Some(&listed), STREAM),
            Verdict::Refuse(Refusal::Suspended)
        );
        assert_eq!(
            decide(None, &claims(50, Some(2)), Some(&listed), STREAM),
            Verdict::Refuse(Refusal::Revoked)
        );
        assert_eq!(
            decide(None, &claims(50, Some(16)), Some(&listed), STREAM),
            Verdict::Refuse(Refusal::Revoked),
            "an index past the end fails closed"
        );
        assert_eq!(
            decide(None, &claims(50, Some(u64::MAX)), Some(&listed), STREAM),
            Verdict::Refuse(Refusal::Revoked)
        );
        assert_eq!(
            decide(None, &claims(50, Some(0)), None, STREAM),
            Verdict::NeedList
        );
        assert_eq!(
            decide(None, &claims(50, None), None, STREAM),
            Verdict::Accept,
            "a token without an entry has only the stream"
        );
    }

    #[test]
    fn invalid_in_a_list_older_than_the_token_is_not_yet_known() {
        let listed = list(100);
        let covered = Verdict::NotYetListed { covered: true };
        assert_eq!(
            decide(None, &claims(100, Some(2)), Some(&listed), STREAM),
            covered,
            "issued in the second the list was rendered"
        );
        assert_eq!(
            decide(None, &claims(101, Some(2)), Some(&listed), STREAM),
            covered
        );
        assert_eq!(
            decide(None, &claims(97, Some(2)), Some(&listed), STREAM),
            Verdict::Refuse(Refusal::Revoked),
            "issued well before the render: the list knows"
        );
    }

    #[test]
    fn a_token_issued_before_the_stream_covered_changes_is_not_accepted_on_a_guess() {
        let listed = list(100);
        let uncovered = Verdict::NotYetListed { covered: false };
        let started_at_99 = StreamTimes {
            covers_since: Some(99),
            ..STREAM
        };
        // The stream started in second 99 (on its server's clock). Issued in 101 (on the
        // minting server's): covered. Issued in 100: with clocks a second apart, the revoke
        // may predate the stream; in 99, even without.
        let started_at_99_listed_101 = list(101);
        assert_eq!(
            decide(
                None,
                &claims(101, Some(2)),
                Some(&started_at_99_listed_101),
                started_at_99
            ),
            Verdict::NotYetListed { covered: true }
        );
        for issued in [99, 100] {
            assert_eq!(
                decide(
                    None,
                    &claims(issued, Some(2)),
                    Some(&started_at_99_listed_101),
                    started_at_99
                ),
                uncovered,
                "issued in {issued}"
            );
        }
        let down = StreamTimes {
            connected: false,
            ..started_at_99
        };
        assert_eq!(
            decide(
                None,
                &claims(101, Some(2)),
                Some(&started_at_99_listed_101),
                down
            ),
            uncovered,
            "a stream that is down reports nothing"
        );
        let never = StreamTimes {
            covers_since: None,
            connected: false,
            last_heard: 0,
        };
        assert_eq!(
            decide(None, &claims(101, Some(2)), Some(&listed), never),
            uncovered
        );
    }

    #[test]
    fn a_token_a_little_older_than_the_list_may_still_be_missing_from_it() {
        // Signed in second 98, committed after a render in second 100 read the rows.
        let listed = list(100);
        assert_eq!(
            decide(None, &claims(98, Some(2)), Some(&listed), STREAM),
            Verdict::NotYetListed { covered: true }
        );
        assert_eq!(
            decide(None, &claims(97, Some(2)), Some(&listed), STREAM),
            Verdict::Refuse(Refusal::Revoked)
        );
    }

    #[test]
    fn a_list_rendered_before_the_stream_covered_changes_is_not_used() {
        // The stream started in second 100; a list rendered then may miss a revoke the server
        // had applied before the stream subscribed.
        let stream = StreamTimes {
            covers_since: Some(100),
            ..STREAM
        };
        assert_eq!(
            decide(None, &claims(50, Some(0)), Some(&list(100)), stream),
            Verdict::NeedList
        );
        assert_eq!(
            decide(None, &claims(50, Some(0)), Some(&list(101)), stream),
            Verdict::NeedList,
            "one second later on another server's clock may still be before"
        );
        assert_eq!(
            decide(None, &claims(50, Some(0)), Some(&list(102)), stream),
            Verdict::Accept
        );
        let no_stream_ever = StreamTimes {
            covers_since: None,
            connected: false,
            last_heard: 0,
        };
        assert_eq!(
            decide(None, &claims(50, Some(2)), Some(&list(100)), no_stream_ever),
            Verdict::Refuse(Refusal::Revoked),
            "without a stream, lists are all there is"
        );
    }

    #[test]
    fn a_revoke_the_stream_reported_is_final_whatever_the_lists_say() {
        // Issued and revoked in second 100; a list rendered in 101 or 102 (102: after the
        // stream's last message, in 100, whatever the clocks) reads INVALID: the young-token rule must not turn that into "maybe
        // not committed yet".
        let heard_at_100 = StreamTimes {
            last_heard: 100,
            ..STREAM
        };
        let revoked_in_list = claims(100, Some(2));
        assert_eq!(
            decide(
                Some(Standing::Revoked),
                &revoked_in_list,
                Some(&list(101)),
                heard_at_100
            ),
            Verdict::Refuse(Refusal::Revoked)
        );
        assert_eq!(
            decide(
                Some(Standing::Active),
                &revoked_in_list,
                Some(&list(102)),
                heard_at_100
            ),
            Verdict::Refuse(Refusal::Revoked),
            "a token the stream reported on was committed: INVALID means revoked"
        );
        let valid_in_list = claims(100, Some(0));
        assert_eq!(
            decide(
                Some(Standing::Deleted),
                &valid_in_list,
                Some(&list(101)),
                heard_at_100
            ),
            Verdict::Refuse(Refusal::UnknownToken)
        );
    }

    #[test]
    fn a_stream_that_is_down_does_not_vouch_for_what_it_last_said() {
        // The stream said ACTIVE (a label edit), then went down; the token may have been
        // revoked since. Without a usable list, the verifier must fetch one, not accept.
        let down = StreamTimes {
            connected: false,
            ..STREAM
        };
        let valid = claims(50, Some(0));
        assert_eq!(
            decide(Some(Standing::Active), &valid, None, down),
            Verdict::NeedList
        );
        assert_eq!(
            decide(Some(Standing::Active), &valid, None, STREAM),
            Verdict::Accept
        );
        let revoked_in_list = claims(50, Some(2));
        assert_eq!(
            decide(
                Some(Standing::Active),
                &revoked_in_list,
                Some(&list(100)),
                down
            ),
            Verdict::Refuse(Refusal::Revoked),
            "the list decides, whenever it was rendered"
        );
    }

    #[test]
    fn a_list_newer_than_the_streams_last_word_overrides_its_states() {
        // The stream said ACTIVE (a label edit, an activation), then went quiet (a connection
        // not yet noticed dead); the token was revoked since, and a list rendered after the
        // stream's last message says so.
        let silent_since_200 = StreamTimes {
            connected: true,
            last_heard: 200,
            ..STREAM
        };
        let revoked_in_list = claims(50, Some(2));
        assert_eq!(
            decide(
                Some(Standing::Active),
                &revoked_in_list,
                Some(&list(202)),
                silent_since_200
            ),
            Verdict::Refuse(Refusal::Revoked)
        );
        let suspended_in_list = claims(50, Some(1));
        for rendered in [200, 201] {
            assert_eq!(
                decide(
                    Some(Standing::Active),
                    &suspended_in_list,
                    Some(&list(rendered)),
                    silent_since_200
                ),
                Verdict::Accept,
                "a list from the second the stream last spoke in, or the next on a clock a \
                 second ahead, may predate what it said (an activation; rendered in {rendered})"
            );
            assert_eq!(
                decide(
                    Some(Standing::Active),
                    &revoked_in_list,
                    Some(&list(rendered)),
                    silent_since_200
                ),
                Verdict::Refuse(Refusal::Revoked),
                "INVALID is final whenever the list was rendered: nothing after it makes the \
                 token active again (rendered in {rendered})"
            );
        }
    }

    fn report(id: &str, standing: Standing, position: i64) -> ReportedState {
        ReportedState {
            token_id: id.into(),
            standing,
            position,
            expires_at: 1_000,
        }
    }

    #[test]
    fn an_older_report_never_overwrites_a_newer_one() {
        let view = RevocationView::default();
        view.apply([report("a", Standing::Revoked, 10)]);
        view.apply([report("a", Standing::Active, 9)]);
        assert_eq!(view.standing("a"), Some(Standing::Revoked));
        view.apply([report("a", Standing::Active, 10)]);
        assert_eq!(view.standing("a"), Some(Standing::Revoked), "same position");
        view.apply([
            report("b", Standing::Suspended, 11),
            report("b", Standing::Active, 12),
        ]);
        assert_eq!(view.standing("b"), Some(Standing::Active));
        view.forget_expired(1_001);
        assert_eq!(view.standing("a"), None, "expired tokens are forgotten");
    }

    #[test]
    fn expired_lists_are_forgotten() {
        let view = RevocationView::default();
        view.install_list("https://t.example/old", list(100));
        view.install_list("https://t.example/new", list(1_000));
        view.forget_expired(701);
        assert!(view.list("https://t.example/old").is_none());
        assert!(view.list("https://t.example/new").is_some());
    }

    #[test]
    fn a_token_without_a_list_entry_keeps_the_streams_last_word_while_it_is_down() {
        let unlisted = claims(50, None);
        let down = StreamTimes {
            connected: false,
            ..STREAM
        };
        for stream in [STREAM, down] {
            assert_eq!(
                decide(Some(Standing::Suspended), &unlisted, None, stream),
                Verdict::Refuse(Refusal::Suspended)
            );
            assert_eq!(
                decide(Some(Standing::Revoked), &unlisted, None, stream),
                Verdict::Refuse(Refusal::Revoked)
            );
            assert_eq!(
                decide(Some(Standing::Active), &unlisted, None, stream),
                Verdict::Accept
            );
        }
    }

    #[test]
    fn a_resync_keeps_final_states_only() {
        let view = RevocationView::default();
        view.apply([
            report("revoked", Standing::Revoked, 1),
            report("deleted", Standing::Deleted, 2),
            report("suspended", Standing::Suspended, 3),
            report("active", Standing::Active, 4),
        ]);
        view.clear_undoable_states();
        assert_eq!(view.standing("revoked"), Some(Standing::Revoked));
        assert_eq!(view.standing("deleted"), Some(Standing::Deleted));
        assert_eq!(view.standing("suspended"), None);
        assert_eq!(view.standing("active"), None);
    }

    #[test]
    fn a_list_rendered_earlier_does_not_replace_a_later_one() {
        let view = RevocationView::default();
        view.install_list("u", list(200));
        let kept = view.install_list("u", list(100));
        assert_eq!(kept.iat, 200);
        assert_eq!(view.list("u").map(|l| l.iat), Some(200));
        view.install_list("u", list(300));
        assert_eq!(view.list("u").map(|l| l.iat), Some(300));
    }

    #[test]
    fn list_fetches_are_rate_limited_per_list() {
        let view = RevocationView::default();
        let second = Duration::from_secs(1);
        assert!(view.may_fetch("u", second));
        assert!(!view.may_fetch("u", second));
        assert!(view.may_fetch("v", second));
        assert!(view.may_fetch("u", Duration::ZERO));
    }
}
