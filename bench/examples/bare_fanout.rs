//! A reference point for `herald bench`, not part of Herald: the least a
//! fan-out server can do on this machine. One thread; every socket's frames
//! are written by one loop, one after the other, straight from the publish
//! (a frame that does not fit goes to that socket's pending bytes, which a
//! per-socket flusher writes, several frames per write). No tokens, no
//! channels, no limits beyond a pending-bytes bound: it speaks just enough of
//! Herald's protocol (`Connect`, `Subscribe`, `Publish`) for the generator.
//!
//! Its figures are what the edge's are measured against on the same machine:
//!
//! ```sh
//! cargo run --release -p herald-bench --example bare_fanout -- 127.0.0.1:28090 &
//! herald bench --edge-url ws://127.0.0.1:28090/v1/connect --token none -n 10000 -m 300 --rate 10
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Buf, Bytes, BytesMut};
use herald_proto::client::{self, client_frame, reply, reply_ok, server_frame};
use prost::Message as _;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// `Sec-WebSocket-Accept` for the generator's fixed key.
const ACCEPT: &str = "1MF1XBEsIPqesilv0PVEoYLx78I=";
/// A subscriber further behind than this misses frames (the generator's
/// delivered count shows it).
const MAX_PENDING: usize = 8 << 20;
/// The largest client frame accepted.
const MAX_FRAME: usize = 1 << 20;

struct Sub {
    wr: OwnedWriteHalf,
    pending: Mutex<BytesMut>,
    wake: Notify,
}

type Subs = Arc<Mutex<Vec<Arc<Sub>>>>;

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:28090".into())
        .parse()
        .map_err(|e| std::io::Error::other(format!("address: {e}")))?;
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        eprintln!("bare_fanout listening on {}", listener.local_addr()?);
        let subs: Subs = Arc::default();
        loop {
            let (stream, _) = listener.accept().await?;
            let subs = subs.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(stream, subs).await {
                    eprintln!("connection ended: {e}");
                }
            });
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn frame(kind: server_frame::Kind) -> Bytes {
    let payload = client::ServerFrame { kind: Some(kind) }.encode_to_vec();
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.extend_from_slice(&[0x82]);
    match payload.len() {
        n if n < 126 => out.extend_from_slice(&[n as u8]),
        n if n <= 0xffff => {
            out.extend_from_slice(&[126]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.extend_from_slice(&[127]);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&payload);
    out.freeze()
}

fn ok(request_id: u64, value: Option<reply_ok::Value>) -> Bytes {
    frame(server_frame::Kind::Reply(client::Reply {
        request_id,
        result: Some(reply::Result::Ok(client::ReplyOk { value })),
    }))
}

/// One masked client frame from the front of `buf`: (opcode, payload).
fn next_frame(buf: &mut BytesMut) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX), 10)
        }
        126 | 127 => return Ok(None),
        n => (usize::from(n), 2),
    };
    if len > MAX_FRAME {
        return Err(std::io::Error::other("frame too large"));
    }
    let masked = buf[1] & 0x80 != 0;
    let mask_len = if masked { 4 } else { 0 };
    if buf.len() < header + mask_len + len {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    let mask = if masked { [buf[header], buf[header + 1], buf[header + 2], buf[header + 3]] } else { [0; 4] };
    buf.advance(header + mask_len);
    let mut payload = buf.split_to(len).to_vec();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some((opcode, payload)))
}

async fn serve(stream: TcpStream, subs: Subs) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut rd, wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(4096);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 || rd.read_buf(&mut buf).await? == 0 {
            return Err(std::io::Error::other("no request head"));
        }
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    buf.advance(end);
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        herald_proto::SUBPROTOCOL
    );
    let me = Arc::new(Sub { wr, pending: Mutex::new(BytesMut::new()), wake: Notify::new() });
    send(&me, head.as_bytes());
    let flusher = tokio::spawn(flush(me.clone()));
    let result = read_loop(&mut rd, &mut buf, &me, &subs).await;
    lock(&subs).retain(|s| !Arc::ptr_eq(s, &me));
    flusher.abort();
    result
}

async fn read_loop(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    me: &Arc<Sub>,
    subs: &Subs,
) -> std::io::Result<()> {
    loop {
        while let Some((opcode, payload)) = next_frame(buf)? {
            match opcode {
                0x2 => {
                    let Ok(request) = client::ClientFrame::decode(payload.as_slice()) else {
                        return Err(std::io::Error::other("undecodable frame"));
                    };
                    let id = request.request_id;
                    match request.kind {
                        Some(client_frame::Kind::Connect(_)) => {
                            send(me, &frame(server_frame::Kind::Connected(client::Connected::default())));
                            send(me, &ok(id, None));
                        }
                        Some(client_frame::Kind::Subscribe(_)) => {
                            send(me, &ok(id, None));
                            lock(subs).push(me.clone());
                        }
                        Some(client_frame::Kind::Publish(p)) => {
                            let message = frame(server_frame::Kind::Message(client::Message {
                                channel: p.channel,
                                data: p.data,
                                ..Default::default()
                            }));
                            let all: Vec<Arc<Sub>> = lock(subs).clone();
                            for sub in &all {
                                send(sub, &message);
                            }
                            send(me, &ok(id, Some(reply_ok::Value::Published(client::PublishResult::default()))));
                        }
                        _ => send(me, &ok(id, None)),
                    }
                }
                0x8 => return Ok(()),
                _ => {}
            }
        }
        if rd.read_buf(buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Writes `bytes` at once when nothing is pending, else queues them for the
/// flusher.
fn send(sub: &Sub, bytes: &[u8]) {
    let mut pending = lock(&sub.pending);
    let rest = if pending.is_empty() {
        match sub.wr.try_write(bytes) {
            Ok(n) => &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => bytes,
            Err(_) => return,
        }
    } else {
        bytes
    };
    if rest.is_empty() || pending.len() + rest.len() > MAX_PENDING {
        return;
    }
    pending.extend_from_slice(rest);
    drop(pending);
    sub.wake.notify_one();
}

/// Writes a socket's pending bytes whenever it can take them.
async fn flush(sub: Arc<Sub>) {
    loop {
        sub.wake.notified().await;
        loop {
            if lock(&sub.pending).is_empty() {
                break;
            }
            if sub.wr.writable().await.is_err() {
                return;
            }
            let mut pending = lock(&sub.pending);
            match sub.wr.try_write(&pending) {
                Ok(n) => pending.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}
