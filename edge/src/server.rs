//! The edge's listener: accepts TCP (and TLS) connections, serves HTTP/1.1
//! on them, upgrades `GET /v1/connect` (Herald's protocol) and `GET
//! /app/{key}` (Pusher's) to WebSocket connections and answers `/healthz`,
//! `/readyz` and `/metrics`. Also the drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use herald_proto::{CONNECT_PATH, CloseCode, SUBPROTOCOL};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::conn::{self, Shared};
use crate::hub::Wire;
use crate::pusher::{self, PusherRequest};
use crate::tcp::{SharedRead, SharedWrite};
use crate::telemetry;

type Body = Full<Bytes>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Whether the edge should receive traffic.
pub(crate) fn ready(shared: &Shared) -> bool {
    !*shared.draining.borrow() && shared.hub.bus().is_connected() && shared.verifier.has_keys()
}

fn offers_subprotocol(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

async fn route(shared: Arc<Shared>, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    if req.method() != Method::GET {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
    }
    let response = match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if ready(&shared) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(telemetry::render())));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            response
        }
        p if p == CONNECT_PATH => {
            if !offers_subprotocol(&req) {
                return Ok(text(StatusCode::BAD_REQUEST, "the herald.v1 websocket subprotocol is required\n"));
            }
            let herald =
                Protocol::Herald(conn::HeraldRequest { bearer: bearer(&req), origin: origin(&req), peer: peer(&req) });
            upgrade(shared, &mut req, herald)
        }
        p if p.starts_with(pusher::PATH_PREFIX) => match PusherRequest::from_uri(req.uri()) {
            Some(request) => {
                let request = PusherRequest { origin: origin(&req), peer: peer(&req), ..request };
                upgrade(shared, &mut req, Protocol::Pusher(request))
            }
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

/// The address the connection came from (set by [`serve_http`]).
#[derive(Clone, Copy)]
struct Peer(std::net::IpAddr);

fn peer(req: &Request<Incoming>) -> Option<std::net::IpAddr> {
    req.extensions().get::<Peer>().map(|p| p.0)
}

fn origin(req: &Request<Incoming>) -> Option<String> {
    req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The protocol an upgrade is for, with what its connection needs of the
/// request.
enum Protocol {
    /// Herald's (`/v1/connect`): the bearer token and `Origin`, if any,
    /// and the client's address.
    Herald(conn::HeraldRequest),
    /// Pusher's (`/app/{key}`).
    Pusher(PusherRequest),
}

fn upgrade(shared: Arc<Shared>, req: &mut Request<Incoming>, protocol: Protocol) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(req) {
        return text(StatusCode::UPGRADE_REQUIRED, "websocket upgrade required\n");
    }
    if *shared.draining.borrow() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "edge is draining\n");
    }
    let over_limit = shared.open.load(Ordering::Acquire) >= shared.config.max_connections as usize;
    let subprotocol = matches!(protocol, Protocol::Herald(_));
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut *req) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "bad upgrade request");
            return text(StatusCode::BAD_REQUEST, "bad websocket upgrade request\n");
        }
    };
    shared.open.fetch_add(1, Ordering::AcqRel);
    metrics::counter!("herald_connections_accepted_total").increment(1);
    tokio::spawn(async move {
        let io = match fut.await {
            Ok(ws) => ws.into_inner(),
            Err(e) => {
                shared.open.fetch_sub(1, Ordering::AcqRel);
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        if over_limit {
            refuse(io, shared, &protocol).await;
            return;
        }
        // Plain TCP is served on the socket itself (no boxed stream, no lock
        // between the halves: every delivery's write goes straight to it);
        // TLS through the upgraded stream, split. Each in a task of its own,
        // sized for its protocol and stream alone: this task, which could
        // hold any of them, ends here (every idle connection would keep the
        // largest one's room otherwise).
        match io.into_inner().downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let sock = Arc::new(parts.io.into_inner());
                let (rd, wr) = (SharedRead(sock.clone()), SharedWrite(sock.clone()));
                spawn_serve(rd, wr, parts.read_buf, Some(sock), shared, protocol);
            }
            Err(upgraded) => {
                let (rd, wr) = tokio::io::split(TokioIo::new(upgraded));
                spawn_serve(rd, wr, Bytes::new(), None, shared, protocol);
            }
        }
    });
    let (mut parts, _) = response.into_parts();
    if subprotocol {
        parts.headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// Serves an upgraded connection in its protocol, in a task of its own.
fn spawn_serve<R, W>(
    rd: R,
    wr: W,
    early: Bytes,
    direct: Option<Arc<TcpStream>>,
    shared: Arc<Shared>,
    protocol: Protocol,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    match protocol {
        Protocol::Herald(request) => tokio::spawn(conn::serve(rd, wr, early, direct, shared, request)),
        Protocol::Pusher(request) => tokio::spawn(pusher::serve(rd, wr, early, direct, shared, request)),
    };
}

/// Closes a freshly upgraded connection at once: the edge holds as many
/// connections as it may.
async fn refuse<S: AsyncWrite + Unpin>(mut io: S, shared: Arc<Shared>, protocol: &Protocol) {
    use tokio::io::AsyncWriteExt;
    let code = CloseCode::ConnectionLimit;
    metrics::counter!("herald_closes_total", "code" => code.name()).increment(1);
    match protocol {
        Protocol::Herald(_) => {
            let bytes = conn::close_tail(code, code.reason());
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = io.write_all(&bytes).await;
                let _ = io.shutdown().await;
            })
            .await;
        }
        Protocol::Pusher(_) => pusher::refuse(&mut io, pusher::OVER_CAPACITY, "over capacity").await,
    }
    shared.open.fetch_sub(1, Ordering::AcqRel);
}

