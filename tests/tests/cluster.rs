//! End to end: the real `herald` binary as processes — a control plane on
//! PostgreSQL and edges over NATS, or `herald dev` — driven through the CLI,
//! REST and the SDK.

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt as _;
use herald_edge::testing::{NatsServer, RawClient};
use herald_sdk::{Client, Publisher, Subscription, TokenRequest};
use herald_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(LIMIT, f).await.with_context(|| format!("timed out: {what}"))
}

fn tokens(publisher: &Publisher, client: &str) -> impl herald_sdk::TokenProvider + use<> {
    publisher.token_provider(TokenRequest::new(client).allow("*", ["subscribe", "publish"]))
}

async fn next_text(sub: &mut Subscription) -> Result<String> {
    let message = within("a message", sub.next()).await?.context("subscription ended")?;
    Ok(String::from_utf8_lossy(&message.data).into_owned())
}

struct Cluster {
    _db: TestDb,
    prefix: String,
    cp: ControlPlaneProc,
    a: EdgeProc,
    b: EdgeProc,
    publisher: Publisher,
    app: String,
    key: String,
}

async fn cluster(nats: &str) -> Result<Cluster> {
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start(&db, nats, &prefix).await?;
    let a = EdgeProc::start("edge-a", &cp, nats, &prefix).await?;
    let b = EdgeProc::start("edge-b", &cp, nats, &prefix).await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    Ok(Cluster { _db: db, prefix, cp, a, b, publisher, app, key })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_publish_reaches_subscribers_on_both_edges() -> Result<()> {
    let c = cluster(&nats_url()).await?;
    let on_a = Client::builder(c.a.url()).token_provider(tokens(&c.publisher, "alice")).connect().await?;
    let on_b = Client::builder(c.b.url()).token_provider(tokens(&c.publisher, "bob")).connect().await?;
    let mut sub_a = on_a.subscribe("news").await?;
    let mut sub_b = on_b.subscribe("news").await?;
    for i in 0..20 {
        c.publisher.publish("news", serde_json::json!({ "n": i })).await?;
    }
    for i in 0..20 {
        let want = format!("{{\"n\":{i}}}");
        assert_eq!(next_text(&mut sub_a).await?, want);
        assert_eq!(next_text(&mut sub_b).await?, want);
    }
    // The CLI publishes through the same API.
    let env = [("HERALD_API_URL", c.cp.url()), ("HERALD_APP_ID", c.app.clone()), ("HERALD_API_KEY", c.key.clone())];
    cli(&["publish", "news", "plain text"], &env)?;
    assert_eq!(next_text(&mut sub_a).await?, "plain text");
    assert_eq!(next_text(&mut sub_b).await?, "plain text");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_closes_the_connections_holding_its_tokens() -> Result<()> {
    let c = cluster(&nats_url()).await?;
    let env = [
        ("HERALD_API_URL", c.cp.url()),
        ("HERALD_ADMIN_TOKEN", c.cp.admin_token.clone()),
        ("HERALD_APP_ID", c.app.clone()),
    ];
    // A second key whose tokens must survive.
    let other_key = cli(&["keys", "create", "other"], &env)?;
    let other = Publisher::new(c.cp.url(), &c.app, &other_key)?;
    let request = TokenRequest::new("u").allow("*", ["subscribe"]);
    let doomed_token = c.publisher.mint_token(&request).await?.token;
    let kept_token = other.mint_token(&request).await?.token;
    let (mut doomed_a, _) = RawClient::connect(c.a.addr, &doomed_token).await;
    let (mut doomed_b, _) = RawClient::connect(c.b.addr, &doomed_token).await;
    let (mut kept, _) = RawClient::connect(c.a.addr, &kept_token).await;

    let key_id = cli(&["keys", "list"], &env)?
        .lines()
        .find(|l| l.contains("e2e-key"))
        .and_then(|l| l.split('\t').next())
        .context("key id in `keys list`")?
        .to_owned();
    cli(&["keys", "revoke", &key_id], &env)?;
    let started = std::time::Instant::now();
    assert_eq!(within("revocation close on a", doomed_a.closed()).await?, (Some(4101), 4101));
    assert_eq!(within("revocation close on b", doomed_b.closed()).await?, (Some(4101), 4101));
    assert!(started.elapsed() < Duration::from_secs(2), "closed after {:?}", started.elapsed());
    assert!(herald_edge::testing::is_ok(&kept.subscribe("still-fine").await));
    // The revoked key no longer works on the API either.
    assert!(c.publisher.publish("x", "y").await.is_err());
    // Its tokens no longer connect: not to the edges that heard the event,
    // nor to one started after it (which reads the JWKS's list).
    let late = EdgeProc::start("edge-late", &c.cp, &nats_url(), &c.prefix).await?;
    for addr in [c.a.addr, late.addr] {
        assert_eq!(RawClient::refused(addr, &doomed_token).await.1, 4101, "{addr}");
        let (mut fine, _) = RawClient::connect(addr, &kept_token).await;
        assert!(herald_edge::testing::is_ok(&fine.subscribe("x").await));
    }

    // Deleting the app closes its connections and refuses its tokens, also
    // on an edge started afterwards.
    cli(&["apps", "delete", &c.app], &env)?;
    assert_eq!(within("deletion close", kept.closed()).await?, (Some(4503), 4503));
    let later = EdgeProc::start("edge-later", &c.cp, &nats_url(), &c.prefix).await?;
    for addr in [c.b.addr, later.addr] {
        assert_eq!(RawClient::refused(addr, &kept_token).await.1, 4503, "{addr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_edge_reconnect_to_the_other_and_keep_receiving() -> Result<()> {
    let mut c = cluster(&nats_url()).await?;
    let client = Client::builder(c.a.url())
        .url(c.b.url())
        .token_provider(tokens(&c.publisher, "alice"))
        .configure(|cfg| cfg.backoff.initial = Duration::from_millis(200))
        .connect()
        .await?;
    let mut sub = client.subscribe("feed").await?;
    c.publisher.publish("feed", "before").await?;
    assert_eq!(next_text(&mut sub).await?, "before");

    c.a.process.kill();
    // Publish until the reconnected subscription sees a message.
    let mut n = 0;
    let got = within("delivery after the kill", async {
        loop {
            n += 1;
            c.publisher.publish("feed", format!("after-{n}")).await?;
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                return Ok::<_, anyhow::Error>(String::from_utf8_lossy(&m.data).into_owned());
            }
        }
    })
    .await??;
    assert!(got.starts_with("after-"), "{got}");
    let port = c.b.addr.port().to_string();
    assert_eq!(client.connection().map(|info| info.url.contains(&port)), Some(true));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_edge_and_nothing_its_clients_publish_is_lost() -> Result<()> {
    let mut c = cluster(&nats_url()).await?;
    let watcher = Client::builder(c.b.url()).token_provider(tokens(&c.publisher, "watcher")).connect().await?;
    let mut seen = watcher.subscribe("orders").await?;
    let publisher =
        Client::builder(c.a.url()).url(c.b.url()).token_provider(tokens(&c.publisher, "writer")).connect().await?;

    // Publish steadily while edge A drains.
    let total = 200;
    let sender = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..total {
                let ack = publisher.publish("orders", format!("order-{i}")).await;
                if ack.is_ok() {
                    acked.push(format!("order-{i}"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.a.process.terminate()?;
    assert!(c.a.process.wait_exit(Duration::from_secs(20)).await?, "the edge exits cleanly after draining");
    let acked = within("publishes finish", sender).await??;
    // Told to move, the publisher finished what it had in flight on A and
    // went on through B: nothing failed, nothing twice, nothing reordered.
    assert_eq!(acked.len(), total, "every publish was acknowledged, through the drain");
    let mut received = Vec::new();
    while received.len() < acked.len() {
        received.push(next_text(&mut seen).await?);
    }
    assert_eq!(received, acked);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_resume_after_nats_restarts() -> Result<()> {
    let mut nats = NatsServer::start().await;
    let c = cluster(&nats.url()).await?;
    let client = Client::builder(c.a.url()).token_provider(tokens(&c.publisher, "alice")).connect().await?;
    let mut sub = client.subscribe("ticks").await?;
    c.publisher.publish("ticks", "before").await?;
    assert_eq!(next_text(&mut sub).await?, "before");

    nats.kill();
    // While NATS is down, the API answers 503 — never a false 202 — and
    // both the control plane and the edges say they are not ready.
    let refused = c.publisher.publish("ticks", "lost").await;
    assert!(refused.is_err(), "{refused:?}");
    for (addr, what) in [(c.cp.addr, "control plane"), (c.a.addr, "edge a"), (c.b.addr, "edge b")] {
        within(&format!("{what} not ready without NATS"), async {
            while http_get(addr, "/readyz").await.is_none_or(|(status, _)| status == 200) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await?;
    }
    nats.restart().await;
    for (addr, what) in [(c.cp.addr, "control plane"), (c.a.addr, "edge a"), (c.b.addr, "edge b")] {
        within(&format!("{what} ready again"), async {
            while http_get(addr, "/readyz").await.is_none_or(|(status, _)| status != 200) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await?;
    }

    let got = within("delivery after the NATS restart", async {
        loop {
            if c.publisher.publish("ticks", "after").await.is_ok()
                && let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await
                && &m.data[..] == b"after"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    got?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_delivers_too() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("herald-dev-{}", random_suffix()));
    let (api, edge) = (free_addr(), free_addr());
    let mut dev = Process::start(
        "dev",
        &[
            "dev",
            "--data-dir",
            &dir.display().to_string(),
            "--api-addr",
            &api.to_string(),
            "--edge-addr",
            &edge.to_string(),
        ],
        &[],
    )?;
    wait_ready(api, "dev api").await?;
    wait_ready(edge, "dev edge").await?;
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("dev.json"))?)?;
    let field = |k: &str| state[k].as_str().map(str::to_owned).with_context(|| format!("dev.json lacks {k}"));
    let publisher = Publisher::new(&field("api_url")?, &field("app_id")?, &field("api_key")?)?;
    let client = Client::builder(field("edge_url")?).token_provider(tokens(&publisher, "alice")).connect().await?;
    let mut sub = client.subscribe("chat").await?;
    publisher.publish("chat", serde_json::json!({"text": "hello"})).await?;
    assert_eq!(next_text(&mut sub).await?, r#"{"text":"hello"}"#);
    client.close().await;

    // A restart reuses dev.json, and tokens minted before it still verify.
    let old_token = publisher.mint_token(&TokenRequest::new("bob").allow("*", ["subscribe"])).await?.token;
    dev.terminate()?;
    dev.wait_exit(Duration::from_secs(20)).await?;
    let _dev = Process::start(
        "dev",
        &[
            "dev",
            "--data-dir",
            &dir.display().to_string(),
            "--api-addr",
            &api.to_string(),
            "--edge-addr",
            &edge.to_string(),
        ],
        &[],
    )?;
    wait_ready(edge, "dev edge after restart").await?;
    let mut again: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("dev.json"))?)?;
    // Every start prints a fresh one-time console sign-in link; the rest is kept.
    let (mut before, link) = (state.clone(), again["console_url"].take());
    assert_ne!(link, before["console_url"].take(), "a new sign-in link each start");
    assert_eq!(again, before);
    let (mut raw, connected) = RawClient::connect(edge, &old_token).await;
    assert_eq!(connected.client_id, "bob");
    assert!(herald_edge::testing::is_ok(&raw.subscribe("chat").await));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Started under a soft limit of 256 open files, the binary raises it to
/// the hard limit (an edge holds one file per connection).
#[tokio::test]
async fn the_binary_raises_its_open_files_limit() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("herald-dev-{}", random_suffix()));
    let (api, edge) = (free_addr(), free_addr());
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -S -n 256 && exec "$0" dev --data-dir "$1" --api-addr "$2" --edge-addr "$3""#)
        .arg(herald_bin()?)
        .args([dir.display().to_string(), api.to_string(), edge.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let ready = wait_ready(edge, "dev edge").await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    ready?;
    let line = limits?.lines().find(|l| l.starts_with("Max open files")).context("no open files line")?.to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_ne!(soft, "256", "{line}");
    assert_eq!(soft, hard, "{line}");
    Ok(())
}
