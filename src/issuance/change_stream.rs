//! `WatchTokenChanges`: streams every change that affects verification to verifiers outside the
//! server (`tokenmint-verify`'s revocation view), from a resumable cursor.
//!
//! One fan-out per server, fed by the change feed ([`super::change_feed`]): after each poll the
//! feed publishes the token states it read, and its cursor, on a broadcast channel
//! ([`ChangeHub`]). A stream ([`ChangeWatch`]):
//! 1. subscribes first, so that nothing the feed applies from then on can pass it by;
//! 2. catches up from the client's cursor by reading the log itself (every change committed
//!    before it subscribed, at a position after the cursor); a stream without a cursor instead
//!    sends the tokens no status list speaks for (minted before lists existed) that must not
//!    verify, since the client cannot learn of their past revokes anywhere else;
//! 3. then follows the broadcast.
//!
//! The same token can be sent twice (once by the catch-up, once by the broadcast) and states can
//! arrive out of order; each carries the token's log position and a consumer applies only a
//! later one (the deny list's rule). A cursor is only handed out once every change at or before
//! its position has been sent on this stream, so a client that resumes from the last cursor it
//! received misses nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::time::{Interval, MissedTickBehavior};

use crate::domain::{
    ChangeCursor, ChangeEvent, EventKind, StoredStatus, Timestamp, TokenId, TokenStateChange,
};
use crate::error::{Error, ErrorCode, Result, reason};
use crate::issuance::change_feed::is_rewound;
use crate::store::Store;
use crate::store::tokens::DeniedRowKey;

/// Log entries a catching-up stream reads per query.
const CATCH_UP_PAGE: u64 = 1_000;

/// What the change feed tells the streams.
#[derive(Debug, Clone)]
pub enum FeedUpdate {
    /// Token states read after one poll, and where the feed stands.
    Changes(Arc<ChangeBatch>),
    /// The streams can no longer be followed from where they are.
    Interrupted(Interruption),
}

/// One poll's changes.
#[derive(Debug)]
pub struct ChangeBatch {
    /// The changed tokens' states (none: only the cursor moved).
    pub changes: Vec<TokenStateChange>,
    /// The set of signing keys changed: verifiers refetch the JWKS.
    pub keys_changed: bool,
    /// Every change at or before this cursor has been applied by the feed.
    pub cursor: ChangeCursor,
}

/// Why every stream of this server ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// The log went back in time (a restore): what the clients hold may be gone.
    Rewound,
    /// The feed missed changes pruned before it read them, so the streams did too.
    Missed,
    /// The server is shutting down.
    ShuttingDown,
}

/// One item a stream sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// Changed token states (and/or a key-set change).
    Changes {
        /// The states.
        changes: Vec<TokenStateChange>,
        /// The signing keys changed.
        keys_changed: bool,
        /// Where to resume after this item; `None`: from scratch (an empty cursor), because the
        /// stream broke off in its opening snapshot.
        cursor: Option<ChangeCursor>,
    },
    /// Nothing changed; the stream is alive (also sent once a stream has caught up).
    Heartbeat {
        /// Where to resume.
        cursor: ChangeCursor,
        /// The server's time.
        now: Timestamp,
    },
}

/// Limits of the change streams.
#[derive(Debug, Clone, Copy)]
pub struct StreamPolicy {
    /// Streams open at once.
    pub max_streams: usize,
    /// Feed updates a stream may have unread before it is cut off.
    pub max_lag: usize,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// How long a message may wait for a client that stopped reading.
    pub stalled_client: Duration,
}

/// The fan-out of the change feed to the streams. Shared by the feed (which publishes) and the
/// gRPC handler (which opens streams).
pub struct ChangeHub {
    /// Where catching-up streams read the log.
    store: Store,
    sender: broadcast::Sender<FeedUpdate>,
    /// The feed's cursor after its last poll (shared with the streams, which read it when
    /// they fall out of the buffer).
    cursor: Arc<RwLock<ChangeCursor>>,
    streams: Arc<Semaphore>,
    policy: StreamPolicy,
    closed: AtomicBool,
}

