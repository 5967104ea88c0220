//! What operators read off a running control plane: `/metrics` with HELP
//! text for every metric, the process metrics and `herald_build_info`,
//! requests counted by API, route template and status (never by raw path),
//! and the request id every answer carries.

mod common;

use anyhow::Result;
use bytes::Bytes;
use common::{ADMIN, Http, Server, TestDb, app_with_key, authed};
use herald_proto::api as pb;
use herald_proto::api::admin_service_client::AdminServiceClient;
use http_body_util::Full;
use serde_json::json;
use tonic::transport::Channel;

/// The value of the sample `name{labels}` (labels exactly as rendered).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn every_metric_is_described_and_requests_are_counted_by_route() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let url = server.url(&format!("/v1/apps/{app}/channels/news/messages"));
    assert_eq!(http.json("POST", &url, Some(&key), json!({"data": 1})).await?.status, 202);
    assert_eq!(http.get(&server.url("/no/such/path/x1y2z3"), None).await?.status, 404);

    let channel = Channel::from_shared(format!("http://{}", server.addr))?.connect().await?;
    let mut admin = AdminServiceClient::new(channel);
    admin.list_apps(authed(pb::ListAppsRequest {}, ADMIN)).await?;
    let refused = admin.list_apps(authed(pb::ListAppsRequest {}, "wrong")).await.expect_err("a wrong token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let page = String::from_utf8_lossy(&http.get(&server.url("/metrics"), None).await?.body).into_owned();
    for line in page.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(page.contains(&format!("# HELP {name} ")), "{name} has no HELP line");
    }
    for name in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_threads"] {
        assert!(sample(&page, name).is_some_and(|v| v > 0.0), "{name} missing in\n{page}");
    }
    assert!(page.contains("herald_build_info{version="), "{page}");
    let published = "herald_cp_requests_total{api=\"rest\",method=\"POST\",\
                     route=\"/v1/apps/{app_id}/channels/{channel}/messages\",status=\"202\"}";
    assert_eq!(sample(&page, published), Some(1.0), "{page}");
    let unmatched = "herald_cp_requests_total{api=\"rest\",method=\"GET\",route=\"unmatched\",status=\"404\"}";
    assert_eq!(sample(&page, unmatched), Some(1.0), "{page}");
    assert!(!page.contains("x1y2z3"), "a raw path became a label");
    let grpc_ok = "herald_cp_requests_total{api=\"grpc\",method=\"POST\",\
                   route=\"/herald.api.v1.AdminService/ListApps\",status=\"0\"}";
    assert_eq!(sample(&page, grpc_ok), Some(1.0), "{page}");
    let grpc_refused = "herald_cp_requests_total{api=\"grpc\",method=\"POST\",\
                        route=\"/herald.api.v1.AdminService/ListApps\",status=\"16\"}";
    assert_eq!(sample(&page, grpc_refused), Some(1.0), "{page}");
    assert!(page.contains(
        "herald_cp_request_duration_seconds_bucket{api=\"rest\",route=\"/v1/apps/{app_id}/channels/{channel}/messages\""
    ));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_answer_carries_a_request_id() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |_| {}).await?;
    let http = Http::default();
    let with_id = |id: &str| {
        http::Request::builder()
            .uri(server.url("/v1/apps"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("x-request-id", id)
            .body(Full::new(Bytes::new()))
    };
    let reply = http.send_request(with_id("trace-42_a")?).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers.get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-42_a"));
    // Made up when absent or not sane (too long, spaces): 20 letters and digits.
    for sent in [None, Some("has spaces"), Some(&*"x".repeat(200))] {
        let reply = match sent {
            Some(id) => http.send_request(with_id(id)?).await?,
            None => http.get(&server.url("/healthz"), None).await?,
        };
        let id = reply.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(id.len() == 20 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{sent:?} → {id:?}");
    }
    // Errors carry one too.
    let reply = http.get(&server.url("/v1/apps"), Some("wrong")).await?;
    assert_eq!(reply.status, 401);
    assert!(reply.headers.contains_key("x-request-id"));
    server.stop().await;
    Ok(())
}
