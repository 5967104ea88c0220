//! The edge's cache of apps' namespace options.
//!
//! A channel `ns:rest` takes the options of namespace `ns` of its app
//! (presence, join/leave events, client publish, history); channels without
//! a configured namespace take [`default_options`]. The edge asks the control
//! plane over the bus once per app, keeps the answer for
//! `namespace_cache_ttl`, and drops it at once when a `NamespacesChanged`
//! control event names the app. When the control plane cannot be asked, a
//! stale answer is used; without one, the request fails as unavailable
//! rather than treating a history channel as a plain one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_proto::{AppId, ChannelName, NamespaceName, bus};

use crate::{Bus, BusError};

/// The options of channels outside any configured namespace: no presence,
/// no history, client publish allowed (when the token allows it).
#[must_use]
pub fn default_options() -> bus::NamespaceOptions {
    bus::NamespaceOptions { client_publish: true, ..Default::default() }
}

/// Whether the options keep history.
#[must_use]
pub fn keeps_history(options: &bus::NamespaceOptions) -> bool {
    options.history_size > 0 && options.history_ttl_ms > 0
}

type AppNamespaces = Arc<HashMap<NamespaceName, bus::NamespaceOptions>>;

/// The cache.
pub struct Namespaces {
    ttl: Duration,
    apps: Mutex<HashMap<AppId, (Instant, AppNamespaces)>>,
}

impl Namespaces {
    /// An empty cache keeping answers for `ttl`.
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, apps: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, app: &AppId) -> Option<(bool, AppNamespaces)> {
        let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.get(app).map(|(at, ns)| (at.elapsed() < self.ttl, ns.clone()))
    }

    /// The options of `channel` of `app`.
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when the options are not cached and
    /// the control plane cannot be asked.
    pub async fn options(
        &self,
        bus: &Bus,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<bus::NamespaceOptions, BusError> {
        let Some(ns) = channel.namespace_name() else { return Ok(default_options()) };
        let namespaces = match self.cached(app) {
            Some((true, namespaces)) => namespaces,
            stale => match bus.fetch_namespaces(app).await {
                Ok(list) => {
                    let map: HashMap<NamespaceName, bus::NamespaceOptions> = list
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|n| Some((NamespaceName::new(&n.name).ok()?, n.options.unwrap_or_default())))
                        .collect();
                    let map = Arc::new(map);
                    self.apps
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(app.clone(), (Instant::now(), map.clone()));
                    map
                }
                Err(e) => match stale {
                    Some((_, namespaces)) => {
                        tracing::warn!(%app, error = %e, "namespace options not refreshed; using the cached ones");
                        namespaces
                    }
                    None => return Err(e),
                },
            },
        };
        Ok(namespaces.get(&ns).cloned().unwrap_or_else(default_options))
    }

    /// Forgets what is cached for `app`.
    pub fn invalidate(&self, app: &str) {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.retain(|a, _| a.as_str() != app);
    }
}