impl ChangeHub {
    /// A hub with no stream yet, whose streams catch up from `store`, standing where the feed
    /// starts (`starting`: a stream opened before the feed's first poll hands out a cursor
    /// that the feed's first batches follow, not position 0, which the log may have pruned).
    pub fn new(store: Store, policy: StreamPolicy, starting: ChangeCursor) -> Self {
        let (sender, _) = broadcast::channel(policy.max_lag.max(1));
        Self {
            store,
            sender,
            cursor: Arc::new(RwLock::new(starting)),
            streams: Arc::new(Semaphore::new(policy.max_streams)),
            policy,
            closed: AtomicBool::new(false),
        }
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.policy.max_streams - self.streams.available_permits()
    }

    /// Publishes one poll's result: the feed now stands at `cursor`.
    pub fn publish(
        &self,
        changes: Vec<TokenStateChange>,
        keys_changed: bool,
        cursor: ChangeCursor,
    ) {
        *self.cursor.write().unwrap_or_else(|e| e.into_inner()) = cursor;
        // No receiver is not an error: nobody is watching.
        let _ = self.sender.send(FeedUpdate::Changes(Arc::new(ChangeBatch {
            changes,
            keys_changed,
            cursor,
        })));
    }

    /// Ends every open stream with `why`; the feed stands at `cursor` from now on.
    pub fn interrupt(&self, why: Interruption, cursor: ChangeCursor) {
        *self.cursor.write().unwrap_or_else(|e| e.into_inner()) = cursor;
        let _ = self.sender.send(FeedUpdate::Interrupted(why));
    }

    /// Ends every stream (server shutdown) and refuses new ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self
            .sender
            .send(FeedUpdate::Interrupted(Interruption::ShuttingDown));
    }

    fn current_cursor(&self) -> ChangeCursor {
        *self.cursor.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a stream from `from` (`None`: from now). Refuses a cursor whose history the log no
    /// longer holds (pruned: `CHANGE_CURSOR_EXPIRED`; restored: `CHANGE_LOG_REWOUND`), and a
    /// stream beyond the cap (`TOO_MANY_CHANGE_STREAMS`).
    pub async fn watch(&self, from: Option<ChangeCursor>) -> Result<ChangeWatch> {
        let store = &self.store;
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Error::new(
                ErrorCode::ResourceExhausted,
                reason::TOO_MANY_CHANGE_STREAMS,
                format!(
                    "this server already serves {} change streams (changes.max_streams); retry \
                     later or on another server",
                    self.policy.max_streams
                ),
            )
        })?;
        let updates = self.sender.subscribe();
        // Checked after subscribing: a `close` from then on reaches this stream.
        if self.closed.load(Ordering::SeqCst) {
            return Err(interrupted(Interruption::ShuttingDown));
        }
        // Read after subscribing: every change at or before it was applied before the
        // subscription, so it has committed and a catch-up reads it.
        let current = self.current_cursor();
        let snapshot = from.is_none().then(|| Snapshot {
            store: store.clone(),
            after: None,
        });
        let catch_up = match from {
            None => None,
            Some(cursor) => {
                check_history(store, cursor).await?;
                Some(CatchUp {
                    store: store.clone(),
                    after: cursor.resume_after,
                })
            }
        };
        let cursor = match from {
            Some(from) if from.resume_after > current.resume_after => from,
            _ => current,
        };
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + self.policy.heartbeat,
            self.policy.heartbeat,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(ChangeWatch {
            _permit: permit,
            store: store.clone(),
            hub_cursor: self.cursor.clone(),
            caught_up_to: None,
            updates,
            from_client: from,
            cursor,
            catch_up,
            snapshot,
            greeted: false,
            lag_recoveries: 0,
            heartbeat,
            caller: None,
            stalled_client: self.policy.stalled_client,
        })
    }
}

