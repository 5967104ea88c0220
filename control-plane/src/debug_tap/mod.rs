//! The debug tap as the control plane serves it: watchers of an app's
//! debug events (`GET /v1/apps/{app}/debug/events`, the console's debug
//! page, `herald apps debug`).
//!
//! The watchers of one app on this replica share one [`Feed`]: one bus
//! subscription to the app's tap subject and one bounded broadcast
//! (`debug_tap_buffer` events). While the feed lives it announces the tap
//! to every node with a [`bus::DebugTapOn`] control event ([`LEASE`]),
//! renewed every [`RENEW`]; nodes stop sending once the lease runs out
//! after the last watcher left. A watcher that falls behind the broadcast
//! is told how many events it missed and goes on from the oldest kept: it
//! never blocks the others and never grows memory. At most
//! `debug_tap_max_watchers` watchers are served per replica.
//!
//! # Layout
//!
//! - this module: [`Watchers`] (the feeds, the watcher count, the stream a
//!   watcher reads), and which API a publish came through ([`source`]).
//!   The operation the APIs call is `Core::watch_debug` (in `services`).
//! - [`event`]: a debug event as JSON ([`DebugItem`]), and the
//!   [`DebugFilter`] a watcher gives.

pub mod event;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::stream::BoxStream;
use herald_proto::{AppId, bus};
use tokio::sync::broadcast;

use herald_bus::Bus;

use crate::error::ApiError;
pub use event::{DebugFilter, DebugItem};

/// How long nodes keep an app's tap on after an announcement.
pub const LEASE: Duration = Duration::from_secs(30);

/// How often a feed announces its tap again.
pub const RENEW: Duration = Duration::from_secs(10);

/// The watchers this replica serves.
pub struct Watchers {
    feeds: Mutex<HashMap<AppId, Weak<Feed>>>,
    count: Arc<AtomicUsize>,
    max: usize,
    buffer: usize,
    /// Set when the replica shuts down: every stream ends.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Watchers {
    /// At most `max` watchers; `buffer` events kept per app.
    #[must_use]
    pub fn new(max: usize, buffer: usize) -> Self {
        Self {
            feeds: Mutex::default(),
            count: Arc::default(),
            max,
            buffer,
            stop: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Ends every watcher's stream (the replica shuts down: open streams
    /// must not hold the drain up).
    pub fn close_all(&self) {
        self.stop.send_replace(true);
    }

    /// Watchers served now.
    #[must_use]
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn existing(&self, app: &AppId) -> Option<Arc<Feed>> {
        lock(&self.feeds).get(app).and_then(Weak::upgrade)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One app's shared subscription, broadcast and announcements; ends (its
/// task aborted) when its last watcher leaves.
struct Feed {
    tx: broadcast::Sender<Arc<bus::DebugEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Holds a watcher's place: counted while it lives.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("herald_cp_debug_watchers").decrement(1.0);
    }
}

tokio::task_local! {
    static SOURCE: &'static str;
}

/// Runs `f` (a request's handling) as coming through `source` (`rest`,
/// `grpc`, `pusher_http`): what a publish's debug event names.
pub async fn with_source<F: std::future::Future>(source: &'static str, f: F) -> F::Output {
    SOURCE.scope(source, f).await
}

/// The API the current request came through (see [`with_source`]); `api`
/// outside of one.
#[must_use]
pub fn source() -> &'static str {
    SOURCE.try_with(|s| *s).unwrap_or("api")
}

impl Watchers {
    /// Starts a watcher of `app` (the caller checked who may): the events
    /// every node sends from now on that pass `filter`, each as a
    /// [`DebugItem`], with a [`DebugItem::Missed`] where this watcher fell
    /// behind. Dropping the stream leaves; the app's feed ends with its
    /// last watcher.
    ///
    /// # Errors
    ///
    /// `rate_limited` past `debug_tap_max_watchers`, `unavailable` when the
    /// bus cannot be subscribed.
    pub async fn watch(
        &self,
        bus: &Bus,
        app: &AppId,
        filter: DebugFilter,
    ) -> Result<BoxStream<'static, DebugItem>, ApiError> {
        if self.count.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::new(
                herald_proto::ErrorCode::RateLimited,
                format!("this replica serves at most {} debug watchers (debug_tap_max_watchers)", self.max),
            ));
        }
        metrics::gauge!("herald_cp_debug_watchers").increment(1.0);
        let place = Place(self.count.clone());
        let feed = match self.existing(app) {
            Some(feed) => feed,
            None => self.start_feed(bus, app).await?,
        };
        let rx = feed.tx.subscribe();
        let state = (rx, feed, place, filter, self.stop.subscribe());
        Ok(Box::pin(futures_util::stream::unfold(state, |(mut rx, feed, place, filter, mut stop)| async move {
            loop {
                let received = tokio::select! {
                    received = rx.recv() => received,
                    _ = stop.wait_for(|stopped| *stopped) => return None,
                };
                match received {
                    Ok(event) => {
                        if let Some(item) = DebugItem::from_event(&event, &filter) {
                            return Some((item, (rx, feed, place, filter, stop)));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        metrics::counter!("herald_cp_debug_events_missed_total").increment(n);
                        return Some((DebugItem::Missed(n), (rx, feed, place, filter, stop)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }

    /// Subscribes to the app's tap subject, and starts the feed's task:
    /// announcements of the tap (at once, then every [`RENEW`]), and the
    /// broadcast of what arrives.
    async fn start_feed(&self, bus: &Bus, app: &AppId) -> Result<Arc<Feed>, ApiError> {
        let mut sub = bus.subscribe_debug_events(app, self.buffer).await.map_err(|e| {
            tracing::warn!(%app, error = %e, "debug events not subscribed");
            ApiError::unavailable("the bus is unavailable; retry")
        })?;
        let (tx, _) = broadcast::channel(self.buffer.max(1));
        let sender = tx.clone();
        let lease_ms = u32::try_from(LEASE.as_millis()).unwrap_or(u32::MAX);
        let (bus, app_id) = (bus.clone(), app.to_string());
        let task = tokio::spawn(async move {
            let mut renew = tokio::time::interval(RENEW);
            loop {
                tokio::select! {
                    _ = renew.tick() => {
                        let now = herald_bus::now_ms();
                        let on = bus::DebugTapOn { app_id: app_id.clone(), until_ms: now + i64::from(lease_ms), lease_ms };
                        let event = bus::ControlEvent {
                            timestamp_ms: now,
                            kind: Some(bus::control_event::Kind::DebugTapOn(on)),
                        };
                        // Not retried: the next renewal is the retry.
                        if let Err(e) = bus.publish_control(&event).await {
                            tracing::warn!(app = %app_id, error = %e, "debug tap not announced");
                        }
                    }
                    event = sub.recv() => match event {
                        Some(event) => {
                            metrics::counter!("herald_cp_debug_events_received_total").increment(1);
                            let _ = sender.send(Arc::new(event));
                        }
                        None => return,
                    },
                }
            }
        });
        let feed = Arc::new(Feed { tx, task });
        let mut feeds = lock(&self.feeds);
        feeds.retain(|_, f| f.strong_count() > 0);
        // Another watcher of the app may have started one meanwhile.
        if let Some(theirs) = feeds.get(app).and_then(Weak::upgrade) {
            return Ok(theirs);
        }
        feeds.insert(app.clone(), Arc::downgrade(&feed));
        Ok(feed)
    }
}
