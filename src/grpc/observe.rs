//! Per-RPC observability, as one tower layer: a server span named after the method
//! (`tokenmint.v1.TokenService/CreateToken`) carrying the OpenTelemetry RPC attributes and
//! continuing the caller's W3C trace context; the RPC count and latency metrics; and one log line
//! per RPC with method, code, latency and request id.
//!
//! Handlers add what they learn (user, token, template) with [`record_user`], [`record_token`]
//! and [`record_template`].
//!
//! The status code is read from the response headers, where tonic puts it for every unary error
//! ("trailers-only"); a streaming RPC (health `Watch`, reflection) is recorded when its headers
//! leave, as OK.
//!
//! (Length: one layer does the span, the metrics and the log line of an RPC, so that each RPC is
//! timed and classified once; splitting it would repeat that work per concern.)
//!
//! Length: one layer with its span, metric and log parts (~375 lines) kept together because
//! they share one per-RPC state; its tests follow.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::grpc::request_id;
use crate::telemetry::metrics::{Metrics, RpcLabels};
use crate::telemetry::propagation;

/// Records the authenticated user on the current RPC span.
pub fn record_user(user_id: impl std::fmt::Display) {
    tracing::Span::current().record("tokenmint.user_id", tracing::field::display(user_id));
}

/// Records the token an RPC is about on the current RPC span.
pub fn record_token(token_id: impl std::fmt::Display) {
    tracing::Span::current().record("tokenmint.token_id", tracing::field::display(token_id));
}

/// Records the template an RPC is about on the current RPC span.
pub fn record_template(template_id: impl std::fmt::Display) {
    tracing::Span::current().record(
        "tokenmint.template_id",
        tracing::field::display(template_id),
    );
}

/// `(service, method)` for every gRPC method the server serves, keyed by HTTP path.
struct MethodTable(HashMap<String, (&'static str, &'static str)>);

impl MethodTable {
    /// The served methods: ours and health from their descriptor sets, plus reflection.
    fn get() -> &'static Self {
        static TABLE: OnceLock<MethodTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut table = HashMap::new();
            let mut add = |service: &str, method: &str| {
                let service: &'static str = Box::leak(service.to_owned().into_boxed_str());
                let method: &'static str = Box::leak(method.to_owned().into_boxed_str());
                table.insert(format!("/{service}/{method}"), (service, method));
            };
            for set in [
                crate::proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
            ] {
                let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(set)
                else {
                    continue;
                };
                for file in &set.file {
                    let package = file.package();
                    for service in &file.service {
                        let name = format!("{package}.{}", service.name());
                        for method in &service.method {
                            add(&name, method.name());
                        }
                    }
                }
            }
            for version in ["v1", "v1alpha"] {
                add(
                    &format!("grpc.reflection.{version}.ServerReflection"),
                    "ServerReflectionInfo",
                );
            }
            MethodTable(table)
        })
    }

    /// The method at `path`, or `("unknown", "unknown")` (keeps metric labels bounded).
    fn lookup(&self, path: &str) -> (&'static str, &'static str) {
        self.0.get(path).copied().unwrap_or(("unknown", "unknown"))
    }
}

/// The layer; see the module documentation.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    /// Observes RPCs into `metrics` (and the global tracing subscriber).
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service built by [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !is_grpc {
            return Box::pin(self.inner.call(request));
        }
        let started = Instant::now();
        let (service, method) = MethodTable::get().lookup(request.uri().path());
        let name = if service == "unknown" {
            "unknown"
        } else {
            &request.uri().path()[1..]
        };
        let request_id_header = request
            .headers()
            .get(request_id::HEADER)
            .cloned()
            .unwrap_or(http::HeaderValue::from_static(""));
        let request_id = request_id_header.to_str().unwrap_or_default();
        let span = tracing::info_span!(
            target: "tokenmint::rpc",
            "rpc",
            otel.name = name,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            request_id,
            tokenmint.user_id = Empty,
            tokenmint.token_id = Empty,
            tokenmint.template_id = Empty,
            tokenmint.error_reason = Empty,
        );
        if request.headers().contains_key("traceparent") {
            let _ = span.set_parent(propagation::extract(request.headers()));
        }
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let future = span.in_scope(|| self.inner.call(request));
        let mut outcome = Outcome {
            metrics: self.metrics.clone(),
            service,
            method,
            request_id: request_id_header.clone(),
            started,
            deadline,
            recorded: false,
        };
        Box::pin(
            async move {
                let mut result = future.await;
                if let Ok(response) = &mut result {
                    oversized_is_resource_exhausted(response.headers_mut());
                }
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .map(|v| Code::from_bytes(v.as_bytes()))
                        .unwrap_or(Code::Ok),
                    Err(_) => Code::Unknown,
                };
                let message = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-message")
                        .and_then(|v| v.to_str().ok())
                        .map(percent_decode)
                        .unwrap_or_default(),
                    Err(error) => error.to_string(),
                };
                outcome.record(code, &message);
                result
            }
            .instrument(span),
        )
    }
}

