//! One client connection, from the upgraded socket to the close.
//!
//! Each connection is one task, which runs two loops side by side (the
//! writer is polled beside whatever the reader awaits, see
//! [`Writing`](writer::Writing)):
//!
//! - the **reader** (this module's [`serve`]) authenticates the client,
//!   reads its frames and answers every request; the hub's sweep closes it
//!   past its heartbeat or token deadline
//!   ([`Hub::deadline_loop`](crate::hub::Hub::deadline_loop));
//! - the **writer** owns the socket's write half and drains the
//!   connection's [`Outbox`]: everything waiting goes out in one write (pings
//!   too: the hub queues them, see [`Hub::ping_loop`](crate::hub::Hub::ping_loop)), and a requested close
//!   is written as a `Disconnect` frame plus a close frame before the socket
//!   is shut. On plain TCP a push to an idle outbox writes to the socket
//!   itself; the writer takes over whatever the socket did not take.
//!
//! One task rather than two: an idle connection holds one task's room and
//! one scheduler entry, not two. A write that waits on a full socket does
//! not stop the reader: both are polled on every wake-up of the task.
//!
//! Replies and deliveries share the outbox, so a slow client is closed by
//! the same bound whatever filled its queue.
//!
//! # Layout
//!
//! - `shared`: what every connection of an edge shares.
//! - `handshake`: authentication after the upgrade.
//! - `session`: the state of an authenticated connection.
//! - `reader`: client frames decoded into requests.
//! - `subscribe`: subscribe, unsubscribe and token refresh.
//! - `recovery`: gap-free recovery of a subscription with a position.
//! - `publish`: client publishes.
//! - `presence`: presence queries.
//! - `reply`: replies and the frames that end a connection.
//! - `writer`: the write loop.

mod handshake;
mod presence;
mod publish;
mod reader;
mod recovery;
mod reply;
mod session;
mod shared;
mod subscribe;
mod writer;

use std::sync::Arc;

use bytes::Bytes;
use herald_proto::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::outbox::Outbox;
use crate::ws::FrameReader;
use handshake::handshake;
use publish::InFlight;
use reader::run;
use reply::Close;

pub(crate) use reply::{close_tail, go_away_frame};
pub(crate) use session::RateLimit;
pub(crate) use shared::{OpenGuard, Shared};
pub(crate) use writer::{WriteLoop, Writing, write_loop};

/// What the upgrade request of a Herald connection says.
#[derive(Debug, Default)]
pub(crate) struct HeraldRequest {
    /// The token from the `Authorization` header, if any.
    pub(crate) bearer: Option<String>,
    /// The `Origin` header, if any.
    pub(crate) origin: Option<String>,
    /// The client's address.
    pub(crate) peer: Option<std::net::IpAddr>,
}

/// Serves one upgraded WebSocket until it closes.
///
/// `rd` and `wr` are the socket's halves and `early` what the client sent
/// after its upgrade request that was already read; `request` what its
/// upgrade request said.
///
/// The connection is set up before its future exists, and the future
/// uses what it captured in place: what only the set-up needs (the write
/// half before it is the writer's, the early bytes, the upgrade request's
/// fields, boxed until the handshake) is not kept in every idle
/// connection's future, and nothing is held twice (an `async fn` keeps
/// its arguments beside its own copies of them).
pub(crate) fn serve<R, W>(
    mut rd: R,
    wr: W,
    early: Bytes,
    direct: Option<Arc<tokio::net::TcpStream>>,
    shared: Arc<Shared>,
    request: HeraldRequest,
) -> impl Future<Output = ()> + Send + 'static
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let guard = OpenGuard(shared.clone());
    let config = &shared.config;
    let outbox = Arc::new(
        Outbox::new(config.send_queue_frames as usize, config.send_queue_bytes.as_usize())
            .with_closer(reply::close_tail),
    );
    let (mut writer, mut reader) = start(&shared, &outbox, wr, direct, early);
    let id = shared.hub.next_id();
    let request = Box::new(request);
    async move {
        let writer: std::pin::Pin<&mut WriteLoop<W>> = std::pin::Pin::new(&mut writer);
        let mut writing = Writing::new(writer);
        // Boxed: the handshake's state is needed once; keeping it out of
        // this future keeps every idle connection small.
        let authenticated = {
            let mut handshake = Box::pin(handshake(&shared, &mut reader, &mut rd, &outbox, id, request));
            writing.beside(handshake.as_mut()).await
        };
        let close = match authenticated {
            Ok(mut session) => {
                let mut in_flight = InFlight::default();
                let close = {
                    let reading =
                        std::pin::pin!(run(&shared, &mut reader, &mut rd, &outbox, &mut session, &mut in_flight));
                    writing.beside(reading).await
                };
                if !in_flight.is_empty() {
                    // The publishes still in flight are on their way:
                    // counted, reported, and answered if the socket still
                    // takes it. Boxed, as requests are: not every idle
                    // connection's state.
                    let mut settling = Box::pin(in_flight.settle_all(&shared, &mut session));
                    writing.beside(settling.as_mut()).await;
                }
                if shared.hub.tap().any_on() {
                    let (code, reason) = match &close {
                        Some(Close(code, reason)) => (*code, reason.clone()),
                        None => outbox.close_code().unwrap_or((CloseCode::Normal, "gone".to_owned())),
                    };
                    let (tap, app) = (shared.hub.tap(), session.entry.app.as_str());
                    crate::tap::disconnected(tap, app, &session.connection_id, code, &reason);
                }
                let mut leaves = Vec::new();
                for (channel, presence) in session.subscriptions.drain() {
                    shared.hub.unsubscribe(&session.entry.app, &channel, id);
                    leaves.extend(presence);
                }
                shared.hub.unregister(id);
                shared.hub.report_leaves_later(&session.entry.app, leaves);
                close
            }
            Err(close) => close,
        };
        finish(id, &mut rd, &outbox, &mut writing, close.map(|Close(code, reason)| (code, reason))).await;
        drop(guard);
    }
}

