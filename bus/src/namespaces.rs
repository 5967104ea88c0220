//! The edge's cache of apps' configuration: their namespace options, their
//! Pusher settings and the webhook events they want reported
//! ([`AppConfig`](crate::AppConfig)).
//!
//! A channel `ns:rest` takes the options of namespace `ns` of its app
//! (presence, join/leave events, client publish, history); channels without
//! a configured namespace take [`default_options`]. The edge asks the control
//! plane over the bus once per app ([`crate::app_config`]),
//! keeps the answer for `namespace_cache_ttl`, and drops it at once when
//! [`Namespaces::invalidate`] is called for the app (a `NamespacesChanged`,
//! `KeyRevoked` or `AppDeleted` control event). When the control plane
//! cannot be asked, a stale answer is used; without one, the request fails
//! as unavailable rather than treating a history channel as a plain one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_proto::webhook::EventKind;
use herald_proto::{AppId, ChannelName, NamespaceName, bus};

use crate::{Bus, BusError};

/// What the name of a Pusher presence channel starts with.
pub const PRESENCE_PREFIX: &str = "presence-";

/// The options of `channel` when it is outside any configured namespace:
/// no history, client publish allowed (when the token allows it), and no
/// presence — but for channels named `presence-…`, which track presence
/// with join and leave events, as Pusher's presence channels do, for
/// clients of both protocols.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use herald_bus::namespaces::default_options;
/// use herald_proto::ChannelName;
///
/// assert!(default_options(&ChannelName::new("presence-room")?).presence);
/// assert!(!default_options(&ChannelName::new("chat:lobby")?).presence);
/// # Ok(()) }
/// ```
#[must_use]
pub fn default_options(channel: &ChannelName) -> bus::NamespaceOptions {
    let presence = channel.as_str().starts_with(PRESENCE_PREFIX);
    bus::NamespaceOptions { client_publish: true, presence, join_leave: presence, ..Default::default() }
}

/// Whether the options keep history.
///
/// # Examples
///
/// ```
/// use herald_bus::namespaces::keeps_history;
/// use herald_proto::bus::NamespaceOptions;
///
/// let options = NamespaceOptions { history_size: 100, history_ttl_ms: 3_600_000, ..Default::default() };
/// assert!(keeps_history(&options));
/// assert!(!keeps_history(&NamespaceOptions::default()));
/// ```
#[must_use]
pub fn keeps_history(options: &bus::NamespaceOptions) -> bool {
    options.history_size > 0 && options.history_ttl_ms > 0
}

/// What is cached of one app.
#[derive(Default)]
struct Cached {
    /// `false` when the app does not exist.
    exists: bool,
    namespaces: HashMap<NamespaceName, bus::NamespaceOptions>,
    pusher: Option<Arc<bus::PusherApp>>,
    webhook_events: Vec<EventKind>,
}

type CachedApp = Arc<Cached>;

