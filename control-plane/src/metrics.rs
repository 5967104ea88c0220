//! The control plane's Prometheus metrics, served at `/metrics`.
//!
//! Each control plane owns its own recorder instead of installing a global
//! one, so an embedded process (control plane and edge together) or a test
//! running several servers never fights over the global slot. Handles are
//! registered once and cloned into the hot paths.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use herald_proto::webhook::EventKind;
use herald_proto::{AppId, ErrorCode};
use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder as _};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The metrics of one control plane.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    publish_latency: Histogram,
    tokens_minted: Counter,
    connections_refused: Counter,
    /// Per-app counters, looked up without allocating on the hot path.
    published: RwLock<HashMap<AppId, Counter>>,
    /// The request series' handles, by the hash of their labels, looked up
    /// without allocating on the hot path.
    requests: RwLock<HashMap<u64, Vec<RequestSeries>>>,
    hasher: std::hash::RandomState,
}

/// The handles of one request series (API, method, route, status).
struct RequestSeries {
    labels: [Box<str>; 4],
    count: Counter,
    duration: Histogram,
}

/// The HELP text of the control plane's metrics.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    ("herald_cp_messages_published_total", "Messages accepted by the bus, by app (one per channel)."),
    ("herald_cp_publish_errors_total", "Publishes refused or failed, by error code name."),
    ("herald_cp_publish_duration_seconds", "Time from a publish request to the bus accepting it."),
    ("herald_cp_tokens_minted_total", "Client tokens minted."),
    (
        "herald_cp_connections_refused_total",
        "HTTP connections closed at once because max_http_connections was reached.",
    ),
    (
        "herald_cp_connections_closed_total",
        "HTTP connections the control plane closed to protect itself, by the limit that closed them \
         (max_connections_per_ip, evicted_silent, evicted_stalled_body, http2_max_resets_per_sec, http2_max_control_frames_per_sec).",
    ),
    ("herald_cp_requests_total", "REST, gRPC and Pusher API requests, by API, method, route template and status."),
    (
        "herald_cp_request_duration_seconds",
        "Time to answer a request (to the response head), by API and route template.",
    ),
    ("herald_cp_webhook_events_queued_total", "Webhook deliveries queued, by event kind."),
    (
        "herald_cp_webhook_events_dropped_total",
        "Webhook deliveries dropped (outbox full, endpoint disabled), by event kind.",
    ),
    ("herald_cp_webhook_attempts_total", "Webhook delivery attempts, by result (delivered, retrying, failed)."),
    ("herald_cp_webhook_attempt_duration_seconds", "Time of one webhook delivery attempt."),
    ("herald_cp_webhook_queue_depth", "Webhook deliveries waiting in the outbox, over every app."),
    ("herald_cp_webhook_oldest_undelivered_seconds", "Age of the oldest undelivered webhook event."),
    (
        "herald_cp_usage_batches_total",
        "Usage batches from nodes, by result (stored, or duplicate: resent and not counted again).",
    ),
    ("herald_cp_apps_over_quota", "Apps over a quota, as this replica last worked out."),
    ("herald_cp_debug_watchers", "Debug-event watchers (streams) this replica serves."),
    ("herald_cp_debug_events_received_total", "Debug events received from the bus for this replica's watchers."),
    ("herald_cp_debug_events_missed_total", "Debug events watchers missed because they fell behind."),
];

/// Most per-app counter handles kept (the series stay in the recorder).
const MAX_APP_SERIES: usize = 100_000;

/// Most request series handles kept (the series stay in the recorder).
const MAX_REQUEST_SERIES: usize = 10_000;

