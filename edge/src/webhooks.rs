//! The reporter of webhook events seen on this edge: client events (Pusher
//! `client-…` events, Herald client publishes) and cache misses, each sent
//! to the control plane over the bus, which stores it durably and delivers
//! it to the app's endpoints.
//!
//! Only what some endpoint of the app wants is reported: the app's
//! configuration (cached with its namespaces, see
//! [`Hub::wants_webhook`]) lists the edge-seen kinds its endpoints ask for,
//! so an app without webhooks costs a cached lookup and nothing more.
//!
//! A client's path never waits for a report: an event goes into a bounded
//! queue (`webhook_report_queue`) with `try_send`; when it is full the event
//! is dropped and counted (`herald_edge_webhook_events_dropped_total`,
//! `reason="queue_full"`, with a warning at most every 10 s). One task
//! drains the queue in order, with up to [`IN_FLIGHT`] requests at once
//! (started in queue order; the control plane may store a retried event
//! after ones queued behind it). A request that fails is sent again, with
//! the same event id (stored once however often it arrives), after 100 ms,
//! then twice as long each time up to 5 s, for up to
//! `webhook_report_retry`; then the event is dropped and counted
//! (`reason="retry_expired"`). An event the bus refuses outright (it can
//! never be stored) is dropped at once (`reason="refused"`).
//!
//! On shutdown the edge waits for the queue to empty
//! ([`WebhookReporter::flush`]) within what is left of its drain deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use herald_bus::Bus;
use herald_proto::webhook::EventKind;
use herald_proto::{AppId, ChannelName, bus};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::hub::Hub;

/// Report requests in flight at once.
pub const IN_FLIGHT: usize = 16;

/// The first wait before a failed report is sent again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Drops are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How many random characters follow `ev_` in an event id.
const ID_CHARS: usize = 20;

/// The reporter's bounds; from the edge's configuration.
#[derive(Debug, Clone, Copy)]
pub struct ReporterSettings {
    /// Events waiting to be sent (`webhook_report_queue`).
    pub queue: usize,
    /// How long one event is retried (`webhook_report_retry`).
    pub retry: Duration,
}

/// What happened on this edge, to report when the app wants its kind.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    /// `client_event` or `cache_miss`.
    pub kind: EventKind,
    /// The channel it happened on.
    pub channel: &'a ChannelName,
    /// The client event's name (empty for a cache miss, or a Herald publish
    /// without one).
    pub event: &'a str,
    /// The client event's data, as the client sent it.
    pub data: Bytes,
    /// The connection it came from (a Pusher `socket_id`).
    pub connection_id: &'a str,
    /// The user it came from, when known (Pusher: the presence member's
    /// user id on presence channels; Herald: the token's subject).
    pub user_id: &'a str,
}

/// An event waiting to be sent.
struct Queued {
    app: AppId,
    event: bus::WebhookEvent,
}

/// The reporter: a bounded queue and the task that drains it. Dropping it
/// stops the task (what is still queued is lost; see [`Self::flush`]).
pub struct WebhookReporter {
    hub: Arc<Hub>,
    queue: mpsc::Sender<Queued>,
    /// Events queued or being sent.
    pending: Arc<watch::Sender<usize>>,
    drops: Arc<Drops>,
    task: JoinHandle<()>,
}

impl Drop for WebhookReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookReporter {
    /// Starts the reporter of `hub`'s edge, sending on its bus.
    #[must_use]
    pub fn start(hub: Arc<Hub>, settings: ReporterSettings) -> Self {
        let (queue, receiver) = mpsc::channel(settings.queue.max(1));
        let pending = Arc::new(watch::Sender::new(0));
        let drops = Arc::new(Drops::default());
        let task = tokio::spawn(drain(hub.bus().clone(), receiver, settings.retry, pending.clone(), drops.clone()));
        Self { hub, queue, pending, drops, task }
    }

