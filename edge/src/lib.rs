//! Herald's edge: terminates client WebSockets, authenticates them, and fans
//! channel messages out to them. It is stateless: all it holds is its own
//! connections, so any edge can serve any client.
//!
//! # Layout
//!
//! - [`config`]: [`EdgeConfig`], every limit and timeout, validated.
//! - [`auth`]: offline token verification against the control plane's JWKS.
//! - [`hub`]: channel → local subscribers, the encode-once fan-out,
//!   presence, the registry of connections and per-app limits.
//! - [`outbox`]: a connection's bounded send queue.
//! - [`ws`]: WebSocket framing after the upgrade.
//! - `conn`: one connection: handshake, reader, requests (subscribe,
//!   publish, presence), gap-free recovery, and the writer task.
//! - `pusher`: one connection of the Pusher Channels protocol (7) on
//!   `/app/{key}`, on the same hub, outbox and writer.
//! - `server`: the listener, HTTP routes and the drain.
//! - `tap`: the debug events of watched apps' connections (sent through
//!   the hub's `herald_bus::debug_tap::DebugTap`).
//! - [`webhooks`]: the reporter of webhook events seen here (client events,
//!   cache misses) to the control plane.
//! - [`jwks_fetch`]: the JWKS client (`http://` and `https://`, `jwks_ca_file`,
//!   `Cache-Control`).
//! - [`telemetry`]: the process's Prometheus recorder.
//! - `testing` (feature `test-support`): a JWKS authority, an edge on port 0
//!   and a raw WebSocket client for tests.
//!
//! # Running
//!
//! [`run`] takes its listener, configuration, bus and a shutdown
//! future, so tests bind `127.0.0.1:0` and stop it cleanly:
//!
//! ```no_run
//! # async fn demo() -> Result<(), herald_edge::EdgeError> {
//! use herald_bus::{Bus, LocalBus};
//! use herald_edge::EdgeConfig;;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let bus = Bus::local(&LocalBus::new());
//! herald_edge::run(listener, EdgeConfig::default(), bus, std::future::pending()).await
//! # }
//! ```

pub mod auth;
pub mod config;
mod conn;
mod eddsa;
pub mod hub;
pub mod jwks_fetch;
pub mod outbox;
mod pusher;
mod server;
mod tap;
mod tcp;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod webhooks;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

