//! The webhook engine: what turns bus-wide state changes and edges' reports
//! into signed HTTP requests to customers' endpoints, durably.
//!
//! - [`Webhooks`]: each replica's view of the enabled endpoints (reloaded
//!   on changes and periodically) and the wake-ups between the tasks.
//! - `reconcile`: compares what edges report (the replica's presence and
//!   occupancy tables) with the state last recorded in the database, and
//!   records each difference with its event in one transaction — the state
//!   write is conditional, so of several replicas seeing the same change
//!   one records it. Vacated channels and removed members wait out the
//!   debounce first; an edge that died is counted out by the expiry of its
//!   reports, like presence.
//! - `edge_events`: stores the events edges report (client events, cache
//!   misses).
//! - `deliver`: leases due deliveries from the outbox and sends them, with
//!   retries, per-endpoint fairness and per-channel order; keeps each
//!   endpoint's status and delivery log.
//! - `body`: both body formats and their signatures.
//! - `http`: the HTTP client, with the SSRF check on the address used.

pub mod body;
mod deliver;
mod edge_events;
pub mod http;
mod reconcile;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use herald_proto::AppId;
use herald_proto::webhook::EventKind;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::core::Core;
use crate::store::Webhook;

pub use deliver::{TestResult, send_test};
pub(crate) use edge_events::Sink as EdgeEventSink;

/// How often the endpoints are reloaded even without a change event.
const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The enabled endpoints, by app.
type Endpoints = HashMap<AppId, Vec<Arc<Webhook>>>;

/// One replica's webhook state.
pub struct Webhooks {
    endpoints: RwLock<Arc<Endpoints>>,
    /// Woken when endpoints changed (reload now).
    pub(crate) reload: Notify,
    /// Woken when deliveries were queued (look for due ones now).
    pub(crate) queued: Notify,
    /// This replica's name on leases.
    pub(crate) owner: String,
    /// The HTTP client.
    pub(crate) client: http::Client,
}

impl Webhooks {
    pub(crate) fn new(timeout: Duration, allow_private: bool) -> Self {
        Self {
            endpoints: RwLock::new(Arc::new(HashMap::new())),
            reload: Notify::new(),
            queued: Notify::new(),
            owner: format!("cp-{}", crate::keys::random_alnum(12)),
            client: http::Client::new(timeout, allow_private),
        }
    }

    /// The ids of `app`'s enabled endpoints that want `kind` on `channel`.
    pub(crate) fn targets(&self, app: &AppId, kind: EventKind, channel: &str) -> Vec<String> {
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner()).clone();
        endpoints.get(app).map_or_else(Vec::new, |list| {
            list.iter().filter(|w| w.wants(kind, channel)).map(|w| w.id.clone()).collect()
        })
    }

    /// The apps with enabled endpoints.
    pub(crate) fn apps(&self) -> HashSet<AppId> {
        self.endpoints.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    /// Replaces the endpoints; returns the apps that had none before.
    fn replace(&self, list: Vec<Webhook>) -> Vec<AppId> {
        let mut by_app: Endpoints = HashMap::new();
        for w in list {
            by_app.entry(w.app_id.clone()).or_default().push(Arc::new(w));
        }
        let mut current = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let new: Vec<AppId> = by_app.keys().filter(|a| !current.contains_key(*a)).cloned().collect();
        *current = Arc::new(by_app);
        new
    }

    /// Asks for the endpoints to be reloaded now (after a change here or on
    /// another replica).
    pub fn changed(&self) {
        self.reload.notify_one();
    }
}

/// Starts the engine's tasks (aborted when the handles drop).
pub(crate) fn start(core: &Arc<Core>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(reconcile::run(Arc::downgrade(core))),
        tokio::spawn(deliver::run(Arc::downgrade(core))),
        tokio::spawn(deliver::watch_backlog(Arc::downgrade(core))),
    ]
}

/// Reloads the endpoints from the database; returns the apps that got
/// their first one (their channels are all looked at).
pub(crate) async fn reload(core: &Weak<Core>) -> Option<Vec<AppId>> {
    let core = core.upgrade()?;
    match core.store.enabled_webhooks().await {
        Ok(list) => {
            let new = core.webhooks.replace(list);
            core.reports.watch(core.webhooks.apps());
            Some(new)
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook endpoints not reloaded");
            None
        }
    }
}

/// A new event id: `evt_` and 24 random characters.
pub(crate) fn new_event_id() -> String {
    format!("evt_{}", crate::keys::random_alnum(24))
}
