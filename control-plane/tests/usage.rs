//! Usage statistics and quotas through the REST and gRPC APIs, on both
//! databases: counts by source, reports from edges over the bus (a batch
//! sent twice counts once), paging, bad parameters, who may read, and a
//! message quota that survives a restart.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use common::{ADMIN, Http, Server, TestDb, app_with_key, local_server, publish_url};
use herald_proto::api::publish_service_client::PublishServiceClient;
use herald_proto::api::stats_service_client::StatsServiceClient;
use herald_proto::api::{self as pb};
use herald_proto::bus;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Reports come in every second here.
fn fast(c: &mut herald_control_plane::Config) {
    c.usage_report_interval = herald_proto::units::HumanDuration::secs(1);
}

fn stats_url(server: &Server, app: &str, query: &str) -> String {
    server.url(&format!("/v1/apps/{app}/stats{query}"))
}

/// Polls the app's newest `unit` entry until `done` holds (10 s at most).
async fn wait_stats(
    http: &Http,
    server: &Server,
    app: &str,
    key: &str,
    unit: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http.get(&stats_url(server, app, &format!("?unit={unit}&limit=1")), Some(key)).await?;
        anyhow::ensure!(r.status == 200, "stats: {} {}", r.status, String::from_utf8_lossy(&r.body));
        let entry = r.json()["entries"][0].clone();
        if done(&entry) {
            return Ok(entry);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "stats never got there: {entry}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn usage(app: &str, client: u64, delivered: u64) -> bus::AppUsage {
    bus::AppUsage {
        app_id: app.to_owned(),
        published_client: client,
        delivered,
        bytes_in: client * 10,
        bytes_out: delivered * 20,
        connections_opened: 2,
        refusals: vec![bus::Refusal { reason: "rate_limited".into(), count: 1 }],
        ..Default::default()
    }
}

#[tokio::test]
async fn publishes_and_edge_reports_are_counted_once_by_source_on_both_databases() -> Result<()> {
    for db in TestDb::both().await? {
        let (server, edge) = local_server(db, fast).await?;
        let http = Http::default();
        let (app, _, key) = app_with_key(&http, &server, None).await?;

        // A fresh app has no usage at all.
        let r = http.get(&stats_url(&server, &app, ""), Some(&key)).await?;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!({"entries": []}));

        // REST: three single publishes and a batch of two, one of them to
        // two channels.
        for i in 0..3 {
            let r = http.json("POST", &publish_url(&server, &app, "news"), Some(&key), json!({"data": i})).await?;
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        }
        let batch = json!({"messages": [{"channel": "a", "data": "x"}, {"channels": ["b", "c"], "data": "y"}]});
        let r = http.json("POST", &server.url(&format!("/v1/apps/{app}/messages")), Some(&key), batch).await?;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        // gRPC: one.
        let ch = Channel::from_shared(format!("http://{}", server.addr))?.connect().await?;
        let request = pb::PublishRequest {
            app_id: app.clone(),
            channel: "news".into(),
            data: bytes::Bytes::from_static(b"g"),
            ..Default::default()
        };
        PublishServiceClient::new(ch.clone()).publish(common::authed(request, &key)).await?;
        // An edge's report, sent twice (its acknowledgement was lost): its
        // batch counts once.
        let report = bus::UsageReport {
            node_id: "edge-test-1".into(),
            batches: vec![bus::UsageBatch {
                seq: 1,
                timestamp_ms: herald_bus::now_ms(),
                apps: vec![usage(&app, 5, 7)],
            }],
            gauges: vec![bus::AppGauge { app_id: app.clone(), connections: 3, channels: 2 }],
            timestamp_ms: herald_bus::now_ms(),
        };
        edge.report_usage(&report).await?;
        edge.report_usage(&report).await?;

        let entry = wait_stats(&http, &server, &app, &key, "day", |e| {
            e["published_rest"] == 6 && e["published_grpc"] == 1 && e["published_client"] == 5
        })
        .await?;
        assert_eq!(entry["published"], 12, "{entry}");
        assert_eq!((&entry["delivered"], &entry["connections_opened"]), (&json!(7), &json!(2)), "{entry}");
        assert_eq!((&entry["peak_connections"], &entry["peak_channels"]), (&json!(3), &json!(2)), "{entry}");
        assert_eq!(entry["refusals"], json!({"rate_limited": 1}), "{entry}");
        assert!(entry["bytes_in"].as_i64().unwrap_or(0) > 50, "{entry}");
        // The hour agrees; the minutes (one or two, across a minute's end)
        // add up to the same.
        let e = wait_stats(&http, &server, &app, &key, "hour", |e| e["published"] == 12).await?;
        assert_eq!((&e["delivered"], &e["peak_connections"], &e["unit"]), (&json!(7), &json!(3), &json!("hour")));
        let minutes = http.get(&stats_url(&server, &app, "?unit=minute"), Some(&key)).await?.json();
        let minutes = minutes["entries"].as_array().context("entries")?.clone();
        let sum = |f: &str| minutes.iter().filter_map(|e| e[f].as_i64()).sum::<i64>();
        assert_eq!((sum("published"), sum("delivered")), (12, 7));
        assert_eq!(minutes.iter().filter_map(|e| e["peak_connections"].as_i64()).max(), Some(3));
        // The same over gRPC.
        let request = pb::GetAppStatsRequest { app_id: app.clone(), unit: "day".into(), ..Default::default() };
        let page = StatsServiceClient::new(ch).get_app_stats(common::authed(request, &key)).await?.into_inner();
        assert_eq!(page.entries.len(), 1);
        assert_eq!((page.entries[0].published, page.entries[0].published_client), (12, 5));
        assert_eq!(page.next_start, None);
        server.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn stats_come_in_pages_both_ways() -> Result<()> {
    let (server, edge) = local_server(TestDb::sqlite(), fast).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    // Five minutes of usage, an hour ago: minute k has k deliveries.
    let base = herald_bus::now_ms() / 60_000 * 60_000 - 3_600_000;
    let batches = (1..=5)
        .map(|k| bus::UsageBatch { seq: k, timestamp_ms: base + (k as i64) * 60_000, apps: vec![usage(&app, 1, k)] })
        .collect();
    let report = bus::UsageReport { node_id: "edge-pages".into(), batches, gauges: vec![], timestamp_ms: base };
    edge.report_usage(&report).await?;

    for (direction, want) in [("backwards", vec![5, 4, 3, 2, 1]), ("forwards", vec![1, 2, 3, 4, 5])] {
        let mut seen = Vec::new();
        let mut query = format!("?limit=2&direction={direction}");
        for _ in 0..5 {
            let r = http.get(&stats_url(&server, &app, &query), Some(&key)).await?;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let j = r.json();
            let entries = j["entries"].as_array().context("entries")?;
            assert!(entries.len() <= 2);
            seen.extend(entries.iter().map(|e| e["delivered"].as_i64().unwrap_or(-1)));
            let Some(next) = j.get("next") else { break };
            query = format!("?limit=2&direction={direction}&start={}&end={}", next["start"], next["end"]);
        }
        assert_eq!(seen, want, "{direction}");
    }
    // A range picks the minutes that start in it.
    let range = format!("?start={}&end={}", base + 2 * 60_000, base + 3 * 60_000);
    let j = http.get(&stats_url(&server, &app, &range), Some(&key)).await?.json();
    let got: Vec<i64> =
        j["entries"].as_array().context("entries")?.iter().filter_map(|e| e["delivered"].as_i64()).collect();
    assert_eq!(got, [3, 2]);
    Ok(())
}

#[tokio::test]
async fn bad_parameters_name_the_field_and_other_apps_keys_are_refused() -> Result<()> {
    let (server, _edge) = local_server(TestDb::sqlite(), |c| c.usage_max_limit = 50).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let (_other, _, other_key) = app_with_key(&http, &server, None).await?;
    for (query, field) in [
        ("?unit=week", "unit"),
        ("?start=10&end=5", "start"),
        ("?limit=0", "limit"),
        ("?limit=51", "limit"),
        ("?direction=sideways", "direction"),
        ("?start=-1", "start"),
        ("?start=yesterday", "start"),
        ("?colour=red", "colour"),
    ] {
        let r = http.get(&stats_url(&server, &app, query), Some(&key)).await?;
        assert_eq!((r.status, r.code().as_str()), (400, "bad_request"), "{query}");
        let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(field), "{query}: {message}");
    }
    // The largest limit is fine; a key that may only subscribe to one
    // channel reads its app's stats too.
    assert_eq!(http.get(&stats_url(&server, &app, "?limit=50"), Some(&key)).await?.status, 200);
    let narrow = json!({"name": "narrow", "capabilities": {"lobby": ["subscribe"]}});
    let r = http.json("POST", &server.url(&format!("/v1/apps/{app}/keys")), Some(ADMIN), narrow).await?;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let narrow = r.json()["key"].as_str().context("key")?.to_owned();
    assert_eq!(http.get(&stats_url(&server, &app, ""), Some(&narrow)).await?.status, 200);
    // Another app's key, no key, an unknown app.
    let r = http.get(&stats_url(&server, &app, ""), Some(&other_key)).await?;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
    assert_eq!(http.get(&stats_url(&server, &app, ""), None).await?.status, 401);
    let r = http.get(&stats_url(&server, "no-such-app", ""), Some(ADMIN)).await?;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    Ok(())
}

#[tokio::test]
async fn a_message_quota_refuses_publishes_and_survives_a_restart() -> Result<()> {
    let db = TestDb::postgres().await?;
    let (server, _edge) = local_server(TestDb::shared(&db.url), fast).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let limits = |q: u64| json!({"limits": {"quota_messages_per_day": q}});
    let r = http.json("PATCH", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), limits(3)).await?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["limits"]["quota_messages_per_day"], 3);
    // A day quota above the month's is refused, naming both.
    let both = json!({"limits": {"quota_messages_per_day": 10, "quota_messages_per_month": 5}});
    let r = http.json("PATCH", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), both).await?;
    assert_eq!(r.status, 400);
    for _ in 0..3 {
        let r = http.json("POST", &publish_url(&server, &app, "news"), Some(&key), json!({"data": "m"})).await?;
        assert_eq!(r.status, 202);
    }
    let refused = wait_refused(&http, &server, &app, &key).await?;
    assert!(refused.contains("daily message quota of 3"), "{refused}");

    // Another replica on the same database (a restart) refuses too.
    server.stop().await;
    let (server, _edge) = local_server(TestDb::shared(&db.url), fast).await?;
    wait_refused(&http, &server, &app, &key).await?;
    // Raising the quota lets publishes through again.
    let r = http.json("PATCH", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), limits(100)).await?;
    assert_eq!(r.status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http.json("POST", &publish_url(&server, &app, "news"), Some(&key), json!({"data": "m"})).await?;
        if r.status == 202 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still refused: {}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Publishes until one is refused with `quota_exceeded` (10 s at most);
/// returns the refusal's message.
async fn wait_refused(http: &Http, server: &Server, app: &str, key: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http.json("POST", &publish_url(server, app, "news"), Some(key), json!({"data": "more"})).await?;
        if r.status == 403 {
            assert_eq!(r.code(), "quota_exceeded");
            return Ok(r.json()["error"]["message"].as_str().unwrap_or_default().to_owned());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never refused: {}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
