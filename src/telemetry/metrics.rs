//! Prometheus metrics, served as OpenMetrics text at `GET /metrics` on the server's port.
//!
//! Counters and histograms are updated as RPCs run; gauges that describe state (signing-key age,
//! database pool, pending last-used writes, span export) are read when `/metrics` is scraped,
//! through [`Gauges`].

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::telemetry::otlp::SPANS;

/// Labels of the RPC metrics. `service` and `method` come from the set of methods the server
/// knows (an unknown path is `unknown`), so the label set stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// Full service name, e.g. `tokenmint.v1.TokenService`.
    pub service: &'static str,
    /// Method name, e.g. `CreateToken`.
    pub method: &'static str,
    /// gRPC status code name, e.g. `OK`, `INVALID_ARGUMENT`.
    pub code: &'static str,
}

/// An outcome label: `minted`, `active`, or the reason something failed or is inactive.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The outcome.
    pub outcome: &'static str,
}

/// A connection-state label for the database pool gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

/// A span-export result label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpanLabels {
    result: &'static str,
}

/// State read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Seconds since the current signing key was created.
    pub signing_key_age_secs: f64,
    /// Open database connections in use.
    pub pool_in_use: u32,
    /// Open idle database connections.
    pub pool_idle: u32,
    /// The pool's maximum size.
    pub pool_max: u32,
    /// Tokens whose last-used time waits to be written.
    pub last_used_pending: usize,
    /// gRPC requests running now (health checks excluded).
    pub rpc_in_flight: usize,
    /// Signing-key rows left out of the key ring in service because their MAC did not match.
    pub untrusted_key_rows: usize,
    /// Change-feed key-set reloads that failed since start (each retried on its own).
    pub feed_key_reload_failures: u64,
    /// Full deny-list reloads since start because the change log had been pruned past this
    /// server's position, or went back in time.
    pub deny_list_resyncs: u64,
    /// Times since start the change log no longer held the newest entry this server had applied
    /// (a database restored from a backup).
    pub change_log_rewinds: u64,
    /// The change-log position this server's feed has applied every change up to.
    pub change_feed_position: i64,
    /// Whether PostgreSQL change notifications are heard now.
    pub change_notifications_listening: bool,
}

type HistogramFamily = Family<RpcLabels, Histogram, fn() -> Histogram>;

/// tokenmint's metrics. One per server; cheap to update from many tasks at once.
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: HistogramFamily,
    minted: Family<OutcomeLabels, Counter>,
    verified: Family<OutcomeLabels, Counter>,
    revoked: Counter,
    signing_key_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pool: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    last_used_pending: Gauge,
    spans: Family<SpanLabels, Gauge>,
    dropped_log_lines: Gauge,
    rpc_in_flight: Gauge,
    untrusted_key_rows: Gauge,
    feed_key_reload_failures: Gauge,
    deny_list_resyncs: Gauge,
    change_log_rewinds: Gauge,
    change_feed_position: Gauge,
    change_notifications_listening: Gauge,
}

