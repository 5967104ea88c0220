//! Webhook events over NATS: an edge's request ([`NatsBus::report_webhook_event`])
//! and the control plane's answering ([`NatsBus::serve_webhook_events`]),
//! one task per request under a bound.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use herald_proto::{AppId, SubjectSpace, bus};
use prost::Message as _;
use tokio::sync::Semaphore;

use super::NatsBus;
use crate::webhook_events::{self, BUSY};
use crate::{BusError, WebhookEventSink, lock};

/// The queue group of the control planes: each request goes to one of them.
const QUEUE_GROUP: &str = "herald-control-plane";

impl NatsBus {
    pub(crate) async fn serve_webhook_events(&self, sink: Arc<dyn WebhookEventSink>) -> Result<(), BusError> {
        self.check_connected()?;
        let mut requests = self
            .client
            .queue_subscribe(self.subjects.all_webhook_events(), QUEUE_GROUP.into())
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.sync().await?;
        let client = self.client.clone();
        let subjects = self.subjects.clone();
        let permits = Arc::new(Semaphore::new(self.options.request_concurrency.max(1)));
        let task = tokio::spawn(async move {
            while let Some(msg) = requests.next().await {
                let Some(reply) = msg.reply else {
                    tracing::debug!(subject = %msg.subject, "webhook event without a reply subject ignored");
                    continue;
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    metrics::counter!("herald_bus_webhook_events_busy_total").increment(1);
                    answer(&client, reply, BUSY).await;
                    continue;
                };
                let (client, subjects, sink) = (client.clone(), subjects.clone(), sink.clone());
                tokio::spawn(async move {
                    let error = match accept(&subjects, &msg.subject, msg.payload) {
                        Ok((app, event)) => match sink.store(app, event).await {
                            Ok(()) => String::new(),
                            Err(error) => {
                                tracing::debug!(subject = %msg.subject, %error, "webhook event not stored");
                                error
                            }
                        },
                        Err(error) => {
                            tracing::warn!(subject = %msg.subject, %error, "webhook event refused");
                            error
                        }
                    };
                    // Freed before the answer: whoever waited for it finds
                    // the room.
                    drop(permit);
                    answer(&client, reply, &error).await;
                });
            }
        });
        if let Some(old) = lock(&self.webhook_task).replace(task) {
            old.abort();
        }
        Ok(())
    }

    pub(crate) async fn report_webhook_event(&self, app: &AppId, event: &bus::WebhookEvent) -> Result<(), BusError> {
        use async_nats::RequestErrorKind;
        self.check_connected()?;
        let subject = self.subjects.webhook_events(app);
        let payload = Bytes::from(event.encode_to_vec());
        let reply = self
            .timed("the webhook event request", async {
                self.client.request(subject, payload).await.map_err(|e| match e.kind() {
                    RequestErrorKind::NoResponders => BusError::NoControlPlane,
                    RequestErrorKind::TimedOut => BusError::Timeout { what: "the webhook event request" },
                    _ => BusError::Unavailable(format!("webhook event request: {e}")),
                })
            })
            .await?;
        let reply = bus::WebhookEventReply::decode(reply.payload)
            .map_err(|e| BusError::Failed(format!("undecodable webhook event reply: {e}")))?;
        if reply.error.is_empty() {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!("webhook event not stored: {}", reply.error)))
        }
    }
}

/// The app and event of a request on `subject`, when acceptable.
fn accept(subjects: &SubjectSpace, subject: &str, payload: Bytes) -> Result<(AppId, bus::WebhookEvent), String> {
    let app = subjects
        .parse_webhook_events(subject)
        .ok_or_else(|| "webhook event: the subject names no valid app".to_owned())?;
    let event = bus::WebhookEvent::decode(payload).map_err(|e| format!("webhook event: undecodable: {e}"))?;
    webhook_events::check(&app, &event)?;
    Ok((app, event))
}

/// Sends the reply to a webhook event: empty `error` when it was stored.
async fn answer(client: &async_nats::Client, reply: async_nats::Subject, error: &str) {
    let body = bus::WebhookEventReply { error: error.to_owned() };
    if let Err(e) = client.publish(reply, Bytes::from(body.encode_to_vec())).await {
        tracing::warn!(error = %e, "webhook event reply not sent");
    }
}
