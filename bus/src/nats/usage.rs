//! Usage reports over NATS: a node's request ([`NatsBus::report_usage`])
//! and the control plane's answering ([`NatsBus::serve_usage`]), one task
//! per request under a bound.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use herald_proto::bus;
use prost::Message as _;
use tokio::sync::Semaphore;

use super::NatsBus;
use crate::usage::{self, BUSY};
use crate::{BusError, UsageSink, lock};

/// The queue group of the control planes: each report goes to one of them.
const QUEUE_GROUP: &str = "herald-control-plane";

impl NatsBus {
    pub(crate) async fn serve_usage(&self, sink: Arc<dyn UsageSink>) -> Result<(), BusError> {
        self.check_connected()?;
        let mut requests = self
            .client
            .queue_subscribe(self.subjects.usage(), QUEUE_GROUP.into())
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.sync().await?;
        let client = self.client.clone();
        let permits = Arc::new(Semaphore::new(self.options.request_concurrency.max(1)));
        let task = tokio::spawn(async move {
            while let Some(msg) = requests.next().await {
                let Some(reply) = msg.reply else {
                    tracing::debug!("usage report without a reply subject ignored");
                    continue;
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    metrics::counter!("herald_bus_usage_reports_busy_total").increment(1);
                    answer(&client, reply, BUSY).await;
                    continue;
                };
                let (client, sink) = (client.clone(), sink.clone());
                tokio::spawn(async move {
                    let error = match accept(msg.payload) {
                        Ok(report) => match sink.store(report).await {
                            Ok(()) => String::new(),
                            Err(error) => {
                                tracing::debug!(%error, "usage report not stored");
                                error
                            }
                        },
                        Err(error) => {
                            tracing::warn!(%error, "usage report refused");
                            error
                        }
                    };
                    drop(permit);
                    answer(&client, reply, &error).await;
                });
            }
        });
        if let Some(old) = lock(&self.usage_task).replace(task) {
            old.abort();
        }
        Ok(())
    }

    pub(crate) async fn report_usage(&self, report: &bus::UsageReport) -> Result<(), BusError> {
        use async_nats::RequestErrorKind;
        self.check_connected()?;
        let payload = Bytes::from(report.encode_to_vec());
        let reply = self
            .timed("the usage report", async {
                self.client.request(self.subjects.usage(), payload).await.map_err(|e| match e.kind() {
                    RequestErrorKind::NoResponders => BusError::NoControlPlane,
                    RequestErrorKind::TimedOut => BusError::Timeout { what: "the usage report" },
                    _ => BusError::Unavailable(format!("usage report: {e}")),
                })
            })
            .await?;
        let reply = bus::UsageReportReply::decode(reply.payload)
            .map_err(|e| BusError::Failed(format!("undecodable usage report reply: {e}")))?;
        if reply.error.is_empty() {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!("usage report not stored: {}", reply.error)))
        }
    }
}

/// The report of a request, when acceptable.
fn accept(payload: Bytes) -> Result<bus::UsageReport, String> {
    let report = bus::UsageReport::decode(payload).map_err(|e| format!("usage report: undecodable: {e}"))?;
    usage::check(&report)?;
    Ok(report)
}

/// Sends the reply to a usage report: empty `error` when it was stored.
async fn answer(client: &async_nats::Client, reply: async_nats::Subject, error: &str) {
    let body = bus::UsageReportReply { error: error.to_owned() };
    if let Err(e) = client.publish(reply, Bytes::from(body.encode_to_vec())).await {
        tracing::warn!(error = %e, "usage report reply not sent");
    }
}
