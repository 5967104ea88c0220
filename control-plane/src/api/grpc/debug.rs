//! gRPC `DebugService`: an app's live debug events (admin token, or an API
//! key of the app), the same items as the REST stream.

use std::pin::Pin;

use futures_util::{Stream, StreamExt as _};
use herald_proto::api::debug_service_server::DebugService;
use herald_proto::api::{self as pb};
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;
use crate::debug_tap::DebugFilter;

/// The stream of `WatchDebugEvents`.
pub type DebugStream = Pin<Box<dyn Stream<Item = Result<pb::DebugEventItem, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DebugService for Grpc {
    type WatchDebugEventsStream = DebugStream;

    async fn watch_debug_events(
        &self,
        req: Request<pb::WatchDebugEventsRequest>,
    ) -> Result<GrpcResponse<DebugStream>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let types = r.types.join(",");
        let filter = DebugFilter::parse(Some(r.channel.as_str()), Some(types.as_str()))?;
        let items = self.core.watch_debug(&who, &r.app_id, filter).await?;
        let stream = items.map(|item| {
            let json = item.to_json();
            let kind = json["type"].as_str().unwrap_or_default().to_owned();
            Ok(pb::DebugEventItem { r#type: kind, json: json.to_string() })
        });
        Ok(GrpcResponse::new(Box::pin(stream)))
    }
}
