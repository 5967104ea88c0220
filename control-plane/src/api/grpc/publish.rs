//! gRPC `PublishService`: `Publish`, `PublishBatch` and `PublishStream`.
//! A batch whose messages are all for one app is published as a REST batch
//! is; one that mixes apps, message by message.
//! A stream's messages are published as they arrive, up to
//! `max_publishes_in_flight` at once, and every result is answered when
//! the stream ends. A stream that breaks (reset, or past the time bounds
//! of [`super::deadline`]) fails the call once the messages received are
//! published, without their results.

use futures_util::StreamExt as _;
use herald_proto::api::publish_service_server::PublishService;
use herald_proto::api::{self as pb, publish_result};
use tonic::{Request, Response as GrpcResponse, Status, Streaming};

use super::Grpc;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::publish::{InOrder, Prepared, Published, channel_key};
use crate::services::Draft;
use crate::services::limits::EffectiveLimits;
use crate::services::publish::message_channels;
use crate::store::ApiKey;

impl Grpc {
    async fn publish_one(&self, who: &Principal, m: pb::PublishRequest) -> Result<pb::PublishResponse, ApiError> {
        let (app, key, limits) = self.core.publish_context(who, &m.app_id).await?;
        let msg = self.prepare(key, &limits, m)?;
        let published = self.core.publish_one(&app, &limits, msg, herald_bus::usage::Source::Grpc).await?;
        Ok(publish_response(published))
    }

    /// A batch whose messages are all for one app, published as a REST
    /// batch is (plain messages handed to the bus together,
    /// [`crate::publish::Publisher::publish_many`]); one result per message.
    async fn publish_same_app(&self, who: &Principal, messages: Vec<pb::PublishRequest>) -> Vec<pb::PublishResult> {
        let app_id = messages.first().map(|m| m.app_id.clone()).unwrap_or_default();
        let (app, key, limits) = match self.core.publish_context(who, &app_id).await {
            Ok(context) => context,
            Err(e) => return messages.iter().map(|_| result(Err(e.clone()))).collect(),
        };
        let items = messages.into_iter().map(|m| self.prepare(key, &limits, m)).collect();
        let published = self.core.publish_many(&app, &limits, items, herald_bus::usage::Source::Grpc).await;
        published.into_iter().map(|r| result(r.map(publish_response))).collect()
    }

    /// Validates one request's channels and message for its app.
    fn prepare(
        &self,
        key: Option<&ApiKey>,
        limits: &EffectiveLimits,
        m: pb::PublishRequest,
    ) -> Result<Prepared, ApiError> {
        let channel = (!m.channel.is_empty()).then_some(m.channel.as_str());
        let channels = (!m.channels.is_empty()).then_some(m.channels.as_slice());
        let channels = message_channels(channel, channels)?;
        let draft = Draft {
            data: m.data,
            event: m.event,
            idempotency_id: m.idempotency_id,
            exclude_connection: m.exclude_connection,
        };
        self.core.prepare(key, limits, &channels, draft)
    }
}

fn publish_response(p: Published) -> pb::PublishResponse {
    match (p.channels, p.positions.as_slice()) {
        (1, [(_, pos)]) => pb::PublishResponse {
            id: p.id,
            seq: Some(pos.seq),
            position: Some(pb::HistoryPosition { seq: pos.seq, epoch: pos.epoch.clone() }),
            positions: Vec::new(),
        },
        _ => pb::PublishResponse {
            id: p.id,
            seq: None,
            position: None,
            positions: p
                .positions
                .into_iter()
                .map(|(c, pos)| pb::ChannelPosition { channel: c.to_string(), seq: pos.seq, epoch: pos.epoch })
                .collect(),
        },
    }
}

/// The channels a request publishes to, as ordering keys.
fn order_keys(m: &pb::PublishRequest) -> Vec<String> {
    let mut keys: Vec<String> = m.channels.iter().map(|c| channel_key(&m.app_id, c)).collect();
    if !m.channel.is_empty() {
        keys.push(channel_key(&m.app_id, &m.channel));
    }
    keys
}

fn result(r: Result<pb::PublishResponse, ApiError>) -> pb::PublishResult {
    pb::PublishResult {
        result: Some(match r {
            Ok(ok) => publish_result::Result::Ok(ok),
            Err(e) => publish_result::Result::Error(pb::ApiError {
                code: e.code.name().to_owned(),
                message: e.message.into_owned(),
            }),
        }),
    }
}

#[tonic::async_trait]
impl PublishService for Grpc {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Result<GrpcResponse<pb::PublishResponse>, Status> {
        let who = self.caller(&req).await?;
        Ok(GrpcResponse::new(self.publish_one(&who, req.into_inner()).await?))
    }

    async fn publish_batch(
        &self,
        req: Request<pb::PublishBatchRequest>,
    ) -> Result<GrpcResponse<pb::PublishBatchResponse>, Status> {
        let who = self.caller(&req).await?;
        let messages = req.into_inner().messages;
        self.core.check_batch(messages.len())?;
        if let Some(first) = messages.first()
            && messages.iter().all(|m| m.app_id == first.app_id)
        {
            let results = self.publish_same_app(&who, messages).await;
            return Ok(GrpcResponse::new(pb::PublishBatchResponse { results }));
        }
        let mut results = Vec::with_capacity(messages.len());
        let mut in_order = InOrder::new(self.core.config.max_publishes_in_flight);
        for m in messages {
            in_order.push(order_keys(&m), self.publish_one(&who, m), &mut results).await;
        }
        in_order.drain(&mut results).await;
        let results = results.into_iter().map(result).collect();
        Ok(GrpcResponse::new(pb::PublishBatchResponse { results }))
    }

    async fn publish_stream(
        &self,
        req: Request<Streaming<pb::PublishRequest>>,
    ) -> Result<GrpcResponse<pb::PublishBatchResponse>, Status> {
        let who = self.caller(&req).await?;
        let mut stream = req.into_inner();
        let max = self.core.config.max_stream_messages;
        let in_flight = self.core.config.max_publishes_in_flight;
        let mut in_order = InOrder::new(in_flight);
        let mut results = Vec::new();
        let mut count = 0usize;
        let mut open = true;
        while open || !in_order.is_empty() {
            tokio::select! {
                Some(r) = in_order.next(), if !in_order.is_empty() => results.push(r),
                next = stream.next(), if open => match next {
                    Some(Ok(m)) => {
                        count += 1;
                        if count > max {
                            open = false;
                            in_order.drain(&mut results).await;
                            results.push(Err(ApiError::limit_exceeded(format!(
                                "the stream carried more than {max} messages; the rest were not read"
                            ))));
                        } else {
                            in_order.push(order_keys(&m), self.publish_one(&who, m), &mut results).await;
                        }
                    }
                    Some(Err(status)) => {
                        // The stream broke (reset, or too slow): the
                        // messages received are still published, not
                        // cut off mid-way, before the call fails.
                        in_order.drain(&mut results).await;
                        return Err(status);
                    }
                    None => open = false,
                },
            }
        }
        let results = results.into_iter().map(result).collect();
        Ok(GrpcResponse::new(pb::PublishBatchResponse { results }))
    }
}
