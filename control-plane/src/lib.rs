//! Herald's control plane: apps, API keys, tokens, signing keys and
//! publishing, behind a REST API and a gRPC API on one port — and, for apps
//! in Pusher mode, Pusher's HTTP API on the same port.
//!
//! # Layout
//!
//! - [`config`]: [`Config`], every setting and limit, with env-var names.
//! - [`store`]: [`store::Store`], apps, keys and signing keys in PostgreSQL
//!   or SQLite (one enum, one query text, numbered migrations).
//! - [`keys`]: API key secrets (`hk_<id>_<secret>`), hashing, random ids.
//! - [`pusher_app_id`]: the numeric Pusher app id of an app in Pusher mode
//!   (not its Herald id, which is its Pusher `key`).
//! - [`auth`]: admin token and API key authentication, and the per-replica
//!   caches of keys and apps with their invalidation.
//! - [`tokens`]: Ed25519 signing keys, minting JWTs, the JWKS, rotation.
//! - [`namespace_cache`]: every app's channel namespaces as this replica
//!   last read them.
//! - [`reports`]: presence and occupancy as edges report them.
//! - [`publish`]: the publisher: rate limits, idempotency, onto the bus
//!   (through the history stream for channels with history).
//! - [`core`]: [`Core`], the shared state, readiness and control events.
//! - [`debug_tap`]: watchers of an app's live debug events (one shared
//!   bus subscription per app, a bounded broadcast, the tap's lease).
//! - [`services`]: the operations the APIs expose, one module per noun
//!   (apps, Pusher mode, keys, tokens, namespaces, channels, presence,
//!   publish, users, webhooks), with their checks.
//! - [`api`]: `api::rest` (axum, OpenAPI), `api::grpc` (tonic, with
//!   reflection and health) and `api::pusher` (Pusher's HTTP API), and the
//!   router that serves them on one port.
//! - [`server`]: the accept loop: connection bounds, timeouts, HTTP/2
//!   limits, TLS, draining; `connections`: the table of connections
//!   (eviction, per-IP counts); `body`: reading a request body within its
//!   limits.
//! - [`error`]: [`ApiError`], mapped to HTTP and gRPC.
//! - [`metrics`]: the Prometheus metrics behind `/metrics`.
//! - [`console`]: the web console under `/console` (server-rendered
//!   administration pages over the same service methods), on the API port
//!   or on `console_addr`.
//! - [`webhooks`]: webhooks' shared state (the endpoints this replica
//!   knows, its HTTP client) and body formats; [`webhook_engine`]: the
//!   tasks — events computed from bus-wide presence and occupancy, the
//!   durable outbox, signed deliveries.
//! - [`usage`]: per-app usage state — this replica's counters and quota
//!   verdicts; [`usage_engine`]: its tasks — edges' reports stored per
//!   minute, hour and day, this replica's counts, quotas, retention.
//!
//! The entry point is [`run`] (or [`ControlPlane`] for finer control):
//! it takes its listener, config, bus and a shutdown future, so tests
//! bind `127.0.0.1:0` and the binary chooses NATS or the in-process bus.

#![warn(missing_docs)]

pub mod api;
pub mod auth;
mod body;
pub mod config;
mod connections;
pub mod console;
pub mod core;
pub mod debug_tap;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod namespace_cache;
pub mod publish;
pub mod pusher_app_id;
pub mod reports;
pub mod server;
pub mod services;
pub mod store;
pub mod tokens;
pub mod usage;
pub mod usage_engine;
pub mod webhook_engine;
pub mod webhooks;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use herald_bus::{Bus, ChannelSubscription, Sink};
use herald_proto::{AppId, ChannelName, bus};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

pub use crate::core::Core;
pub use config::{Config, ConfigError, Secret};
pub use error::ApiError;
pub use tokens::Rotation;

use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::namespace_cache::NamespaceCache;
use crate::publish::{Publisher, SharedIdempotency};
use crate::reports::Reports;
use crate::store::{Store, StoreError};
use crate::tokens::{Signer, SigningError};

