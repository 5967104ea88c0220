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
            .map(|row| {
                let e = crate::api::rest::stats::entry(unit, row);
                pb::AppStatsEntry {
                    interval_start: e.interval_start,
                    unit: e.unit,
                    published: e.published,
                    published_rest: e.published_rest,
                    published_grpc: e.published_grpc,
                    published_pusher_http: e.published_pusher_http,
                    published_client: e.published_client,
                    delivered: e.delivered,
                    bytes_in: e.bytes_in,
                    bytes_out: e.bytes_out,
                    connections_opened: e.connections_opened,
                    peak_connections: e.peak_connections,
                    peak_channels: e.peak_channels,
                    webhooks_ok: e.webhooks_ok,
                    webhooks_failed: e.webhooks_failed,
                    refusals: e
                        .refusals
                        .into_iter()
                        .map(|(reason, count)| pb::StatsRefusal { reason, count })
                        .collect(),
                }
            })
            .collect();
        Ok(GrpcResponse::new(pb::GetAppStatsResponse {
            entries,
            next_start: page.next.map(|n| n.0),
            next_end: page.next.map(|n| n.1),
        }))
    }
}
