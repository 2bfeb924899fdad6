//! Plain HTTP routes on the gRPC port: `GET /.well-known/jwks.json` for ordinary JWT libraries,
//! `GET /statuslists/{id}` for Token Status List consumers, `GET /metrics` for Prometheus, and
//! a fallback that answers unknown gRPC methods with `grpc-status: 12` (UNIMPLEMENTED).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokenmint_jwt::status_list::STATUS_LIST_MEDIA_TYPE;

use crate::domain::{StatusListId, Timestamp};
use crate::error::{ErrorCode, reason};
use crate::issuance::keys::KeyManager;
use crate::issuance::last_used::LastUsed;
use crate::issuance::status_publisher::StatusListPublisher;
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
pub fn router(
    keys: Arc<KeyManager>,
    status_lists: Arc<StatusListPublisher>,
    metrics: MetricsSource,
) -> Router {
    metrics_router(metrics)
        .route("/.well-known/jwks.json", get(move || jwks(keys.clone())))
        .route(
            "/statuslists/{id}",
            get(move |id, query, headers| status_list(status_lists.clone(), id, query, headers)),
        )
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
    // RFC 7517 §5: members a reader does not know are ignored, so the version rides along.
    let document = serde_json::json!({
        "keys": ring.verifying_keys().map(|k| k.to_jwk()).collect::<Vec<_>>(),
        "tokenmint_key_set_version": ring.version(),
    });
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

/// `GET /statuslists/{id}`: the signed list (draft-ietf-oauth-status-list §8), with CORS open
/// to every origin and HTTP caching for the list's `ttl`. 404 for an unknown list, 406 when the
/// client accepts neither the JWT form nor anything, 501 for a historical `?time=` query (not
/// offered), 503 when the database cannot be read.
async fn status_list(
    lists: Arc<StatusListPublisher>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let cors = (
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "time" || pair.starts_with("time="))
    }) {
        return (
            StatusCode::NOT_IMPLEMENTED,
            [cors],
            "historical status lists (?time=) are not offered",
        )
            .into_response();
    }
    if !accepts_status_list_jwt(&headers) {
        return (
            StatusCode::NOT_ACCEPTABLE,
            [cors],
            "status lists are served as application/statuslist+jwt",
        )
            .into_response();
    }
    let Some(id) = StatusListId::parse(&id) else {
        return (StatusCode::NOT_FOUND, [cors], "no such status list").into_response();
    };
    match lists.get(&id).await {
        Ok(signed) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(STATUS_LIST_MEDIA_TYPE),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_str(&format!("public, max-age={}", signed.ttl_secs))
                        .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
                ),
                cors,
            ],
            signed.token.to_string(),
        )
            .into_response(),
        Err(error) if error.code == ErrorCode::NotFound => {
            (StatusCode::NOT_FOUND, [cors], "no such status list").into_response()
        }
        Err(error) if error.reason == reason::STATUS_LIST_BUSY => (
            StatusCode::SERVICE_UNAVAILABLE,
            [cors, (header::RETRY_AFTER, HeaderValue::from_static("1"))],
            "too many status list requests are waiting; retry shortly",
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, list = %id, "a status list could not be served");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [cors],
                "the status list cannot be read now",
            )
                .into_response()
        }
    }
}

/// Whether the `Accept` header (absent or empty: anything) admits
/// `application/statuslist+jwt`: the most specific media ranges that match it (the type itself,
/// `application/*`, `*/*`) decide, by their highest `q`; `q=0` refuses (RFC 9110 §12.5.1). A range
/// with a malformed `q` is ignored.
fn accepts_status_list_jwt(headers: &HeaderMap) -> bool {
    let mut present = false;
    let mut best: Option<(u8, u16)> = None;
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter(|range| !range.trim().is_empty());
    for range in ranges {
        present = true;
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let specificity = if media.eq_ignore_ascii_case(STATUS_LIST_MEDIA_TYPE) {
            3
        } else if media.eq_ignore_ascii_case("application/*") {
            2
        } else if media == "*/*" {
            1
        } else {
            continue;
        };
        let q = parts
            .filter_map(|parameter| {
                let (name, value) = parameter.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("q")
                    .then_some(value.trim())
            })
            .next()
            .map_or(Some(1000), quality);
        let Some(q) = q else { continue };
        best = match best {
            Some((most, top)) if most > specificity || (most == specificity && top >= q) => {
                Some((most, top))
            }
            _ => Some((specificity, q)),
        };
    }
    !present || best.is_some_and(|(_, q)| q > 0)
}

/// An RFC 9110 `qvalue` in thousandths (`0`, `0.5`, `1.000`…); `None` if malformed.
fn quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
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
