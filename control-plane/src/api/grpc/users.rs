//! gRPC `UserService`: an event to every connection of one user, and
//! closing them.

use herald_proto::api::user_service_server::UserService;
use herald_proto::api::{self as pb};
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;
use crate::services::Draft;

#[tonic::async_trait]
impl UserService for Grpc {
    async fn publish_to_user(
        &self,
        req: Request<pb::PublishToUserRequest>,
    ) -> Result<GrpcResponse<pb::PublishToUserResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let draft = Draft { data: r.data, event: r.event, ..Draft::default() };
        let id = self.core.publish_to_user(&who, &r.app_id, &r.user_id, draft).await?;
        Ok(GrpcResponse::new(pb::PublishToUserResponse { id }))
    }

    async fn terminate_user(
        &self,
        req: Request<pb::TerminateUserRequest>,
    ) -> Result<GrpcResponse<pb::TerminateUserResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        self.core.terminate_user(&who, &r.app_id, &r.user_id).await?;
        Ok(GrpcResponse::new(pb::TerminateUserResponse {}))
    }
}
