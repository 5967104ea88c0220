//! gRPC `PresenceService`: the members of presence channels (API key).

use herald_proto::api::presence_service_server::PresenceService;
use herald_proto::api::{self as pb};
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;

#[tonic::async_trait]
impl PresenceService for Grpc {
    async fn get_presence(
        &self,
        req: Request<pb::GetPresenceRequest>,
    ) -> Result<GrpcResponse<pb::GetPresenceResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let after = Some(r.after.as_str()).filter(|a| !a.is_empty());
        let limit = (r.limit > 0).then_some(r.limit as usize);
        let p = self.core.presence(&who, &r.app_id, &r.channel, after, limit).await?;
        Ok(GrpcResponse::new(pb::GetPresenceResponse {
            channel: p.channel.to_string(),
            count: u32::try_from(p.total).unwrap_or(u32::MAX),
            next: p.next.unwrap_or_default(),
            members: p
                .members
                .into_iter()
                .map(|m| pb::PresenceMember { client_id: m.client_id, connections: m.connections, info: m.info })
                .collect(),
        }))
    }
}
