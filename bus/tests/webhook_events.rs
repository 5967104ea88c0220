//! Webhook events reported by edges reach the control plane's sink, in
//! process and over a real NATS server (a fresh subject prefix per test):
//! stored once answered, refused when they do not belong to the subject's
//! app, answered "busy" past the concurrency bound.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use herald_bus::webhook_events::BUSY;
use herald_bus::{Bus, BusError, LocalBus, NatsOptions, WebhookEventSink};
use herald_proto::{AppId, SubjectSpace, bus};
use prost::Message as _;
use tokio::sync::{Notify, Semaphore};

const LIMIT: Duration = Duration::from_secs(10);

fn nats_url() -> String {
    std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn unique_subjects() -> SubjectSpace {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    SubjectSpace::new(&format!("whtest{}x{nanos}", std::process::id())).expect("prefix")
}

async fn nats(subjects: &SubjectSpace, options: NatsOptions) -> Bus {
    Bus::connect_nats(&nats_url(), subjects.clone(), options).await.expect("connect to nats")
}

fn app() -> AppId {
    AppId::new("app1").expect("app")
}

fn event(id: &str) -> bus::WebhookEvent {
    bus::WebhookEvent {
        id: id.to_owned(),
        app_id: "app1".into(),
        channel: "private-room".into(),
        kind: "client_event".into(),
        event: "client-typing".into(),
        data: Bytes::from_static(br#"{"x":1}"#),
        connection_id: "1.2".into(),
        user_id: String::new(),
        timestamp_ms: 1,
    }
}

/// Stores into a list; fails its first `failures` calls; while `gate` has no
/// permit, waits in `store` (after telling `entered`).
#[derive(Default)]
struct VecSink {
    stored: Mutex<Vec<(AppId, bus::WebhookEvent)>>,
    calls: Mutex<usize>,
    failures: usize,
    gate: Option<Arc<Semaphore>>,
    entered: Arc<Notify>,
}

impl VecSink {
    fn stored(&self) -> Vec<(AppId, bus::WebhookEvent)> {
        self.stored.lock().expect("stored").clone()
    }
}

impl WebhookEventSink for VecSink {
    fn store(&self, app: AppId, event: bus::WebhookEvent) -> BoxFuture<'static, Result<(), String>> {
        let call = {
            let mut calls = self.calls.lock().expect("calls");
            *calls += 1;
            *calls
        };
        if call <= self.failures {
            return Box::pin(async move { Err(format!("store failed (call {call})")) });
        }
        self.stored.lock().expect("stored").push((app, event));
        self.entered.notify_one();
        let gate = self.gate.clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.acquire().await.map_err(|e| e.to_string())?.forget();
            }
            Ok(())
        })
    }
}

/// What every bus does with reports.
async fn reports_are_stored_or_refused(serving: &Bus, reporting: &Bus) {
    let sink = Arc::new(VecSink::default());
    serving.serve_webhook_events(sink.clone()).await.expect("serve");
    reporting.report_webhook_event(&app(), &event("ev_1")).await.expect("stored");
    let stored = sink.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, app());
    assert_eq!(stored[0].1, event("ev_1"), "every field arrives as sent");

    // An event of another app, sent on this app's subject, never reaches
    // the sink.
    let foreign = bus::WebhookEvent { app_id: "app2".into(), ..event("ev_2") };
    let refused = reporting.report_webhook_event(&app(), &foreign).await.expect_err("refused");
    assert!(matches!(&refused, BusError::Failed(e) if e.contains("app_id")), "{refused:?}");
    let bad_kind = bus::WebhookEvent { kind: "channel_occupied".into(), ..event("ev_3") };
    let refused = reporting.report_webhook_event(&app(), &bad_kind).await.expect_err("refused");
    assert!(matches!(&refused, BusError::Failed(e) if e.contains("kind")), "{refused:?}");
    assert_eq!(sink.stored().len(), 1);
}

/// What every bus does when the sink fails.
async fn store_errors_come_back(serving: &Bus, reporting: &Bus) {
    let sink = Arc::new(VecSink { failures: 1, ..Default::default() });
    serving.serve_webhook_events(sink.clone()).await.expect("serve");
    let error = reporting.report_webhook_event(&app(), &event("ev_1")).await.expect_err("not stored");
    assert!(matches!(&error, BusError::Unavailable(e) if e.contains("store failed")), "{error:?}");
    assert!(error.is_transient(), "worth retrying: {error:?}");
    // The same event again: stored now.
    reporting.report_webhook_event(&app(), &event("ev_1")).await.expect("stored on retry");
    assert_eq!(sink.stored().len(), 1);
}

#[tokio::test]
async fn in_process_reports_are_stored_or_refused() {
    let local = LocalBus::new();
    reports_are_stored_or_refused(&Bus::local(&local), &Bus::local(&local)).await;
}

#[tokio::test]
async fn in_process_store_errors_come_back() {
    let local = LocalBus::new();
    store_errors_come_back(&Bus::local(&local), &Bus::local(&local)).await;
}

