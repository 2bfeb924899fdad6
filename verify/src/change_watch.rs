//! Follows tokenmint's change stream (`TokenService.WatchTokenChanges`) into a verifier's
//! [`RevocationView`](crate::revocation::RevocationView), in a background task: reconnects with
//! backoff from the last cursor, starts over (dropping the view and the cached lists) when the
//! server says the cursor's history is gone, and refetches the keys when they change.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

use crate::claims::unix_now;
use crate::error::VerifyError;
use crate::proto::v1 as pb;
use crate::proto::v1::token_service_client::TokenServiceClient;
use crate::revocation::{ReportedState, Standing};
use crate::verifier::{Inner, Verifier};

/// The first wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait before reconnecting after the caller token was refused (expired, revoked, without
/// `token_introspect`): that lasts until someone acts, so retries need not be frequent.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// A resync within this long of the previous one waits before reconnecting (with the
/// reconnection backoff) instead of starting at once: a server that keeps sending streams back
/// to a full resync must not make every verifier reload in a tight loop.
const RESYNC_WINDOW: Duration = Duration::from_secs(30);

/// How often a refusal that goes on is logged again at error level (in between, at debug).
const REFUSAL_REMINDER: Duration = Duration::from_secs(600);

/// When the stream's refusals were last logged at error level: the first refusal and then one
/// every [`REFUSAL_REMINDER`], not one per retry.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
}

impl RefusalLog {
    /// Whether a refusal at `now` is logged at error level (and records it if so).
    fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_REMINDER);
        if due {
            self.last = Some(now);
        }
        due
    }

    /// The stream was accepted again: the next refusal is news.
    fn reset(&mut self) {
        self.last = None;
    }
}

/// A stream silent for this long (the server sends a heartbeat every 5 s by default) is taken for
/// dead and reopened.
const SILENCE: Duration = Duration::from_secs(20);

/// Where and as whom the stream is opened.
#[derive(Clone)]
pub(crate) struct StreamSource {
    /// tokenmint.
    pub(crate) client: TokenServiceClient<Channel>,
    /// `Bearer <caller token>` (scope `token_introspect`).
    pub(crate) authorization: MetadataValue<Ascii>,
}

