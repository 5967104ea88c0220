//! A raw HTTP/2 client over TCP: frames written and read as they are, so a
//! test can do what a well-behaved client never would (more streams than
//! allowed, resets in a loop, floods, unanswered pings).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;

/// One frame read.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

pub struct RawH2 {
    stream: TcpStream,
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut n: usize) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block: every field a literal without indexing, no Huffman.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

impl RawH2 {
    /// The preface and an empty SETTINGS; the server's SETTINGS read and
    /// acknowledged (so its limits apply from the next frame on).
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        stream.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
        let mut h2 = Self { stream };
        loop {
            let f = h2.next(Duration::from_secs(10)).await?.context("no SETTINGS from the server")?;
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                h2.send(SETTINGS, ACK, 0, &[]).await?;
                return Ok(h2);
            }
        }
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<()> {
        self.stream.write_all(&frame(kind, flags, stream, payload)).await?;
        Ok(())
    }

    /// Writes many frames at once.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// A request's HEADERS on `stream` (END_HEADERS; END_STREAM when
    /// `end`).
    pub async fn request(&mut self, stream: u32, fields: &[(&str, &str)], end: bool) -> Result<()> {
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.send(HEADERS, flags, stream, &header_block(fields)).await
    }

    /// The next frame, `None` when the connection ends (EOF or error) or
    /// nothing comes within `wait`... as an error.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Frame>> {
        let read = async {
            let mut head = [0u8; 9];
            if self.stream.read_exact(&mut head).await.is_err() {
                return Ok::<_, anyhow::Error>(None);
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0; len];
            if self.stream.read_exact(&mut payload).await.is_err() {
                return Ok(None);
            }
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            Ok(Some(Frame { kind: head[3], flags: head[4], stream, payload }))
        };
        tokio::time::timeout(wait, read).await.context("no frame in time")?
    }

    /// Reads (never answering a PING) until the server ends the connection:
    /// true when it did within `wait` — EOF, a reset, or GOAWAY.
    pub async fn closed(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Ok(None) => return true,
                Ok(Some(f)) if f.kind == GOAWAY => return true,
                Ok(Some(_)) => {}
                Err(_) => return false,
            }
        }
    }
}
