//! An app's debug events on the bus: sending one
//! ([`Bus::publish_debug_event`], fire and forget) and the subscription of
//! a control plane serving watchers ([`Bus::subscribe_debug_events`],
//! bounded). Which events a node sends, and how many, is
//! [`debug_tap`](crate::debug_tap)'s.

use bytes::Bytes;
use futures_util::StreamExt as _;
use herald_proto::{AppId, bus};
use prost::Message as _;

use crate::handle::{Inner, SubscriptionInner};
use crate::{Bus, BusError, lock};

impl Bus {
    /// Publishes one debug event of `app` on its tap subject, fire and
    /// forget (no receipt: it is lost when nobody listens). Nodes send
    /// through [`DebugTap`](crate::debug_tap::DebugTap), which bounds them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// let bus = Bus::local(&LocalBus::default());
    /// let app = AppId::new("app1")?;
    /// let event = bus::DebugEvent { app_id: "app1".into(), node_id: "edge-1".into(), ..Default::default() };
    /// bus.publish_debug_event(&app, &event).await?; // nobody watches: lost, and that is fine
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when NATS is not connected or the client
    /// refused the message.
    pub async fn publish_debug_event(&self, app: &AppId, event: &bus::DebugEvent) -> Result<(), BusError> {
        match &*self.inner {
            Inner::Nats(n) => {
                n.check_connected()?;
                n.client
                    .publish(n.subjects.tap(app), Bytes::from(event.encode_to_vec()))
                    .await
                    .map_err(|e| BusError::Unavailable(e.to_string()))
            }
            Inner::Local(l) => {
                l.bus.publish_debug_event(app, event);
                Ok(())
            }
        }
    }

    /// Starts receiving the debug events of one app (for the control plane
    /// serving watchers). At most `capacity` events wait in the returned
    /// subscription; past that, new ones are dropped and counted
    /// (`herald_debug_events_dropped_total`). Resolves once the bus holds
    /// the interest.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// let local = LocalBus::default();
    /// let app = AppId::new("app1")?;
    /// let mut watcher = Bus::local(&local).subscribe_debug_events(&app, 1).await?;
    /// let node = Bus::local(&local);
    /// for id in ["c1", "c2"] {
    ///     let event = bus::DebugEvent { app_id: "app1".into(), connection_id: id.into(), ..Default::default() };
    ///     node.publish_debug_event(&app, &event).await?;
    /// }
    /// // Room for one: the second was dropped.
    /// assert_eq!(watcher.recv().await.map(|e| e.connection_id), Some("c1".to_owned()));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when NATS is not connected or did not take
    /// the subscription in time.
    pub async fn subscribe_debug_events(
        &self,
        app: &AppId,
        capacity: usize,
    ) -> Result<DebugEventSubscription, BusError> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        match &*self.inner {
            Inner::Nats(n) => {
                n.check_connected()?;
                let mut sub = n
                    .timed("the subscription", async {
                        let sub = n
                            .client
                            .subscribe(n.subjects.tap(app))
                            .await
                            .map_err(|e| BusError::Unavailable(e.to_string()))?;
                        n.sync().await?;
                        Ok(sub)
                    })
                    .await?;
                let app = app.clone();
                let task = tokio::spawn(async move {
                    while let Some(msg) = sub.next().await {
                        match bus::DebugEvent::decode(msg.payload) {
                            Ok(event) if event.app_id == app.as_str() => offer(&tx, event),
                            Ok(_) => tracing::warn!(%app, "debug event of another app ignored"),
                            Err(e) => tracing::warn!(error = %e, "undecodable debug event ignored"),
                        }
                        if tx.is_closed() {
                            break;
                        }
                    }
                });
                Ok(DebugEventSubscription { rx, _task: Some(SubscriptionInner::NatsTask(task)) })
            }
            Inner::Local(l) => {
                lock(&l.bus.debug_watchers).push((app.clone(), tx));
                Ok(DebugEventSubscription { rx, _task: None })
            }
        }
    }
}

/// A live subscription to one app's debug events; dropping it ends it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use herald_bus::{Bus, DebugEventSubscription, LocalBus};
/// use herald_proto::{AppId, bus};
/// let local = LocalBus::default();
/// let app = AppId::new("app1")?;
/// let mut watcher: DebugEventSubscription = Bus::local(&local).subscribe_debug_events(&app, 100).await?;
/// let event = bus::DebugEvent { app_id: "app1".into(), node_id: "edge-1".into(), ..Default::default() };
/// Bus::local(&local).publish_debug_event(&app, &event).await?;
/// let got = tokio::time::timeout(Duration::from_secs(5), watcher.recv()).await?;
/// assert_eq!(got, Some(event));
/// # Ok(())
/// # }
/// ```
pub struct DebugEventSubscription {
    rx: tokio::sync::mpsc::Receiver<bus::DebugEvent>,
    _task: Option<SubscriptionInner>,
}

impl DebugEventSubscription {
    /// The next debug event; `None` once the subscription ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// let local = LocalBus::default();
    /// let app = AppId::new("app1")?;
    /// let mut watcher = Bus::local(&local).subscribe_debug_events(&app, 10).await?;
    /// let event = bus::DebugEvent { app_id: "app1".into(), ..Default::default() };
    /// Bus::local(&local).publish_debug_event(&app, &event).await?;
    /// while let Ok(Some(event)) = tokio::time::timeout(std::time::Duration::from_millis(100), watcher.recv()).await {
    ///     assert_eq!(event.app_id, "app1");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<bus::DebugEvent> {
        self.rx.recv().await
    }
}

/// Hands `event` to a debug subscription, or drops and counts it when the
/// subscription is full.
fn offer(tx: &tokio::sync::mpsc::Sender<bus::DebugEvent>, event: bus::DebugEvent) {
    if tx.try_send(event).is_err() && !tx.is_closed() {
        metrics::counter!("herald_debug_events_dropped_total").increment(1);
    }
}