/// Latency buckets from 100 µs to about 6.5 s (×2 per bucket).
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 17,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tokenmint");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "rpc_requests",
            "gRPC requests handled, by method and status code",
            rpc_requests.clone(),
        );
        let rpc_duration = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "rpc_duration",
            "gRPC request latency until the response headers, by method and status code",
            prometheus_client::registry::Unit::Seconds,
            rpc_duration.clone(),
        );
        let minted = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tokens_minted",
            "CreateToken outcomes: `minted`, or the error reason",
            minted.clone(),
        );
        let verified = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tokens_verified",
            "VerifyToken outcomes: `active`, or the inactive reason",
            verified.clone(),
        );
        let revoked = Counter::default();
        registry.register("tokens_revoked", "Tokens revoked", revoked.clone());
        let signing_key_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "signing_key_age",
            "Age of the key new tokens are signed with",
            prometheus_client::registry::Unit::Seconds,
            signing_key_age.clone(),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Open database connections, by state (in_use, idle)",
            pool.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "Largest number of database connections the pool opens",
            pool_max.clone(),
        );
        let last_used_pending = Gauge::default();
        registry.register(
            "last_used_pending",
            "Tokens whose last-used time is waiting to be written (write-behind queue depth)",
            last_used_pending.clone(),
        );
        let spans = Family::<SpanLabels, Gauge>::default();
        registry.register(
            "trace_spans",
            "Spans since start, by fate: ended, exported, failed (ended minus exported and failed \
             is queued or dropped)",
            spans.clone(),
        );
        let dropped_log_lines = Gauge::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped since start because the log writer fell behind",
            dropped_log_lines.clone(),
        );
        let rpc_in_flight = Gauge::default();
        registry.register(
            "rpc_in_flight",
            "gRPC requests running now, a stream until it ends (health checks excluded; compare with server.max_in_flight_requests)",
            rpc_in_flight.clone(),
        );
        let untrusted_key_rows = Gauge::default();
        registry.register(
            "signing_keys_untrusted",
            "Signing-key rows ignored because their MAC does not match under the master key \
             (written without it: investigate any value above 0)",
            untrusted_key_rows.clone(),
        );
        let feed_key_reload_failures = Gauge::default();
        registry.register(
            "change_feed_key_reload_failures",
            "Key-set reloads asked for by the change feed that failed since start (retried on \
             their own; token changes keep being applied)",
            feed_key_reload_failures.clone(),
        );
        let deny_list_resyncs = Gauge::default();
        registry.register(
            "deny_list_resyncs",
            "Full deny-list reloads since start because the change log was pruned past the \
             position this server had read, or went back in time",
            deny_list_resyncs.clone(),
        );
        let change_log_rewinds = Gauge::default();
        registry.register(
            "change_log_rewinds",
            "Times since start the change log no longer held the newest entry this server had \
             applied (a database restored from a backup); each one reloads the deny list",
            change_log_rewinds.clone(),
        );
        let change_feed_position = Gauge::default();
        registry.register(
            "change_feed_position",
            "The change-log position this server has applied every change up to; replicas of \
             one database that stay apart are not seeing each other's changes",
            change_feed_position.clone(),
        );
        let change_notifications_listening = Gauge::default();
        registry.register(
            "change_notifications_listening",
            "1 while this server hears PostgreSQL change notifications; 0 means it learns of \
             other servers' changes only by polling (always 0 on SQLite)",
            change_notifications_listening.clone(),
        );
        Self {
            registry,
            rpc_requests,
            rpc_duration,
            minted,
            verified,
            revoked,
            signing_key_age,
            pool,
            pool_max,
            last_used_pending,
            spans,
            dropped_log_lines,
            rpc_in_flight,
            untrusted_key_rows,
            feed_key_reload_failures,
            deny_list_resyncs,
            change_log_rewinds,
            change_feed_position,
            change_notifications_listening,
        }
    }

    /// Records one finished RPC.
    pub fn rpc(&self, labels: RpcLabels, seconds: f64) {
        self.rpc_duration.get_or_create(&labels).observe(seconds);
        self.rpc_requests.get_or_create(&labels).inc();
    }

    /// Records a CreateToken outcome.
    pub fn minted(&self, outcome: &'static str) {
        self.minted.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records a VerifyToken outcome.
    pub fn verified(&self, outcome: &'static str) {
        self.verified
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Records a revocation.
    pub fn revoked(&self) {
        self.revoked.inc();
    }

    /// Renders every metric as OpenMetrics text, after setting the state gauges from `gauges`.
    pub fn render(&self, gauges: Gauges) -> String {
        self.signing_key_age.set(gauges.signing_key_age_secs);
        let state = |state| PoolLabels { state };
        self.pool
            .get_or_create(&state("in_use"))
            .set(gauges.pool_in_use.into());
        self.pool
            .get_or_create(&state("idle"))
            .set(gauges.pool_idle.into());
        self.pool_max.set(gauges.pool_max.into());
        self.last_used_pending
            .set(i64::try_from(gauges.last_used_pending).unwrap_or(i64::MAX));
        for (result, counter) in [
            ("ended", &SPANS.ended),
            ("exported", &SPANS.exported),
            ("failed", &SPANS.failed),
        ] {
            let value = counter.load(Ordering::Relaxed);
            self.spans
                .get_or_create(&SpanLabels { result })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        self.rpc_in_flight
            .set(i64::try_from(gauges.rpc_in_flight).unwrap_or(i64::MAX));
        self.untrusted_key_rows
            .set(i64::try_from(gauges.untrusted_key_rows).unwrap_or(i64::MAX));
        self.feed_key_reload_failures
            .set(i64::try_from(gauges.feed_key_reload_failures).unwrap_or(i64::MAX));
        self.deny_list_resyncs
            .set(i64::try_from(gauges.deny_list_resyncs).unwrap_or(i64::MAX));
        self.change_log_rewinds
            .set(i64::try_from(gauges.change_log_rewinds).unwrap_or(i64::MAX));
        self.change_feed_position.set(gauges.change_feed_position);
        self.change_notifications_listening
            .set(i64::from(gauges.change_notifications_listening));
        self.dropped_log_lines
            .set(i64::try_from(crate::telemetry::dropped_log_lines()).unwrap_or(i64::MAX));
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_carries_labels_units_and_state() {
        let metrics = Metrics::new();
        let labels = RpcLabels {
            service: "tokenmint.v1.TokenService",
            method: "CreateToken",
            code: "OK",
        };
        metrics.rpc(labels.clone(), 0.002);
        metrics.rpc(labels, 0.004);
        metrics.minted("minted");
        metrics.verified("REVOKED");
        metrics.revoked();
        let text = metrics.render(Gauges {
            signing_key_age_secs: 12.5,
            pool_in_use: 1,
            pool_idle: 3,
            pool_max: 4,
            last_used_pending: 7,
            rpc_in_flight: 3,
            untrusted_key_rows: 1,
            feed_key_reload_failures: 2,
            deny_list_resyncs: 5,
            change_log_rewinds: 1,
            change_feed_position: 42,
            change_notifications_listening: true,
        });
        for line in [
            r#"tokenmint_rpc_requests_total{service="tokenmint.v1.TokenService",method="CreateToken",code="OK"} 2"#,
            r#"tokenmint_rpc_duration_seconds_count{service="tokenmint.v1.TokenService",method="CreateToken",code="OK"} 2"#,
            r#"tokenmint_tokens_minted_total{outcome="minted"} 1"#,
            r#"tokenmint_tokens_verified_total{outcome="REVOKED"} 1"#,
            "tokenmint_tokens_revoked_total 1",
            "tokenmint_signing_key_age_seconds 12.5",
            r#"tokenmint_db_pool_connections{state="idle"} 3"#,
            "tokenmint_db_pool_max_connections 4",
            "tokenmint_last_used_pending 7",
            "tokenmint_rpc_in_flight 3",
            "tokenmint_signing_keys_untrusted 1",
            "tokenmint_change_feed_key_reload_failures 2",
            "tokenmint_deny_list_resyncs 5",
            "tokenmint_change_log_rewinds 1",
            "tokenmint_change_feed_position 42",
            "tokenmint_change_notifications_listening 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
