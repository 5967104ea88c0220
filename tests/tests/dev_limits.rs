//! End to end: `herald dev` gives apps generous limits unless the
//! environment sets them, and a refusal for either limit — too many
//! connections, publishing too fast — names the limit and the keys that
//! change it. The real binary, over WebSocket, REST and the CLI.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_edge::testing::{RawClient, Received};
use herald_proto::client::server_frame;
use herald_tests::dev::Dev;
use herald_tests::{cli, http_request};

/// The demo app's limits in force, from the REST API.
async fn limits(dev: &Dev) -> Result<serde_json::Value> {
    let path = format!("/v1/apps/{}", dev.app_id);
    let (status, body) = http_request(dev.api_addr, "GET", &path, &dev.admin_token, None).await?;
    if status != 200 {
        bail!("GET {path}: {status} {body}");
    }
    let app: serde_json::Value = serde_json::from_str(&body)?;
    Ok(app["limits"].clone())
}

/// Connects with `token`: the client, or the reason the edge refused it.
async fn try_connect(dev: &Dev, token: &str) -> Result<std::result::Result<RawClient, String>> {
    let bearer = format!("Bearer {token}");
    let mut client = match RawClient::connect_with(dev.edge_addr, &[("Authorization", &bearer)]).await {
        Ok(client) => client,
        Err(status) => bail!("upgrade refused with HTTP {status}"),
    };
    match tokio::time::timeout(Duration::from_secs(10), client.recv()).await.context("no answer")? {
        Received::Frame(f) => match f.kind {
            Some(server_frame::Kind::Connected(_)) => Ok(Ok(client)),
            Some(server_frame::Kind::Disconnect(d)) => Ok(Err(d.reason)),
            other => bail!("unexpected first frame: {other:?}"),
        },
        Received::Close(_, reason) => Ok(Err(reason)),
        other => bail!("unexpected first frame: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_apps_get_generous_limits() -> Result<()> {
    let dev = Dev::start(&[]).await?;
    let limits = limits(&dev).await?;
    assert_eq!(limits["max_connections"], 1_000_000, "{limits}");
    assert_eq!(limits["publish_rate_per_sec"], 1_000_000_000, "{limits}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_limit_and_how_to_change_it() -> Result<()> {
    let env = [
        ("HERALD_CP_DEFAULT_MAX_CONNECTIONS", "2".to_owned()),
        ("HERALD_CP_DEFAULT_PUBLISH_RATE_PER_SEC", "1".to_owned()),
    ];
    let dev = Dev::start(&env).await?;
    // The environment wins over dev's defaults.
    let limits = limits(&dev).await?;
    assert_eq!((limits["max_connections"].as_u64(), limits["publish_rate_per_sec"].as_u64()), (Some(2), Some(1)));

    let env = dev.client_env();
    let token = tokio::task::spawn_blocking(move || cli(&["token"], &env)).await??;
    let mut open = Vec::new();
    for _ in 0..2 {
        match try_connect(&dev, &token).await? {
            Ok(client) => open.push(client),
            Err(reason) => bail!("refused under the limit: {reason}"),
        }
    }
    let reason = match try_connect(&dev, &token).await? {
        Ok(_) => bail!("a third connection was accepted over a limit of 2"),
        Err(reason) => reason,
    };
    for expected in ["connection limit of 2", "limits.max_connections", "default_max_connections"] {
        assert!(reason.contains(expected), "`{expected}` missing from the refusal: {reason}");
    }

    // At 1 publish/s, REST publishes in a row soon meet the limit.
    let path = format!("/v1/apps/{}/channels/limits/messages", dev.app_id);
    let mut error = None;
    for i in 0..20 {
        let body = format!("{{\"data\": {{\"n\": {i}}}}}");
        let (status, answer) = http_request(dev.api_addr, "POST", &path, &dev.api_key, Some(&body)).await?;
        if status == 429 {
            error = Some(answer);
            break;
        }
        if status >= 300 {
            bail!("POST {path}: {status} {answer}");
        }
    }
    let error = error.context("20 publishes in a row at a limit of 1/s all went through")?;
    for expected in
        ["publish rate limit of 1 messages/s", "limits.publish_rate_per_sec", "default_publish_rate_per_sec"]
    {
        assert!(error.contains(expected), "`{expected}` missing from the refusal: {error}");
    }
    drop(open);
    Ok(())
}