pub use config::{ConfigError, EdgeConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Verifier;
use crate::conn::Shared;
use crate::hub::Hub;
use herald_bus::Bus;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS certificate or key could not be loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// The bus refused the edge.
    #[error(transparent)]
    Bus(#[from] herald_bus::BusError),
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Longest wait for one JWKS fetch (connect, TLS, answer).
const JWKS_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn tls_acceptor(
    (cert, key): (&std::path::PathBuf, &std::path::PathBuf),
) -> Result<tokio_rustls::TlsAcceptor, EdgeError> {
    herald_bus::tls::acceptor(cert, key, &[b"http/1.1"]).map_err(|e| EdgeError::Tls(e.to_string()))
}

/// Longest wait for the last usage report when the edge stops.
const USAGE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs an edge on `listener` until `shutdown` resolves, then drains: no
/// new connections, every client closed with 1001 (reconnect elsewhere),
/// and a return once they are gone or `drain_timeout` passed; then sends
/// its last usage report (at most 2 s).
///
/// # Errors
///
/// [`EdgeError`] when the configuration is invalid, TLS files cannot be
/// loaded, or the bus refuses the edge. Once running, it only returns
/// `Ok`.
pub async fn run(
    listener: TcpListener,
    mut config: EdgeConfig,
    bus: Bus,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), EdgeError> {
    config.validate()?;
    telemetry::prometheus();
    if config.edge_id.is_empty() {
        config.edge_id = format!("edge-{:08x}", rand_u32());
    }
    let tls = config.tls()?.map(tls_acceptor).transpose()?;
    let settings = hub::HubSettings {
        edge_id: config.edge_id.clone(),
        presence_ttl: config.presence_ttl.0,
        presence_max_per_channel: config.presence_max_per_channel as usize,
        presence_events_max_members: config.presence_events_max_members as usize,
        namespace_cache_ttl: config.namespace_cache_ttl.0,
        max_held: config.send_queue_frames as usize,
        fanout_burst: config.fanout_burst as usize,
        tap: herald_bus::debug_tap::TapSettings {
            rate: config.debug_tap_rate,
            burst: config.debug_tap_burst,
            preview_bytes: config.debug_tap_preview_size.as_usize(),
            ..Default::default()
        },
    };
    let hub = Hub::with_settings(bus.clone(), settings);
    let fetcher =
        jwks_fetch::JwksFetcher::new(config.jwks_ca_file.as_deref(), JWKS_FETCH_TIMEOUT, auth::MAX_JWKS_BYTES)
            .map_err(EdgeError::Tls)?;
    let verifier = Verifier::new(
        &config.jwks_url,
        &config.issuer,
        config.token_leeway.0,
        config.jwks_min_refetch_interval.0,
        hub.revocations().clone(),
        fetcher,
    );
    bus.attach(hub.clone()).await?;
    let reports = tokio::spawn(hub.clone().report_loop(config.presence_snapshot_interval.0));
    let pings = tokio::spawn(hub.clone().ping_loop(config.heartbeat_interval.0));
    let deadlines = tokio::spawn(hub.clone().deadline_loop());
    // A node id per run: the sequence of its usage batches starts again at
    // 1, so a fixed edge id alone would collide with the last run's.
    let usage_node = format!("{}-{:08x}{:x}", config.edge_id, rand_u32(), herald_bus::now_ms());
    let (usage_stop, usage_stopped) = tokio::sync::oneshot::channel::<()>();
    let usage = {
        let reporter = herald_bus::usage::Reporter::new(usage_node, config.usage_max_pending_apps as usize);
        let gauges_hub = hub.clone();
        tokio::spawn(reporter.run(
            bus.clone(),
            hub.usage().clone(),
            move || gauges_hub.usage_gauges(),
            config.usage_report_interval.0,
            async move {
                let _ = usage_stopped.await;
            },
        ))
    };
    let (draining_tx, draining_rx) = watch::channel(false);
    let edge_id = config.edge_id.clone();
    let webhooks = webhooks::WebhookReporter::start(
        hub.clone(),
        webhooks::ReporterSettings {
            queue: config.webhook_report_queue as usize,
            retry: config.webhook_report_retry.0,
        },
    );
    let shared = Arc::new(Shared {
        hub: hub.clone(),
        verifier: verifier.clone(),
        webhooks,
        config,
        edge_id,
        open: AtomicUsize::new(0),
        draining: draining_rx,
    });
    // Keys: first load (retried until it works), periodic refresh, and a
    // refetch on every rotation event and after every NATS reconnect (the
    // JWKS lists the revocations whose events were missed meanwhile).
    let refresh = verifier.spawn_refresh(shared.config.jwks_refresh_interval.0);
    let rotations = {
        let verifier = verifier.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            while verifier.refresh().await.is_err() {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            loop {
                tokio::select! {
                    () = hub.keys_rotated.notified() => {}
                    () = hub.bus().reconnected() => {}
                }
                let _ = verifier.refresh().await;
            }
        })
    };
    tracing::info!(
        edge = %shared.edge_id,
        addr = %listener.local_addr()?,
        tls = tls.is_some(),
        "edge listening"
    );
    server::accept_loop(listener, shared, tls, draining_tx, shutdown).await;
    refresh.abort();
    rotations.abort();
    reports.abort();
    pings.abort();
    deadlines.abort();
    // The last counts go out before the edge ends (a bounded wait).
    let _ = usage_stop.send(());
    if tokio::time::timeout(USAGE_FLUSH_TIMEOUT, usage).await.is_err() {
        tracing::warn!("last usage report not sent in time; its counts are lost");
    }
    Ok(())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    h.finish() as u32
}