/// Why the control plane could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The signing keys could not be loaded.
    #[error("signing keys: {0}")]
    Signing(#[from] SigningError),
    /// The TLS certificate or key could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] herald_bus::tls::TlsError),
    /// Serving failed.
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
    /// An operation was refused.
    #[error("{0}")]
    Api(#[from] ApiError),
}

/// A running control plane's state, and its background tasks (stopped on
/// drop).
pub struct ControlPlane {
    core: Arc<Core>,
    tasks: Vec<JoinHandle<()>>,
    /// With `tls_cert` and `tls_key`: TLS on the listeners.
    tls: Option<tokio_rustls::TlsAcceptor>,
    _subscriptions: Vec<ChannelSubscription>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Hands control events from the bus to the core; holds it weakly.
struct ControlSink(Weak<Core>);

impl Sink for ControlSink {
    fn deliver(
        &self,
        _app: &AppId,
        _channel: &ChannelName,
        _subscription: u64,
        _payload: bytes::Bytes,
        _position: Option<&herald_bus::Position>,
    ) {
    }

    fn control(&self, event: bus::ControlEvent) {
        if let Some(core) = self.0.upgrade() {
            core.on_control(&event);
        }
    }

    fn presence(&self, app: &AppId, channel: &ChannelName, report: bus::PresenceReport) {
        if let Some(core) = self.0.upgrade() {
            core.reports.presence(app, channel, &report);
        }
    }

    fn occupancy(&self, report: bus::OccupancyReport) {
        if let Some(core) = self.0.upgrade() {
            core.reports.occupancy(&report);
        }
    }
}

impl ControlPlane {
    /// Validates the config, opens and migrates the database, loads (or
    /// creates) the signing keys, subscribes to control events and to
    /// edges' presence and occupancy reports (and asks edges to re-send
    /// theirs), answers edges' namespace requests, and starts the
    /// background tasks (among them re-creating the history streams of
    /// every namespace with history, and giving every app in Pusher mode
    /// without a Pusher app id one).
    ///
    /// Give the control plane its own bus handle (its own NATS
    /// connection, or its own `Bus::local` on the shared bus): it
    /// attaches a sink for control events, and a handle has one sink.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], [`Error::Tls`], [`Error::Store`], [`Error::Signing`].
    pub async fn new(config: Config, bus: Bus) -> Result<Self, Error> {
        config.validate()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(herald_bus::tls::acceptor(cert, key, &[b"h2", b"http/1.1"])?),
            _ => None,
        };
        if config.admin_token.is_none() {
            tracing::warn!("no admin token configured: the admin API refuses every call");
        }
        let store =
            Store::connect(&config.database_url, config.database_max_connections, config.database_acquire_timeout.0)
                .await?;
        tracing::info!(backend = store.backend(), "database ready");
        let signer = Signer::load(store.clone(), &config).await?;
        let metrics = Arc::new(Metrics::new());
        let shared = (config.idempotency_shared && matches!(store, Store::Postgres(_)))
            .then(|| SharedIdempotency::new(store.clone(), config.idempotency_window.0));
        let publisher = Publisher::new(
            bus.clone(),
            shared,
            metrics.clone(),
            config.idempotency_window.0,
            config.idempotency_max_entries,
            config.max_publishes_in_flight,
        );
        let auth = Auth::new(store.clone(), config.admin_token.clone(), config.cache_ttl(), config.cache_max_entries);
        let (retry_tx, retry_rx) = mpsc::channel(1024);
        let (cache_ttl, cache_max_entries) = (config.cache_ttl(), config.cache_max_entries);
        let presence_ttl = config.presence_ttl.0;
        let presence_max = config.presence_max_per_channel as usize;
        let (webhook_timeout, webhook_allow_private) = (config.webhook_timeout.0, config.webhook_allow_private_urls);
        let node_id = format!("cp-{:08x}", rand::random::<u32>());
        let tap_settings = herald_bus::debug_tap::TapSettings {
            rate: config.debug_tap_rate,
            burst: config.debug_tap_burst,
            preview_bytes: config.debug_tap_preview_size.as_usize(),
            ..Default::default()
        };
        let (debug_max_watchers, debug_buffer) = (config.debug_tap_max_watchers, config.debug_tap_buffer);
        let core = Arc::new(Core {
            config,
            store,
            auth,
            signer,
            publisher,
            metrics,
            ready: AtomicBool::new(true),
            refresh_signer: Notify::new(),
            retry_events: retry_tx,
            namespaces: NamespaceCache::new(cache_ttl, cache_max_entries),
            reports: Reports::new(presence_ttl, presence_max),
            webhooks: webhooks::Webhooks::new(webhook_timeout, webhook_allow_private),
            usage: usage::Usage::default(),
            tap: herald_bus::debug_tap::DebugTap::new(bus.clone(), node_id, tap_settings),
            debug_watchers: debug_tap::Watchers::new(debug_max_watchers, debug_buffer),
            connections: Arc::default(),
        });
        if let Err(e) = bus.attach(Arc::new(ControlSink(Arc::downgrade(&core)))).await {
            tracing::warn!(error = %e, "control events not subscribed; caches rely on their TTL");
        }
        if let Err(e) = bus.serve_namespaces(Arc::new(services::namespaces::Source(Arc::downgrade(&core)))).await {
            tracing::warn!(error = %e, "namespace requests of edges not served");
        }
        if let Err(e) = bus.serve_webhook_events(Arc::new(webhook_engine::EdgeEventSink(Arc::downgrade(&core)))).await {
            tracing::warn!(error = %e, "edges' webhook events not served; they retry until a replica serves them");
        }
        if let Err(e) = bus.serve_usage(Arc::new(usage_engine::UsageSink(Arc::downgrade(&core)))).await {
            tracing::warn!(error = %e, "usage reports not served; nodes keep them until a replica serves them");
        }
        let mut subscriptions = Vec::new();
        match bus.subscribe_presence_all().await {
            Ok(s) => subscriptions.push(s),
            Err(e) => tracing::warn!(error = %e, "presence reports not subscribed; presence stays empty"),
        }
        match bus.subscribe_occupancy_all().await {
            Ok(s) => subscriptions.push(s),
            Err(e) => tracing::warn!(error = %e, "occupancy reports not subscribed; channel lists stay empty"),
        }
        // A replica that starts knows nothing yet: edges re-send.
        if let Err(e) = bus.request_presence_sync().await {
            tracing::warn!(error = %e, "presence sync not requested; presence fills in as edges report");
        }
        // In the background: with NATS down, each stream waits for its
        // timeout, and serving must not.
        let weak = Arc::downgrade(&core);
        let ensure = tokio::spawn(async move {
            if let Some(core) = weak.upgrade() {
                core.assign_missing_pusher_app_ids().await;
                core.ensure_all_history().await;
            }
        });
        let mut tasks = vec![
            tokio::spawn(refresh_loop(Arc::downgrade(&core))),
            tokio::spawn(retry_loop(bus, retry_rx)),
            tokio::spawn(expiry_loop(Arc::downgrade(&core), presence_ttl)),
            tokio::spawn(console::purge_loop(Arc::downgrade(&core))),
            ensure,
        ];
        tasks.extend(webhook_engine::start(&core));
        usage_engine::load_quotas(&core).await;
        tasks.extend(usage_engine::start(&core));
        Ok(Self { core, tasks, tls, _subscriptions: subscriptions })
    }

    /// The shared state and operations.
    #[must_use]
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The router serving REST and gRPC (h2c) on one port, and the
    /// console when it is enabled without an address of its own.
    pub fn router(&self) -> axum::Router {
        let router = api::router(self.core.clone());
        let config = &self.core.config;
        if config.console_enabled && config.console_addr.is_none() {
            router.merge(console::router(self.core.clone()))
        } else {
            router
        }
    }

    /// Rotates the signing keys; the previous key stays in the JWKS for
    /// `overlap` (the config's `signing_key_overlap` when `None`).
    ///
    /// # Errors
    ///
    /// [`Error::Api`] when the database fails.
    pub async fn rotate_signing_keys(&self, overlap: Option<Duration>) -> Result<Rotation, Error> {
        Ok(self.core.rotate_signing_keys(&auth::Principal::Admin, overlap.map(|d| d.as_secs())).await?)
    }

    /// Serves until `shutdown` resolves, then stops: not ready, no new
    /// connections, in-flight requests finish within
    /// `shutdown_timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the listener fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let core = self.core.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let console = match (core.config.console_enabled, core.config.console_addr) {
            (true, Some(addr)) => {
                let listener = TcpListener::bind(addr).await?;
                tracing::info!(%addr, "console listening");
                let router = console::router(core.clone());
                Some(tokio::spawn(server::serve(
                    listener,
                    router,
                    core.clone(),
                    self.tls.clone(),
                    stopped(stop_rx.clone()),
                )))
            }
            _ => None,
        };
        let api = server::serve(listener, self.router(), core.clone(), self.tls.clone(), stopped(stop_rx));
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        tokio::join!(api, signal);
        if let Some(task) = console {
            let _ = task.await;
        }
        drop(self);
        core.store.close().await;
        tracing::info!("control plane stopped");
        Ok(())
    }
}

