//! The minimal client side of `herald.v1` the load generator needs: the
//! upgrade, masked client frames, and a reader that parses every frame in a
//! read at once; and the few Pusher protocol 7 frames a Pusher subscriber
//! needs (connect, subscribe to a public channel, answer pings).

use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use herald_proto::client::{self, client_frame, server_frame};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The upgrade was refused.
    #[error("upgrade refused: {0}")]
    Upgrade(String),
    /// The edge closed the connection (with this close code, if any).
    #[error("closed by the edge{}", .0.map(|c| format!(" with code {c}")).unwrap_or_default())]
    ClosedWith(Option<u16>),
    /// The connection ended.
    #[error("connection closed")]
    Closed,
    /// The edge refused a request.
    #[error("request refused: {0}")]
    Refused(String),
    /// The edge sent something unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// One connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    next_id: u64,
    /// Reads ask the kernel when their data reached the socket
    /// ([`Conn::stamp_arrivals`]).
    stamped: bool,
}

fn masked(payload: &[u8], opcode: u8) -> Vec<u8> {
    let mask = [0x5a, 0x13, 0xc7, 0x2e];
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

enum Frame {
    Binary(Bytes),
    Text(Bytes),
    Ping(Bytes),
    Close(Option<u16>),
    Other,
}

/// The header length and payload length of the complete frame at the start
/// of `buf`, if there is one (reserving room for it otherwise).
fn frame_bounds(buf: &mut BytesMut) -> Option<(usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let len7 = (buf[1] & 0x7f) as usize;
    let (len, header) = match len7 {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n, 2),
    };
    if buf.len() < header + len {
        buf.reserve(header + len - buf.len());
        return None;
    }
    Some((header, len))
}

/// Parses one server frame from `buf`, if complete.
fn parse(buf: &mut BytesMut) -> Option<Frame> {
    let (header, len) = frame_bounds(buf)?;
    let opcode = buf[0] & 0x0f;
    buf.advance(header);
    let payload = buf.split_to(len).freeze();
    Some(match opcode {
        0x2 => Frame::Binary(payload),
        0x1 => Frame::Text(payload),
        0x9 => Frame::Ping(payload),
        0x8 => Frame::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
        _ => Frame::Other,
    })
}

/// Keeps at least 2 KiB free at the end of `buf` for the next read.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 2048 {
        buf.reserve(8 * 1024);
    }
}

async fn fill(stream: &mut (impl AsyncReadExt + Unpin), buf: &mut BytesMut) -> Result<(), WireError> {
    reserve(buf);
    if stream.read_buf(buf).await? == 0 {
        return Err(WireError::Closed);
    }
    Ok(())
}

/// Kernel receive timestamps: `recvmsg` with `SO_TIMESTAMPNS`.
#[cfg(target_os = "linux")]
mod arrival {
    use std::io;
    use std::os::fd::{AsRawFd, RawFd};

    use bytes::BytesMut;
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use super::{WireError, reserve};

    pub(super) fn enable(stream: &TcpStream) -> io::Result<bool> {
        let on: libc::c_int = 1;
        // SAFETY: a plain integer option on a socket this stream owns; the
        // pointer and length describe `on`, which outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(true)
    }

