//! End to end: an app's limits changed through the REST API reach the
//! edges at once — the real `herald` binary as a control plane on
//! PostgreSQL and an edge over NATS.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herald_edge::testing::{RawClient, Received, is_error, is_ok};
use herald_proto::ErrorCode;
use herald_proto::client::server_frame;
use herald_sdk::{Publisher, TokenRequest};
use herald_tests::*;

/// How long a change of limits may take to reach the edge.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Connects with `token` in the `Authorization` header: the client, or the
/// close code the edge refused it with.
async fn try_connect(edge: &EdgeProc, token: &str) -> Result<std::result::Result<RawClient, u16>> {
    let bearer = format!("Bearer {token}");
    let mut client = match RawClient::connect_with(edge.addr, &[("Authorization", &bearer)]).await {
        Ok(client) => client,
        Err(status) => bail!("upgrade refused with HTTP {status}"),
    };
    let first = tokio::time::timeout(Duration::from_secs(10), client.recv()).await.context("no answer")?;
    match first {
        Received::Frame(f) => match f.kind {
            Some(server_frame::Kind::Connected(_)) => Ok(Ok(client)),
            // A refusal: the `Disconnect` frame before the close frame.
            Some(server_frame::Kind::Disconnect(d)) => Ok(Err(u16::try_from(d.code)?)),
            other => bail!("unexpected first frame: {other:?}"),
        },
        Received::Close(code, _) => Ok(Err(code)),
        other => bail!("unexpected first frame: {other:?}"),
    }
}

async fn patch_limits(cp: &ControlPlaneProc, app: &str, limits: serde_json::Value) -> Result<()> {
    let body = serde_json::json!({ "limits": limits }).to_string();
    let path = format!("/v1/apps/{app}");
    let (status, body) = http_request(cp.addr, "PATCH", &path, &cp.admin_token, Some(&body)).await?;
    if status != 200 {
        bail!("PATCH {path}: {status} {body}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_of_an_apps_limits_reaches_open_and_new_connections() -> Result<()> {
    let (nats, prefix) = (nats_url(), unique_prefix());
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start(&db, &nats, &prefix).await?;
    let edge = EdgeProc::start("edge-limits", &cp, &nats, &prefix).await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    let request = TokenRequest::new("alice").allow("*", ["subscribe", "publish"]);
    let token = publisher.mint_token(&request).await?.token;
    let mut open = try_connect(&edge, &token).await?.map_err(|code| anyhow::anyhow!("refused with {code}"))?;
    assert!(is_ok(&open.publish("room", &[7; 800]).await), "800 bytes fit the default limit");

    // Lower the message size: the open connection, whose token still says
    // otherwise, is held to it once the edge heard of the change.
    patch_limits(&cp, &app, serde_json::json!({ "max_message_bytes": 100 })).await?;
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let reply = open.publish("room", &[7; 800]).await;
        if is_error(&reply, ErrorCode::TooLarge) {
            break;
        }
        assert!(is_ok(&reply), "a publish is refused only for its size: {reply:?}");
        if Instant::now() > deadline {
            bail!("an 800-byte publish is still accepted {PROPAGATION:?} after the limit was lowered to 100");
        }
    }
    assert!(is_ok(&open.publish("room", &[7; 100]).await), "what fits the new limit still goes");

    // Lower the connections: with one open, a new one is over the limit.
    patch_limits(&cp, &app, serde_json::json!({ "max_connections": 1 })).await?;
    let deadline = Instant::now() + PROPAGATION;
    let mut admitted = Vec::new();
    loop {
        match try_connect(&edge, &token).await? {
            Err(code) => {
                assert_eq!(code, 4003, "refused as over the app's connection limit");
                break;
            }
            Ok(client) => admitted.push(client),
        }
        if Instant::now() > deadline {
            bail!("new connections are still admitted {PROPAGATION:?} after the limit was lowered to 1");
        }
    }
    // The connection already open stays open and keeps working.
    assert!(is_ok(&open.publish("room", &[7; 10]).await));
    Ok(())
}
