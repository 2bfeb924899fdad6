//! The accepted connection as HTTP/2 sees it. [`Coalesced`] makes the HTTP/2 writer copy small
//! frames into one buffer instead of handing the socket a vector of pieces.
//!
//! Why: h2 "chains" any DATA payload larger than 256 bytes when the transport supports vectored
//! writes, and while a chained payload is pending it cannot encode another frame. A unary gRPC
//! response of a few hundred bytes (a `Token`, a `VerifyTokenResponse`) then costs two `writev`
//! calls: HEADERS + DATA, then the trailers alone. Over a transport that reports no vectored
//! writes, h2 copies payloads up to 1 KiB into its buffer, so HEADERS, DATA and trailers leave in
//! one write. On loopback each write also runs the receiver's TCP path, so this is one of the
//! largest costs of a VerifyToken (BENCHMARKS.md). Payloads above 1 KiB are still chained.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A connection whose writes HTTP/2 coalesces (see the module documentation). Reads, writes,
/// shutdown and the peer information tonic puts into requests are those of `S`.
#[derive(Debug)]
pub struct Coalesced<S>(S);

impl<S> Coalesced<S> {
    /// Wraps an accepted connection (TCP or TLS).
    pub fn new(stream: S) -> Self {
        Self(stream)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    /// The point of this type: h2 picks its copy-or-chain threshold from this answer.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<S: Connected> Connected for Coalesced<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn passes_bytes_through_and_reports_no_vectored_writes() {
        let (client, server) = tokio::io::duplex(64);
        let mut client = Coalesced::new(client);
        let mut server = Coalesced::new(server);
        assert!(!client.is_write_vectored());
        client.write_all(b"ping").await.unwrap();
        let mut read = [0u8; 4];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"ping");
        client.shutdown().await.unwrap();
        assert_eq!(
            server.read(&mut read).await.unwrap(),
            0,
            "EOF after shutdown"
        );
    }
}