/// Records an RPC once: when its response is ready, or, if the RPC is dropped before that (the
/// caller's deadline passed, or the client went away), as CANCELLED — what tonic answers then.
struct Outcome {
    metrics: Arc<Metrics>,
    service: &'static str,
    method: &'static str,
    request_id: http::HeaderValue,
    started: Instant,
    deadline: Option<Duration>,
    recorded: bool,
}

impl Outcome {
    fn record(&mut self, code: Code, message: &str) {
        self.recorded = true;
        let elapsed = self.started.elapsed();
        let span = tracing::Span::current();
        span.record("rpc.grpc.status_code", code as i32);
        let (service, method, code_name) = (self.service, self.method, code_name(code));
        let request_id = self.request_id.to_str().unwrap_or_default();
        let latency_ms = elapsed.as_secs_f64() * 1e3;
        self.metrics.rpc(
            RpcLabels {
                service,
                method,
                code: code_name,
            },
            elapsed.as_secs_f64(),
        );
        if code == Code::Ok {
            tracing::info!(target: "tokenmint::rpc", service, method, code = code_name, latency_ms, request_id, "rpc");
        } else if is_server_fault(code) {
            span.record("otel.status_code", "ERROR");
            tracing::error!(target: "tokenmint::rpc", service, method, code = code_name, latency_ms, request_id, error = message, "rpc failed");
        } else {
            tracing::warn!(target: "tokenmint::rpc", service, method, code = code_name, latency_ms, request_id, error = message, "rpc refused");
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.recorded {
            let expired = self
                .deadline
                .is_some_and(|deadline| self.started.elapsed() >= deadline);
            let why = if expired {
                "the caller's deadline passed"
            } else {
                "the caller cancelled or the connection closed"
            };
            self.record(Code::Cancelled, why);
        }
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// tonic refuses a request message above the size limit with OUT_OF_RANGE; the gRPC status-code
/// specification (and every other gRPC server) says RESOURCE_EXHAUSTED.
fn oversized_is_resource_exhausted(headers: &mut http::HeaderMap) {
    let oversized = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                percent_decode(m).starts_with("Error, decoded message length too large")
            });
    if oversized {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

/// Codes that mean the server failed, not the request (OpenTelemetry's rule for server spans).
fn is_server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The canonical upper-case name of a status code, as in the gRPC specification.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Decodes the percent-encoding of `grpc-message`.
fn percent_decode(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = message.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_methods_are_known_and_others_are_not() {
        let table = MethodTable::get();
        assert_eq!(
            table.lookup("/tokenmint.v1.TokenService/CreateToken"),
            ("tokenmint.v1.TokenService", "CreateToken")
        );
        assert_eq!(
            table.lookup("/tokenmint.v1.TemplateService/ListTemplates"),
            ("tokenmint.v1.TemplateService", "ListTemplates")
        );
        assert_eq!(
            table.lookup("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            table.lookup("/tokenmint.v1.TokenService/NoSuchThing"),
            ("unknown", "unknown")
        );
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("unknown%20method"), "unknown method");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
    }

    #[test]
    fn grpc_timeouts_parse_with_every_unit_and_refuse_junk() {
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout(b"150m"),
            Some(Duration::from_millis(150))
        );
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"0n"), Some(Duration::ZERO));
        assert_eq!(parse_grpc_timeout(b"S"), None);
        assert_eq!(parse_grpc_timeout(b"123456789S"), None);
        assert_eq!(parse_grpc_timeout(b"1x"), None);
    }

    #[test]
    fn code_names_follow_the_specification() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::from(16)), "UNAUTHENTICATED");
    }
}