/// Fails when the log no longer holds the history `cursor` was handed out in.
async fn check_history(store: &Store, cursor: ChangeCursor) -> Result<()> {
    let shape = store
        .log_shape(cursor.newest.map_or(cursor.resume_after, |mark| mark.seq))
        .await?;
    let rewound = match cursor.newest {
        Some(mark) => is_rewound(mark, &shape),
        None => shape.latest < cursor.resume_after,
    };
    if rewound {
        return Err(interrupted(Interruption::Rewound));
    }
    if let Some(oldest) = shape
        .oldest
        .filter(|oldest| *oldest > cursor.resume_after.saturating_add(1))
    {
        return Err(Error::new(
            ErrorCode::FailedPrecondition,
            reason::CHANGE_CURSOR_EXPIRED,
            format!(
                "the change log no longer holds the changes after this cursor (it starts at \
                 position {oldest}): reload the token states from the status lists, then watch \
                 again with an empty cursor"
            ),
        )
        .with_meta("oldest_position", oldest.to_string()));
    }
    Ok(())
}

/// The error that ends a stream for `why`.
fn interrupted(why: Interruption) -> Error {
    match why {
        Interruption::Rewound => Error::new(
            ErrorCode::FailedPrecondition,
            reason::CHANGE_LOG_REWOUND,
            "the change log went back in time (the database was restored from a backup): \
             reload the token states from the status lists, then watch again with an empty \
             cursor",
        ),
        Interruption::Missed => Error::new(
            ErrorCode::FailedPrecondition,
            reason::CHANGE_CURSOR_EXPIRED,
            "this server missed changes that were pruned from the change log before it read \
             them: reload the token states from the status lists, then watch again with an \
             empty cursor",
        ),
        Interruption::ShuttingDown => Error::new(
            ErrorCode::Unavailable,
            reason::SHUTTING_DOWN,
            "the server is shutting down: resume from the last cursor, here or on another server",
        ),
    }
}

/// The opening snapshot of a stream started without a cursor: the denied tokens without a
/// status list entry, read a page at a time in (expiry, id) order.
struct Snapshot {
    store: Store,
    /// The last row read.
    after: Option<DeniedRowKey>,
}

/// How many times a stream may fall out of the feed's buffer before its greeting and re-read
/// the log instead; the next time it is cut off as too slow.
const MAX_LAG_RECOVERIES: u32 = 2;

/// How long after its expiry a denied token is still in a snapshot: verifiers accept a token a
/// little past `exp` (their leeway), and forget the states of expired tokens after an hour.
const SNAPSHOT_EXPIRED_MARGIN_SECS: i64 = 3_600;

/// The log reads of a stream that has not caught up yet.
struct CatchUp {
    store: Store,
    /// The highest position read so far.
    after: i64,
}

/// One open change stream: catches up, then follows the feed. Holds a slot of the stream cap
/// until dropped.
pub struct ChangeWatch {
    _permit: OwnedSemaphorePermit,
    /// Where the stream reads the log when the feed's buffer no longer holds what it missed.
    store: Store,
    /// The hub's cursor (see [`ChangeHub`]).
    hub_cursor: Arc<RwLock<ChangeCursor>>,
    /// The hub's cursor when the stream last subscribed afresh: once the catch-up that follows
    /// is done, every change at or before it has been sent.
    caught_up_to: Option<ChangeCursor>,
    updates: broadcast::Receiver<FeedUpdate>,
    /// The client's cursor, handed back while catching up.
    from_client: Option<ChangeCursor>,
    /// The cursor to hand out once caught up: every change at or before it has been sent.
    cursor: ChangeCursor,
    catch_up: Option<CatchUp>,
    snapshot: Option<Snapshot>,
    /// Whether the first heartbeat (sent once caught up) went out.
    greeted: bool,
    /// Times the stream fell out of the feed's buffer before its greeting and re-read the log.
    lag_recoveries: u32,
    heartbeat: Interval,
    /// The token the stream was opened with, if bound: the stream ends with it.
    caller: Option<StreamCaller>,
    stalled_client: Duration,
}

/// The token a stream was opened with. Authority does not outlive it: the stream ends when the
/// token expires, or when the stream itself carries its revoke, suspension or deletion.
#[derive(Debug, Clone, Copy)]
pub struct StreamCaller {
    /// The calling token.
    pub token_id: TokenId,
    /// When it expires.
    pub expires_at: Timestamp,
}

/// UNAUTHENTICATED INVALID_CREDENTIALS: the stream's caller token stopped being valid.
fn caller_gone(why: &str) -> Error {
    Error::new(
        ErrorCode::Unauthenticated,
        reason::INVALID_CREDENTIALS,
        format!(
            "the bearer token this stream was opened with {why}: open it again with a valid one"
        ),
    )
}

