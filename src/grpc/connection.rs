//! The accepted connection as HTTP/2 sees it. [`Coalesced`] gathers everything the HTTP/2 writer
//! produces during one turn of the scheduler and hands it to the socket in one write.
//!
//! Why: a unary gRPC response is three frames (HEADERS, DATA, trailing HEADERS), and h2 does not
//! always encode them into one buffer. It "chains" a DATA payload larger than 256 bytes (1 KiB
//! over a transport without vectored writes) instead of copying it, and while a chained payload is
//! pending it flushes before encoding the next frame. A `VerifyTokenResponse` then cost two
//! `writev` calls, a `CreateTokenResponse` three. On loopback each write also runs the receiver's
//! TCP path, so writes were one of the largest costs of a small RPC (ARCHITECTURE.md, "Smaller mechanisms").
//!
//! How: writes only append to a buffer. The first flush after new data does not write: it wakes
//! its own task and returns `Pending`, which puts the connection task at the back of the run
//! queue. Handlers that finish meanwhile add their responses, and the connection's next flush
//! writes them all at once. So a response leaves in one write, and under load one write carries
//! the responses of several streams. The cost is one extra task poll per flush. A buffer past
//! [`HIGH_WATER`] is written before more is accepted, so a slow reader still pushes back.
//!
//! The load generator (`bench/`, the `tokenmint-bench` crate) wraps its client connections in the
//! same type: it depends on this library, never the other way round.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Buffered bytes past which a write first drains the buffer to the socket.
pub const HIGH_WATER: usize = 64 * 1024;

/// A connection whose writes are gathered per scheduler turn (see the module documentation).
/// Reads, shutdown and the peer information tonic puts into requests are those of `S`.
#[derive(Debug)]
pub struct Coalesced<S> {
    inner: S,
    /// Bytes accepted from HTTP/2 and not yet written to `inner`.
    pending: Vec<u8>,
    /// How much of `pending` `inner` has already taken (after a short write).
    written: usize,
    /// Whether the current flush has already yielded once.
    yielded: bool,
}

impl<S> Coalesced<S> {
    /// Wraps an accepted connection (TCP or TLS).
    pub fn new(stream: S) -> Self {
        Self {
            inner: stream,
            pending: Vec::new(),
            written: 0,
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Writes all pending bytes to `inner` (several writes only when it takes them in parts).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        if self.pending.capacity() > HIGH_WATER {
            self.pending.shrink_to(HIGH_WATER);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.written < self.pending.len() {
            if !self.yielded {
                // Let the other ready tasks (handlers finishing their responses) run first.
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(self.poll_drain(cx))?;
        }
        self.yielded = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// h2 then copies every frame of up to 1 KiB into its own buffer instead of chaining it.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<S: Connected> Connected for Coalesced<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A socket that records every write it is given and takes at most `max_write` bytes each.
    #[derive(Clone, Default)]
    struct RecordingSocket {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        max_write: Option<usize>,
    }

    impl RecordingSocket {
        fn writes(&self) -> Vec<Vec<u8>> {
            self.writes.lock().unwrap().clone()
        }
    }

    impl AsyncWrite for RecordingSocket {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.max_write.map_or(buf.len(), |max| max.min(buf.len()));
            self.writes.lock().unwrap().push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Flushes with a deadline, so that a flush that never wakes itself fails instead of hanging.
    async fn flush(conn: &mut Coalesced<RecordingSocket>) {
        tokio::time::timeout(std::time::Duration::from_secs(5), conn.flush())
            .await
            .expect("a deferred flush wakes its task and completes")
            .unwrap();
    }

    #[tokio::test]
    async fn frames_written_before_a_flush_leave_in_one_write() {
        let socket = RecordingSocket::default();
        let mut conn = Coalesced::new(socket.clone());
        for frame in [&b"HEADERS"[..], b"DATA", b"TRAILERS"] {
            conn.write_all(frame).await.unwrap();
        }
        assert!(
            socket.writes().is_empty(),
            "nothing is written before a flush"
        );
        flush(&mut conn).await;
        assert_eq!(socket.writes(), vec![b"HEADERSDATATRAILERS".to_vec()]);
        flush(&mut conn).await;
        assert_eq!(
            socket.writes().len(),
            1,
            "a flush with nothing new writes nothing"
        );
    }

    #[tokio::test]
    async fn the_first_flush_yields_once_and_the_next_writes() {
        let socket = RecordingSocket::default();
        let mut conn = Coalesced::new(socket.clone());
        conn.write_all(b"first").await.unwrap();
        let waker = Arc::new(WakeCount::default());
        let waker_ref = std::task::Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker_ref);
        assert!(Pin::new(&mut conn).poll_flush(&mut cx).is_pending());
        assert_eq!(waker.count(), 1, "the deferred flush wakes its own task");
        // What other tasks add before the connection task runs again joins the same write.
        conn.write_all(b"+second").await.unwrap();
        assert!(Pin::new(&mut conn).poll_flush(&mut cx).is_ready());
        assert_eq!(socket.writes(), vec![b"first+second".to_vec()]);
    }

    #[derive(Default)]
    struct WakeCount(std::sync::atomic::AtomicUsize);

    impl WakeCount {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl std::task::Wake for WakeCount {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn short_writes_deliver_every_byte_in_order() {
        let socket = RecordingSocket {
            max_write: Some(3),
            ..Default::default()
        };
        let mut conn = Coalesced::new(socket.clone());
        conn.write_all(b"0123456789").await.unwrap();
        flush(&mut conn).await;
        assert_eq!(socket.writes().concat(), b"0123456789");
        assert_eq!(socket.writes().len(), 4);
    }

    #[tokio::test]
    async fn a_full_buffer_is_written_before_more_is_taken() {
        let socket = RecordingSocket::default();
        let mut conn = Coalesced::new(socket.clone());
        let chunk = vec![7u8; HIGH_WATER];
        conn.write_all(&chunk).await.unwrap();
        assert!(socket.writes().is_empty());
        conn.write_all(b"more").await.unwrap();
        assert_eq!(socket.writes(), vec![chunk], "the full buffer left first");
        flush(&mut conn).await;
        assert_eq!(socket.writes().last().unwrap(), b"more");
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_pending() {
        let (client, server) = tokio::io::duplex(1024);
        let mut client = Coalesced::new(client);
        let mut server = Coalesced::new(server);
        assert!(!client.is_write_vectored());
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut read = Vec::new();
        server.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"ping", "written at shutdown, then EOF");
    }
}
