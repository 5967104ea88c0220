//! End to end: usage statistics and quotas of a cluster — two control-plane
//! replicas on one PostgreSQL database and two edges over NATS, as
//! processes of the real binary — through REST, the CLI and real clients.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt as _;
use herald_edge::testing::{RawClient, Received};
use herald_proto::client::server_frame;
use herald_sdk::{Client, Publisher, TokenRequest};
use herald_tests::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

struct Cluster {
    db: TestDb,
    prefix: String,
    cp1: ControlPlaneProc,
    cp2: ControlPlaneProc,
    a: EdgeProc,
    b: EdgeProc,
    app: String,
    key: String,
    publisher: Publisher,
}

fn cp_env() -> Vec<(&'static str, String)> {
    vec![("HERALD_CP_USAGE_REPORT_INTERVAL", "1s".to_owned())]
}

async fn cluster() -> Result<Cluster> {
    let (nats, prefix, db) = (nats_url(), unique_prefix(), TestDb::create().await?);
    let cp1 = ControlPlaneProc::start_with(&db, &nats, &prefix, &cp_env()).await?;
    let cp2 = ControlPlaneProc::start_with(&db, &nats, &prefix, &cp_env()).await?;
    let fast = [("HERALD_EDGE_USAGE_REPORT_INTERVAL", "1s".to_owned())];
    let a = EdgeProc::start_with("edge-a", free_addr(), &cp1, &nats, &prefix, &fast).await?;
    let b = EdgeProc::start_with("edge-b", free_addr(), &cp2, &nats, &prefix, &fast).await?;
    let (app, key) = cp1.create_app_and_key()?;
    let publisher = Publisher::new(cp1.url(), &app, &key)?;
    Ok(Cluster { db, prefix, cp1, cp2, a, b, app, key, publisher })
}

/// The app's usage today, read from `cp`.
async fn today(cp: SocketAddr, app: &str, key: &str) -> Result<Value> {
    let (status, body) = http_request(cp, "GET", &format!("/v1/apps/{app}/stats?unit=day&limit=1"), key, None).await?;
    anyhow::ensure!(status == 200, "stats: {status} {body}");
    let j: Value = serde_json::from_str(&body)?;
    Ok(j["entries"][0].clone())
}