impl ChangeWatch {
    /// Ends the stream with `caller`'s token (see [`StreamCaller`]); refuses a token already
    /// past its `exp` (one the authentication leeway still let in), which would otherwise be
    /// greeted and cut off at once, over and over.
    pub fn bound_to(mut self, caller: StreamCaller) -> Result<Self> {
        if caller.expires_at.as_secs() <= Timestamp::now().as_secs() {
            return Err(caller_gone("expired"));
        }
        self.caller = Some(caller);
        Ok(self)
    }

    /// How long the server waits for the client to take one message before ending the stream
    /// (`changes.stalled_client_ms`).
    pub fn stalled_client(&self) -> Duration {
        self.stalled_client
    }

    /// The next item to send; an error ends the stream.
    pub async fn next(&mut self) -> Result<WatchItem> {
        let mut item = self.next_unchecked().await?;
        // Until its greeting, a stream opened from scratch hands out no cursor: a client cut
        // off before it must start from scratch again (drop its lists, note when coverage
        // began), not resume as if it had been following.
        if let WatchItem::Changes { cursor, .. } = &mut item
            && self.from_client.is_none()
            && !self.greeted
        {
            *cursor = None;
        }
        if let (Some(caller), WatchItem::Changes { changes, .. }) = (&self.caller, &item)
            && let Some(change) = changes.iter().find(|c| c.token.id == caller.token_id)
            && (change.token.deleted || change.token.status != StoredStatus::Active)
        {
            return Err(caller_gone("was revoked, suspended or deleted"));
        }
        Ok(item)
    }

