//! The WebSocket framing (RFC 6455) after the upgrade: a bounded,
//! cancel-safe reader of client frames and encoders of server frames.
//!
//! fastwebsockets performs the HTTP upgrade; the frames themselves are read
//! and written here because the edge needs three things a general-purpose
//! library does not give: a read buffer that starts small and shrinks back
//! (memory per idle connection), a size check over the total of a fragmented
//! message before any of it is buffered, and server frames encoded once into
//! shared `Bytes` that many connections write as they are.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// What a read asks for while the connection is idle: read on the stack,
/// then copied into a buffer as large as what came.
const IDLE_BUFFER: usize = 128;

/// What the first read asks for: a connection's first message carries its
/// token (hundreds of bytes), read in one go rather than 128 bytes at a
/// time; the buffer is let go of once it is parsed.
const FIRST_BUFFER: usize = 1024;

/// What a read asks for while the client sends more than a small buffer
/// takes at once (a publisher streaming frames): one read then brings many
/// frames instead of one.
const BUSY_BUFFER: usize = 16 * 1024;

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete binary message.
    Binary(Bytes),
    /// A complete text message (Herald's protocol refuses it; Pusher's
    /// protocol speaks only JSON text). The bytes are not checked as UTF-8.
    Text(Bytes),
    /// A ping with its payload, to be answered with a pong.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame with its code, if any.
    Close(Option<u16>),
}

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A message exceeded the size limit (close 1009).
    #[error("message exceeds {limit} bytes")]
    TooBig {
        /// The limit.
        limit: usize,
    },
    /// The client broke the framing rules (close 1002).
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The connection ended.
    #[error("connection closed")]
    Eof,
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads client frames. Cancel-safe: a `next` future dropped midway loses
/// nothing, since all state lives in the reader.
pub struct FrameReader {
    buf: BytesMut,
    max_message: usize,
    /// Opcode and payload of a fragmented message in progress (boxed: rare,
    /// and every idle connection holds the reader).
    partial: Option<Box<(u8, BytesMut)>>,
    /// The last read filled all the room it had: more is likely waiting, so
    /// the next read gets a large buffer.
    busy: bool,
    /// Nothing was read yet.
    first: bool,
}

enum Parsed {
    Frame { fin: bool, opcode: u8, payload: Bytes },
    NeedMore(usize),
}

impl FrameReader {
    /// A reader refusing messages above `max_message` bytes.
    #[must_use]
    pub fn new(max_message: usize) -> Self {
        Self { buf: BytesMut::new(), max_message, partial: None, busy: false, first: true }
    }

    /// Takes bytes the client sent that were read before this reader
    /// existed; they are parsed before anything read from the socket.
    pub fn prime(&mut self, early: &[u8]) {
        self.buf.extend_from_slice(early);
    }

