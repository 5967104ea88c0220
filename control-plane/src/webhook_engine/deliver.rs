//! Sends queued deliveries.
//!
//! One task per replica looks for due deliveries when events were queued
//! here and every `webhook_poll_interval` (for other replicas' events and
//! retries). It asks per endpoint — so one endpoint's backlog never hides
//! another's — for the heads of its channels (a delivery is due only when
//! no earlier one of the same endpoint and channel is left: per-channel
//! order), and leases each before sending it (a compare-and-set: of
//! several replicas one wins; a replica that dies mid-delivery lets the
//! lease run out and the next sends it again, with the same event id).
//! At most `webhook_concurrency` requests are in flight per replica, and
//! `webhook_endpoint_concurrency` per endpoint, so a slow endpoint holds
//! only its own share.
//!
//! An answer of 2xx delivers; 408, 429, 5xx, timeouts and connection
//! errors are retried with exponential backoff (1 s doubling to 5 min,
//! ±25 % jitter) until the format's retry window since the event ran out;
//! any other answer is final. Each attempt is logged on the endpoint; a
//! failure marks it `failing`, a success `active` again, and an endpoint
//! failing for `webhook_disable_after` is disabled with its reason.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use herald_bus::now_ms;
use herald_proto::webhook::Format;
use rand::Rng;
use tokio::sync::Semaphore;

use crate::core::Core;
use crate::store::{Attempt, Delivery, Outcome, StoreError, Webhook, WebhookStatus};
use crate::webhooks::body;
use crate::webhooks::http::{Answer, SendError};

/// The first retry's delay.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest delay between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// A lease outlives the request's timeout by this much.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How an attempt ended.
struct Result {
    status: Option<u16>,
    error: Option<String>,
    /// Whether another attempt may succeed.
    retry: bool,
    latency: Duration,
}

impl Result {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

fn classify(answer: std::result::Result<Answer, SendError>, latency: Duration) -> Result {
    match answer {
        Ok(a) if (200..300).contains(&a.status) => {
            Result { status: Some(a.status), error: None, retry: false, latency }
        }
        Ok(a) => {
            let retry = a.status == 408 || a.status == 429 || a.status >= 500;
            let mut error = format!("HTTP {}", a.status);
            let text = a.body.trim();
            if !text.is_empty() {
                error.push_str(": ");
                error.push_str(text);
            }
            Result { status: Some(a.status), error: Some(error), retry, latency }
        }
        Err(e @ SendError::Refused(_)) => Result { status: None, error: Some(e.to_string()), retry: false, latency },
        Err(e) => Result { status: None, error: Some(e.to_string()), retry: true, latency },
    }
}

/// The delay before attempt `attempts + 1`.
fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    let base = FIRST_RETRY.saturating_mul(2u32.saturating_pow(exp)).min(MAX_RETRY);
    let jitter = rand::rng().random_range(0.75..1.25);
    base.mul_f64(jitter)
}

/// What this replica is sending: per endpoint how many, and which rows
/// (leased, or being leased).
#[derive(Default)]
struct Busy {
    per_endpoint: HashMap<String, usize>,
    seqs: HashSet<i64>,
}

fn lock(busy: &Mutex<Busy>) -> std::sync::MutexGuard<'_, Busy> {
    busy.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) async fn run(core: Weak<Core>) {
    let (concurrency, per_endpoint, poll) = match core.upgrade() {
        Some(c) => {
            (c.config.webhook_concurrency, c.config.webhook_endpoint_concurrency, c.config.webhook_poll_interval.0)
        }
        None => return,
    };
    let slots = Arc::new(Semaphore::new(concurrency));
    let busy: Arc<Mutex<Busy>> = Arc::default();
    loop {
        {
            let Some(c) = core.upgrade() else { return };
            let queued = async move { c.webhooks.queued.notified().await };
            tokio::select! {
                () = queued => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        let Some(c) = core.upgrade() else { return };
        if let Err(e) = start_due(&c, &slots, &busy, per_endpoint).await {
            tracing::warn!(error = %e, "due webhook deliveries not read");
        }
    }
}

/// Starts what is due, fairly over endpoints: each delivery in a task of
/// its own that leases it, sends it and records the attempt.
async fn start_due(
    core: &Arc<Core>,
    slots: &Arc<Semaphore>,
    busy: &Arc<Mutex<Busy>>,
    per_endpoint: usize,
) -> std::result::Result<(), StoreError> {
    let now = now_ms();
    let endpoints = core.store.due_webhook_endpoints(now).await?;
    for webhook_id in endpoints {
        let held = lock(busy).per_endpoint.get(&webhook_id).copied().unwrap_or(0);
        if held >= per_endpoint {
            continue;
        }
        // Rows being leased here may still look due: ask for them too.
        let limit = i64::try_from(per_endpoint).unwrap_or(i64::MAX);
        let due = core.store.due_webhook_deliveries(&webhook_id, now, limit).await?;
        for seq in due {
            {
                let mut b = lock(busy);
                if b.seqs.contains(&seq) {
                    continue;
                }
                if b.per_endpoint.get(&webhook_id).copied().unwrap_or(0) >= per_endpoint {
                    break;
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else { return Ok(()) };
                *b.per_endpoint.entry(webhook_id.clone()).or_default() += 1;
                b.seqs.insert(seq);
                let (core, busy, id) = (core.clone(), busy.clone(), webhook_id.clone());
                tokio::spawn(async move {
                    lease_and_send(&core, seq).await;
                    {
                        let mut b = lock(&busy);
                        b.seqs.remove(&seq);
                        if let Some(n) = b.per_endpoint.get_mut(&id) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                b.per_endpoint.remove(&id);
                            }
                        }
                    }
                    drop(permit);
                    // A slot is free: what waited for it may go.
                    core.webhooks.queued.notify_one();
                });
            }
        }
    }
    Ok(())
}

/// Leases delivery `seq` (another replica may have it) and sends it.
async fn lease_and_send(core: &Arc<Core>, seq: i64) {
    let until =
        now_ms() + i64::try_from((core.config.webhook_timeout.0 + LEASE_MARGIN).as_millis()).unwrap_or(i64::MAX);
    match core.store.claim_webhook_delivery(seq, &core.webhooks.owner, now_ms(), until).await {
        Ok(Some(delivery)) => attempt(core, delivery).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "webhook delivery not leased"),
    }
}

