//! A connection's byte stream as the accept loop hands it to hyper: plain
//! TCP or TLS behind one type ([`Io`]), the first bytes that told HTTP/2
//! from HTTP/1.1 given again ([`Replay`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};

/// A client connection: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// What an HTTP/2 connection starts with.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the start of a connection into `start`: until it is the whole
/// HTTP/2 preface or stops being a prefix of it (then it is HTTP/1.1).
/// False when the peer closed first.
pub(crate) async fn read_start(stream: &mut (impl AsyncRead + Unpin), start: &mut Vec<u8>) -> io::Result<bool> {
    let mut buf = [0u8; PREFACE.len()];
    while start.len() < PREFACE.len() && PREFACE.starts_with(start) {
        let n = stream.read(&mut buf[..PREFACE.len() - start.len()]).await?;
        if n == 0 {
            return Ok(false);
        }
        start.extend_from_slice(&buf[..n]);
    }
    Ok(true)
}

/// A connection whose first bytes were already read: gives them again,
/// then reads on.
pub(crate) struct Replay<S> {
    pub(crate) start: Vec<u8>,
    pub(crate) pos: usize,
    pub(crate) inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.start.len() {
            let n = buf.remaining().min(this.start.len() - this.pos);
            buf.put_slice(&this.start[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