/// Runs a control plane on `listener` until `shutdown` resolves.
///
/// # Errors
///
/// As [`ControlPlane::new`] and [`ControlPlane::serve`].
pub async fn run(
    listener: TcpListener,
    config: Config,
    bus: Bus,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    ControlPlane::new(config, bus).await?.serve(listener, shutdown).await
}

/// Rotates the signing keys directly in the database named by `config`
/// (for an operator command), and tells edges and other replicas when a
/// bus is given. Replicas pick the new key up on their next refresh
/// at the latest.
///
/// # Errors
///
/// [`Error::Config`], [`Error::Store`], [`Error::Signing`].
pub async fn rotate_signing_keys(
    config: &Config,
    bus: Option<&Bus>,
    overlap: Option<Duration>,
) -> Result<Rotation, Error> {
    config.validate()?;
    let store =
        Store::connect(&config.database_url, config.database_max_connections, config.database_acquire_timeout.0)
            .await?;
    let signer = Signer::load(store.clone(), config).await?;
    let rotation = signer.rotate(overlap.unwrap_or(config.signing_key_overlap.0)).await?;
    if let Some(bp) = bus {
        let event = bus::ControlEvent {
            timestamp_ms: herald_bus::now_ms(),
            kind: Some(bus::control_event::Kind::SigningKeysRotated(bus::SigningKeysRotated {
                current_kid: rotation.kid.clone(),
            })),
        };
        if let Err(e) = bp.publish_control(&event).await {
            tracing::warn!(error = %e, "rotation event not published; replicas and edges refresh on their own");
        }
    }
    store.close().await;
    Ok(rotation)
}