    /// Reads the next complete message. The future holds nothing but its
    /// two references: every idle connection awaits one.
    ///
    /// # Errors
    ///
    /// [`ReadError`]; after an error the reader must not be used again.
    pub fn next<'a, R: AsyncRead + Unpin>(
        &'a mut self,
        io: &'a mut R,
    ) -> impl Future<Output = Result<Incoming, ReadError>> + 'a {
        std::future::poll_fn(move |cx| self.poll_next(cx, io))
    }

    /// As [`Self::next`], polled.
    ///
    /// # Errors
    ///
    /// As [`Self::next`].
    pub fn poll_next<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut R,
    ) -> Poll<Result<Incoming, ReadError>> {
        loop {
            match self.parse()? {
                Parsed::Frame { fin, opcode, payload } => {
                    if let Some(message) = self.assemble(fin, opcode, payload)? {
                        self.shrink_if_idle();
                        return Poll::Ready(Ok(message));
                    }
                }
                Parsed::NeedMore(n) => {
                    let read = if self.buf.capacity() == 0 && !self.busy && !self.first {
                        // Idle: waits for the client without a buffer of
                        // its own; what comes is read on the stack first.
                        let read = ready!(read_small(cx, io, &mut self.buf))?;
                        self.busy = read == IDLE_BUFFER;
                        read
                    } else {
                        let want = if self.busy {
                            BUSY_BUFFER
                        } else if self.first {
                            FIRST_BUFFER
                        } else {
                            IDLE_BUFFER
                        };
                        self.buf.reserve(n.max(want));
                        let room = self.buf.capacity() - self.buf.len();
                        // Made for one poll: a read that is not ready loses
                        // nothing when its future is dropped.
                        let read = ready!(std::pin::pin!(io.read_buf(&mut self.buf)).poll(cx))?;
                        self.busy = read == room;
                        read
                    };
                    self.first = false;
                    if read == 0 {
                        return Poll::Ready(Err(ReadError::Eof));
                    }
                }
            }
        }
    }

    /// The next message when the bytes already read hold all of it: no
    /// read, and nothing to wait for.
    ///
    /// # Errors
    ///
    /// As [`Self::next`].
    pub fn buffered(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            match self.parse() {
                Ok(Parsed::Frame { fin, opcode, payload }) => match self.assemble(fin, opcode, payload) {
                    Ok(Some(message)) => {
                        self.shrink_if_idle();
                        return Some(Ok(message));
                    }
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                },
                Ok(Parsed::NeedMore(_)) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Lets go of the buffer once all it held was taken: an idle
    /// connection holds none (the next read starts on the stack). Also
    /// when it has no room left: an empty buffer split from a read still
    /// keeps that read's allocation.
    fn shrink_if_idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Parses one frame from the buffer, or says how many more bytes are
    /// needed. Sizes are checked against the limit before anything is
    /// reserved.
    fn parse(&mut self) -> Result<Parsed, ReadError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(Parsed::NeedMore(2 - b.len()));
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(ReadError::Protocol("reserved bits set"));
        }
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        if !masked {
            return Err(ReadError::Protocol("client frames must be masked"));
        }
        let len7 = (b[1] & 0x7f) as usize;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header = 2 + ext + 4;
        if b.len() < header {
            return Ok(Parsed::NeedMore(header - b.len()));
        }
        let len: u64 = match ext {
            0 => len7 as u64,
            2 => u64::from(u16::from_be_bytes([b[2], b[3]])),
            _ => u64::from_be_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]),
        };
        let is_control = opcode & 0x08 != 0;
        if is_control {
            if !fin {
                return Err(ReadError::Protocol("fragmented control frame"));
            }
            if len > 125 {
                return Err(ReadError::Protocol("control frame over 125 bytes"));
            }
        } else {
            let so_far = self.partial.as_ref().map_or(0, |p| p.1.len()) as u64;
            if len.saturating_add(so_far) > self.max_message as u64 {
                return Err(ReadError::TooBig { limit: self.max_message });
            }
        }
        let len = len as usize; // bounded by max_message or 125 above
        if b.len() < header + len {
            return Ok(Parsed::NeedMore(header + len - b.len()));
        }
        let mask = [b[header - 4], b[header - 3], b[header - 2], b[header - 1]];
        self.buf.advance(header);
        let mut payload = self.buf.split_to(len);
        unmask(&mut payload, mask);
        Ok(Parsed::Frame { fin, opcode, payload: payload.freeze() })
    }

    fn assemble(&mut self, fin: bool, opcode: u8, payload: Bytes) -> Result<Option<Incoming>, ReadError> {
        match opcode {
            0x0 => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(ReadError::Protocol("continuation without a message"));
                };
                partial.1.extend_from_slice(&payload);
                if fin {
                    let (first, acc) = *partial;
                    Ok(Some(data_message(first, acc.freeze())))
                } else {
                    self.partial = Some(partial);
                    Ok(None)
                }
            }
            0x1 | 0x2 => {
                if self.partial.is_some() {
                    return Err(ReadError::Protocol("new message inside a fragmented one"));
                }
                if fin {
                    Ok(Some(data_message(opcode, payload)))
                } else {
                    let mut acc = BytesMut::with_capacity(payload.len() * 2);
                    acc.extend_from_slice(&payload);
                    self.partial = Some(Box::new((opcode, acc)));
                    Ok(None)
                }
            }
            0x8 => {
                let code = match payload.len() {
                    0 => None,
                    1 => return Err(ReadError::Protocol("close frame with a 1-byte payload")),
                    _ => Some(u16::from_be_bytes([payload[0], payload[1]])),
                };
                Ok(Some(Incoming::Close(code)))
            }
            0x9 => Ok(Some(Incoming::Ping(payload))),
            0xA => Ok(Some(Incoming::Pong)),
            _ => Err(ReadError::Protocol("unknown opcode")),
        }
    }
}

