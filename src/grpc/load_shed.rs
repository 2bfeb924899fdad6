//! Load shedding: at most `server.max_in_flight_requests` gRPC requests run at once, across every
//! connection. One more is answered UNAVAILABLE at once (a status clients retry with backoff)
//! instead of queueing behind the others and timing out later.
//!
//! Health checks and the plain HTTP routes (JWKS, metrics) are never shed: an overloaded server
//! must not look dead to its liveness probe, and it must stay observable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

/// The message of a shed request.
const OVERLOADED: &str = "the server is overloaded; retry with backoff";

/// The layer; see the module documentation.
#[derive(Clone)]
pub struct LoadShedLayer {
    limit: Arc<Limit>,
}

struct Limit {
    max: usize,
    in_flight: AtomicUsize,
}

impl LoadShedLayer {
    /// Lets at most `max` gRPC requests run at once.
    pub fn new(max: usize) -> Self {
        Self {
            limit: Arc::new(Limit {
                max,
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// A handle reading how many gRPC requests run now (for `/metrics`).
    pub fn in_flight(&self) -> InFlight {
        InFlight(self.limit.clone())
    }
}

/// Reads the number of gRPC requests running now (shed ones and health checks not included).
#[derive(Clone)]
pub struct InFlight(Arc<Limit>);

impl InFlight {
    /// Requests running now.
    pub fn current(&self) -> usize {
        self.0.in_flight.load(Ordering::Acquire)
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed {
            inner,
            limit: self.limit.clone(),
        }
    }
}

/// The service built by [`LoadShedLayer`].
#[derive(Clone)]
pub struct LoadShed<S> {
    inner: S,
    limit: Arc<Limit>,
}

/// Holds one in-flight slot until dropped.
struct Slot(Arc<Limit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `request` counts against the limit: gRPC, and not a health check.
fn sheddable<B>(request: &Request<B>) -> bool {
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    grpc && !request.uri().path().starts_with("/grpc.health.v1.Health/")
}

/// A trailers-only gRPC response with status UNAVAILABLE.
fn overloaded<R: Default>() -> Response<R> {
    let mut response = Response::new(R::default());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static("14"));
    headers.insert(
        "grpc-message",
        HeaderValue::from_static("the%20server%20is%20overloaded;%20retry%20with%20backoff"),
    );
    response
}

impl<S, B, R> Service<Request<B>> for LoadShed<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !sheddable(&request) {
            return Box::pin(self.inner.call(request));
        }
        let before = self.limit.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.limit.clone());
        if before >= self.limit.max {
            drop(slot);
            tracing::debug!(limit = self.limit.max, "{OVERLOADED}");
            return Box::pin(std::future::ready(Ok(overloaded())));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(slot);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overload_message_is_the_percent_encoded_text() {
        let response = overloaded::<()>();
        let message = response.headers()["grpc-message"].to_str().unwrap();
        assert_eq!(message.replace("%20", " "), OVERLOADED);
        assert_eq!(response.headers()["grpc-status"], "14");
    }

    #[test]
    fn only_grpc_requests_other_than_health_checks_count() {
        let request = |path: &str, content_type: &str| {
            Request::builder()
                .uri(path)
                .header(http::header::CONTENT_TYPE, content_type)
                .body(())
                .unwrap()
        };
        let grpc = "application/grpc";
        assert!(sheddable(&request(
            "/tokenmint.v1.TokenService/VerifyToken",
            grpc
        )));
        assert!(!sheddable(&request("/grpc.health.v1.Health/Check", grpc)));
        assert!(!sheddable(&request("/metrics", "text/plain")));
    }
}
