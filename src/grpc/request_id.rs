//! Request ids: taken from the caller's `x-request-id` metadata (when it is a sane value) or
//! generated, made visible to handlers in the request headers, and echoed in the response headers.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

/// The metadata key carrying the request id.
pub const HEADER: &str = "x-request-id";

/// Reads the request id the layer put on the request (empty if the layer is absent).
pub fn of<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A fresh request id: UUID-shaped, a random per-process prefix and a counter (unique without a
/// system call per request).
fn generate() -> uuid::Uuid {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    uuid::Uuid::from_u64_pair(prefix, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Whether a caller-supplied id is acceptable: 1-128 visible ASCII characters.
fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Tower layer adding request ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service built by [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = match request.headers().get(HEADER) {
            Some(value) if acceptable(value) => value.clone(),
            _ => HeaderValue::from_str(&generate().to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
        };
        request.headers_mut().insert(HEADER, id.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            response.headers_mut().insert(HEADER, id);
            Ok(response)
        })
    }
}