/// Reads at most [`IDLE_BUFFER`] bytes into a buffer on the stack and
/// appends what came to `buf`: nothing is held while the read waits.
fn read_small<R: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    io: &mut R,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    let mut room = [0u8; IDLE_BUFFER];
    let mut read = ReadBuf::new(&mut room);
    ready!(Pin::new(io).poll_read(cx, &mut read))?;
    buf.extend_from_slice(read.filled());
    Poll::Ready(Ok(read.filled().len()))
}

fn data_message(opcode: u8, payload: Bytes) -> Incoming {
    if opcode == 0x1 { Incoming::Text(payload) } else { Incoming::Binary(payload) }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let wide = u64::from(word) | (u64::from(word) << 32);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8])) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Writes a server (unmasked) frame header for a final frame.
fn put_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    buf.put_u8(0x80 | opcode);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len <= 0xffff {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
}

/// Encodes a Protobuf message as one complete binary WebSocket frame, in one
/// allocation.
#[must_use]
pub fn binary_frame<M: prost::Message>(message: &M) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(len + 10);
    put_header(&mut buf, 0x2, len);
    // Cannot fail: the capacity was reserved above.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// Wraps `payload` (UTF-8 text, JSON for the Pusher protocol) as one
/// complete text WebSocket frame, in one allocation.
#[must_use]
pub fn text_frame(payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    put_header(&mut buf, 0x1, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

/// A close frame with `code` and `reason` (cut to 123 bytes).
#[must_use]
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = herald_proto::codes::truncate_reason(reason);
    let mut buf = BytesMut::with_capacity(4 + reason.len());
    put_header(&mut buf, 0x8, 2 + reason.len());
    buf.put_u16(code);
    buf.put_slice(reason.as_bytes());
    buf.freeze()
}

/// An empty ping frame.
#[must_use]
pub fn ping_frame() -> Bytes {
    Bytes::from_static(&[0x89, 0x00])
}

/// A pong frame echoing `payload` (at most 125 bytes, as the ping was).
#[must_use]
pub fn pong_frame(payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(125)];
    let mut buf = BytesMut::with_capacity(2 + payload.len());
    put_header(&mut buf, 0xA, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::testing::masked_frame as client_frame;

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Incoming, String>> {
        let mut reader = FrameReader::new(max);
        let mut io = &bytes[..];
        let mut out = vec![];
        loop {
            match reader.next(&mut io).await {
                Ok(m) => out.push(Ok(m)),
                Err(ReadError::Eof) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn reads_messages_of_every_size_class() {
        for len in [0, 1, 125, 126, 1000, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let got = read_all(client_frame(true, 2, &payload), 1 << 20).await;
            assert_eq!(got, vec![Ok(Incoming::Binary(Bytes::from(payload)))], "len {len}");
        }
    }

    #[tokio::test]
    async fn reassembles_fragments_with_control_frames_between() {
        let mut bytes = client_frame(false, 2, b"hel");
        bytes.extend(client_frame(true, 9, b"p"));
        bytes.extend(client_frame(false, 0, b"lo "));
        bytes.extend(client_frame(true, 0, b"world"));
        let got = read_all(bytes, 1024).await;
        assert_eq!(
            got,
            vec![
                Ok(Incoming::Ping(Bytes::from_static(b"p"))),
                Ok(Incoming::Binary(Bytes::from_static(b"hello world")))
            ]
        );
    }

    #[tokio::test]
    async fn refuses_oversized_messages_before_buffering_them() {
        // Declares 1 GiB but sends 10 bytes: refused from the header alone.
        let mut bytes = vec![0x82, 0x80 | 127];
        bytes.extend_from_slice(&(1u64 << 30).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(&[0; 10]);
        let got = read_all(bytes, 65536).await;
        assert_eq!(got, vec![Err("message exceeds 65536 bytes".into())]);
        // Fragments that are each small but too big together.
        let mut bytes = client_frame(false, 2, &[1; 40_000]);
        bytes.extend(client_frame(false, 0, &[1; 40_000]));
        let got = read_all(bytes, 65536).await;
        assert_eq!(got, vec![Err("message exceeds 65536 bytes".into())]);
    }

    #[tokio::test]
    async fn refuses_protocol_violations() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x82, 0x01, b'x'], "client frames must be masked"),
            (client_frame(true, 0, b"x"), "continuation without a message"),
            (client_frame(false, 9, b"x"), "fragmented control frame"),
            (client_frame(true, 3, b"x"), "unknown opcode"),
            (
                {
                    let mut f = client_frame(true, 2, b"x");
                    f[0] |= 0x40;
                    f
                },
                "reserved bits set",
            ),
            (client_frame(true, 8, b"x"), "close frame with a 1-byte payload"),
            (
                {
                    let mut f = client_frame(false, 2, b"a");
                    f.extend(client_frame(true, 2, b"b"));
                    f
                },
                "new message inside a fragmented one",
            ),
        ];
        for (bytes, want) in cases {
            let got = read_all(bytes, 1024).await;
            assert_eq!(got.last(), Some(&Err(format!("protocol violation: {want}"))), "{want}");
        }
        // A 126-byte ping.
        let got = read_all(client_frame(true, 9, &[0; 126]), 1024).await;
        assert_eq!(got, vec![Err("protocol violation: control frame over 125 bytes".into())]);
    }

    #[tokio::test]
    async fn text_and_close_are_reported() {
        let mut bytes = client_frame(true, 1, b"hi");
        bytes.extend(client_frame(true, 8, &1000u16.to_be_bytes()));
        assert_eq!(
            read_all(bytes, 1024).await,
            vec![Ok(Incoming::Text(Bytes::from_static(b"hi"))), Ok(Incoming::Close(Some(1000)))]
        );
    }

    #[tokio::test]
    async fn a_stream_of_frames_is_read_in_large_chunks() {
        use std::pin::Pin;
        use std::task::{Context, Poll};
        /// Counts the reads asked of it.
        struct Counting<'a> {
            inner: &'a [u8],
            reads: usize,
        }
        impl AsyncRead for Counting<'_> {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                self.reads += 1;
                Pin::new(&mut self.inner).poll_read(cx, buf)
            }
        }
        // A publisher's stream: 1,000 frames of 64 bytes, 70 KB in all.
        let mut bytes = Vec::new();
        for i in 0..1000u32 {
            bytes.extend(client_frame(true, 2, &i.to_be_bytes().repeat(16)));
        }
        let mut io = Counting { inner: &bytes, reads: 0 };
        let mut reader = FrameReader::new(1024);
        let mut got = Vec::new();
        loop {
            let message = match reader.buffered() {
                Some(m) => m.expect("a frame"),
                None => match reader.next(&mut io).await {
                    Ok(m) => m,
                    Err(ReadError::Eof) => break,
                    Err(e) => panic!("{e}"),
                },
            };
            let Incoming::Binary(payload) = message else { panic!("{message:?}") };
            got.push(u32::from_be_bytes(payload[..4].try_into().expect("4 bytes")));
        }
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert!(io.reads <= 12, "{} reads for 70 KB", io.reads);
        // Idle again, the reader holds no buffer.
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[test]
    fn server_frames_have_correct_headers() {
        assert_eq!(&close_frame(4000, "slow")[..], &[0x88, 6, 0x0f, 0xa0, b's', b'l', b'o', b'w']);
        assert_eq!(&pong_frame(b"ab")[..], &[0x8a, 2, b'a', b'b']);
        let long = close_frame(1000, &"x".repeat(500));
        assert_eq!(long.len(), 2 + 2 + 123);
        let msg = herald_proto::client::Ping {};
        assert_eq!(&binary_frame(&msg)[..], &[0x82, 0]);
    }

    proptest! {
        /// Any byte soup ends in a message or an error, never a panic or a
        /// hang, and messages never exceed the limit.
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let got = rt.block_on(read_all(bytes, 64));
            for m in got.into_iter().flatten() {
                if let Incoming::Binary(b) = m {
                    prop_assert!(b.len() <= 64);
                }
            }
        }

        /// Split anywhere, a frame stream reads the same.
        #[test]
        fn chunking_does_not_matter(payload in proptest::collection::vec(any::<u8>(), 0..2000), split in 0usize..2100) {
            let bytes = client_frame(true, 2, &payload);
            let split = split.min(bytes.len());
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let (a, b) = bytes.split_at(split);
            let mut io = tokio_test_chain(a, b);
            let mut reader = FrameReader::new(4096);
            let got = rt.block_on(reader.next(&mut io)).expect("frame");
            prop_assert_eq!(got, Incoming::Binary(Bytes::from(payload)));
        }
    }

    fn tokio_test_chain<'a>(a: &'a [u8], b: &'a [u8]) -> impl AsyncRead + Unpin + 'a {
        tokio::io::AsyncReadExt::chain(a, b)
    }
}
