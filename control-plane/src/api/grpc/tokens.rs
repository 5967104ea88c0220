//! gRPC `TokenService`: minting tokens (API key).

use herald_proto::api::token_service_server::TokenService;
use herald_proto::api::{self as pb};
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;
use super::admin::caps_from_pb;
use crate::error::ApiError;

#[tonic::async_trait]
impl TokenService for Grpc {
    async fn mint_token(
        &self,
        req: Request<pb::MintTokenRequest>,
    ) -> Result<GrpcResponse<pb::MintTokenResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let caps = caps_from_pb(&r.capabilities)?;
        let ttl = (r.ttl_seconds != 0).then_some(u64::from(r.ttl_seconds));
        let info = if r.info.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&r.info)
                    .map_err(|e| ApiError::bad_request(format!("`info` must be a JSON object: {e}")))?,
            )
        };
        let (token, expires_at) = self.core.mint_token(&who, &r.app_id, &r.client_id, caps, ttl, info).await?;
        Ok(GrpcResponse::new(pb::MintTokenResponse { token, expires_at_ms: expires_at.saturating_mul(1000) }))
    }
}
