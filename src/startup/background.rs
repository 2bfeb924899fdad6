//! The background tasks of a running server: the change-feed poller (and, on PostgreSQL, the
//! listener that wakes it), the last-used flusher and housekeeping, each stopped by one shutdown
//! signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::Core;
use crate::config::Settings;
use crate::domain::Timestamp;
use crate::issuance::change_feed::{ChangeFeed, FeedHealth, FeedTargets};
use crate::issuance::deny_list::DenyList;
use crate::store::notify::{ChangeNotifications, Signal};
use crate::store::{Backend, Store};

/// Starts the change-feed poller, the last-used flusher and the housekeeping task.
pub(super) fn spawn_background(
    settings: &Settings,
    core: &Core,
) -> (watch::Sender<bool>, Vec<JoinHandle<()>>) {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();

    let mut feed = ChangeFeed::new(
        core.store.clone(),
        FeedTargets {
            deny: core.deny.clone(),
            metadata: core.metadata.clone(),
            keys: core.keys.clone(),
            hub: core.tokens.changes.clone(),
        },
        core.feed_health.clone(),
        settings.tokens.leeway_secs,
        &core.log_at_load,
    );
    let period = Duration::from_millis(settings.background.change_poll_interval_ms.get());
    // Woken at once by a PostgreSQL notification; the interval is the fallback (and SQLite's
    // only way to hear of the CLI's changes).
    let wake = core.feed_wake.clone();
    if core.store.backend() == Backend::Postgres {
        let url = settings.database_url();
        tasks.push(tokio::spawn(listen_for_changes(
            url,
            wake.clone(),
            core.feed_health.clone(),
            stopped.clone(),
        )));
    }
    let mut stop_feed = stopped.clone();
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = wake.notified() => {}
                _ = stopped_signal(&mut stop_feed) => break,
            }
            if let Err(error) = feed.poll().await {
                tracing::warn!(%error, "change feed poll failed");
            }
        }
    }));

    let (store, last_used) = (core.store.clone(), core.last_used.clone());
    let period = Duration::from_millis(settings.background.last_used_flush_interval_ms.get());
    tasks.push(every(period, stopped.clone(), move || {
        let (store, last_used) = (store.clone(), last_used.clone());
        async move {
            if let Err(error) = last_used.flush(&store).await {
                tracing::warn!(%error, "last-used flush failed; will retry");
            }
        }
    }));

    let (store, deny) = (core.store.clone(), core.deny.clone());
    let retention = settings.tokens.max_lifetime_secs + settings.tokens.leeway_secs;
    let leeway = settings.tokens.leeway_secs;
    let log_retention =
        i64::try_from(settings.changes.log_retention_secs.get()).unwrap_or(i64::MAX);
    tasks.push(every(Duration::from_secs(60), stopped, move || {
        let (store, deny) = (store.clone(), deny.clone());
        async move { housekeeping(&store, &deny, retention, log_retention, leeway).await }
    }));
    (stop, tasks)
}

/// Wakes the change feed on every PostgreSQL change notification ([`ChangeNotifications`]), and
/// after the listening connection comes back, so that what was sent meanwhile is caught up.
/// Every [`PING_EVERY`] it checks that the connection still answers (within [`PING_TIMEOUT`]):
/// a connection cut silently would otherwise leave the feed on its polling interval unseen.
/// While the database is unreachable it tries again a second after each failure (an attempt
/// itself may wait up to sqlx's connect timeout); the feed's interval keeps polling, and
/// `health` says whether notifications are heard (`tokenmint_change_notifications_listening`).
async fn listen_for_changes(
    url: String,
    wake: Arc<Notify>,
    health: Arc<FeedHealth>,
    mut stop: watch::Receiver<bool>,
) {
    const RETRY: Duration = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let connected = tokio::select! {
            connected = ChangeNotifications::listen(&url) => connected,
            _ = stopped_signal(&mut stop) => return,
        };
        match connected {
            Ok(mut notifications) => {
                if failing {
                    tracing::info!("listening for change notifications again");
                }
                health.set_listening(true);
                // Whatever committed before the LISTEN took effect was not announced: catch up.
                wake.notify_one();
                let Some(error) = relay(&mut notifications, &wake, &mut stop).await else {
                    return;
                };
                health.set_listening(false);
                tracing::warn!(%error, "lost the change-notification connection; reconnecting");
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "change notifications unavailable; polling only until they are back");
                }
            }
        }
        failing = true;
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            _ = stopped_signal(&mut stop) => return,
        }
    }
}

/// How often the listening connection is checked.
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long a check may take before the connection is taken for dead.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Wakes the feed on each notification until the connection fails (what went wrong) or `stop`
/// turns true (`None`).
async fn relay(
    notifications: &mut ChangeNotifications,
    wake: &Notify,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        let signal = tokio::select! {
            signal = notifications.next() => signal,
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, notifications.ping()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(error)) => return Some(error.to_string()),
                    Err(_) => return Some(format!("no answer to a check within {PING_TIMEOUT:?}")),
                }
            }
            _ = stopped_signal(stop) => return None,
        };
        match signal {
            Ok(Signal::Changed | Signal::Reconnected) => wake.notify_one(),
            Err(error) => return Some(error.to_string()),
        }
    }
}

/// Forgets what can no longer matter: deny-list entries and tombstones of expired tokens, old
/// change-log entries (`changes.log_retention_secs`), and retired keys past the longest token lifetime.
async fn housekeeping(
    store: &Store,
    deny: &DenyList,
    key_retention_secs: i64,
    log_retention_secs: i64,
    leeway_secs: i64,
) {
    let now = Timestamp::now();
    deny.prune(now.plus_secs(-leeway_secs), now.plus_secs(-60));
    let results = [
        (
            "change log",
            store.prune_events(now.plus_secs(-log_retention_secs)).await,
        ),
        (
            "tombstones",
            store
                .purge_expired_tombstones(now.plus_secs(-leeway_secs))
                .await,
        ),
        (
            "retired keys",
            store
                .delete_keys_retired_before(now.plus_secs(-key_retention_secs))
                .await,
        ),
    ];
    for (what, result) in results {
        match result {
            Ok(0) => {}
            Ok(n) => tracing::debug!(what, removed = n, "housekeeping"),
            Err(error) => tracing::warn!(what, %error, "housekeeping failed"),
        }
    }
}

/// Runs `tick` every `period` until `stop` turns true.
fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut tick: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => tick().await,
                _ = stopped_signal(&mut stop) => break,
            }
        }
    })
}

/// Resolves once `stop` is true (or its sender is gone), without holding a guard across awaits.
async fn stopped_signal(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}