    async fn next_unchecked(&mut self) -> Result<WatchItem> {
        // The snapshot, the catch-up and the greeting; caught up, a stream follows the feed.
        'opening: loop {
            if let Some(snapshot) = &mut self.snapshot {
                let horizon = Timestamp::now().plus_secs(-SNAPSHOT_EXPIRED_MARGIN_SECS);
                let (page, next) = snapshot
                    .store
                    .denied_unlisted_tokens(horizon, snapshot.after.as_ref(), CATCH_UP_PAGE)
                    .await?;
                match next {
                    Some(next) => snapshot.after = Some(next),
                    None => self.snapshot = None,
                }
                if !page.is_empty() {
                    // Read after subscribing: at least as recent as every change at or before the
                    // cursor, and any later change comes with a later position.
                    let position = self.cursor.resume_after;
                    return Ok(WatchItem::Changes {
                        changes: page
                            .into_iter()
                            .map(|token| TokenStateChange { token, position })
                            .collect(),
                        keys_changed: false,
                        cursor: None,
                    });
                }
            }
            while let Some(catch_up) = &mut self.catch_up {
                let store = catch_up.store.clone();
                let events = store.events_after(catch_up.after, CATCH_UP_PAGE).await?;
                if let Some(last) = events.last() {
                    catch_up.after = last.seq;
                }
                if (events.len() as u64) < CATCH_UP_PAGE {
                    self.catch_up = None;
                }
                let read = LogChanges::read(&store, &events).await?;
                // A page with nothing to say (its tokens' rows are gone) is skipped: a message
                // without changes means "caught up" to the client.
                if !read.changes.is_empty() || read.keys_changed {
                    return Ok(WatchItem::Changes {
                        changes: read.changes,
                        keys_changed: read.keys_changed,
                        // Changes after it may still be on their way: the client's own cursor.
                        cursor: Some(self.from_client.unwrap_or(self.cursor)),
                    });
                }
            }
            if let Some(caught_up_to) = self.caught_up_to.take()
                && caught_up_to.resume_after >= self.cursor.resume_after
            {
                self.cursor = caught_up_to;
            }
            if !self.greeted {
                // Batches the feed published while this stream caught up go out before the
                // greeting, which tells the client it has everything up to now.
                loop {
                    match self.updates.try_recv() {
                        Ok(update) => {
                            if let Some(item) = self.item_of(update)? {
                                return Ok(item);
                            }
                        }
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {
                            // The stream spent longer in its snapshot or catch-up than the feed's
                            // buffer lasts. What fell out of the buffer is in the log: read it
                            // from there rather than end a stream whose client would restart
                            // into the same lag. The buffer is emptied first: every batch
                            // published before that has committed, so the read sees it. A
                            // stream that cannot keep up even so is cut off as too slow.
                            self.lag_recoveries += 1;
                            if self.lag_recoveries > MAX_LAG_RECOVERIES {
                                return Err(too_slow());
                            }
                            // Skip what the buffer still holds (the log read covers it), but
                            // not an interruption: it ends the stream as it would have.
                            loop {
                                match self.updates.try_recv() {
                                    Ok(FeedUpdate::Interrupted(why)) => {
                                        return Err(interrupted(why));
                                    }
                                    Ok(FeedUpdate::Changes(_))
                                    | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                                    Err(broadcast::error::TryRecvError::Empty) => break,
                                    Err(broadcast::error::TryRecvError::Closed) => {
                                        return Err(interrupted(Interruption::ShuttingDown));
                                    }
                                }
                            }
                            self.caught_up_to =
                                Some(*self.hub_cursor.read().unwrap_or_else(|e| e.into_inner()));
                            check_history(&self.store, self.cursor).await?;
                            self.catch_up = Some(CatchUp {
                                store: self.store.clone(),
                                after: self.cursor.resume_after,
                            });
                            continue 'opening;
                        }
                        Err(broadcast::error::TryRecvError::Closed) => {
                            return Err(interrupted(Interruption::ShuttingDown));
                        }
                    }
                }
                self.greeted = true;
                return Ok(self.heartbeat_item());
            }
            break;
        }
        let caller_expiry = self.caller.map(|caller| {
            let left = caller
                .expires_at
                .as_secs()
                .saturating_sub(Timestamp::now().as_secs());
            tokio::time::Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0))
        });
        loop {
            tokio::select! {
                // Updates already waiting go out before a heartbeat.
                biased;
                () = tokio::time::sleep_until(caller_expiry.unwrap_or_else(far_future)),
                    if caller_expiry.is_some() => return Err(caller_gone("expired")),
                update = self.updates.recv() => match update {
                    Ok(update) => {
                        if let Some(item) = self.item_of(update)? {
                            return Ok(item);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return Err(too_slow()),
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(interrupted(Interruption::ShuttingDown));
                    }
                },
                _ = self.heartbeat.tick() => return Ok(self.heartbeat_item()),
            }
        }
    }

    /// What a feed update means for this stream: an item to send, nothing (a batch that only
    /// moved the cursor, which goes out with the next item), or the end.
    fn item_of(&mut self, update: FeedUpdate) -> Result<Option<WatchItem>> {
        match update {
            FeedUpdate::Changes(batch) => {
                if batch.cursor.resume_after >= self.cursor.resume_after {
                    self.cursor = batch.cursor;
                }
                if batch.changes.is_empty() && !batch.keys_changed {
                    return Ok(None);
                }
                Ok(Some(WatchItem::Changes {
                    changes: batch.changes.clone(),
                    keys_changed: batch.keys_changed,
                    cursor: Some(self.cursor),
                }))
            }
            FeedUpdate::Interrupted(why) => Err(interrupted(why)),
        }
    }

    fn heartbeat_item(&self) -> WatchItem {
        WatchItem::Heartbeat {
            cursor: self.cursor,
            now: Timestamp::now(),
        }
    }
}

/// A deadline that never comes (for a disabled `select!` arm).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// The error for a consumer that fell too far behind.
fn too_slow() -> Error {
    Error::new(
        ErrorCode::Aborted,
        reason::CHANGE_STREAM_TOO_SLOW,
        "the stream fell too far behind the server's changes (changes.max_lag): resume from \
         the last cursor received",
    )
}

/// What a run of change-log entries changed, as read from the store.
#[derive(Debug)]
pub struct LogChanges {
    /// The current state of every changed token that still has a row, with the token's latest
    /// position among the entries.
    pub changes: Vec<TokenStateChange>,
    /// Every token the entries name (with or without a row).
    pub tokens: Vec<TokenId>,
    /// Whether an entry changed the key set.
    pub keys_changed: bool,
}

