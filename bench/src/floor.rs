//! The floor: the least a WebSocket broadcaster can do on this machine,
//! which Herald's figures are reported against (`herald bench --floor-url`).
//!
//! Not Herald: no tokens, no channels, no limits beyond a bound on each
//! socket's pending bytes, and just enough of Herald's protocol (`Connect`,
//! `Subscribe`, `Publish`) for the generator. Every subscriber joins one
//! set; a publish is encoded once and appended to each subscriber's pending
//! bytes, and each socket's writer task writes everything pending in one
//! call — writes coalesced, as a plain tokio server does it. It runs on a
//! tokio runtime with as many workers as the cores it may use, like the
//! edge, so pinning both to the same core compares like with like.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::{Buf, Bytes, BytesMut};
use herald_proto::client::{self, client_frame, reply, reply_ok, server_frame};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// `Sec-WebSocket-Accept` for the generator's fixed key: the floor serves
/// `herald bench` only.
const ACCEPT: &str = "1MF1XBEsIPqesilv0PVEoYLx78I=";
/// A subscriber further behind than this misses frames (the generator's
/// delivered count shows it).
const MAX_PENDING: usize = 8 << 20;
/// The largest client frame accepted.
const MAX_FRAME: usize = 1 << 20;
/// Publishes handled in a row before the writers get their turn.
const PUBLISHES_PER_TURN: u32 = 32;
/// The largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One subscriber's pending bytes and the wake-up of its writer.
struct Sub {
    pending: Mutex<BytesMut>,
    wake: Notify,
    gone: AtomicBool,
}

type Subs = Arc<RwLock<Vec<Arc<Sub>>>>;

/// Binds `addr` and serves until the process ends; `bound` is called with
/// the address bound (port 0 picks one).
///
/// # Errors
///
/// When binding fails.
pub async fn serve(addr: SocketAddr, bound: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    bound(listener.local_addr()?);
    let subs: Subs = Arc::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(connection(stream, subs.clone()));
    }
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
fn next_frame(buf: &mut BytesMut) -> std::io::Result<Option<(u8, BytesMut)>> {
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
    let mask_len = if buf[1] & 0x80 != 0 { 4 } else { 0 };
    if buf.len() < header + mask_len + len {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    let mask = if mask_len == 4 { [buf[header], buf[header + 1], buf[header + 2], buf[header + 3]] } else { [0; 4] };
    buf.advance(header + mask_len);
    let mut payload = buf.split_to(len);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some((opcode, payload)))
}

async fn connection(stream: TcpStream, subs: Subs) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.advance(end + 4);
            break;
        }
        if buf.len() > MAX_HEAD || !matches!(rd.read_buf(&mut buf).await, Ok(n) if n > 0) {
            return;
        }
    }
    if buf.is_empty() {
        buf = BytesMut::new();
    }
    let me = Arc::new(Sub { pending: Mutex::new(BytesMut::new()), wake: Notify::new(), gone: AtomicBool::new(false) });
    send(
        &me,
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
            herald_proto::SUBPROTOCOL
        )
        .as_bytes(),
    );
    let writer = tokio::spawn(write_loop(wr, me.clone()));
    let _ = read_loop(&mut rd, &mut buf, &me, &subs).await;
    me.gone.store(true, Ordering::Relaxed);
    subs.write().unwrap_or_else(PoisonError::into_inner).retain(|s| !Arc::ptr_eq(s, &me));
    writer.abort();
}

async fn read_loop(rd: &mut OwnedReadHalf, buf: &mut BytesMut, me: &Arc<Sub>, subs: &Subs) -> std::io::Result<()> {
    let mut published = 0u32;
    let mut busy = false;
    loop {
        while let Some((opcode, payload)) = next_frame(buf)? {
            match opcode {
                0x2 => {
                    let request = client::ClientFrame::decode(payload.freeze())
                        .map_err(|_| std::io::Error::other("undecodable frame"))?;
                    let id = request.request_id;
                    match request.kind {
                        Some(client_frame::Kind::Connect(_)) => {
                            send(me, &frame(server_frame::Kind::Connected(client::Connected::default())));
                            send(me, &ok(id, None));
                        }
                        Some(client_frame::Kind::Subscribe(_)) => {
                            send(me, &ok(id, None));
                            subs.write().unwrap_or_else(PoisonError::into_inner).push(me.clone());
                        }
                        Some(client_frame::Kind::Publish(p)) => {
                            let message = frame(server_frame::Kind::Message(client::Message {
                                channel: p.channel,
                                data: p.data,
                                ..Default::default()
                            }));
                            for sub in subs.read().unwrap_or_else(PoisonError::into_inner).iter() {
                                send(sub, &message);
                            }
                            send(me, &ok(id, Some(reply_ok::Value::Published(client::PublishResult::default()))));
                            published += 1;
                            if published.is_multiple_of(PUBLISHES_PER_TURN) {
                                // The writers write what piled up before
                                // more is fanned out: queues stay a few
                                // frames deep, each write still carries
                                // many.
                                tokio::task::yield_now().await;
                            }
                        }
                        _ => send(me, &ok(id, None)),
                    }
                }
                0x8 => return Ok(()),
                _ => {}
            }
        }
        // An idle connection holds 128 bytes; one that sends a stream
        // (the publisher) is read 16 KiB at a time.
        if buf.is_empty() && buf.capacity() > 128 {
            *buf = BytesMut::new();
        }
        let room = if busy { 16 * 1024 } else { 128 };
        buf.reserve(room);
        let spare = buf.capacity() - buf.len();
        let n = rd.read_buf(buf).await?;
        if n == 0 {
            return Ok(());
        }
        busy = n == spare;
    }
}

/// Appends `bytes` to the subscriber's pending bytes and wakes its writer
/// when they were empty; drops them past the bound.
fn send(sub: &Sub, bytes: &[u8]) {
    let mut pending = lock(&sub.pending);
    if pending.len() + bytes.len() > MAX_PENDING {
        return;
    }
    let was_empty = pending.is_empty();
    pending.extend_from_slice(bytes);
    drop(pending);
    if was_empty {
        sub.wake.notify_one();
    }
}

/// Writes everything pending in one call each time it is woken.
async fn write_loop(mut wr: OwnedWriteHalf, sub: Arc<Sub>) {
    loop {
        sub.wake.notified().await;
        loop {
            // Taken whole: an idle connection keeps no buffer.
            let out = std::mem::take(&mut *lock(&sub.pending));
            if out.is_empty() {
                break;
            }
            if wr.write_all(&out).await.is_err() || sub.gone.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}