/// The cache.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use futures_util::future::BoxFuture;
/// use herald_bus::namespaces::Namespaces;
/// use herald_bus::{Bus, LocalBus, NamespaceSource};
/// use herald_proto::webhook::EventKind;
/// use herald_proto::{AppId, ChannelName, bus};
///
/// /// The control plane's side: namespace `chat` has presence; counts lookups.
/// #[derive(Clone, Default)]
/// struct Config(Arc<AtomicUsize>);
///
/// impl NamespaceSource for Config {
///     fn namespaces(&self, _app: AppId) -> BoxFuture<'static, Result<Option<Vec<bus::Namespace>>, String>> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         let options = bus::NamespaceOptions { presence: true, ..Default::default() };
///         Box::pin(async move { Ok(Some(vec![bus::Namespace { name: "chat".into(), options: Some(options) }])) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let local = LocalBus::default();
/// let config = Config::default();
/// Bus::local(&local).serve_namespaces(Arc::new(config.clone())).await?;
/// let edge = Bus::local(&local);
///
/// let cache = Namespaces::new(Duration::from_secs(60));
/// let app = AppId::new("app1")?;
/// assert!(cache.options(&edge, &app, &ChannelName::new("chat:lobby")?).await?.presence);
/// assert_eq!(cache.options(&edge, &app, &ChannelName::new("chat:news")?).await?.history_size, 0, "no history in chat");
/// assert!(!cache.options(&edge, &app, &ChannelName::new("other:x")?).await?.presence, "the defaults");
/// assert_eq!(cache.pusher_app(&edge, &app).await?, None, "Pusher mode is off");
/// assert!(!cache.wants_webhook(&edge, &app, EventKind::ClientEvent).await?);
/// assert_eq!(config.0.load(Ordering::Relaxed), 1, "one lookup, then the cache answers");
///
/// cache.invalidate("app1"); // the app's namespaces changed
/// cache.options(&edge, &app, &ChannelName::new("chat:lobby")?).await?;
/// assert_eq!(config.0.load(Ordering::Relaxed), 2);
/// # Ok(())
/// # }
/// ```
pub struct Namespaces {
    ttl: Duration,
    apps: Mutex<HashMap<AppId, (Instant, CachedApp)>>,
}

impl Namespaces {
    /// An empty cache keeping answers for `ttl`.
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, apps: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, app: &AppId) -> Option<(bool, CachedApp)> {
        let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.get(app).map(|(at, cached)| (at.elapsed() < self.ttl, cached.clone()))
    }

    /// What is known of `app`: from the cache while fresh, else asked.
    async fn app(&self, bus: &Bus, app: &AppId) -> Result<CachedApp, BusError> {
        let stale = match self.cached(app) {
            Some((true, cached)) => return Ok(cached),
            stale => stale,
        };
        match bus.app_config(app).await {
            Ok(config) => {
                let cached = Arc::new(match config {
                    Some(config) => Cached {
                        exists: true,
                        namespaces: config
                            .namespaces
                            .into_iter()
                            .filter_map(|n| Some((NamespaceName::new(&n.name).ok()?, n.options.unwrap_or_default())))
                            .collect(),
                        pusher: config.pusher.map(Arc::new),
                        webhook_events: config.webhook_events,
                    },
                    None => Cached::default(),
                });
                self.apps
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(app.clone(), (Instant::now(), cached.clone()));
                Ok(cached)
            }
            Err(e) => match stale {
                Some((_, cached)) => {
                    tracing::warn!(%app, error = %e, "app configuration not refreshed; using the cached one");
                    Ok(cached)
                }
                None => Err(e),
            },
        }
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
        let Some(ns) = channel.namespace_name() else { return Ok(default_options(channel)) };
        let cached = self.app(bus, app).await?;
        Ok(cached.namespaces.get(&ns).cloned().unwrap_or_else(|| default_options(channel)))
    }

    /// The Pusher settings of `app`: `Ok(None)` when the app does not exist
    /// or has Pusher mode off.
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when nothing is cached and the control
    /// plane cannot be asked.
    pub async fn pusher_app(&self, bus: &Bus, app: &AppId) -> Result<Option<Arc<bus::PusherApp>>, BusError> {
        let cached = self.app(bus, app).await?;
        Ok(if cached.exists { cached.pusher.clone() } else { None })
    }

    /// Whether some webhook endpoint of `app` wants events of `kind` (an
    /// edge-seen kind: `client_event`, `cache_miss`).
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when nothing is cached and the control
    /// plane cannot be asked.
    pub async fn wants_webhook(&self, bus: &Bus, app: &AppId, kind: EventKind) -> Result<bool, BusError> {
        let cached = self.app(bus, app).await?;
        Ok(cached.webhook_events.contains(&kind))
    }

    /// Forgets what is cached for `app`.
    pub fn invalidate(&self, app: &str) {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.retain(|a, _| a.as_str() != app);
    }
}