/// Follows the stream until the verifier is dropped (`stopped` resolves or `inner` is gone).
/// `ready` learns how the first attempt went: `Ok` once the stream has caught up, or the error
/// that stopped it (the builder reports it).
pub(crate) async fn follow(
    inner: Weak<Inner>,
    source: StreamSource,
    mut ready: Option<oneshot::Sender<Result<(), VerifyError>>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut cursor = String::new();
    let mut backoff = FIRST_BACKOFF;
    let mut refusals = RefusalLog::default();
    let mut resyncs = ResyncPace::default();
    loop {
        let ended = tokio::select! {
            ended = run_once(&inner, &source, &mut cursor, &mut ready) => ended,
            _ = &mut stopped => break,
        };
        let Some(verifier) = inner.upgrade() else {
            break;
        };
        let view = &verifier.revocations().view;
        let was_connected = view.health.connected.swap(false, Ordering::Relaxed);
        if was_connected {
            view.health.disconnects.fetch_add(1, Ordering::Relaxed);
            backoff = FIRST_BACKOFF;
            refusals.reset();
        }
        let reason = reason_of(&ended);
        let must_resync = matches!(
            reason.as_deref(),
            Some("CHANGE_CURSOR_EXPIRED" | "CHANGE_LOG_REWOUND" | "INVALID_CURSOR")
        );
        if must_resync {
            tracing::warn!(
                reason = reason.as_deref().unwrap_or(""),
                "the revocation stream's history is gone: dropping what it reported and \
                 reloading the status lists"
            );
            cursor.clear();
            view.health.cover_nothing();
            // The lists go too: the states may have held revokes those lists predate. Fresh
            // lists are fetched on demand (and dropped again once the new stream caught up).
            view.clear_undoable_states();
            view.clear_lists();
            view.health.resyncs.fetch_add(1, Ordering::Relaxed);
            // A key-set change in the lost history would not be announced again either.
            let rewound = reason.as_deref() == Some("CHANGE_LOG_REWOUND");
            let verifier = Verifier::from_inner(verifier.clone());
            tokio::spawn(async move { verifier.reload_keys(rewound).await });
        } else if is_permanent(&ended) {
            if refusals.due(Instant::now()) {
                tracing::error!(
                    code = ?ended.code(),
                    message = ended.message(),
                    retry_in_s = REFUSED_RETRY.as_secs(),
                    "tokenmint refuses the revocation stream's caller token (expired, revoked, \
                     or without scope token_introspect): revocations are seen through the \
                     status lists only (this is logged again every 10 minutes while it lasts)"
                );
            } else {
                tracing::debug!(code = ?ended.code(), "the revocation stream is still refused");
            }
        } else {
            tracing::warn!(
                code = ?ended.code(),
                message = ended.message(),
                retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                "the revocation stream is down: revocations are seen through the status lists \
                 only (up to their ttl late) until it reconnects"
            );
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(Err(VerifyError::RevocationSource(format!(
                "cannot watch token changes: {:?}: {}",
                ended.code(),
                ended.message()
            ))));
            break;
        }
        drop(verifier);
        let wait = if must_resync {
            resyncs.wait(Instant::now())
        } else if is_permanent(&ended) {
            REFUSED_RETRY
        } else {
            backoff
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = &mut stopped => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    tracing::debug!("revocation stream stopped");
}

/// The ErrorInfo reason of a status, if it has one.
fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

/// Opens the stream from `cursor` and applies what it sends until it ends; returns why.
async fn run_once(
    inner: &Weak<Inner>,
    source: &StreamSource,
    cursor: &mut String,
    ready: &mut Option<oneshot::Sender<Result<(), VerifyError>>>,
) -> Status {
    let mut request = Request::new(pb::WatchTokenChangesRequest {
        cursor: cursor.clone(),
    });
    request
        .metadata_mut()
        .insert("authorization", source.authorization.clone());
    let mut stream = match source.client.clone().watch_token_changes(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status,
    };
    let from_scratch = cursor.is_empty();
    let mut caught_up = false;
    loop {
        let message = match tokio::time::timeout(SILENCE, stream.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return Status::unavailable("the server ended the stream"),
            Ok(Err(status)) => return status,
            Err(_) => return Status::unavailable("no message (not even a heartbeat) for 20 s"),
        };
        let Some(verifier) = inner.upgrade() else {
            return Status::cancelled("the verifier was dropped");
        };
        let view = &verifier.revocations().view;
        view.health.saw_message();
        let reports: Vec<ReportedState> = message.changes.iter().map(report_of).collect();
        let applied = reports.len() as u64;
        if let Some(highest) = reports.iter().map(|r| r.position).max() {
            view.health.position.fetch_max(highest, Ordering::Relaxed);
        }
        view.apply(reports);
        view.health
            .changes_applied
            .fetch_add(applied, Ordering::Relaxed);
        // Not awaited here: a slow key source must not hold up the revocations behind it.
        // Every message names the server's key-set version: a verifier that started from (or
        // refreshed at) a replica behind the stream's catches up too.
        let version = message.key_set_version;
        crate::verifier::want_key_set(&verifier, version);
        if message.keys_changed && version == 0 {
            let verifier = Verifier::from_inner(verifier.clone());
            tokio::spawn(async move { verifier.keys_changed_unversioned().await });
        }
        let heartbeat = message.changes.is_empty() && !message.keys_changed;
        if heartbeat {
            // Tokens that expired (beyond any leeway) cannot verify anyway.
            view.forget_expired(unix_now() - 3_600);
        }
        message.cursor.clone_into(cursor);
        let server_time = message
            .server_time
            .as_ref()
            .map_or_else(unix_now, |time| time.seconds);
        if heartbeat && !caught_up {
            caught_up = true;
            if from_scratch {
                // Lists rendered before the stream started may miss changes it will never send.
                view.clear_lists();
                view.health.cover_since(server_time);
            }
            view.health.connected.store(true, Ordering::Relaxed);
            tracing::debug!("revocation stream caught up");
            if let Some(ready) = ready.take() {
                let _ = ready.send(Ok(()));
            }
        }
        if caught_up {
            // Only once caught up: a catch-up page is stamped with the time it was sent, not
            // with how recent its news is.
            view.health.heard_at(server_time);
        }
    }
}

/// A reported state. A status this version cannot read (unspecified, expired, or one added
/// later) refuses the token, as a list's unknown value does: fail closed.
fn report_of(change: &pb::TokenStateChange) -> ReportedState {
    let standing = if change.deleted {
        Standing::Deleted
    } else {
        match pb::TokenStatus::try_from(change.status) {
            Ok(pb::TokenStatus::Active) => Standing::Active,
            Ok(pb::TokenStatus::Suspended) => Standing::Suspended,
            Ok(
                pb::TokenStatus::Revoked | pb::TokenStatus::Expired | pb::TokenStatus::Unspecified,
            )
            | Err(_) => Standing::Revoked,
        }
    };
    ReportedState {
        token_id: change.token_id.clone(),
        standing,
        position: change.position,
        expires_at: change.expires_at.map_or(i64::MAX, |at| at.seconds),
    }
}

/// Whether `status` is one retrying cannot fix by itself (the caller token is refused).
fn is_permanent(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unauthenticated | Code::PermissionDenied
    )
}

/// How soon a resync may reconnect: at once, unless the previous one was within
/// [`RESYNC_WINDOW`]; then after a wait that doubles with each such resync, up to
/// [`MAX_BACKOFF`].
#[derive(Debug, Default)]
struct ResyncPace {
    last: Option<Instant>,
    wait: Duration,
}

impl ResyncPace {
    /// The wait before reconnecting after a resync at `now`.
    fn wait(&mut self, now: Instant) -> Duration {
        let soon_again = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < RESYNC_WINDOW);
        self.last = Some(now);
        self.wait = if soon_again {
            (self.wait * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF)
        } else {
            Duration::ZERO
        };
        self.wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resyncs_in_a_row_back_off_and_a_lone_one_does_not() {
        let start = Instant::now();
        let mut pace = ResyncPace::default();
        assert_eq!(pace.wait(start), Duration::ZERO, "the first resync");
        let waits: Vec<Duration> = (1..=8)
            .map(|n| pace.wait(start + Duration::from_secs(n)))
            .collect();
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF, "capped");
        let later = start + Duration::from_secs(8) + RESYNC_WINDOW;
        assert_eq!(
            pace.wait(later),
            Duration::ZERO,
            "a resync long after the last one"
        );
    }

    #[test]
    fn a_lasting_refusal_is_logged_once_then_every_ten_minutes() {
        let start = Instant::now();
        let mut refusals = RefusalLog::default();
        assert!(refusals.due(start), "the first refusal");
        assert!(!refusals.due(start + REFUSED_RETRY), "not every retry");
        assert!(!refusals.due(start + REFUSAL_REMINDER - Duration::from_secs(1)));
        assert!(refusals.due(start + REFUSAL_REMINDER), "a reminder");
        refusals.reset();
        assert!(
            refusals.due(start + REFUSAL_REMINDER + REFUSED_RETRY),
            "a refusal after the stream was accepted again is news"
        );
    }
}