fn serve_http<S>(io: S, shared: Arc<Shared>, peer: std::net::IpAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = shared.config.http_header_timeout.0;
    tokio::spawn(async move {
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            route(shared.clone(), req)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(64 * 1024);
        if let Err(e) = builder.serve_connection(TokioIo::new(io), service).with_upgrades().await {
            tracing::trace!(error = %e, "http connection ended");
        }
    });
}

/// Accepts until `shutdown`, then drains.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    draining: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match &tls {
            None => serve_http(stream, shared.clone(), peer.ip()),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                let limit = shared.config.http_header_timeout.0;
                tokio::spawn(async move {
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => serve_http(tls_stream, shared, peer.ip()),
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    drain(&shared, &draining).await;
}

/// Not ready → no new connections → every client told to move (`GoAway`)
/// and served while it finishes its requests → those still there after
/// `drain_grace` closed with 1001 (reconnect elsewhere) → wait until they are
/// gone or `drain_timeout` passes → the webhook events seen meanwhile
/// reported (within the same deadline) → the bus closed.
async fn drain(shared: &Arc<Shared>, draining: &watch::Sender<bool>) {
    let _ = draining.send(true);
    let started = tokio::time::Instant::now();
    let config = &shared.config;
    let grace = config.move_grace();
    let told = shared.hub.send_to_all(Wire::Herald, &crate::conn::go_away_frame(grace));
    // Pusher's protocol has no notice: its clients are told to reconnect
    // now (4200), and the balancer sends them to another edge.
    let moved =
        shared.hub.close_where(CloseCode::GoingAway, "edge is draining; reconnect now", |c| c.wire == Wire::Pusher);
    let told = told + moved;
    tracing::info!(connections = shared.open.load(Ordering::Acquire), told, "draining");
    let wait_until_gone = |deadline: tokio::time::Instant| async move {
        while shared.open.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_until_gone(started + grace).await;
    let staying = shared.hub.close_where(CloseCode::GoingAway, CloseCode::GoingAway.reason(), |_| true);
    if staying > 0 {
        tracing::info!(connections = staying, "closing the clients that did not move");
    }
    wait_until_gone(started + config.drain_timeout.0).await;
    let left = shared.open.load(Ordering::Acquire);
    if left > 0 {
        tracing::warn!(connections = left, "drain deadline passed; exiting with connections open");
    } else {
        tracing::info!("drained");
    }
    // The webhook events seen until now go out before the bus closes.
    shared.webhooks.flush(started + config.drain_timeout.0).await;
    shared.hub.bus().close().await;
}
