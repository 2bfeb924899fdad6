//! Response bodies handed to HTTP/2 in pieces small enough to be copied, so that a response of
//! a little over 1 KiB does not cost a socket write of its own.
//!
//! Why: h2 copies a DATA frame into its write buffer only if the frame is under 1 KiB (on a
//! transport without vectored writes, which [`Coalesced`](super::connection::Coalesced) is);
//! a larger one is "chained", and while a chained frame is pending h2 flushes before it encodes
//! the next frame. `Coalesced` gathers everything written in one scheduler turn into one socket
//! write, but each of those flushes still ends a gathering: every response over 1 KiB left in a
//! write of its own, instead of sharing one with the other responses finished in the same turn.
//! A `CreateTokenResponse` crossed that size when tokens gained their `status` claim (about 140
//! bytes): about one `send` per two creates instead of one per fifteen, each also running the
//! receiving side of loopback TCP, about a third of the CPU the status claim added to a create
//! (ARCHITECTURE.md, "Smaller mechanisms"; BENCHMARKS.md has the figures).
//!
//! How: [`SmallFrames`] passes a data frame of up to [`MAX_SPLIT`] (4 KiB) on in pieces of at most
//! [`MAX_PIECE`] bytes (`Bytes::split_to`, no copy). h2 copies each piece into its buffer, where
//! the gathering goes on. A gRPC message is a byte stream, so the pieces are the same message to
//! the client. Larger frames are passed whole: their own write is a small part of their cost.
//! HTTP/1 responses (JWKS, status lists, metrics) are passed as they are: they have no frames.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// The largest piece handed to h2: one byte under the size h2 chains at without vectored writes.
pub const MAX_PIECE: usize = 1023;

/// Data frames up to this size are split; larger ones are passed whole. Their own write is a
/// small part of their cost, and pieces of a larger frame would fill h2's 16 KiB buffer, which
/// forces a flush anyway.
pub const MAX_SPLIT: usize = 4 * 1024;

/// Wraps every response body in [`SmallFrames`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SmallFramesLayer;

impl<S> Layer<S> for SmallFramesLayer {
    type Service = SmallFramesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SmallFramesService { inner }
    }
}

/// The service [`SmallFramesLayer`] makes.
#[derive(Debug, Clone)]
pub struct SmallFramesService<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for SmallFramesService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<SmallFrames<R>>;
    type Error = S::Error;
    type Future = SmallFramesFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        SmallFramesFuture {
            // HTTP/1 (the JWKS, status lists, metrics) writes no frames: pieces would only add
            // chunk headers.
            split: request.version() == http::Version::HTTP_2,
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`SmallFramesService`].
    pub struct SmallFramesFuture<F> {
        #[pin]
        inner: F,
        split: bool,
    }
}

impl<F, R, E> Future for SmallFramesFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<SmallFrames<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let split = *this.split;
        Poll::Ready(Ok(response.map(|body| {
            if split {
                SmallFrames::new(body)
            } else {
                SmallFrames::whole(body)
            }
        })))
    }
}

pin_project_lite::pin_project! {
    /// A body whose data frames of up to [`MAX_SPLIT`] bytes come out in pieces of at most
    /// [`MAX_PIECE`] bytes; trailers and larger frames come out as they are.
    pub struct SmallFrames<B> {
        #[pin]
        body: B,
        // What is left of the frame being split.
        rest: Bytes,
        // Whether frames are split at all.
        split: bool,
    }
}

impl<B> SmallFrames<B> {
    /// Wraps `body`, splitting its frames.
    pub fn new(body: B) -> Self {
        Self {
            body,
            rest: Bytes::new(),
            split: true,
        }
    }

    /// Wraps `body`, passing its frames as they are.
    pub fn whole(body: B) -> Self {
        Self {
            split: false,
            ..Self::new(body)
        }
    }
}

