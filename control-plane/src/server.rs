//! The accept loop: HTTP/1.1 and h2c connections for the REST and gRPC
//! router, with the bounds a public endpoint needs.
//!
//! - at most `max_http_connections` connections at once; past that a new
//!   connection is closed at once (and counted) instead of queueing;
//! - a request head must arrive within `header_read_timeout` (no
//!   slowloris), HTTP/2 connections are pinged and dropped when dead;
//! - on shutdown: not ready, stop accepting, ask every connection to finish
//!   its requests and close, wait at most `shutdown_timeout`.
//!
//! Accept errors (e.g. out of file descriptors) are logged and retried
//! after a short pause, never fatal.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
        let stream = match accepted {
            Ok((stream, _)) => stream,
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
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    core.ready.store(false, Ordering::Release);
    drop(listener);
    tracing::info!("control plane stopped accepting; draining connections");
    let deadline = core.config.shutdown_timeout.0;
    if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections did not finish before the shutdown deadline");
    }
}