/// The request of a delivery to `webhook`; an error when it cannot be
/// built (no Pusher secret).
async fn request(core: &Core, webhook: &Webhook, d: &Delivery) -> std::result::Result<body::Request, String> {
    match webhook.format {
        Format::Herald => {
            let now = now_ms();
            let secrets = webhook.signing_secrets(now);
            Ok(body::herald_delivery(d, &secrets, now / 1000))
        }
        Format::Pusher => {
            let secret = pusher_secret(core, &d.app_id).await?;
            Ok(body::pusher_delivery(d, &secret))
        }
    }
}

/// The secret Pusher-format webhooks of `app` are signed with: that of its
/// newest active key with a Pusher secret.
async fn pusher_secret(core: &Core, app: &herald_proto::AppId) -> std::result::Result<String, String> {
    let keys = core.auth.pusher_keys(app).await.map_err(|e| format!("Pusher secret not read: {e}"))?;
    keys.iter()
        .rev()
        .find_map(|k| k.pusher_secret.clone())
        .ok_or_else(|| "the app has no active API key with a Pusher secret to sign Pusher webhooks".to_owned())
}

/// One attempt of a leased delivery, and its bookkeeping.
async fn attempt(core: &Arc<Core>, d: Delivery) {
    let started = now_ms();
    let webhook = match core.store.get_webhook(&d.app_id, &d.webhook_id).await {
        Ok(Some(w)) => w,
        // Deleted meanwhile: its rows went with it.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "webhook endpoint not read; the delivery waits for its lease");
            return;
        }
    };
    let result = match request(core, &webhook, &d).await {
        Ok(req) => {
            let (answer, latency) = core.webhooks.client.post(&webhook.url, &req.headers, req.body).await;
            classify(answer, latency)
        }
        Err(error) => Result { status: None, error: Some(error), retry: true, latency: Duration::ZERO },
    };
    let window = match webhook.format {
        Format::Herald => core.config.webhook_retry_window.0,
        Format::Pusher => core.config.webhook_pusher_retry_window.0,
    };
    let now = now_ms();
    let outcome = if result.delivered() {
        Outcome::Delivered
    } else {
        let next = now + i64::try_from(backoff(d.attempts).as_millis()).unwrap_or(i64::MAX);
        let deadline = d.occurred_at_ms.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        if result.retry && next <= deadline { Outcome::Retry(next) } else { Outcome::Failed }
    };
    let label = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry(_) => "retrying",
        Outcome::Failed => "failed",
    };
    core.metrics.webhook_attempt(label, result.latency);
    match outcome {
        Outcome::Delivered => core.usage.counters(&d.app_id).webhook(true),
        Outcome::Failed => core.usage.counters(&d.app_id).webhook(false),
        Outcome::Retry(_) => {}
    }
    core.tap.emit(d.app_id.as_str(), "", |_| {
        herald_proto::bus::debug_event::Kind::Webhook(herald_proto::bus::DebugWebhook {
            endpoint_id: webhook.id.to_string(),
            event_type: d.kind.as_str().to_owned(),
            status: result.status.map_or(0, u32::from),
            latency_ms: u32::try_from(result.latency.as_millis()).unwrap_or(u32::MAX),
            error: result.error.clone().unwrap_or_default(),
            ok: result.delivered(),
        })
    });
    if let Some(error) = &result.error {
        tracing::info!(webhook = %webhook.id, event = %d.event_id, attempt = d.attempts, outcome = label, error, "webhook not delivered");
    }
    let logged = Attempt {
        event_id: d.event_id.clone(),
        kind: d.kind.as_str().to_owned(),
        channel: d.channel.clone(),
        attempt: d.attempts,
        at_ms: started,
        status: result.status,
        latency_ms: i64::try_from(result.latency.as_millis()).unwrap_or(i64::MAX),
        error: result.error.clone(),
        outcome: label.to_owned(),
    };
    let log_size = core.config.webhook_log_size;
    if let Err(e) = core
        .store
        .finish_webhook_delivery(
            &d,
            &core.webhooks.owner,
            &outcome,
            &logged,
            log_size,
            webhook.status == WebhookStatus::Failing,
        )
        .await
    {
        tracing::warn!(error = %e, "webhook attempt not recorded; the delivery is tried again after its lease");
        return;
    }
    if !result.delivered() {
        let cutoff = now - i64::try_from(core.config.webhook_disable_after.0.as_millis()).unwrap_or(i64::MAX);
        let reason = format!(
            "disabled after failing for {}: {}",
            core.config.webhook_disable_after,
            result.error.as_deref().unwrap_or("failed")
        );
        match core.store.disable_failing_webhook(&webhook.id, cutoff, &reason, now).await {
            Ok(Some(dropped)) => {
                tracing::warn!(webhook = %webhook.id, app = %webhook.app_id, dropped, "webhook endpoint disabled");
                core.metrics.webhook_dropped("any", usize::try_from(dropped).unwrap_or(usize::MAX));
                core.webhooks.changed();
                core.notify(herald_proto::bus::control_event::Kind::NamespacesChanged(
                    herald_proto::bus::NamespacesChanged { app_id: webhook.app_id.to_string() },
                ))
                .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "failing webhook endpoint not checked"),
        }
    }
}