/// Polls today's usage until `done` holds.
async fn wait_today(cp: SocketAddr, app: &str, key: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let entry = today(cp, app, key).await?;
        if done(&entry) {
            return Ok(entry);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "usage never got there: {entry}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn publish(cp: SocketAddr, app: &str, key: &str) -> Result<(u16, String)> {
    http_request(cp, "POST", &format!("/v1/apps/{app}/channels/news/messages"), key, Some(r#"{"data": "m"}"#)).await
}

fn tokens(publisher: &Publisher, client: &str) -> impl herald_sdk::TokenProvider + use<> {
    publisher.token_provider(TokenRequest::new(client).allow("*", ["subscribe", "publish"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_usage_is_counted_once_across_edges_and_replicas() -> Result<()> {
    let c = cluster().await?;
    let mut clients = Vec::new();
    let mut subs = Vec::new();
    for (edge, who) in [(&c.a, "alice"), (&c.a, "bob"), (&c.b, "carol")] {
        let client = Client::builder(edge.url()).token_provider(tokens(&c.publisher, who)).connect().await?;
        subs.push(client.subscribe("news").await?);
        clients.push(client);
    }
    for i in 0..5 {
        c.publisher.publish("news", serde_json::json!({ "n": i })).await?;
    }
    for sub in &mut subs {
        for _ in 0..5 {
            tokio::time::timeout(LIMIT, sub.next()).await?.context("subscription ended")?;
        }
    }
    // Read from the other replica: both edges' reports and the first
    // replica's own counts meet in the database.
    let entry = wait_today(c.cp2.addr, &c.app, &c.key, |e| {
        e["published_rest"] == 5 && e["delivered"] == 15 && e["peak_connections"] == 3
    })
    .await?;
    assert_eq!(entry["published"], 5, "{entry}");
    assert!(entry["connections_opened"].as_i64().unwrap_or(0) >= 3, "{entry}");
    assert!(entry["bytes_out"].as_i64().unwrap_or(0) > 0, "{entry}");
    // A few more report intervals change nothing: nothing is counted twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = today(c.cp1.addr, &c.app, &c.key).await?;
    assert_eq!((&later["published"], &later["delivered"]), (&entry["published"], &entry["delivered"]), "{later}");
    // The CLI shows the same in a table.
    let env = [("HERALD_API_URL", c.cp2.url()), ("HERALD_ADMIN_TOKEN", c.cp2.admin_token.clone())];
    let table = cli(&["apps", "stats", &c.app, "--unit", "day"], &env)?;
    let mut lines = table.lines();
    assert!(lines.next().is_some_and(|h| h.contains("published") && h.contains("delivered")), "{table}");
    let row: Vec<&str> = lines.next().context("a row")?.split_whitespace().collect();
    assert_eq!((row[2], row[3]), ("5", "15"), "{table}");
    drop(clients);
    Ok(())
}

/// Opens connections to `edge` until one is refused; returns its
/// `Disconnect` code and reason.
async fn refused_connection(edge: SocketAddr, token: &str) -> Result<(u32, String)> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (client, first) = RawClient::hello(edge, token).await;
        if let Received::Frame(frame) = first
            && let Some(server_frame::Kind::Disconnect(d)) = frame.kind
        {
            return Ok((d.code, d.reason));
        }
        drop(client);
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no connection was refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_publishes_and_connections_and_survive_a_restart() -> Result<()> {
    let mut c = cluster().await?;
    let env = [("HERALD_API_URL", c.cp1.url()), ("HERALD_ADMIN_TOKEN", c.cp1.admin_token.clone())];
    cli(&["apps", "update", &c.app, "--quota-messages-per-day", "3", "--quota-connections", "2"], &env)?;
    // Two connections, one per edge: the connection quota.
    let token = c.publisher.mint_token(&TokenRequest::new("u").allow("*", ["subscribe", "publish"])).await?.token;
    let (mut on_a, _) = RawClient::connect(c.a.addr, &token).await;
    let (_on_b, _) = RawClient::connect(c.b.addr, &token).await;
    let (code, reason) = refused_connection(c.a.addr, &token).await?;
    assert_eq!(code, 4005, "{reason}");
    assert!(reason.contains("connection quota of 2"), "{reason}");
    assert_eq!(refused_connection(c.b.addr, &token).await?.0, 4005);

    // Three messages, then the next publish is refused on either replica.
    for _ in 0..3 {
        assert_eq!(publish(c.cp1.addr, &c.app, &c.key).await?.0, 202);
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (status, body) = publish(c.cp2.addr, &c.app, &c.key).await?;
        if status == 403 {
            assert!(body.contains("quota_exceeded") && body.contains("daily message quota of 3"), "{body}");
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never refused: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Client publishes too; the connections open stay open.
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let reply = on_a.publish("news", b"x").await;
        match reply.result {
            Some(herald_proto::client::reply::Result::Error(e)) if e.code == 16 => break,
            _ => anyhow::ensure!(tokio::time::Instant::now() < deadline, "client publish never refused: {reply:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(herald_edge::testing::is_ok(&on_a.subscribe("still-open").await));

    // Every replica restarts: the quota holds from the first request.
    c.cp1.process.kill();
    c.cp2.process.kill();
    let cp3 = ControlPlaneProc::start_with(&c.db, &nats_url(), &c.prefix, &cp_env()).await?;
    let (status, body) = publish(cp3.addr, &c.app, &c.key).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("quota_exceeded"), "{body}");
    Ok(())
}
