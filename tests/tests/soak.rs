//! End to end, the soak in small: idle connections, slow requests (header
//! lines to the edge, a publish body to the API, a byte at a time) and
//! repeated connect storms at once, while a publisher and a subscriber keep
//! working on the edge. Nothing the pair publishes is lost, every idle
//! connection stays up, every storm gets in, and the slow requests are
//! closed by the servers' timeouts.

use std::time::Duration;

use anyhow::{Context, Result};
use herald_bench::{SoakConfig, soak};
use herald_sdk::{Publisher, TokenRequest};
use herald_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_and_a_subscriber_keep_working_through_idle_slow_and_storm_loads() -> Result<()> {
    let nats = nats_url();
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start_with(&db, &nats, &prefix, &[("HERALD_CP_BODY_READ_TIMEOUT", "2s".into())]).await?;
    let edge = EdgeProc::start_with(
        "edge",
        free_addr(),
        &cp,
        &nats,
        &prefix,
        &[("HERALD_EDGE_HTTP_HEADER_TIMEOUT", "2s".into())],
    )
    .await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    let token = publisher.mint_token(&TokenRequest::new("soak").allow("*", ["subscribe", "publish"])).await?.token;
    let config = SoakConfig {
        edge: edge.addr,
        api: Some(cp.addr),
        app_id: app.clone(),
        api_key: key.clone(),
        token,
        channel: "soak".into(),
        duration: Duration::from_secs(6),
        idle: 200,
        slow: 40,
        slow_interval: Duration::from_millis(500),
        storm: 200,
        storm_every: Duration::from_secs(2),
        rate: 50.0,
    };
    let report = tokio::time::timeout(Duration::from_secs(60), soak(config)).await.context("the soak")??;
    println!("{report}");
    assert!(report.held(), "{report}");
    assert!(report.acked >= 250 && report.delivered == report.acked, "{report}");
    assert_eq!((report.idle_opened, report.idle_open_at_end), (200, 200), "{report}");
    for slow in [&report.slow_headers, &report.slow_bodies] {
        assert_eq!((slow.started, slow.closed), (20, 20), "every slow request was ended by the server: {report}");
        assert!(slow.held_for.max() < Duration::from_secs(5), "{report}");
    }
    assert!(report.slow_bodies.answers.keys().all(|a| a.starts_with("HTTP/1.1 408")), "{report}");
    assert!(report.storms.len() >= 2, "{report}");
    assert!(report.storms.iter().all(|s| s.connected == 200), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_bench_soak_prints_what_was_held() -> Result<()> {
    let nats = nats_url();
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start(&db, &nats, &prefix).await?;
    let edge = EdgeProc::start("edge", &cp, &nats, &prefix).await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    let token = publisher.mint_token(&TokenRequest::new("soak").allow("*", ["subscribe", "publish"])).await?.token;
    let env = [("HERALD_API_URL", cp.url()), ("HERALD_APP_ID", app), ("HERALD_API_KEY", key)];
    let edge_url = edge.url();
    let args = [
        "bench",
        "--edge-url",
        &edge_url,
        "--token",
        &token,
        "--soak",
        "3",
        "--idle-connections",
        "50",
        "--slow",
        "10",
        "--connect-storm",
        "50",
        "--storm-every",
        "1",
        "--rate",
        "50",
    ];
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out =
        tokio::task::spawn_blocking(move || cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env)).await??;
    assert!(out.contains("idle connections:         50 opened (0 failed), 50 open at the end"), "{out}");
    assert!(out.contains("slow bodies (API)"), "{out}");
    assert!(out.contains("held:                     yes"), "{out}");
    Ok(())
}