#[tokio::test]
async fn in_process_without_a_control_plane() {
    let bus = Bus::local(&LocalBus::new());
    assert_eq!(bus.report_webhook_event(&app(), &event("ev_1")).await, Err(BusError::NoControlPlane));
}

#[tokio::test]
async fn over_nats_reports_are_stored_or_refused() {
    let subjects = unique_subjects();
    let serving = nats(&subjects, NatsOptions::default()).await;
    let reporting = nats(&subjects, NatsOptions::default()).await;
    reports_are_stored_or_refused(&serving, &reporting).await;
}

#[tokio::test]
async fn over_nats_store_errors_come_back() {
    let subjects = unique_subjects();
    let serving = nats(&subjects, NatsOptions::default()).await;
    let reporting = nats(&subjects, NatsOptions::default()).await;
    store_errors_come_back(&serving, &reporting).await;
}

#[tokio::test]
async fn over_nats_without_a_control_plane() {
    let bus = nats(&unique_subjects(), NatsOptions::default()).await;
    assert_eq!(bus.report_webhook_event(&app(), &event("ev_1")).await, Err(BusError::NoControlPlane));
}

/// A sender that skips the bus's own checks (an old or foreign edge) is
/// answered with what is wrong, and the sink never sees the event.
#[tokio::test]
async fn over_nats_the_serving_side_refuses_what_is_not_the_subjects_apps() {
    let subjects = unique_subjects();
    let serving = nats(&subjects, NatsOptions::default()).await;
    let sink = Arc::new(VecSink::default());
    serving.serve_webhook_events(sink.clone()).await.expect("serve");
    let raw = async_nats::connect(nats_url()).await.expect("connect");
    let ask = |payload: Bytes| {
        let raw = raw.clone();
        let subject = subjects.webhook_events(&app());
        async move {
            let reply =
                tokio::time::timeout(LIMIT, raw.request(subject, payload)).await.expect("in time").expect("reply");
            bus::WebhookEventReply::decode(reply.payload).expect("decodes").error
        }
    };
    let foreign = bus::WebhookEvent { app_id: "app2".into(), ..event("ev_1") };
    let error = ask(Bytes::from(foreign.encode_to_vec())).await;
    assert!(error.contains("app_id"), "{error}");
    let error = ask(Bytes::from_static(b"\xff\xff\xff")).await;
    assert!(error.contains("undecodable"), "{error}");
    assert_eq!(ask(Bytes::from(event("ev_2").encode_to_vec())).await, "", "a good one is stored");
    let stored = sink.stored();
    assert_eq!(stored.iter().map(|(_, e)| e.id.as_str()).collect::<Vec<_>>(), ["ev_2"]);
}

/// Past `request_concurrency` events being stored at once, the next is
/// answered busy at once (the edge retries) instead of waiting.
#[tokio::test]
async fn over_nats_a_full_control_plane_answers_busy() {
    let subjects = unique_subjects();
    let options = NatsOptions { request_concurrency: 1, ..NatsOptions::default() };
    let serving = nats(&subjects, options).await;
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(VecSink { gate: Some(gate.clone()), ..Default::default() });
    serving.serve_webhook_events(sink.clone()).await.expect("serve");
    let reporting = nats(&subjects, NatsOptions::default()).await;
    let first = {
        let reporting = reporting.clone();
        tokio::spawn(async move { reporting.report_webhook_event(&app(), &event("ev_1")).await })
    };
    tokio::time::timeout(LIMIT, sink.entered.notified()).await.expect("the first event is being stored");
    let busy = reporting.report_webhook_event(&app(), &event("ev_2")).await.expect_err("busy");
    assert!(matches!(&busy, BusError::Unavailable(e) if e.contains(BUSY)), "{busy:?}");
    gate.add_permits(1);
    tokio::time::timeout(LIMIT, first).await.expect("in time").expect("task").expect("first stored");
    gate.add_permits(1);
    reporting.report_webhook_event(&app(), &event("ev_2")).await.expect("stored once there is room");
}

/// Two control planes share the requests: each event is stored once.
#[tokio::test]
async fn over_nats_each_event_goes_to_one_control_plane() {
    let subjects = unique_subjects();
    let sink = Arc::new(VecSink::default());
    let first = nats(&subjects, NatsOptions::default()).await;
    let second = nats(&subjects, NatsOptions::default()).await;
    first.serve_webhook_events(sink.clone()).await.expect("serve");
    second.serve_webhook_events(sink.clone()).await.expect("serve");
    let reporting = nats(&subjects, NatsOptions::default()).await;
    for i in 0..20 {
        reporting.report_webhook_event(&app(), &event(&format!("ev_{i}"))).await.expect("stored");
    }
    let mut ids: Vec<String> = sink.stored().into_iter().map(|(_, e)| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    assert_eq!(sink.stored().len(), 20, "none stored twice");
}
