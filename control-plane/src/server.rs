//! The accept loop: HTTP/1.1 and HTTP/2 connections (h2c, or over TLS with
//! `tls_cert` and `tls_key`, h2 and HTTP/1.1 by ALPN) for the REST and gRPC
//! router, with the bounds a public endpoint needs.
//!
//! - at most `max_http_connections` connections at once; when full, the
//!   connection stalled the longest — silent since it opened, or with
//!   every request stalled in its body, for a second at least — is evicted
//!   to make room, and only when there is none is the new connection
//!   closed at once (and counted) instead of queueing;
//! - at most `max_connections_per_ip` from one client IP (loopback
//!   exempt; off by default);
//! - a new connection must finish its TLS handshake and show what it
//!   speaks within `header_read_timeout` of its accept: the HTTP/2 preface
//!   whole, or, for HTTP/1.1, the first request's head whole — one
//!   deadline for all of it (no slowloris); each keep-alive request's head
//!   must then be whole within `header_read_timeout` of the end of the
//!   previous response; a connection that sends nothing is closed;
//! - a connection with no request in flight for `http_idle_timeout` is
//!   closed (keep-alive and HTTP/2 alike; a request is in flight until its
//!   response body is sent); HTTP/2 connections are pinged every
//!   `http2_keepalive_interval` and closed when a ping goes unanswered for
//!   `http2_keepalive_timeout`;
//! - HTTP/2: at most `max_http2_streams` streams at once (more are refused
//!   with `REFUSED_STREAM`), header blocks up to
//!   `http2_max_header_list_size` (431 past it), and the frame limits of
//!   [`h2_guard`] (rapid reset, PING and SETTINGS floods);
//! - on shutdown: not ready, stop accepting, ask every connection to finish
//!   its requests and close, wait at most `shutdown_timeout`.
//!
//! Accept errors (e.g. out of file descriptors) are logged and retried
//! after a short pause, never fatal.

mod h2_guard;
mod io;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use self::h2_guard::{FrameGuard, FrameLimits};
use self::io::{Io, Replay, read_start};
use crate::connections::{Conn, Registration};
use crate::core::Core;