/// Reloads signing keys periodically and on rotation events; purges
/// idempotency ids; keeps the metrics tidy.
async fn refresh_loop(core: Weak<Core>) {
    let period = match core.upgrade() {
        Some(c) => c.config.signing_key_refresh_interval.0,
        None => return,
    };
    let mut tick = tokio::time::interval(period.min(Duration::from_secs(10)).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_refresh = tokio::time::Instant::now();
    let mut last_purge = tokio::time::Instant::now();
    loop {
        let notified = {
            let Some(c) = core.upgrade() else { return };
            let notify = async move {
                c.refresh_signer.notified().await;
            };
            tokio::select! {
                _ = tick.tick() => false,
                () = notify => true,
            }
        };
        let Some(c) = core.upgrade() else { return };
        c.publisher.purge();
        c.metrics.upkeep();
        c.auth.flush_usage().await;
        if last_purge.elapsed() >= Duration::from_secs(60) {
            last_purge = tokio::time::Instant::now();
            c.publisher.purge_shared().await;
        }
        if notified || last_refresh.elapsed() >= period {
            last_refresh = tokio::time::Instant::now();
            if let Err(e) = c.signer.refresh().await {
                tracing::warn!(error = %e, "signing keys not refreshed");
            }
        }
    }
}

/// Expires the presence entries and subscriber counts of edges that
/// stopped reporting: at most a tenth of the TTL (and a second) late.
async fn expiry_loop(core: Weak<Core>, ttl: Duration) {
    let mut tick = tokio::time::interval((ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        core.reports.expire();
    }
}

/// Re-sends control events that could not be published at once, for up to
/// ten minutes each.
async fn retry_loop(bus: Bus, mut rx: mpsc::Receiver<bus::ControlEvent>) {
    while let Some(event) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        let mut delay = Duration::from_millis(200);
        loop {
            tokio::time::sleep(delay).await;
            match bus.publish_control(&event).await {
                Ok(()) => {
                    tracing::info!("delayed control event published");
                    break;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::error!(error = %e, "control event given up after ten minutes");
                    break;
                }
                Err(_) => delay = (delay * 2).min(Duration::from_secs(5)),
            }
        }
    }
}