impl Metrics {
    pub(crate) fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets(&[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        for (name, help) in DESCRIPTIONS {
            recorder.describe_counter(metrics::KeyName::from_const_str(name), None, (*help).into());
        }
        // Some are recorded on the process-wide recorder (the `metrics`
        // macros): described there too.
        herald_bus::telemetry::process_recorder();
        herald_bus::telemetry::describe(DESCRIPTIONS);
        let handle = recorder.handle();
        let publish_latency =
            recorder.register_histogram(&Key::from_static_name("herald_cp_publish_duration_seconds"), &META);
        let tokens_minted = recorder.register_counter(&Key::from_static_name("herald_cp_tokens_minted_total"), &META);
        let connections_refused =
            recorder.register_counter(&Key::from_static_name("herald_cp_connections_refused_total"), &META);
        Self {
            recorder,
            handle,
            publish_latency,
            tokens_minted,
            connections_refused,
            published: RwLock::new(HashMap::new()),
            requests: RwLock::new(HashMap::new()),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Counts messages accepted by the bus for `app` (one per channel).
    pub(crate) fn published(&self, app: &AppId, n: u64) {
        if let Some(counter) = self.published.read().unwrap_or_else(|e| e.into_inner()).get(app) {
            counter.increment(n);
            return;
        }
        let key = Key::from_parts("herald_cp_messages_published_total", vec![Label::new("app", app.to_string())]);
        let counter = self.recorder.register_counter(&key, &META);
        counter.increment(n);
        let mut map = self.published.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_APP_SERIES {
            map.clear();
        }
        map.insert(app.clone(), counter);
    }

    /// Counts a failed publish by error code.
    pub(crate) fn publish_failed(&self, code: ErrorCode) {
        let key = Key::from_parts("herald_cp_publish_errors_total", vec![Label::new("code", code.name())]);
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// Records how long a publish took to be accepted.
    pub(crate) fn publish_latency(&self, d: Duration) {
        self.publish_latency.record(d.as_secs_f64());
    }

    /// Counts a minted token.
    pub(crate) fn token_minted(&self) {
        self.tokens_minted.increment(1);
    }

    /// Counts a connection closed because `max_http_connections` was reached.
    pub(crate) fn connection_refused(&self) {
        self.connections_refused.increment(1);
    }

    /// Counts a connection closed to protect the server, by the limit that
    /// closed it.
    pub(crate) fn connection_closed(&self, limit: &'static str) {
        let key = Key::from_parts("herald_cp_connections_closed_total", vec![Label::new("limit", limit)]);
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// Counts webhook deliveries queued, by event kind.
    pub(crate) fn webhook_queued(&self, kind: EventKind, n: usize) {
        let key = Key::from_parts("herald_cp_webhook_events_queued_total", vec![Label::new("kind", kind.as_str())]);
        self.recorder.register_counter(&key, &META).increment(n as u64);
    }

    /// Counts webhook deliveries dropped (outbox full, endpoint disabled),
    /// by event kind (`any` when several).
    pub(crate) fn webhook_dropped(&self, kind: &'static str, n: usize) {
        let key = Key::from_parts("herald_cp_webhook_events_dropped_total", vec![Label::new("kind", kind)]);
        self.recorder.register_counter(&key, &META).increment(n as u64);
    }

    /// Counts a webhook attempt by result (`delivered`, `retrying`,
    /// `failed`) and records its latency.
    pub(crate) fn webhook_attempt(&self, result: &'static str, latency: Duration) {
        let key = Key::from_parts("herald_cp_webhook_attempts_total", vec![Label::new("result", result)]);
        self.recorder.register_counter(&key, &META).increment(1);
        self.recorder
            .register_histogram(&Key::from_static_name("herald_cp_webhook_attempt_duration_seconds"), &META)
            .record(latency.as_secs_f64());
    }

    /// Sets the webhook backlog: deliveries queued over every app, and the
    /// age of the oldest undelivered event.
    pub(crate) fn webhook_backlog(&self, depth: i64, oldest_age: Duration) {
        self.recorder.register_gauge(&Key::from_static_name("herald_cp_webhook_queue_depth"), &META).set(depth as f64);
        self.recorder
            .register_gauge(&Key::from_static_name("herald_cp_webhook_oldest_undelivered_seconds"), &META)
            .set(oldest_age.as_secs_f64());
    }

    /// Counts usage batches stored now and resent ones not counted again.
    pub(crate) fn usage_batches(&self, stored: u64, duplicates: u64) {
        for (result, n) in [("stored", stored), ("duplicate", duplicates)] {
            if n > 0 {
                let key = Key::from_parts("herald_cp_usage_batches_total", vec![Label::new("result", result)]);
                self.recorder.register_counter(&key, &META).increment(n);
            }
        }
    }

    /// Sets how many apps are over a quota (as this replica last worked
    /// out).
    pub(crate) fn apps_over_quota(&self, n: usize) {
        self.recorder.register_gauge(&Key::from_static_name("herald_cp_apps_over_quota"), &META).set(n as f64);
    }

    /// Counts an API request and records its latency, by API (`rest`,
    /// `grpc`, `pusher`), route template and status.
    pub(crate) fn request(&self, api: &'static str, method: &str, route: &str, status: &str, latency: Duration) {
        use std::hash::BuildHasher as _;
        let labels = [api, method, route, status];
        let hash = self.hasher.hash_one(labels);
        let same = |s: &RequestSeries| s.labels.iter().map(|l| &**l).eq(labels);
        if let Some(series) = self.requests.read().unwrap_or_else(|e| e.into_inner()).get(&hash)
            && let Some(s) = series.iter().find(|s| same(s))
        {
            s.count.increment(1);
            s.duration.record(latency.as_secs_f64());
            return;
        }
        let count_labels = vec![
            Label::new("api", api),
            Label::new("method", method.to_owned()),
            Label::new("route", route.to_owned()),
            Label::new("status", status.to_owned()),
        ];
        let count = self.recorder.register_counter(&Key::from_parts("herald_cp_requests_total", count_labels), &META);
        let duration_labels = vec![Label::new("api", api), Label::new("route", route.to_owned())];
        let duration = self
            .recorder
            .register_histogram(&Key::from_parts("herald_cp_request_duration_seconds", duration_labels), &META);
        count.increment(1);
        duration.record(latency.as_secs_f64());
        let mut map = self.requests.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_REQUEST_SERIES {
            map.clear();
        }
        let series = map.entry(hash).or_default();
        if !series.iter().any(same) {
            series.push(RequestSeries { labels: labels.map(Box::from), count, duration });
        }
    }

    /// The Prometheus text exposition: this control plane's metrics, the
    /// process-wide ones (the bus's; in `herald dev`, the edge's too) and
    /// the process's (`process_*`, `herald_build_info`).
    pub(crate) fn render(&self) -> String {
        let mut page = self.handle.render();
        page.push_str(&herald_bus::telemetry::process_recorder().render());
        page.push_str(&herald_bus::telemetry::process_text());
        page
    }

    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}
