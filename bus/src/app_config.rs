//! An app's configuration as an edge looks it up over the bus: its
//! namespaces, its Pusher settings and the bounds of its history streams
//! ([`AppConfig`]), and how the control plane's [`NamespaceSource`] answers
//! the lookup ([`answer`]).

use herald_proto::webhook::EventKind;
use herald_proto::{AppId, bus};

use crate::history::StreamBounds;
use crate::{BusError, NamespaceSource};

/// An app's configuration as the control plane answers an edge's lookup.
///
/// ```
/// use herald_bus::AppConfig;
/// use herald_proto::bus;
/// use herald_proto::webhook::EventKind;
///
/// let reply = bus::NamespaceList {
///     app_exists: true,
///     namespaces: vec![bus::Namespace { name: "chat".into(), options: None }],
///     webhook_events: vec!["cache_miss".into(), "a_kind_from_a_newer_release".into()],
///     ..Default::default()
/// };
/// let config = AppConfig::from_list(reply)?.expect("the app exists");
/// assert_eq!(config.namespaces.len(), 1);
/// assert_eq!(config.webhook_events, [EventKind::CacheMiss], "unknown kinds are left out");
/// assert!(config.wants_webhook(EventKind::CacheMiss) && !config.wants_webhook(EventKind::ClientEvent));
///
/// assert!(AppConfig::from_list(bus::NamespaceList::default())?.is_none(), "no such app");
/// let failed = bus::NamespaceList { error: "database down".into(), ..Default::default() };
/// assert!(AppConfig::from_list(failed).is_err());
/// # Ok::<(), herald_bus::BusError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Its configured namespaces.
    pub namespaces: Vec<bus::Namespace>,
    /// Its Pusher settings; `None` when Pusher mode is off for it.
    pub pusher: Option<bus::PusherApp>,
    /// The bounds every history stream gets.
    pub bounds: StreamBounds,
    /// The edge-seen event kinds some active webhook endpoint of the app
    /// wants (names this edge does not know are left out).
    pub webhook_events: Vec<EventKind>,
}

impl AppConfig {
    /// Whether some webhook endpoint of the app wants events of `kind`.
    #[must_use]
    pub fn wants_webhook(&self, kind: EventKind) -> bool {
        self.webhook_events.contains(&kind)
    }
}

impl AppConfig {
    /// Reads a reply; `None` when the app does not exist.
    ///
    /// # Errors
    ///
    /// [`BusError::Unavailable`] when the control plane could not look the
    /// app up.
    pub fn from_list(list: bus::NamespaceList) -> Result<Option<Self>, BusError> {
        if !list.error.is_empty() {
            return Err(BusError::Unavailable(format!("namespace lookup: {}", list.error)));
        }
        let bounds = StreamBounds::from_list(&list);
        let webhook_events = list.webhook_events.iter().filter_map(|k| k.parse().ok()).collect();
        Ok(list.app_exists.then_some(Self { namespaces: list.namespaces, pusher: list.pusher, bounds, webhook_events }))
    }
}

/// The control plane's answer to an edge's lookup of `app`, from `source`.
///
/// ```
/// use futures_util::future::BoxFuture;
/// use herald_bus::NamespaceSource;
/// use herald_proto::webhook::EventKind;
/// use herald_proto::{AppId, bus};
///
/// /// Every app has one namespace, `chat`, keeping 100 messages for an hour;
/// /// its webhooks want client events.
/// struct Config;
///
/// impl NamespaceSource for Config {
///     fn namespaces(&self, _app: AppId) -> BoxFuture<'static, Result<Option<Vec<bus::Namespace>>, String>> {
///         let options = bus::NamespaceOptions { history_size: 100, history_ttl_ms: 3_600_000, ..Default::default() };
///         let chat = bus::Namespace { name: "chat".into(), options: Some(options) };
///         Box::pin(async move { Ok(Some(vec![chat])) })
///     }
///
///     fn webhook_events(&self, _app: AppId) -> BoxFuture<'static, Result<Vec<EventKind>, String>> {
///         Box::pin(async { Ok(vec![EventKind::ClientEvent]) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let reply = herald_bus::app_config::answer(&Config, AppId::new("app1")?).await;
/// assert!(reply.app_exists && reply.error.is_empty());
/// assert_eq!(reply.webhook_events, ["client_event"]);
/// assert_eq!(reply.namespaces[0].name, "chat");
/// # Ok(())
/// # }
/// ```
pub async fn answer(source: &dyn NamespaceSource, app: AppId) -> bus::NamespaceList {
    let bounds = source.history_bounds();
    match source.namespaces(app.clone()).await {
        Ok(Some(namespaces)) => match (source.pusher_app(app.clone()).await, source.webhook_events(app).await) {
            (Ok(pusher), Ok(webhook_events)) => bus::NamespaceList {
                app_exists: true,
                namespaces,
                error: String::new(),
                history_max_bytes: bounds.max_bytes,
                history_replicas: u32::from(bounds.replicas),
                pusher,
                webhook_events: webhook_events.iter().map(|k| k.as_str().to_owned()).collect(),
            },
            (Err(error), _) | (_, Err(error)) => bus::NamespaceList { error, ..Default::default() },
        },
        Ok(None) => bus::NamespaceList::default(),
        Err(error) => bus::NamespaceList { error, ..Default::default() },
    }
}
