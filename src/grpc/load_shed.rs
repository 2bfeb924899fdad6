//! Load shedding: at most `server.max_in_flight_requests` gRPC requests run at once, across every
//! connection. One more is answered UNAVAILABLE at once (a status clients retry with backoff)
//! instead of queueing behind the others and timing out later.
//!
//! Health checks and the plain HTTP routes (JWKS, metrics) are never shed: an overloaded server
//! must not look dead to its liveness probe, and it must stay observable.
//!
//! A request holds its slot until its response body has ended (or is dropped), not only until
//! the handler returns its headers: a server stream (reflection today, the change stream later)
//! runs for as long as its body does, and must count for that long.
//!
//! Why not tower's `ConcurrencyLimit` + `LoadShed`: `ConcurrencyLimit` takes its permit in
//! `poll_ready` and gives it back when the handler's future resolves (at the headers, so streams
//! would escape the limit), and `LoadShed`'s error becomes UNKNOWN in tonic instead of the
//! UNAVAILABLE clients retry on; health checks would need a routing layer in front as well.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
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

pin_project_lite::pin_project! {
    /// A response body that holds its request's in-flight slot until the body has ended or is
    /// dropped (see the module documentation).
    pub struct Held<B> {
        #[pin]
        body: B,
        slot: Option<Slot>,
    }
}

impl<B> Held<B> {
    /// A body that holds `slot` (none: a body outside the limit).
    fn new(body: B, slot: Option<Slot>) -> Self {
        Self { body, slot }
    }
}

impl<B: Default> Default for Held<B> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B: Body> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        // The end of the stream, or an error that ends it: the request is done.
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            this.slot.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
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
    type Response = Response<Held<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !sheddable(&request) {
            let future = self.inner.call(request);
            return Box::pin(async move { Ok(future.await?.map(|body| Held::new(body, None))) });
        }
        let before = self.limit.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.limit.clone());
        if before >= self.limit.max {
            drop(slot);
            tracing::debug!(limit = self.limit.max, "{OVERLOADED}");
            return Box::pin(std::future::ready(Ok(overloaded())));
        }
        let future = self.inner.call(request);
        // An error (no response at all) drops the slot with the future.
        Box::pin(async move { Ok(future.await?.map(|body| Held::new(body, Some(slot)))) })
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

    /// A gRPC request to a sheddable method.
    fn grpc_request() -> Request<()> {
        Request::builder()
            .uri("/tokenmint.v1.TokenService/VerifyToken")
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap()
    }

    /// A response body of two frames, like a short server stream.
    fn stream() -> FrameStream {
        let frames = vec![Ok(Frame::data(&b"one"[..])), Ok(Frame::data(&b"two"[..]))];
        http_body_util::StreamBody::new(futures_util::stream::iter(frames))
    }

    /// The body [`Streams`] answers with.
    type TwoFrames = DefaultStream<FrameStream>;

    /// A body made of a fixed list of frames.
    type FrameStream = http_body_util::StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<&'static [u8]>, ()>>>,
    >;

    /// A handler that answers every request with [`stream`].
    #[derive(Clone)]
    struct Streams;

    impl Service<Request<()>> for Streams {
        type Response = Response<TwoFrames>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok(Response::new(DefaultStream(Some(stream())))))
        }
    }

    /// A load-shedding service of `max` slots in front of [`Streams`].
    fn streaming_service(max: usize) -> (LoadShed<Streams>, InFlight) {
        let layer = LoadShedLayer::new(max);
        (layer.layer(Streams), layer.in_flight())
    }

    #[tokio::test]
    async fn a_stream_holds_its_slot_until_its_body_ends() {
        use http_body_util::BodyExt;
        let (mut service, in_flight) = streaming_service(1);
        let mut response = service.call(grpc_request()).await.unwrap();
        assert_eq!(
            in_flight.current(),
            1,
            "the headers are out, the stream is not"
        );

        let shed = service.call(grpc_request()).await.unwrap();
        assert_eq!(
            shed.headers()["grpc-status"],
            "14",
            "the only slot is taken"
        );

        let body = response.body_mut();
        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(in_flight.current(), 1, "one frame is left");
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.is_none());
        assert_eq!(in_flight.current(), 0, "the stream has ended");
        let next = service.call(grpc_request()).await.unwrap();
        assert!(
            next.headers().get("grpc-status").is_none(),
            "a slot is free again"
        );
    }

    #[tokio::test]
    async fn a_stream_dropped_before_its_end_gives_its_slot_back() {
        let (mut service, in_flight) = streaming_service(1);
        let response = service.call(grpc_request()).await.unwrap();
        assert_eq!(in_flight.current(), 1);
        drop(response);
        assert_eq!(in_flight.current(), 0);
    }

    /// [`stream`]'s body with the `Default` the layer needs for its UNAVAILABLE answer.
    struct DefaultStream<S>(Option<S>);

    impl<S> Default for DefaultStream<S> {
        fn default() -> Self {
            Self(None)
        }
    }

    impl<S: Body + Unpin> Body for DefaultStream<S> {
        type Data = S::Data;
        type Error = S::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            match self.0.as_mut() {
                Some(body) => Pin::new(body).poll_frame(cx),
                None => Poll::Ready(None),
            }
        }
    }
}
