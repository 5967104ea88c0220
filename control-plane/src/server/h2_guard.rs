//! The HTTP/2 frames a client sends, watched as they are read: a client
//! resetting streams faster than `http2_max_resets_per_sec` (rapid reset,
//! CVE-2023-44487) or sending PING and SETTINGS frames faster than
//! `http2_max_control_frames_per_sec` (floods) is disconnected — the read
//! fails, hyper drops the connection — before the frames cost more work.
//! Acknowledgements are not counted: they answer the server's own frames.
//!
//! Only frame heads are looked at (nine bytes each); payloads pass by
//! untouched and nothing is buffered.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::io::PREFACE;
use crate::metrics::Metrics;

const HEAD: usize = 9;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// How many frames of a kind per second, with as many at once.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        Self { rate: f64::from(rate), tokens: f64::from(rate), at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// The limits of one connection's frames.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameLimits {
    /// `http2_max_resets_per_sec`.
    pub(crate) resets_per_sec: u32,
    /// `http2_max_control_frames_per_sec`.
    pub(crate) control_frames_per_sec: u32,
}

/// A stream that starts with the HTTP/2 preface, its frames counted.
pub(crate) struct FrameGuard<S> {
    inner: S,
    /// Bytes of the preface still to pass.
    preface: usize,
    head: [u8; HEAD],
    head_len: usize,
    /// Bytes of the current frame's payload still to pass.
    payload: usize,
    resets: Bucket,
    control: Bucket,
    metrics: Arc<Metrics>,
    broken: Option<&'static str>,
}

impl<S> FrameGuard<S> {
    pub(crate) fn new(inner: S, limits: FrameLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            preface: PREFACE.len(),
            head: [0; HEAD],
            head_len: 0,
            payload: 0,
            resets: Bucket::new(limits.resets_per_sec),
            control: Bucket::new(limits.control_frames_per_sec),
            metrics,
            broken: None,
        }
    }

    /// Follows the frames in `bytes`; the limit broken, if one is.
    fn inspect(&mut self, mut bytes: &[u8]) -> Option<&'static str> {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
            } else if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                bytes = &bytes[n..];
            } else {
                let n = (HEAD - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                self.head_len += n;
                bytes = &bytes[n..];
                if self.head_len == HEAD {
                    self.head_len = 0;
                    let [a, b, c, kind, flags, ..] = self.head;
                    self.payload = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                    let broken = match kind {
                        RST_STREAM if !self.resets.take() => Some("http2_max_resets_per_sec"),
                        SETTINGS | PING if flags & ACK == 0 && !self.control.take() => {
                            Some("http2_max_control_frames_per_sec")
                        }
                        _ => None,
                    };
                    if broken.is_some() {
                        return broken;
                    }
                }
            }
        }
        None
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(limit) = this.broken {
            return Poll::Ready(Err(io::Error::other(format!("client broke {limit}"))));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if let Some(limit) = this.inspect(&buf.filled()[before..]) {
            this.broken = Some(limit);
            this.metrics.connection_closed(limit);
            tracing::info!(limit, "closing an HTTP/2 connection whose client broke a frame limit");
            buf.set_filled(before);
            return Poll::Ready(Err(io::Error::other(format!("client broke {limit}"))));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    fn guard(resets: u32, control: u32) -> FrameGuard<()> {
        let limits = FrameLimits { resets_per_sec: resets, control_frames_per_sec: control };
        FrameGuard::new((), limits, Arc::new(Metrics::new()))
    }

    #[test]
    fn counts_resets_and_control_frames_across_reads() {
        let mut g = guard(3, 2);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, &[0; 6]));
        bytes.extend(frame(SETTINGS, ACK, &[]));
        bytes.extend(frame(0x0, 0, &[7; 100])); // DATA, whose payload holds frame-like bytes
        for _ in 0..3 {
            bytes.extend(frame(RST_STREAM, 0, &[0, 0, 0, 8]));
        }
        bytes.extend(frame(PING, ACK, &[0; 8]));
        // One byte at a time: heads split across reads are followed.
        for b in &bytes {
            assert_eq!(g.inspect(std::slice::from_ref(b)), None);
        }
        assert_eq!(g.inspect(&frame(RST_STREAM, 0, &[0, 0, 0, 8])), Some("http2_max_resets_per_sec"));
        let mut g = guard(3, 2);
        assert_eq!(g.inspect(PREFACE), None);
        assert_eq!(g.inspect(&[frame(PING, 0, &[0; 8]), frame(SETTINGS, 0, &[])].concat()), None);
        assert_eq!(g.inspect(&frame(PING, 0, &[0; 8])), Some("http2_max_control_frames_per_sec"));
    }
}