/// Longest the accept loop waits for an evicted connection's place.
const EVICTION_WAIT: Duration = Duration::from_millis(500);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`
/// resolves, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    core: Arc<Core>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let cfg = &core.config;
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(cfg.header_read_timeout.0).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(cfg.http2_keepalive_interval.0))
        .keep_alive_timeout(cfg.http2_keepalive_timeout.0)
        .max_concurrent_streams(cfg.max_http2_streams)
        .max_header_list_size(u32::try_from(cfg.http2_max_header_list_size.0).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS));
    let limits = FrameLimits {
        resets_per_sec: cfg.http2_max_resets_per_sec,
        control_frames_per_sec: cfg.http2_max_control_frames_per_sec,
    };
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(cfg.max_http_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(registration) = core.connections.register(peer.ip(), cfg.max_connections_per_ip) else {
            core.metrics.connection_closed("max_connections_per_ip");
            continue;
        };
        let Some(permit) = admit(&core, &permits).await else {
            core.metrics.connection_refused();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let conn = Connection {
            router: router.clone(),
            builder: builder.clone(),
            core: core.clone(),
            tls: tls.clone(),
            limits,
            peer,
        };
        tokio::spawn(async move {
            let _permit = permit;
            let Some(served) = conn.open(stream, registration).await else { return };
            tokio::select! {
                result = watcher.watch(served.connection) => if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                () = served.conn.idle(served.idle_timeout) => {
                    tracing::debug!("closing a connection idle for http_idle_timeout");
                }
                () = head_overdue(&served.conn, served.head_timeout) => {
                    tracing::debug!("closing an HTTP/1.1 connection whose request head was not whole within header_read_timeout");
                }
                () = served.conn.evicted() => {
                    served.core.metrics.connection_closed("evicted_stalled_body");
                    tracing::info!(peer = %served.peer, "evicted a connection stalled in a request body to make room");
                }
            }
        });
    }
    core.ready.store(false, Ordering::Release);
    core.debug_watchers.close_all();
    drop(listener);
    tracing::info!("control plane stopped accepting; draining connections");
    let deadline = core.config.shutdown_timeout.0;
    if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections did not finish before the shutdown deadline");
    }
}

/// Resolves when an HTTP/1.1 connection has waited `header_read_timeout`
/// for a request head: since it was accepted (the TLS handshake and the
/// first bytes count within it), or since the previous response was sent.
/// hyper's own `header_read_timeout` starts later (when it reads the head
/// after the first bytes), so it only backs this one up. Never, for
/// HTTP/2, whose preface was whole in time.
async fn head_overdue(conn: &Conn, head_timeout: Option<Duration>) {
    match head_timeout {
        // No request in flight on an HTTP/1.1 connection: it is waiting
        // for a head.
        Some(timeout) => conn.idle(timeout).await,
        None => std::future::pending().await,
    }
}

/// Streams a client may reset before the server accepted them, per
/// connection, before it is sent GOAWAY (h2's own rapid-reset bound).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// A place under `max_http_connections`; when full, one made by evicting a
/// stalled connection (silent since it opened, or stalled in a body).
/// `None`: the new connection is refused.
async fn admit(core: &Core, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return Some(permit);
    }
    if !core.connections.evict_stalled() {
        return None;
    }
    tokio::time::timeout(EVICTION_WAIT, permits.clone().acquire_owned()).await.ok()?.ok()
}

/// What a new connection needs to be served.
struct Connection {
    router: Router,
    builder: Builder<TokioExecutor>,
    core: Arc<Core>,
    tls: Option<TlsAcceptor>,
    limits: FrameLimits,
    peer: std::net::SocketAddr,
}

type HyperConnection =
    hyper_util::server::conn::auto::Connection<'static, TokioIo<Box<dyn Io>>, Tracked, TokioExecutor>;

/// A connection being served.
struct Served {
    connection: HyperConnection,
    conn: Arc<Conn>,
    _registration: Registration,
    core: Arc<Core>,
    idle_timeout: Duration,
    /// HTTP/1.1: how long a request head may take ([`head_overdue`]).
    head_timeout: Option<Duration>,
    peer: std::net::SocketAddr,
}

impl Connection {
    /// The TLS handshake (with `tls`) and the first bytes, within
    /// `header_read_timeout`; then the connection handed to hyper. `None`
    /// when the client sent too little in time or closed.
    async fn open(self, stream: TcpStream, registration: Registration) -> Option<Served> {
        let head_timeout = self.core.config.header_read_timeout.0;
        let started = async {
            let mut stream: Box<dyn Io> = match &self.tls {
                Some(tls) => Box::new(
                    tls.accept(stream).await.map_err(|e| tracing::debug!(error = %e, "tls handshake failed")).ok()?,
                ),
                None => Box::new(stream),
            };
            let mut start = Vec::with_capacity(io::PREFACE.len());
            match read_start(&mut stream, &mut start).await {
                Ok(true) => Some((stream, start)),
                Ok(false) | Err(_) => None,
            }
        };
        let conn = registration.conn().clone();
        let started = tokio::select! {
            started = tokio::time::timeout(head_timeout, started) => started,
            () = conn.evicted() => {
                self.core.metrics.connection_closed("evicted_silent");
                tracing::debug!(peer = %self.peer, "evicted a connection that had sent nothing, to make room");
                return None;
            }
        };
        let Ok(Some((stream, start))) = started else {
            tracing::debug!("no request within header_read_timeout; closing the connection");
            return None;
        };
        conn.spoke();
        let h2 = start == io::PREFACE;
        let replay = Replay { start, pos: 0, inner: stream };
        let stream: Box<dyn Io> = if h2 {
            Box::new(FrameGuard::new(replay, self.limits, self.core.metrics.clone()))
        } else {
            Box::new(replay)
        };
        let service = Tracked { router: self.router, conn: conn.clone(), peer: self.peer };
        let connection = self.builder.serve_connection(TokioIo::new(stream), service).into_owned();
        Some(Served {
            connection,
            conn,
            _registration: registration,
            idle_timeout: self.core.config.http_idle_timeout.0,
            head_timeout: (!h2).then_some(head_timeout),
            core: self.core,
            peer: self.peer,
        })
    }
}

/// The router as a connection's service: each request carries the
/// connection (for the body reader) and counts as in flight until its
/// response body is sent.
#[derive(Clone)]
struct Tracked {
    router: Router,
    conn: Arc<Conn>,
    /// The client's address, given to handlers as `ConnectInfo`.
    peer: std::net::SocketAddr,
}

impl hyper::service::Service<axum::http::Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, mut req: axum::http::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        req.extensions_mut().insert(self.conn.clone());
        let guard = self.conn.begin();
        let response = self.router.clone().oneshot(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &guard;
                    frame
                }))
            }))
        })
    }
}
