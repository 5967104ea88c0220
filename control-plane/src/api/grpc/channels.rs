//! gRPC `ChannelService`: occupied channels and channel history (API key).

use herald_proto::api::channel_service_server::ChannelService;
use herald_proto::api::{self as pb};
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;

#[tonic::async_trait]
impl ChannelService for Grpc {
    async fn list_channels(
        &self,
        req: Request<pb::ListChannelsRequest>,
    ) -> Result<GrpcResponse<pb::ListChannelsResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let prefix = (!r.prefix.is_empty()).then_some(r.prefix.as_str());
        let occupancy = self.core.occupied_channels(&who, &r.app_id, prefix).await?;
        Ok(GrpcResponse::new(pb::ListChannelsResponse {
            truncated: occupancy.truncated,
            channels: occupancy
                .channels
                .into_iter()
                .map(|(name, subscribers)| pb::ChannelInfo { name: name.to_string(), subscribers })
                .collect(),
        }))
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<GrpcResponse<pb::GetHistoryResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let limit = (r.limit != 0).then_some(r.limit as usize);
        let epoch = (!r.epoch.is_empty()).then_some(r.epoch.as_str());
        let h = self.core.history(&who, &r.app_id, &r.channel, r.since, limit, epoch).await?;
        Ok(GrpcResponse::new(pb::GetHistoryResponse {
            channel: h.channel.to_string(),
            epoch: h.epoch,
            messages: h
                .messages
                .into_iter()
                .map(|m| pb::HistoryMessage {
                    seq: m.seq,
                    data: m.message.data,
                    event: m.message.event,
                    id: m.message.id,
                    publisher: m.message.publisher,
                    timestamp_ms: m.message.timestamp_ms,
                })
                .collect(),
            complete: h.complete,
            last_seq: h.last_seq,
        }))
    }
}