    /// Like `super::fill`, also returning the arrival time of the newest
    /// data read.
    pub(super) async fn fill(stream: &TcpStream, buf: &mut BytesMut) -> Result<Option<u64>, WireError> {
        reserve(buf);
        loop {
            stream.readable().await?;
            match stream.try_io(Interest::READABLE, || recv(stream.as_raw_fd(), buf)) {
                Ok((0, _)) => return Err(WireError::Closed),
                Ok((_, at)) => return Ok(at),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn recv(fd: RawFd, buf: &mut BytesMut) -> io::Result<(usize, Option<u64>)> {
        let spare = buf.spare_capacity_mut();
        let mut iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: spare.len() };
        // Room for one timespec control message, aligned for `cmsghdr`.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // SAFETY: `msg` points at `iov` (over the buffer's spare capacity)
        // and at `control`; both outlive the call, and the lengths are theirs.
        let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: the kernel initialized the first `n` bytes of the spare
        // capacity.
        unsafe { buf.set_len(buf.len() + n) };
        let mut at = None;
        // SAFETY: the walk stays within the `msg_controllen` bytes of
        // control messages the kernel wrote; the timestamp is read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    at = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        Ok((n, at))
    }
}

/// Elsewhere: no arrival times.
#[cfg(not(target_os = "linux"))]
mod arrival {
    use bytes::BytesMut;
    use tokio::net::TcpStream;

    use super::WireError;

    pub(super) fn enable(_: &TcpStream) -> std::io::Result<bool> {
        Ok(false)
    }

    pub(super) async fn fill(_: &TcpStream, _: &mut BytesMut) -> Result<Option<u64>, WireError> {
        Err(WireError::Protocol("arrival times are not available here".into()))
    }
}

impl Conn {
    /// Upgrades a connection to `addr` and authenticates with `token`.
    ///
    /// # Errors
    ///
    /// [`WireError`] when the upgrade or the authentication fails.
    pub async fn connect(addr: SocketAddr, token: &str) -> Result<Self, WireError> {
        let subprotocol = format!("Sec-WebSocket-Protocol: {}\r\n", herald_proto::SUBPROTOCOL);
        let mut conn = Self::upgrade(addr, herald_proto::CONNECT_PATH, &subprotocol).await?;
        conn.request(client_frame::Kind::Connect(client::Connect {
            token: token.to_owned(),
            client_name: "herald-bench".into(),
        }))
        .await?;
        Ok(conn)
    }

    /// Upgrades a connection to `addr` on `path` and waits for Pusher's
    /// `pusher:connection_established` (Pusher protocol 7, app `key`).
    ///
    /// # Errors
    ///
    /// [`WireError`] when the upgrade fails or the edge refuses the key.
    pub async fn connect_pusher(addr: SocketAddr, key: &str) -> Result<Self, WireError> {
        let path = format!("/app/{key}?protocol=7&client=herald-bench&version=1");
        let mut conn = Self::upgrade(addr, &path, "").await?;
        conn.pusher_wait(|event| event == "pusher:connection_established").await?;
        Ok(conn)
    }

    /// Subscribes a Pusher connection to a public channel and waits for
    /// `pusher_internal:subscription_succeeded`.
    ///
    /// # Errors
    ///
    /// [`WireError::Refused`] on `pusher:subscription_error` or
    /// `pusher:error`.
    pub async fn subscribe_pusher(&mut self, channel: &str) -> Result<(), WireError> {
        let frame = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel}}).to_string();
        self.stream.write_all(&masked(frame.as_bytes(), 1)).await?;
        self.pusher_wait(|event| event == "pusher_internal:subscription_succeeded").await
    }

    /// Reads Pusher frames until one whose event `done` accepts; errors
    /// end the wait.
    async fn pusher_wait(&mut self, done: impl Fn(&str) -> bool) -> Result<(), WireError> {
        loop {
            while let Some(frame) = parse(&mut self.buf) {
                match frame {
                    Frame::Text(payload) => {
                        let value: serde_json::Value = serde_json::from_slice(&payload)
                            .map_err(|e| WireError::Protocol(format!("undecodable Pusher frame: {e}")))?;
                        let event = value["event"].as_str().unwrap_or_default();
                        if done(event) {
                            return Ok(());
                        }
                        if matches!(event, "pusher:error" | "pusher:subscription_error") {
                            return Err(WireError::Refused(value["data"].to_string()));
                        }
                    }
                    Frame::Ping(p) => self.stream.write_all(&masked(&p, 0xA)).await?,
                    Frame::Close(code) => return Err(WireError::ClosedWith(code)),
                    Frame::Binary(_) | Frame::Other => {}
                }
            }
            fill(&mut self.stream, &mut self.buf).await?;
        }
    }

    async fn upgrade(addr: SocketAddr, path: &str, extra_headers: &str) -> Result<Self, WireError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: aGVyYWxkLWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(1024);
        let end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if buf.len() > 16 * 1024 {
                return Err(WireError::Upgrade("response head too large".into()));
            }
            fill(&mut stream, &mut buf).await?;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(WireError::Upgrade(head.lines().next().unwrap_or_default().to_owned()));
        }
        buf.advance(end);
        Ok(Self { stream, buf, next_id: 1, stamped: false })
    }

    /// Subscribes to `channel` and waits for the `ok`.
    ///
    /// # Errors
    ///
    /// [`WireError::Refused`] when the edge refuses.
    pub async fn subscribe(&mut self, channel: &str) -> Result<(), WireError> {
        self.request(client_frame::Kind::Subscribe(client::Subscribe {
            channel: channel.to_owned(),
            recover_from: None,
        }))
        .await
    }

    /// Subscribes to `channel`, resuming after `recover_from` when given
    /// (the protocol's recovery), and returns the edge's answer. Frames that
    /// arrive before the answer go to `early`.
    ///
    /// # Errors
    ///
    /// [`WireError::Refused`] when the edge refuses.
    pub async fn subscribe_from(
        &mut self,
        channel: &str,
        recover_from: Option<client::StreamPosition>,
        early: impl FnMut(&[u8]),
    ) -> Result<client::SubscribeResult, WireError> {
        let subscribe = client::Subscribe { channel: channel.to_owned(), recover_from };
        match self.request_with(client_frame::Kind::Subscribe(subscribe), early).await? {
            Some(client::reply_ok::Value::Subscribed(result)) => Ok(result),
            _ => Err(WireError::Protocol("a subscribe answered without its result".into())),
        }
    }

    /// Sends a request and waits for its reply (skipping other frames).
    pub(crate) async fn request(&mut self, kind: client_frame::Kind) -> Result<(), WireError> {
        self.request_with(kind, |_| {}).await.map(drop)
    }

    /// Sends a request and waits for its reply; other binary frames that
    /// arrive meanwhile go to `early`.
    async fn request_with(
        &mut self,
        kind: client_frame::Kind,
        mut early: impl FnMut(&[u8]),
    ) -> Result<Option<client::reply_ok::Value>, WireError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = client::ClientFrame { request_id: id, kind: Some(kind) };
        self.stream.write_all(&masked(&frame.encode_to_vec(), 2)).await?;
        loop {
            while let Some(frame) = parse(&mut self.buf) {
                match frame {
                    Frame::Binary(payload) => {
                        let Ok(frame) = client::ServerFrame::decode(payload.clone()) else {
                            return Err(WireError::Protocol("undecodable frame".into()));
                        };
                        match frame.kind {
                            Some(server_frame::Kind::Reply(r)) if r.request_id == id => {
                                return match r.result {
                                    Some(client::reply::Result::Ok(ok)) => Ok(ok.value),
                                    Some(client::reply::Result::Error(e)) => Err(WireError::Refused(e.message)),
                                    None => Err(WireError::Protocol("empty reply".into())),
                                };
                            }
                            Some(server_frame::Kind::Disconnect(d)) => {
                                return Err(WireError::Refused(format!("{} ({})", d.reason, d.code)));
                            }
                            _ => early(&payload),
                        }
                    }
                    Frame::Ping(p) => self.stream.write_all(&masked(&p, 0xA)).await?,
                    Frame::Close(code) => return Err(WireError::ClosedWith(code)),
                    Frame::Text(_) | Frame::Other => {}
                }
            }
            fill(&mut self.stream, &mut self.buf).await?;
        }
    }

    /// From now on, every read also learns when its data reached this
    /// socket: the kernel's receive timestamp (`SO_TIMESTAMPNS`), taken as
    /// the packet is delivered to the socket, before this process reads it.
    /// It measures the server without the generator's own queueing: one
    /// generator reads thousands of sockets one after another, where real
    /// subscribers each read their own at once. Returns whether the
    /// platform has it (Linux); elsewhere reads carry no arrival time.
    ///
    /// # Errors
    ///
    /// The socket option could not be set.
    pub fn stamp_arrivals(&mut self) -> std::io::Result<bool> {
        self.stamped = arrival::enable(&self.stream)?;
        Ok(self.stamped)
    }

    /// Waits for data, then handles every complete frame in the buffer:
    /// binary and text payloads go to `count` with the time the read's data reached
    /// the socket (Unix nanoseconds, only after
    /// [`stamp_arrivals`](Self::stamp_arrivals)), and `count` says whether
    /// to count them; pings are answered. Returns how many were counted.
    /// Payloads are looked at in place (no copy, no allocation): the
    /// generator's own cost per delivery is part of what it measures.
    ///
    /// # Errors
    ///
    /// [`WireError`] when the connection ends.
    pub async fn next_batch(&mut self, mut count: impl FnMut(&[u8], Option<u64>) -> bool) -> Result<u64, WireError> {
        let arrived = if self.stamped {
            arrival::fill(&self.stream, &mut self.buf).await?
        } else {
            fill(&mut self.stream, &mut self.buf).await?;
            None
        };
        let mut n = 0;
        while let Some((header, len)) = frame_bounds(&mut self.buf) {
            let opcode = self.buf[0] & 0x0f;
            let payload = &self.buf[header..header + len];
            match opcode {
                // A Pusher server's ping: short, unlike any delivery.
                0x1 if payload.len() < 64 && payload.windows(11).any(|w| w == b"pusher:ping") => {
                    let pong = masked(br#"{"event":"pusher:pong","data":{}}"#, 1);
                    self.buf.advance(header + len);
                    self.stream.write_all(&pong).await?;
                    continue;
                }
                0x1 | 0x2 if count(payload, arrived) => n += 1,
                0x9 => {
                    let pong = masked(payload, 0xA);
                    self.buf.advance(header + len);
                    self.stream.write_all(&pong).await?;
                    continue;
                }
                0x8 => {
                    let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Err(WireError::ClosedWith(code));
                }
                _ => {}
            }
            self.buf.advance(header + len);
        }
        Ok(n)
    }

    /// Splits into a reader of replies and a writer of requests.
    #[must_use]
    pub fn split(self) -> (ReplyReader, RequestWriter) {
        let (read, write) = self.stream.into_split();
        (ReplyReader { read, buf: self.buf }, RequestWriter { write, buf: Vec::new() })
    }
}

