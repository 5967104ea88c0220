//! gRPC `StatsService`: an app's usage statistics (API key of the app, or
//! admin).

use herald_proto::api::stats_service_server::StatsService;
use herald_proto::api::{self as pb};
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;
use crate::services::StatsQuery;

#[tonic::async_trait]
impl StatsService for Grpc {
    async fn get_app_stats(
        &self,
        req: Request<pb::GetAppStatsRequest>,
    ) -> Result<GrpcResponse<pb::GetAppStatsResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let q = StatsQuery {
            unit: Some(r.unit),
            start: r.start,
            end: r.end,
            limit: (r.limit != 0).then_some(r.limit),
            direction: Some(r.direction),
        };
        let page = self.core.app_stats(&who, &r.app_id, q).await?;
        let unit = page.unit.as_str();
        let entries = page
            .entries
            .into_iter()
            .map(|r| pb::AppStatsEntry {
                interval_start: r.start_ms,
                unit: unit.to_owned(),
                published: r.published_rest + r.published_grpc + r.published_pusher_http + r.published_client,
                published_rest: r.published_rest,
                published_grpc: r.published_grpc,
                published_pusher_http: r.published_pusher_http,
                published_client: r.published_client,
                delivered: r.delivered,
                bytes_in: r.bytes_in,
                bytes_out: r.bytes_out,
                connections_opened: r.connections_opened,
                peak_connections: r.peak_connections,
                peak_channels: r.peak_channels,
                webhooks_ok: r.webhooks_ok,
                webhooks_failed: r.webhooks_failed,
                refusals: r.refusals.into_iter().map(|(reason, count)| pb::StatsRefusal { reason, count }).collect(),
            })
            .collect();
        Ok(GrpcResponse::new(pb::GetAppStatsResponse {
            entries,
            next_start: page.next.map(|n| n.0),
            next_end: page.next.map(|n| n.1),
        }))
    }
}
