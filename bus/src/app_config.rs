//! An app's configuration as an edge looks it up over the bus: its
//! namespaces, its Pusher settings and the bounds of its history streams
//! ([`AppConfig`]), and how the control plane's [`NamespaceSource`] answers
//! the lookup ([`answer`]).

use herald_proto::webhook::EventKind;
use herald_proto::{AppId, bus};

use crate::history::StreamBounds;
use crate::{BusError, NamespaceSource};

/// An app's configuration as the control plane answers an edge's lookup.
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
