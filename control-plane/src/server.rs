//! The accept loop: HTTP/1.1 and h2c connections for the REST and gRPC
//! router, with the bounds a public endpoint needs.
//!
//! - at most `max_http_connections` connections at once; past that a new
//!   connection is closed at once (and counted) instead of queueing;
//! - a new connection must show what it speaks within
//!   `header_read_timeout`: the HTTP/2 preface whole, or the start of an
//!   HTTP/1.1 request, whose head must then be whole within another
//!   `header_read_timeout` (no slowloris); a connection that sends
//!   nothing is closed;
//! - a connection with no request in flight for `http_idle_timeout` is
//!   closed (keep-alive and HTTP/2 alike; a request is in flight until its
//!   response body is sent); HTTP/2 connections are also pinged and
//!   dropped when dead;
//! - on shutdown: not ready, stop accepting, ask every connection to finish
//!   its requests and close, wait at most `shutdown_timeout`.
//!
//! Accept errors (e.g. out of file descriptors) are logged and retried
//! after a short pause, never fatal.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::core::Core;

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    core: Arc<Core>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let cfg = &core.config;
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(cfg.header_read_timeout.0).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(cfg.max_http2_streams);
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            core.metrics.connection_refused();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let (router, builder) = (router.clone(), builder.clone());
        let (head_timeout, idle_timeout) = (cfg.header_read_timeout.0, cfg.http_idle_timeout.0);
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            let mut start = Vec::with_capacity(PREFACE.len());
            match tokio::time::timeout(head_timeout, read_start(&mut stream, &mut start)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false) | Err(_)) => return,
                Err(_) => {
                    tracing::debug!("no request within header_read_timeout; closing the connection");
                    return;
                }
            }
            let activity = Arc::new(Activity::new());
            let service = Tracked { router, activity: activity.clone(), peer };
            let io = TokioIo::new(Replay { start, pos: 0, inner: stream });
            let conn = watcher.watch(builder.serve_connection(io, service).into_owned());
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                () = activity.idle(idle_timeout) => tracing::debug!("closing a connection idle for http_idle_timeout"),
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

/// What an HTTP/2 connection starts with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the start of a connection into `start`: until it is the whole
/// HTTP/2 preface or stops being a prefix of it (then it is HTTP/1.1).
/// False when the peer closed first.
async fn read_start(stream: &mut TcpStream, start: &mut Vec<u8>) -> io::Result<bool> {
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
struct Replay {
    start: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Replay {
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

impl AsyncWrite for Replay {
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

/// The requests in flight on one connection, and since when it has had
/// none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self { in_flight: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::Acquire) > 0 {
                timeout
            } else {
                let since = *self.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                timeout.saturating_sub(since.elapsed())
            };
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// One request in flight, until dropped (with its response body).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as a connection's service, counting its requests in flight.
#[derive(Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
    /// The client's address, given to handlers as `ConnectInfo`.
    peer: std::net::SocketAddr,
}

impl hyper::service::Service<axum::http::Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, mut req: axum::http::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        let guard = self.activity.begin();
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