/// The read half of a publisher connection.
pub struct ReplyReader {
    read: OwnedReadHalf,
    buf: BytesMut,
}

impl ReplyReader {
    /// Waits for data and returns the outcome of every reply in it
    /// (`true` = ok).
    ///
    /// # Errors
    ///
    /// [`WireError`] when the connection ends.
    pub async fn replies(&mut self) -> Result<Vec<bool>, WireError> {
        Ok(self.replies_by_id().await?.into_iter().map(|(_, ok)| ok).collect())
    }

    /// Like [`Self::replies`], with each reply's request id.
    ///
    /// # Errors
    ///
    /// [`WireError`] when the connection ends.
    pub async fn replies_by_id(&mut self) -> Result<Vec<(u64, bool)>, WireError> {
        fill(&mut self.read, &mut self.buf).await?;
        let mut out = Vec::new();
        while let Some(frame) = parse(&mut self.buf) {
            match frame {
                Frame::Binary(payload) => {
                    if let Ok(client::ServerFrame { kind: Some(server_frame::Kind::Reply(r)) }) =
                        client::ServerFrame::decode(payload)
                    {
                        out.push((r.request_id, matches!(r.result, Some(client::reply::Result::Ok(_)))));
                    }
                }
                Frame::Close(code) => return Err(WireError::ClosedWith(code)),
                Frame::Ping(_) | Frame::Text(_) | Frame::Other => {}
            }
        }
        Ok(out)
    }
}

/// The write half of a publisher connection.
pub struct RequestWriter {
    write: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl RequestWriter {
    /// Sends one request frame.
    ///
    /// # Errors
    ///
    /// [`WireError`] on I/O errors.
    pub async fn send(&mut self, frame: &client::ClientFrame) -> Result<(), WireError> {
        self.buf.clear();
        frame.encode(&mut self.buf).map_err(|e| WireError::Protocol(e.to_string()))?;
        let bytes = masked(&self.buf, 2);
        self.write.write_all(&bytes).await?;
        Ok(())
    }
}

/// The edge's resident memory from its `/metrics`.
///
/// # Errors
///
/// [`WireError`] when the page cannot be read or lacks the metric.
pub async fn resident_memory(edge: SocketAddr) -> Result<u64, crate::BenchError> {
    let mut stream = TcpStream::connect(edge).await.map_err(WireError::from)?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {edge}\r\n\r\n").as_bytes())
        .await
        .map_err(WireError::from)?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await.map_err(WireError::from)?;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix("herald_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| {
            crate::BenchError::Config("the edge's /metrics lacks herald_process_resident_memory_bytes".into())
        })
}
