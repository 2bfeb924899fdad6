//! Plain HTTP routes on the gRPC port: `GET /.well-known/jwks.json` for ordinary JWT libraries,
//! `GET /metrics` for Prometheus, and a fallback that answers unknown gRPC methods with `grpc-status: 12` (UNIMPLEMENTED).

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::domain::Timestamp;
use crate::issuance::keys::KeyManager;
use crate::issuance::last_used::LastUsed;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::Gauges;

/// Connections of the database pool at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolReading {
    /// Open connections in use.
    pub in_use: u32,
    /// Open idle connections.
    pub idle: u32,
    /// The pool's maximum size.
    pub max: u32,
}

/// What `/metrics` reads: the registry, and the state behind the gauges.
#[derive(Clone)]
pub struct MetricsSource {
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// For the signing-key age.
    pub keys: Arc<KeyManager>,
    /// The database pool's usage: (in use, idle, maximum) connections. A reading function
    /// rather than the store, so that the HTTP layer does not depend on storage.
    pub pool: Arc<dyn Fn() -> PoolReading + Send + Sync>,
    /// For the write-behind queue depth.
    pub last_used: Arc<LastUsed>,
    /// For the number of requests running.
    pub in_flight: crate::grpc::load_shed::InFlight,
    /// For what the change feed could not do.
    pub feed: Arc<crate::issuance::change_feed::FeedHealth>,
}

/// The HTTP router sharing the gRPC port.
pub fn router(keys: Arc<KeyManager>, metrics: MetricsSource) -> Router {
    metrics_router(metrics)
        .route("/.well-known/jwks.json", get(move || jwks(keys.clone())))
        .fallback(fallback)
}

/// `GET /metrics` alone: the router of the plaintext metrics listener (`server.metrics_listen`).
pub fn metrics_router(metrics: MetricsSource) -> Router {
    Router::new().route("/metrics", get(move || render_metrics(metrics.clone())))
}

async fn render_metrics(source: MetricsSource) -> Response {
    let ring = source.keys.ring();
    let signing_key_created = ring.signing.created_at;
    let pool = (source.pool)();
    let gauges = Gauges {
        signing_key_age_secs: (Timestamp::now().0 - signing_key_created.0).max(0) as f64 / 1e6,
        pool_in_use: pool.in_use,
        pool_idle: pool.idle,
        pool_max: pool.max,
        last_used_pending: source.last_used.queue_depth(),
        rpc_in_flight: source.in_flight.current(),
        untrusted_key_rows: ring.untrusted_rows(),
        feed_key_reload_failures: source.feed.key_reload_failures(),
        deny_list_resyncs: source.feed.deny_list_resyncs(),
        change_log_rewinds: source.feed.log_rewinds(),
        change_feed_position: source.feed.position(),
        change_notifications_listening: source.feed.listening(),
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        source.metrics.render(gauges),
    )
        .into_response()
}

async fn jwks(keys: Arc<KeyManager>) -> Response {
    let ring = keys.ring();
    let document = serde_json::json!({ "keys": ring.verifying_keys().map(|k| k.to_jwk()).collect::<Vec<_>>() });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            ),
        ],
        document.to_string(),
    )
        .into_response()
}

async fn fallback(headers: HeaderMap) -> Response {
    let is_grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                ),
                (
                    header::HeaderName::from_static("grpc-status"),
                    HeaderValue::from_static("12"),
                ),
                (
                    header::HeaderName::from_static("grpc-message"),
                    HeaderValue::from_static("unknown%20method"),
                ),
            ],
        )
            .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