impl LogChanges {
    /// Reads the current states of the tokens `events` name.
    pub async fn read(store: &Store, events: &[ChangeEvent]) -> Result<Self> {
        let mut positions: HashMap<TokenId, i64> = HashMap::new();
        let mut keys_changed = false;
        for event in events {
            match (event.kind, event.token_id) {
                (EventKind::TokenChanged, Some(id)) => {
                    let position = positions.entry(id).or_insert(event.seq);
                    *position = (*position).max(event.seq);
                }
                (EventKind::TokenChanged, None) => {}
                (EventKind::KeysChanged, _) => keys_changed = true,
            }
        }
        let tokens: Vec<TokenId> = positions.keys().copied().collect();
        let changes = store
            .token_states(&tokens)
            .await?
            .into_iter()
            .map(|token| TokenStateChange {
                position: positions[&token.id],
                token,
            })
            .collect();
        Ok(Self {
            changes,
            tokens,
            keys_changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeniedToken, StoredStatus};

    async fn hub(dir: &std::path::Path, max_lag: usize) -> ChangeHub {
        let store = Store::migrated_sqlite_in(dir, 2, Duration::from_secs(5)).await;
        ChangeHub::new(
            store,
            StreamPolicy {
                max_streams: 4,
                max_lag,
                heartbeat: Duration::from_secs(3600),
                stalled_client: Duration::from_secs(30),
            },
            cursor(0),
        )
    }

    fn cursor(resume_after: i64) -> ChangeCursor {
        ChangeCursor {
            resume_after,
            newest: None,
        }
    }

    fn revoked(position: i64) -> TokenStateChange {
        TokenStateChange {
            token: DeniedToken {
                id: TokenId::generate(),
                status: StoredStatus::Revoked,
                deleted: false,
                expires_at: Timestamp(i64::MAX),
            },
            position,
        }
    }

    #[tokio::test]
    async fn a_stream_hands_out_a_cursor_only_with_the_changes_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path(), 8).await;
        let mut watch = hub.watch(None).await.unwrap();
        let greeting = watch.next().await.unwrap();
        assert!(
            matches!(greeting, WatchItem::Heartbeat { cursor: c, .. } if c == cursor(0)),
            "{greeting:?}"
        );
        let change = revoked(5);
        hub.publish(vec![change.clone()], false, cursor(5));
        hub.publish(Vec::new(), false, cursor(6));
        hub.publish(Vec::new(), true, cursor(7));
        assert_eq!(
            watch.next().await.unwrap(),
            WatchItem::Changes {
                changes: vec![change],
                keys_changed: false,
                cursor: Some(cursor(5)),
            }
        );
        // The batch that only moved the cursor is not sent; its cursor goes with the next one.
        assert_eq!(
            watch.next().await.unwrap(),
            WatchItem::Changes {
                changes: Vec::new(),
                keys_changed: true,
                cursor: Some(cursor(7)),
            }
        );
    }