/// Starts the I/O of a connection of either protocol: the writer draining
/// `outbox` into `wr` (with pushes written straight to `direct`, the
/// plain-TCP socket, while the writer is idle), for the connection's task
/// to run [`Writing`] it, and the frame reader, primed with what the client
/// sent right after its upgrade request.
pub(crate) fn start<W: AsyncWrite + Unpin + Send + 'static>(
    shared: &Shared,
    outbox: &Arc<Outbox>,
    wr: W,
    direct: Option<Arc<tokio::net::TcpStream>>,
    early: Bytes,
) -> (WriteLoop<W>, FrameReader) {
    let config = &shared.config;
    if let Some(sock) = direct {
        outbox.write_through(sock);
    }
    let writer = write_loop(wr, outbox.clone(), config.write_timeout.0);
    let mut reader = FrameReader::new(config.max_frame_size.as_usize());
    reader.prime(&early);
    // `early` may point into the HTTP server's read buffer: it is let go of
    // now, not when the connection ends.
    (writer, reader)
}

/// Ends a connection of either protocol whose reader stopped: with `close`
/// (code and reason) when the reader decided it, else as the hub asked
/// (the writer sends its close frame) or, when the peer is gone, at once.
/// Returns once the writer ended: after the close frame, or at once when
/// the socket is gone; either way within the write timeout.
pub(crate) async fn finish<R: AsyncRead + Unpin>(
    id: u64,
    rd: &mut R,
    outbox: &Outbox,
    writer: &mut Writing<'_>,
    close: Option<(CloseCode, String)>,
) {
    let linger = matches!(close, Some((CloseCode::MessageTooBig, _)));
    match close {
        Some((code, reason)) => {
            if code != CloseCode::Normal {
                tracing::debug!(conn = id, code = code.number(), %reason, "closing connection");
            }
            metrics::counter!("herald_closes_total", "code" => code.name()).increment(1);
            outbox.close(code, &reason);
        }
        // Closed by the hub: the writer sends the close frame.
        None if outbox.is_closing() => {}
        // The peer is gone (end of stream or a socket error): nothing more
        // can reach it, and an idle writer would wait for ever.
        None => {
            outbox.close(CloseCode::Normal, "gone");
            writer.abort();
        }
    }
    writer.finish().await;
    if linger {
        Box::pin(drain_input(rd)).await;
    }
}

/// How long, and how many bytes, [`drain_input`] reads at most.
const LINGER: (std::time::Duration, usize) = (std::time::Duration::from_secs(2), 8 * 1024 * 1024);

/// After closing a connection whose client is still sending (the rest of a
/// message over the size limit): reads and drops what arrives until the
/// client closes too, for a bounded time and amount. A socket closed with
/// unread input is reset, and a reset can overtake the close frame: the
/// client would see a dropped connection instead of the close code.
async fn drain_input<R: AsyncRead + Unpin>(rd: &mut R) {
    use tokio::io::AsyncReadExt as _;
    let (time, mut left) = LINGER;
    let mut buf = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(time, async {
        while left > 0 {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Verifier;
    use crate::config::EdgeConfig;
    use crate::hub::Hub;
    use herald_bus::{Bus, LocalBus};
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::sync::watch;

    /// Every idle connection holds the serve future (its writer's inside
    /// it): keep it small (792 bytes in debug builds, 152 of them the
    /// writer's; 1,200 with a timer per connection, the writer an `async
    /// fn` and the set-up's arguments kept).
    #[tokio::test]
    async fn connection_futures_stay_small() {
        let (_tx, draining) = watch::channel(false);
        let hub = Hub::new(Bus::local(&LocalBus::new()));
        let settings = crate::webhooks::ReporterSettings { queue: 16, retry: Duration::from_secs(1) };
        let shared = Arc::new(Shared {
            webhooks: crate::webhooks::WebhookReporter::start(hub.clone(), settings),
            hub,
            verifier: Verifier::new(
                "http://127.0.0.1:1/jwks",
                "herald",
                Duration::ZERO,
                Duration::from_secs(1),
                crate::auth::Revocations::default(),
                crate::jwks_fetch::JwksFetcher::new(None, Duration::from_secs(1), 1024).expect("a fetcher"),
            ),
            config: EdgeConfig::default(),
            edge_id: "e".into(),
            open: AtomicUsize::new(0),
            draining,
        });
        let (io, _other) = tokio::io::duplex(64);
        let (rd, wr) = tokio::io::split(io);
        let serve = serve(rd, wr, Bytes::new(), None, shared.clone(), HeraldRequest::default());
        let (_, w) = tokio::io::split(tokio::io::duplex(64).0);
        let writer = writer::write_loop(w, Arc::new(Outbox::new(16, 1024)), Duration::from_secs(1));
        let (serve, writer) = (std::mem::size_of_val(&serve), std::mem::size_of_val(&writer));
        eprintln!("serve future: {serve} bytes, write_loop future: {writer} bytes");
        assert!(serve <= 832, "the serve future is {serve} bytes");
        assert!(writer <= 160, "the write_loop future is {writer} bytes");
    }
}
