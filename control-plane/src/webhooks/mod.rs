//! Webhooks' shared state and formats — what the engine
//! ([`crate::webhook_engine`]) and the services use, held by the core:
//!
//! - [`Webhooks`]: each replica's view of the enabled endpoints (reloaded
//!   on changes and periodically), the wake-ups between the engine's tasks,
//!   this replica's lease name and its HTTP client.
//! - [`body`]: both body formats and their signatures.
//! - [`http`]: the HTTP client, with the SSRF check on the address used.
//! - [`address`]: which addresses are public.

pub mod address;
pub mod body;
pub mod http;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_proto::AppId;
use herald_proto::webhook::EventKind;
use tokio::sync::Notify;

use crate::store::Webhook;

/// How often the endpoints are reloaded even without a change event.
pub(crate) const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The enabled endpoints, by app.
type Endpoints = HashMap<AppId, Vec<Arc<Webhook>>>;

/// What a reload of the endpoints changed.
pub(crate) struct Reloaded {
    /// Apps that got their first enabled endpoint.
    pub(crate) new: Vec<AppId>,
    /// Whether some app lost its last one.
    pub(crate) lost_some: bool,
}

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

    /// Replaces the endpoints; says which apps had none before and whether
    /// some app has none now.
    pub(crate) fn replace(&self, list: Vec<Webhook>) -> Reloaded {
        let mut by_app: Endpoints = HashMap::new();
        for w in list {
            by_app.entry(w.app_id.clone()).or_default().push(Arc::new(w));
        }
        let mut current = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let new: Vec<AppId> = by_app.keys().filter(|a| !current.contains_key(*a)).cloned().collect();
        let lost_some = current.keys().any(|a| !by_app.contains_key(a));
        *current = Arc::new(by_app);
        Reloaded { new, lost_some }
    }

    /// Asks for the endpoints to be reloaded now (after a change here or on
    /// another replica).
    pub fn changed(&self) {
        self.reload.notify_one();
    }
}

/// A new event id: `evt_` and 24 random characters.
pub(crate) fn new_event_id() -> String {
    format!("evt_{}", crate::keys::random_alnum(24))
}