impl<B: Body<Data = Bytes>> Body for SmallFrames<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if this.rest.is_empty() {
            match ready!(this.body.poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data)
                        if *this.split && data.len() > MAX_PIECE && data.len() <= MAX_SPLIT =>
                    {
                        *this.rest = data;
                    }
                    Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                other => return Poll::Ready(other),
            }
        }
        let piece = this.rest.split_to(this.rest.len().min(MAX_PIECE));
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Added as hints: raising the lower bound alone past the inner upper bound would panic.
        self.body.size_hint() + SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// A body of the given data frames followed by trailers.
    fn body_of(frames: Vec<Bytes>) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = frames
            .into_iter()
            .map(Frame::data)
            .chain([Frame::trailers(trailers)])
            .map(Ok);
        http_body_util::StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()))
    }

    /// Every frame of `body`: the data pieces' lengths, and whether trailers came last.
    async fn frames_of(
        body: impl Body<Data = Bytes, Error = std::convert::Infallible>,
    ) -> (Vec<usize>, Bytes, bool) {
        let mut body = std::pin::pin!(SmallFrames::new(body));
        let (mut lengths, mut bytes, mut trailers_last) = (Vec::new(), Vec::new(), false);
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            assert!(!trailers_last, "nothing may follow the trailers");
            match frame.into_data() {
                Ok(data) => {
                    lengths.push(data.len());
                    bytes.extend_from_slice(&data);
                }
                Err(frame) => trailers_last = frame.is_trailers(),
            }
        }
        (lengths, Bytes::from(bytes), trailers_last)
    }

    /// A response just over the size h2 chains at leaves in pieces it copies, the same bytes in
    /// the same order, and the trailers still come last.
    #[tokio::test]
    async fn a_response_over_one_kib_is_passed_on_in_pieces_h2_copies() {
        let message: Bytes = (0..2500u32).map(|n| n as u8).collect::<Vec<_>>().into();
        let (lengths, bytes, trailers_last) = frames_of(body_of(vec![message.clone()])).await;
        assert_eq!(lengths, [MAX_PIECE, MAX_PIECE, 2500 - 2 * MAX_PIECE]);
        assert_eq!(bytes, message);
        assert!(trailers_last);
    }

    /// Small frames and frames past [`MAX_SPLIT`] pass unchanged.
    #[tokio::test]
    async fn small_and_large_frames_pass_whole() {
        let small = Bytes::from(vec![1u8; MAX_PIECE]);
        let large = Bytes::from(vec![2u8; MAX_SPLIT + 1]);
        let (lengths, bytes, trailers_last) =
            frames_of(body_of(vec![small.clone(), large.clone()])).await;
        assert_eq!(lengths, [MAX_PIECE, MAX_SPLIT + 1]);
        assert_eq!(bytes, [small, large].concat());
        assert!(trailers_last);
    }

    /// Mid-frame, the hint still counts every byte left, also over an exact-size body (raising
    /// only the lower bound past the inner body's exact zero would panic).
    #[tokio::test]
    async fn the_size_hint_counts_the_rest_of_a_split_frame() {
        let message = Bytes::from(vec![3u8; 2000]);
        let mut body = std::pin::pin!(SmallFrames::new(http_body_util::Full::new(message)));
        assert_eq!(body.size_hint().exact(), Some(2000));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), MAX_PIECE);
        assert_eq!(body.size_hint().exact(), Some(2000 - MAX_PIECE as u64));
        assert!(!body.is_end_stream());
        body.frame().await.unwrap().unwrap();
        assert!(body.is_end_stream());
    }

    /// An HTTP/1 response is passed as it is.
    #[tokio::test]
    async fn a_whole_body_keeps_its_frames() {
        let message = Bytes::from(vec![4u8; 2000]);
        let mut body = std::pin::pin!(SmallFrames::whole(body_of(vec![message])));
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data.len(), 2000);
    }

    /// The data frames [`SmallFrames`] makes of a body carrying `message`.
    async fn pieces_of(message: Bytes) -> Vec<Bytes> {
        let mut body = std::pin::pin!(SmallFrames::new(body_of(vec![message])));
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                pieces.push(data);
            }
        }
        pieces
    }

    /// The server end of an in-memory connection, counting the writes that reach it.
    struct CountedWrites {
        inner: tokio::io::DuplexStream,
        writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl tokio::io::AsyncRead for CountedWrites {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for CountedWrites {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Poll::Ready(Ok(written))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Socket writes an HTTP/2 server behind [`Coalesced`](super::super::connection::Coalesced)
    /// makes to answer two requests at once with `message` each (as data frames of
    /// `split`'s pieces, then trailers), not counting the connection's setup.
    async fn writes_to_answer_two(message: Bytes, split: bool) -> usize {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(AtomicUsize::new(0));
        let server_io = super::super::connection::Coalesced::new(CountedWrites {
            inner: server_io,
            writes: writes.clone(),
        });
        let server = tokio::spawn(async move {
            let mut connection = h2::server::handshake(server_io).await.unwrap();
            let mut pending = Vec::new();
            while pending.len() < 2 {
                let (_, respond) = connection.accept().await.unwrap().unwrap();
                pending.push(respond);
            }
            (connection, pending)
        });
        let (client, client_connection) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(client_connection);
        let mut client = client.ready().await.unwrap();
        let mut responses = Vec::new();
        for _ in 0..2 {
            let request = http::Request::post("/svc/Method").body(()).unwrap();
            responses.push(client.send_request(request, true).unwrap().0);
            client = client.ready().await.unwrap();
        }
        let (mut connection, pending) = server.await.unwrap();
        // The setup (settings, their acknowledgement) is written by now: the server read both
        // requests, which follow it.
        let before = writes.load(Ordering::SeqCst);
        for mut respond in pending {
            let mut stream = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            let pieces = if split {
                pieces_of(message.clone()).await
            } else {
                vec![message.clone()]
            };
            for piece in pieces {
                stream.send_data(piece, false).unwrap();
            }
            stream.send_trailers(http::HeaderMap::new()).unwrap();
        }
        let serving = tokio::spawn(async move { while connection.accept().await.is_some() {} });
        for response in responses {
            let mut body = response.await.unwrap().into_body();
            let mut received = 0;
            while let Some(data) = body.data().await {
                let data = data.unwrap();
                received += data.len();
                let _ = body.flow_control().release_capacity(data.len());
            }
            assert_eq!(received, message.len());
        }
        serving.abort();
        writes.load(Ordering::SeqCst) - before
    }

    /// Why the split exists: two responses of 1.1 KiB finished together leave in one socket
    /// write when their data comes in pieces h2 copies; whole, h2 chains each one and flushes
    /// before the next frame, and every response costs a write of its own.
    #[tokio::test]
    async fn responses_just_over_one_kib_share_a_socket_write_only_in_pieces() {
        let message = Bytes::from(vec![7u8; 1100]);
        assert_eq!(writes_to_answer_two(message.clone(), true).await, 1);
        assert!(writes_to_answer_two(message, false).await >= 2);
    }
}