/// What a test send of an endpoint got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test event's id.
    pub event_id: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// How long it took, in ms.
    pub latency_ms: i64,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Sends a test event to `webhook` now (once, no retries) and logs it:
/// Herald format, a `webhook_test` event on channel `""`; Pusher format, a
/// validly signed body with no events.
///
/// # Errors
///
/// The store's, when the attempt cannot be logged.
pub async fn send_test(core: &Core, webhook: &Webhook) -> std::result::Result<TestResult, StoreError> {
    let event_id = crate::webhooks::new_event_id();
    let now = now_ms();
    let request = match webhook.format {
        Format::Herald => {
            let secrets = webhook.signing_secrets(now);
            Ok(body::herald(
                &event_id,
                body::TEST_KIND,
                webhook.app_id.as_str(),
                "",
                now,
                "{}",
                1,
                &secrets,
                now / 1000,
            ))
        }
        Format::Pusher => pusher_secret(core, &webhook.app_id)
            .await
            .map(|secret| body::pusher(now, Vec::new(), webhook.app_id.as_str(), &secret, 1, &event_id)),
    };
    let result = match request {
        Ok(req) => {
            let (answer, latency) = core.webhooks.client.post(&webhook.url, &req.headers, req.body).await;
            classify(answer, latency)
        }
        Err(error) => Result { status: None, error: Some(error), retry: false, latency: Duration::ZERO },
    };
    let latency_ms = i64::try_from(result.latency.as_millis()).unwrap_or(i64::MAX);
    let logged = Attempt {
        event_id: event_id.clone(),
        kind: body::TEST_KIND.to_owned(),
        channel: String::new(),
        attempt: 1,
        at_ms: now,
        status: result.status,
        latency_ms,
        error: result.error.clone(),
        outcome: "test".to_owned(),
    };
    core.store.log_webhook_test(&webhook.id, &logged, core.config.webhook_log_size).await?;
    Ok(TestResult { event_id, status: result.status, latency_ms, error: result.error })
}

/// Keeps the backlog gauges current (every few seconds).
pub(super) async fn watch_backlog(core: Weak<Core>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = core.upgrade() else { return };
        match c.store.webhook_backlog().await {
            Ok((depth, oldest)) => {
                let age = oldest.map_or(0, |t| now_ms().saturating_sub(t));
                c.metrics.webhook_backlog(depth, Duration::from_millis(u64::try_from(age).unwrap_or(0)));
            }
            Err(e) => tracing::debug!(error = %e, "webhook backlog not read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_minutes() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(750) && first <= Duration::from_millis(1250), "{first:?}");
            let third = backoff(3);
            assert!(third >= Duration::from_secs(3) && third <= Duration::from_secs(5), "{third:?}");
            assert!(backoff(40) <= MAX_RETRY.mul_f64(1.25));
        }
    }

    #[test]
    fn answers_are_classified() {
        let ok = classify(Ok(Answer { status: 204, body: String::new() }), Duration::ZERO);
        assert!(ok.delivered());
        for (status, retry) in [(500, true), (503, true), (429, true), (408, true), (400, false), (410, false)] {
            let r = classify(Ok(Answer { status, body: "nope".into() }), Duration::ZERO);
            assert_eq!(r.retry, retry, "{status}");
            assert!(!r.delivered());
            assert_eq!(r.error.as_deref(), Some(format!("HTTP {status}: nope").as_str()));
        }
        assert!(classify(Err(SendError::Timeout(Duration::from_secs(5))), Duration::ZERO).retry);
        assert!(!classify(Err(SendError::Refused("private".into())), Duration::ZERO).retry);
    }
}
