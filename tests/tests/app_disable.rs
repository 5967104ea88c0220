//! End to end: an administrator disables an app with the CLI — the real
//! `herald` binary as a control plane on PostgreSQL and edges over NATS.
//! Its connections (Herald and Pusher protocol) close with the reason, its
//! API key and its tokens are refused, also by an edge started after the
//! change; enabled again, its key and new tokens work.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herald_edge::testing::{PusherClient, PusherReceived, RawClient, Received};
use herald_proto::client::{self, server_frame};
use herald_sdk::{Publisher, TokenRequest};
use herald_tests::*;

/// Reads until the connection closes: the `Disconnect` frame's reason (if
/// one came) and the close code.
async fn close_of(client: &mut RawClient) -> Result<(String, u16)> {
    let mut reason = String::new();
    loop {
        match client.recv_within(Duration::from_secs(10)).await.context("not closed within 10 s")? {
            Received::Frame(client::ServerFrame { kind: Some(server_frame::Kind::Disconnect(d)) }) => reason = d.reason,
            Received::Close(code, _) => return Ok((reason, code)),
            Received::Eof => return Ok((reason, 1006)),
            _ => {}
        }
    }
}

/// Reads a Pusher connection until it closes: the `pusher:error` code (if
/// one came) and the close code.
async fn pusher_close_of(client: &mut PusherClient) -> Result<(Option<u64>, u16)> {
    let mut notice = None;
    loop {
        match client.recv_within(Duration::from_secs(10)).await.context("not closed within 10 s")? {
            PusherReceived::Event(e) if e.event == "pusher:error" => notice = e.json()["code"].as_u64(),
            PusherReceived::Close(code, _) => return Ok((notice, code)),
            PusherReceived::Eof => return Ok((notice, 1006)),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_app_is_refused_everywhere_until_enabled() -> Result<()> {
    let (nats, prefix) = (nats_url(), unique_prefix());
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start(&db, &nats, &prefix).await?;
    let edge = EdgeProc::start("edge-disable", &cp, &nats, &prefix).await?;
    let (app, key) = cp.create_app_and_key()?;
    let env = [("HERALD_API_URL", cp.url()), ("HERALD_ADMIN_TOKEN", cp.admin_token.clone())];
    cli(&["apps", "update", &app, "--pusher"], &env)?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    let request = TokenRequest::new("alice").allow("*", ["subscribe", "publish"]);
    let token = publisher.mint_token(&request).await?.token;
    let (mut open, _) = RawClient::connect(edge.addr, &token).await;
    assert!(herald_edge::testing::is_ok(&open.subscribe("room").await));
    let (mut pusher, _) = PusherClient::connect(edge.addr, &app).await;
    publisher.publish("room", "before").await?;

    cli(&["apps", "disable", &app, "--reason", "invoice 42 unpaid"], &env)?;
    let (reason, code) = close_of(&mut open).await?;
    assert_eq!(code, 4503, "{reason}");
    assert!(reason.contains("disabled") && reason.contains("invoice 42 unpaid"), "{reason}");
    assert_eq!(pusher_close_of(&mut pusher).await?, (Some(4003), 4003), "Pusher's `app disabled`");

    // The key is refused on the API with the reason, for publishes and
    // tokens alike; the CLI exits with the refused code.
    let refused = publisher.publish("room", "after").await.expect_err("a disabled app's publish");
    let text = format!("{refused:#}");
    assert!(text.contains("app_disabled") && text.contains("invoice 42 unpaid"), "{text}");
    assert!(publisher.mint_token(&request).await.is_err(), "no tokens for a disabled app");
    let mut with_key = env.to_vec();
    with_key.extend([("HERALD_APP_ID", app.clone()), ("HERALD_API_KEY", key.clone())]);
    let out = std::process::Command::new(herald_bin()?)
        .args(["publish", "room", "hi"])
        .envs(with_key.iter().map(|(k, v)| (*k, v.as_str())))
        .output()?;
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("disabled"), "{}", String::from_utf8_lossy(&out.stderr));

    // Its tokens no longer connect: not to the edge that heard the event,
    // nor to one started after it (which reads the JWKS's list); Pusher
    // clients are refused with 4003.
    let late = EdgeProc::start("edge-disable-late", &cp, &nats, &prefix).await?;
    for addr in [edge.addr, late.addr] {
        assert_eq!(RawClient::refused(addr, &token).await.1, 4503, "{addr}");
        let mut refused = PusherClient::upgrade(addr, &app, "?protocol=7").await.map_err(|s| anyhow::anyhow!("{s}"))?;
        assert_eq!(pusher_close_of(&mut refused).await?.1, 4003, "{addr}");
    }
    let listed = cli(&["apps", "list"], &env)?;
    assert!(listed.lines().any(|l| l.starts_with(&app) && l.ends_with("disabled: invoice 42 unpaid")), "{listed}");
    let shown = http_request(cp.addr, "GET", &format!("/v1/apps/{app}"), &cp.admin_token, None).await?;
    let view: serde_json::Value = serde_json::from_str(&shown.1)?;
    assert_eq!(view["disabled"]["reason"], "invoice 42 unpaid", "{view}");

    // Enabled again: the key works at once; tokens minted from now connect
    // (those minted before the disable stay refused; the few seconds after
    // it, while replicas may still trust a cached copy, are refused too).
    cli(&["apps", "enable", &app], &env)?;
    publisher.publish("room", "back").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fresh = publisher.mint_token(&request).await?.token;
        let (code_a, code_b) =
            (RawClient::hello(edge.addr, &fresh).await.1, RawClient::hello(late.addr, &fresh).await.1);
        let connected =
            |r: &Received| matches!(r, Received::Frame(f) if matches!(f.kind, Some(server_frame::Kind::Connected(_))));
        if connected(&code_a) && connected(&code_b) {
            break;
        }
        if Instant::now() > deadline {
            bail!("a token minted after enabling still refused: {code_a:?} {code_b:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(RawClient::refused(edge.addr, &token).await.1, 4503, "a token from before stays refused");
    let (mut back, _) = PusherClient::connect(edge.addr, &app).await;
    back.send(&serde_json::json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(back.event_named("pusher:pong").await.event, "pusher:pong");
    let listed = cli(&["apps", "list"], &env)?;
    assert!(!listed.contains("disabled"), "{listed}");
    Ok(())
}
