//! End to end, a dead control plane: edges keep serving without it —
//! connected clients keep exchanging messages, new connections with tokens
//! issued before are accepted (the JWKS is cached) — and REST publishes
//! resume once a control plane is back on the same database.

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt as _;
use herald_sdk::{Client, Publisher, Subscription, TokenRequest};
use herald_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(LIMIT, f).await.with_context(|| format!("timed out: {what}"))
}

async fn next_text(sub: &mut Subscription) -> Result<String> {
    let message = within("a message", sub.next()).await?.context("subscription ended")?;
    Ok(String::from_utf8_lossy(&message.data).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_serve_while_the_control_plane_is_dead_and_publishes_resume_when_it_is_back() -> Result<()> {
    let nats = nats_url();
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let mut cp = ControlPlaneProc::start(&db, &nats, &prefix).await?;
    let a = EdgeProc::start("edge-a", &cp, &nats, &prefix).await?;
    let b = EdgeProc::start("edge-b", &cp, &nats, &prefix).await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    let mint = |who: &str| TokenRequest::new(who).allow("*", ["subscribe", "publish"]);
    // Tokens issued while the control plane is up.
    let alice_token = publisher.mint_token(&mint("alice")).await?.token;
    let bob_token = publisher.mint_token(&mint("bob")).await?.token;
    let carol_token = publisher.mint_token(&mint("carol")).await?.token;

    let alice = Client::builder(a.url()).token(alice_token).connect().await?;
    let mut news = alice.subscribe("news").await?;
    let bob = Client::builder(b.url()).token(bob_token).connect().await?;
    bob.publish("news", "before").await?;
    assert_eq!(next_text(&mut news).await?, "before");

    // The control plane dies without a word.
    cp.process.kill();

    // Connected clients keep exchanging messages across edges.
    bob.publish("news", "during").await?;
    assert_eq!(next_text(&mut news).await?, "during");
    // A new connection with a token issued before is accepted.
    let carol = Client::builder(b.url()).token(carol_token).connect().await?;
    let mut carol_news = carol.subscribe("news").await?;
    bob.publish("news", "to both").await?;
    assert_eq!(next_text(&mut news).await?, "to both");
    assert_eq!(next_text(&mut carol_news).await?, "to both");
    // REST publishes fail meanwhile, with an error, not a hang.
    let failed = within("a REST publish with no control plane", publisher.publish("news", "lost")).await?;
    assert!(failed.is_err(), "published with the control plane dead");

    // A control plane comes back on the same database: REST publishes
    // resume, and reach both edges.
    let back = ControlPlaneProc::start(&db, &nats, &prefix).await?;
    let publisher = Publisher::new(back.url(), &app, &key)?;
    within("a REST publish after the restart", async {
        loop {
            if publisher.publish("news", "after").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await?;
    assert_eq!(next_text(&mut news).await?, "after");
    assert_eq!(next_text(&mut carol_news).await?, "after");
    Ok(())
}