    #[tokio::test]
    async fn changes_published_while_a_stream_caught_up_go_out_before_its_greeting() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path(), 8).await;
        let mut watch = hub.watch(None).await.unwrap();
        let change = revoked(5);
        hub.publish(Vec::new(), false, cursor(4));
        hub.publish(vec![change.clone()], false, cursor(5));
        assert_eq!(
            watch.next().await.unwrap(),
            WatchItem::Changes {
                changes: vec![change],
                keys_changed: false,
                cursor: None,
            },
            "the greeting says 'caught up': nothing waiting may come after it (and before it, a \
             stream from scratch hands out no cursor)"
        );
        let greeting = watch.next().await.unwrap();
        assert!(
            matches!(greeting, WatchItem::Heartbeat { cursor: c, .. } if c == cursor(5)),
            "{greeting:?}"
        );
    }

    /// Commits a key-set change to `hub`'s log; returns its position.
    async fn log_key_change(hub: &ChangeHub) -> i64 {
        crate::store::events::append(
            hub.store.db(),
            crate::domain::EventKind::KeysChanged,
            None,
            Timestamp::now(),
        )
        .await
        .unwrap();
        hub.store.latest_event_seq().await.unwrap()
    }

    /// A stream whose snapshot or catch-up outlasted the feed's buffer reads what fell out of
    /// it from the log: it is not cut off (a from-scratch stream could only start over, into
    /// the same lag), and nothing is lost.
    #[tokio::test]
    async fn a_stream_that_lags_before_its_greeting_reads_what_it_missed_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path(), 2).await;
        let mut watch = hub.watch(None).await.unwrap();
        let position = log_key_change(&hub).await;
        // The key change, then two batches that push it out of a buffer of two.
        hub.publish(Vec::new(), true, cursor(position));
        hub.publish(Vec::new(), false, cursor(position + 1));
        hub.publish(Vec::new(), false, cursor(position + 2));
        assert_eq!(
            watch.next().await.unwrap(),
            WatchItem::Changes {
                changes: Vec::new(),
                keys_changed: true,
                cursor: None,
            },
            "the key change that fell out of the buffer comes from the log"
        );
        let greeting = watch.next().await.unwrap();
        assert!(
            matches!(greeting, WatchItem::Heartbeat { cursor: c, .. } if c == cursor(position + 2)),
            "{greeting:?}"
        );
    }

    /// An interruption still in the buffer when a stream recovers from a lag ends it.
    #[tokio::test]
    async fn a_stream_recovering_from_a_lag_still_hears_an_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path(), 2).await;
        let mut watch = hub.watch(None).await.unwrap();
        for position in 0..3 {
            hub.publish(Vec::new(), false, cursor(position));
        }
        hub.interrupt(Interruption::Rewound, cursor(0));
        let error = watch.next().await.unwrap_err();
        assert_eq!(error.reason, reason::CHANGE_LOG_REWOUND);
    }

    /// A stream that keeps falling out of the buffer before its greeting re-reads the log
    /// twice, then is cut off: it cannot loop on re-reads that never catch up.
    #[tokio::test]
    async fn a_stream_that_keeps_lagging_before_its_greeting_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path(), 1).await;
        // A key change committed and published twice: the buffer of one overflows.
        let change_and_overflow = || async {
            let position = log_key_change(&hub).await;
            hub.publish(Vec::new(), true, cursor(position));
            hub.publish(Vec::new(), true, cursor(position));
        };
        let mut watch = hub.watch(Some(cursor(0))).await.unwrap();
        change_and_overflow().await;
        // The catch-up, then each re-read after a lag, sends the key change read from the log.
        for _ in 0..=MAX_LAG_RECOVERIES {
            let item = watch.next().await.unwrap();
            assert!(
                matches!(
                    item,
                    WatchItem::Changes {
                        keys_changed: true,
                        ..
                    }
                ),
                "{item:?}"
            );
            change_and_overflow().await;
        }
        let error = watch.next().await.unwrap_err();
        assert_eq!(error.reason, reason::CHANGE_STREAM_TOO_SLOW);
    }

    #[tokio::test]
    async fn a_stream_that_falls_too_far_behind_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path(), 2).await;
        let mut watch = hub.watch(None).await.unwrap();
        watch.next().await.unwrap();
        for position in 1..=3 {
            hub.publish(vec![revoked(position)], false, cursor(position));
        }
        let error = watch.next().await.unwrap_err();
        assert_eq!(error.code, ErrorCode::Aborted);
        assert_eq!(error.reason, reason::CHANGE_STREAM_TOO_SLOW);
    }

    #[tokio::test]
    async fn interruptions_end_every_stream_and_a_closed_hub_opens_none() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path(), 8).await;
        let mut first = hub.watch(None).await.unwrap();
        first.next().await.unwrap();
        hub.interrupt(Interruption::Rewound, cursor(0));
        let error = first.next().await.unwrap_err();
        assert_eq!(error.reason, reason::CHANGE_LOG_REWOUND);

        let mut second = hub.watch(None).await.unwrap();
        second.next().await.unwrap();
        hub.close();
        assert_eq!(
            second.next().await.unwrap_err().reason,
            reason::SHUTTING_DOWN
        );
        let refused = hub.watch(None).await.err().expect("closed");
        assert_eq!(refused.reason, reason::SHUTTING_DOWN);
        assert_eq!(
            hub.open_streams(),
            2,
            "the two watches still open hold their slots; the refused one took none"
        );
        drop((first, second));
        assert_eq!(hub.open_streams(), 0, "a dropped watch frees its slot");
    }
}
