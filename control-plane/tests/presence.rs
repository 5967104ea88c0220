//! Presence and occupancy through the REST API: reports from edges (over
//! the in-process bus and over real NATS), member pages of a big channel,
//! and a starting control plane asking edges to resend what they hold.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use common::{Http, Server, TestDb, app_with_key, authed, entry, join, leave, local_server, put_ns, report};
use futures_util::StreamExt as _;
use herald_bus::Bus;
use herald_proto::api::presence_service_client::PresenceServiceClient;
use herald_proto::api::{self as pb};
use herald_proto::units::HumanDuration;
use herald_proto::{AppId, ChannelName, bus};
use prost::Message as _;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

/// Polls `url` until `check` holds (reports travel asynchronously).
async fn eventually(http: &Http, url: &str, key: &str, check: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = http.get(url, Some(key)).await?;
        let j = r.json();
        if r.status == 200 && check(&j) {
            return Ok(j);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "condition never held; last answer {} {j}", r.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `report_ttl`: the TTL the edge's reports carry (`None`: they say none,
/// and the control plane's `ttl` applies).
async fn presence_flow(server: &Server, edge: &Bus, ttl: Duration, report_ttl: Option<Duration>) -> Result<()> {
    let stamped = |mut r: bus::PresenceReport| {
        r.ttl_ms = report_ttl.map_or(0, |t| t.as_millis() as u32);
        r
    };
    let ttl = report_ttl.unwrap_or(ttl);
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, server, None).await?;
    assert_eq!(put_ns(&http, server, &app, "room", json!({"presence": true})).await?.status, 201);
    let app_id = AppId::new(&app)?;
    let ch = ChannelName::new("room:1")?;
    let ada = |conn| entry("room:1", conn, "ada", r#"{"name":"Ada"}"#);
    edge.publish_presence(&app_id, &ch, &stamped(join("e1", &app, ada("c1")))).await?;
    edge.publish_presence(&app_id, &ch, &stamped(join("e2", &app, ada("c2")))).await?;
    edge.publish_presence(&app_id, &ch, &stamped(join("e2", &app, entry("room:1", "c3", "bob", "")))).await?;
    let url = server.url(&format!("/v1/apps/{app}/channels/room:1/presence"));
    let p = eventually(&http, &url, &key, |j| j["count"] == json!(2)).await?;
    assert_eq!(p["channel"], json!("room:1"));
    assert_eq!(
        p["members"],
        json!([{"client_id": "ada", "info": {"name": "Ada"}, "connections": 2},
               {"client_id": "bob", "info": {}, "connections": 1}])
    );
    edge.publish_presence(&app_id, &ch, &stamped(leave("e2", &app, entry("room:1", "c3", "bob", "")))).await?;
    eventually(&http, &url, &key, |j| j["count"] == json!(1)).await?;

    // Occupancy.
    let count = |c: &str, n| bus::ChannelCount { channel: c.into(), subscribers: n };
    let report = |e: &str, cs| bus::OccupancyReport {
        edge_id: e.into(),
        app_id: app.clone(),
        channels: cs,
        ttl_ms: report_ttl.map_or(0, |t| t.as_millis() as u32),
        ..Default::default()
    };
    edge.publish_occupancy(&app_id, &report("e1", vec![count("room:1", 2), count("lobby", 5)])).await?;
    edge.publish_occupancy(&app_id, &report("e2", vec![count("room:1", 1)])).await?;
    let list = server.url(&format!("/v1/apps/{app}/channels"));
    let j = eventually(&http, &list, &key, |j| j["channels"][1]["subscribers"] == json!(3)).await?;
    assert_eq!(j["channels"], json!([{"name": "lobby", "subscribers": 5}, {"name": "room:1", "subscribers": 3}]));
    let j = http.get(&format!("{list}?prefix=room"), Some(&key)).await?.json();
    assert_eq!(j["channels"], json!([{"name": "room:1", "subscribers": 3}]));

    // Errors.
    let r = http.get(&server.url(&format!("/v1/apps/{app}/channels/lobby/presence")), Some(&key)).await?;
    assert_eq!(r.code(), "not_enabled");
    assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains("presence"));
    let r = http.get(&server.url(&format!("/v1/apps/{app}/channels/room:1/presence")), Some("hk_bad_key")).await?;
    assert_eq!(r.status, 401);
    assert_eq!(http.get(&format!("{list}?bogus=1"), Some(&key)).await?.code(), "bad_request");

    // An edge that stops reporting: its entries and counts expire.
    let started = tokio::time::Instant::now();
    eventually(&http, &url, &key, |j| j["count"] == json!(0)).await?;
    eventually(&http, &list, &key, |j| j["channels"] == json!([])).await?;
    let took = started.elapsed();
    assert!(took <= ttl + Duration::from_secs(2), "expired after {took:?}");
    Ok(())
}

#[tokio::test]
async fn presence_and_occupancy_on_the_in_process_bus() -> Result<()> {
    let ttl = Duration::from_secs(3);
    let (server, edge) = local_server(TestDb::sqlite(), |c| c.presence_ttl = HumanDuration::secs(3)).await?;
    presence_flow(&server, &edge, ttl, None).await?;
    server.stop().await;
    Ok(())
}

/// The edge's reports say their TTL (3 s): it applies, not the control
/// plane's default 30 s, so edges and control planes expire alike.
#[tokio::test]
async fn presence_and_occupancy_over_nats() -> Result<()> {
    let server = Server::start(TestDb::postgres().await?, |_| {}).await?;
    let edge = common::nats_backplane_at(common::NATS_URL, server.subjects.clone()).await?;
    presence_flow(&server, &edge, Duration::from_secs(30), Some(Duration::from_secs(3))).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_channel_with_ten_thousand_members() -> Result<()> {
    let (server, edge) = local_server(TestDb::sqlite(), |_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    assert_eq!(put_ns(&http, &server, &app, "big", json!({"presence": true})).await?.status, 201);
    let app_id = AppId::new(&app)?;
    let ch = ChannelName::new("big:hall")?;
    let entries: Vec<_> = (0..10_000).map(|i| entry("big:hall", &format!("c{i}"), &format!("u{i:05}"), "")).collect();
    for (n, chunk) in entries.chunks(500).enumerate() {
        let snapshot = bus::PresenceSnapshot { entries: chunk.to_vec(), taken_at_ms: 0 };
        let report = report(&format!("e{}", n % 4), &app, bus::presence_report::Kind::Snapshot(snapshot));
        edge.publish_presence(&app_id, &ch, &report).await?;
    }
    let url = server.url(&format!("/v1/apps/{app}/channels/big:hall/presence"));
    let started = std::time::Instant::now();
    let j = eventually(&http, &url, &key, |j| j["count"] == json!(10_000)).await?;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // In pages of 1,000 by client id, each member once.
    let mut members = j["members"].as_array().context("members")?.clone();
    let mut next = j["next"].as_str().map(str::to_owned);
    let mut pages = 1;
    while let Some(after) = next {
        let j = http.get(&format!("{url}?after={after}"), Some(&key)).await?.json();
        let page = j["members"].as_array().context("members")?;
        assert!(page.len() <= 1000);
        members.extend(page.iter().cloned());
        next = j["next"].as_str().map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 10);
    assert_eq!(members.len(), 10_000);
    assert_eq!(members[0]["client_id"], json!("u00000"));
    assert_eq!(members[9_999]["client_id"], json!("u09999"));
    assert!(members.windows(2).all(|w| w[0]["client_id"].as_str() < w[1]["client_id"].as_str()));
    let j = http.get(&format!("{url}?after=u09990&limit=5"), Some(&key)).await?.json();
    assert_eq!(
        (j["members"][0]["client_id"].clone(), j["next"].clone(), j["count"].clone()),
        (json!("u09991"), json!("u09995"), json!(10_000))
    );
    let r = http.get(&format!("{url}?limit=1001"), Some(&key)).await?;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // The same pages over gRPC.
    let mut grpc =
        PresenceServiceClient::new(Channel::from_shared(format!("http://{}", server.addr))?.connect().await?);
    let page = |after: &str, limit: u32| pb::GetPresenceRequest {
        app_id: app.clone(),
        channel: "big:hall".into(),
        after: after.into(),
        limit,
    };
    let p = grpc.get_presence(authed(page("u04999", 0), &key)).await?.into_inner();
    assert_eq!((p.members.len(), p.count, p.next.as_str()), (1000, 10_000, "u05999"));
    assert_eq!(p.members[0].client_id, "u05000");
    let p = grpc.get_presence(authed(page("u09998", 0), &key)).await?.into_inner();
    assert_eq!((p.members.len(), p.next.as_str()), (1, ""));
    let err = grpc.get_presence(authed(page("", 1001), &key)).await.expect_err("too many");
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_starting_control_plane_asks_edges_to_resend_presence() -> Result<()> {
    let subjects = common::subjects();
    let mut control = common::subscribe_ready(subjects.control()).await?;
    let bus = common::nats_backplane_at(common::NATS_URL, subjects.clone()).await?;
    let server = Server::start_with(TestDb::sqlite(), bus, subjects, |_| {}).await?;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(3), control.next()).await?.context("ended")?;
        if let Ok(e) = bus::ControlEvent::decode(m.payload)
            && matches!(e.kind, Some(bus::control_event::Kind::PresenceSyncAll(_)))
        {
            break;
        }
    }
    server.stop().await;
    Ok(())
}