    /// Reports `seen` on `app`'s channel when some webhook endpoint of the
    /// app wants its kind. Never waits for the report: at most for the
    /// app's configuration, which is cached (the client's request looked it
    /// up already, in most cases).
    pub async fn report(&self, app: &AppId, seen: Seen<'_>) {
        match self.hub.wants_webhook(app, seen.kind).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(%app, kind = %seen.kind, error = %e, "webhook wishes unknown; event not reported");
                return;
            }
        }
        let event = bus::WebhookEvent {
            id: event_id(),
            app_id: app.as_str().to_owned(),
            channel: seen.channel.as_str().to_owned(),
            kind: seen.kind.as_str().to_owned(),
            event: seen.event.to_owned(),
            data: seen.data,
            connection_id: seen.connection_id.to_owned(),
            user_id: seen.user_id.to_owned(),
            timestamp_ms: herald_bus::now_ms(),
        };
        self.enqueue(app.clone(), event);
    }

    /// Queues `event` without waiting; false when the queue is full (the
    /// event is dropped and counted) or the reporter stopped.
    fn enqueue(&self, app: AppId, event: bus::WebhookEvent) -> bool {
        // Counted before it is queued: the drain may finish it at once.
        self.pending.send_modify(|n| *n += 1);
        match self.queue.try_send(Queued { app, event }) {
            Ok(()) => true,
            Err(e) => {
                self.pending.send_modify(|n| *n = n.saturating_sub(1));
                let reason = match e {
                    mpsc::error::TrySendError::Full(_) => "queue_full",
                    mpsc::error::TrySendError::Closed(_) => "stopped",
                };
                self.drops.note(reason);
                false
            }
        }
    }

    /// Events queued or being sent now.
    #[must_use]
    pub fn pending(&self) -> usize {
        *self.pending.borrow()
    }

    /// Waits until every queued event was sent (or dropped), or `deadline`
    /// passes. Returns how many were left.
    pub async fn flush(&self, deadline: Instant) -> usize {
        let mut pending = self.pending.subscribe();
        let _ = tokio::time::timeout_at(deadline, pending.wait_for(|n| *n == 0)).await;
        let left = self.pending();
        if left > 0 {
            tracing::warn!(events = left, "webhook events not reported before the deadline");
        }
        left
    }
}

/// `ev_` and 20 random letters and digits.
fn event_id() -> String {
    use rand::Rng as _;
    let mut id = String::with_capacity(3 + ID_CHARS);
    id.push_str("ev_");
    id.extend(rand::rng().sample_iter(rand::distr::Alphanumeric).take(ID_CHARS).map(char::from));
    id
}

/// Sends the queued events in order, [`IN_FLIGHT`] at a time.
async fn drain(
    bus: Bus,
    mut receiver: mpsc::Receiver<Queued>,
    retry: Duration,
    pending: Arc<watch::Sender<usize>>,
    drops: Arc<Drops>,
) {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
        .map(|queued| {
            let (bus, drops) = (bus.clone(), drops.clone());
            async move { send(&bus, queued, retry, &drops).await }
        })
        .buffered(IN_FLIGHT)
        .for_each(|()| {
            pending.send_modify(|n| *n = n.saturating_sub(1));
            async {}
        })
        .await;
}

/// Sends one event until it is stored, refused, or `retry` passed.
async fn send(bus: &Bus, queued: Queued, retry: Duration, drops: &Drops) {
    let Queued { app, event } = queued;
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error = match bus.report_webhook_event(&app, &event).await {
            Ok(()) => {
                metrics::counter!("herald_edge_webhook_events_reported_total").increment(1);
                return;
            }
            Err(e) => e,
        };
        if !error.is_transient() {
            tracing::warn!(%app, id = %event.id, error = %error, "webhook event refused by the bus; dropped");
            drops.note("refused");
            return;
        }
        if started.elapsed() + backoff > retry {
            tracing::debug!(%app, id = %event.id, error = %error, "webhook event not reported in time");
            drops.note("retry_expired");
            return;
        }
        tracing::debug!(%app, id = %event.id, error = %error, retry_in = ?backoff, "webhook event not reported; retrying");
        metrics::counter!("herald_edge_webhook_report_retries_total").increment(1);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Counts dropped events, and warns of them at most every [`WARN_EVERY`].
#[derive(Default)]
struct Drops {
    /// Dropped since the last warning.
    unwarned: AtomicU64,
    /// When the last warning was logged.
    warned_at: Mutex<Option<Instant>>,
}

impl Drops {
    fn note(&self, reason: &'static str) {
        metrics::counter!("herald_edge_webhook_events_dropped_total", "reason" => reason).increment(1);
        self.unwarned.fetch_add(1, Ordering::AcqRel);
        let mut warned_at = self.warned_at.lock().unwrap_or_else(|e| e.into_inner());
        if warned_at.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        *warned_at = Some(Instant::now());
        drop(warned_at);
        let dropped = self.unwarned.swap(0, Ordering::AcqRel);
        tracing::warn!(dropped, reason, "webhook events dropped (see herald_edge_webhook_events_dropped_total)");
    }
}

#[cfg(test)]
mod tests {
    use futures_util::future::BoxFuture;
    use herald_bus::{LocalBus, WebhookEventSink};

    use super::*;

    /// Fails its first `failures` calls, then stores; waits for a permit of
    /// `gate` (when set) before answering.
    #[derive(Default)]
    struct Sink {
        attempts: Mutex<Vec<String>>,
        stored: Mutex<Vec<String>>,
        failures: usize,
        gate: Option<Arc<tokio::sync::Semaphore>>,
    }

    impl WebhookEventSink for Sink {
        fn store(&self, _app: AppId, event: bus::WebhookEvent) -> BoxFuture<'static, Result<(), String>> {
            let mut attempts = self.attempts.lock().expect("attempts");
            attempts.push(event.id.clone());
            if attempts.len() <= self.failures {
                return Box::pin(async { Err("store down".to_owned()) });
            }
            self.stored.lock().expect("stored").push(event.id);
            let gate = self.gate.clone();
            Box::pin(async move {
                if let Some(gate) = gate {
                    gate.acquire().await.map_err(|e| e.to_string())?.forget();
                }
                Ok(())
            })
        }
    }

    fn app() -> AppId {
        AppId::new("app1").expect("app")
    }

    fn event(id: &str) -> bus::WebhookEvent {
        bus::WebhookEvent {
            id: id.to_owned(),
            app_id: "app1".into(),
            channel: "room".into(),
            kind: EventKind::ClientEvent.as_str().into(),
            ..Default::default()
        }
    }

    async fn reporter(sink: Arc<Sink>, settings: ReporterSettings) -> WebhookReporter {
        let local = LocalBus::new();
        Bus::local(&local).serve_webhook_events(sink).await.expect("serve");
        WebhookReporter::start(Hub::new(Bus::local(&local)), settings)
    }

    #[test]
    fn event_ids_are_ev_and_20_letters_or_digits() {
        let (a, b) = (event_id(), event_id());
        assert_ne!(a, b);
        let rest = a.strip_prefix("ev_").expect("prefix");
        assert_eq!(rest.len(), ID_CHARS);
        assert!(rest.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_with_the_same_id() {
        let sink = Arc::new(Sink { failures: 2, ..Default::default() });
        let reporter = reporter(sink.clone(), ReporterSettings { queue: 4, retry: Duration::from_secs(60) }).await;
        assert!(reporter.enqueue(app(), event("ev_a")));
        assert_eq!(reporter.flush(Instant::now() + Duration::from_secs(10)).await, 0);
        assert_eq!(*sink.attempts.lock().expect("attempts"), ["ev_a", "ev_a", "ev_a"]);
        assert_eq!(*sink.stored.lock().expect("stored"), ["ev_a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_is_dropped_once_its_retry_time_passed() {
        let sink = Arc::new(Sink { failures: usize::MAX, ..Default::default() });
        let reporter = reporter(sink.clone(), ReporterSettings { queue: 4, retry: Duration::from_secs(2) }).await;
        let started = Instant::now();
        assert!(reporter.enqueue(app(), event("ev_a")));
        assert_eq!(reporter.flush(started + Duration::from_secs(60)).await, 0, "dropped, so no longer pending");
        let took = started.elapsed();
        assert!(took <= Duration::from_secs(2), "gave up within the retry time: {took:?}");
        // 100 ms, 200, 400, 800: the next wait would end past 2 s.
        assert_eq!(sink.attempts.lock().expect("attempts").len(), 5);
        assert!(sink.stored.lock().expect("stored").is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_drops_new_events_without_waiting() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let sink = Arc::new(Sink { gate: Some(gate.clone()), ..Default::default() });
        let reporter = reporter(sink.clone(), ReporterSettings { queue: 2, retry: Duration::from_secs(60) }).await;
        // IN_FLIGHT are taken off the queue and wait on the gate; two more
        // fill the queue; the next is dropped.
        let mut accepted = 0;
        for i in 0..IN_FLIGHT + 10 {
            if reporter.enqueue(app(), event(&format!("ev_{i}"))) {
                accepted += 1;
            }
            tokio::task::yield_now().await;
        }
        assert!(accepted < IN_FLIGHT + 10, "some were dropped");
        assert!(accepted >= 2, "the queue's room was used");
        assert_eq!(reporter.pending(), accepted);
        gate.add_permits(IN_FLIGHT + 10);
        assert_eq!(reporter.flush(Instant::now() + Duration::from_secs(10)).await, 0);
        assert_eq!(sink.stored.lock().expect("stored").len(), accepted, "every accepted event was stored");
    }

    #[tokio::test]
    async fn events_are_sent_in_queue_order() {
        let sink = Arc::new(Sink::default());
        let reporter = reporter(sink.clone(), ReporterSettings { queue: 100, retry: Duration::from_secs(60) }).await;
        let ids: Vec<String> = (0..50).map(|i| format!("ev_{i:02}")).collect();
        for id in &ids {
            assert!(reporter.enqueue(app(), event(id)));
        }
        assert_eq!(reporter.flush(Instant::now() + Duration::from_secs(10)).await, 0);
        assert_eq!(*sink.stored.lock().expect("stored"), ids);
    }
}
