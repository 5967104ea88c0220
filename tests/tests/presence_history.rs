//! End to end, presence and history: a control plane on PostgreSQL and two
//! edges over a NATS of the test's own (so it can be killed), namespaces set
//! through the REST API, clients through the SDK, edges SIGKILLed.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_edge::testing::NatsServer;
use herald_sdk::{Client, Publisher, SubscriptionEvent, TokenRequest};
use herald_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(LIMIT, f).await.with_context(|| format!("timed out: {what}"))
}

struct Cluster {
    _db: TestDb,
    cp: ControlPlaneProc,
    a: EdgeProc,
    b: EdgeProc,
    publisher: Publisher,
    app: String,
    key: String,
}

/// Presence reports every 500 ms, expiring after 2 s, on edges and control
/// plane alike.
fn fast_presence() -> Vec<(&'static str, String)> {
    vec![("HERALD_EDGE_PRESENCE_SNAPSHOT_INTERVAL", "500ms".into()), ("HERALD_EDGE_PRESENCE_TTL", "2s".into())]
}

async fn cluster(nats: &str) -> Result<Cluster> {
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start_with(&db, nats, &prefix, &[("HERALD_CP_PRESENCE_TTL_MS", "2000".into())]).await?;
    let a = EdgeProc::start_with("edge-a", free_addr(), &cp, nats, &prefix, &fast_presence()).await?;
    let b = EdgeProc::start_with("edge-b", free_addr(), &cp, nats, &prefix, &fast_presence()).await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    Ok(Cluster { _db: db, cp, a, b, publisher, app, key })
}

impl Cluster {
    async fn put_namespace(&self, name: &str, body: &str) -> Result<()> {
        let path = format!("/v1/apps/{}/namespaces/{name}", self.app);
        let (status, answer) = http_request(self.cp.addr, "PUT", &path, &self.cp.admin_token, Some(body)).await?;
        if !(200..300).contains(&status) {
            bail!("PUT {path}: {status} {answer}");
        }
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<serde_json::Value> {
        let path = format!("/v1/apps/{}{path}", self.app);
        let (status, body) = http_request(self.cp.addr, "GET", &path, &self.key, None).await?;
        if status != 200 {
            bail!("GET {path}: {status} {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    async fn members(&self, channel: &str) -> Result<Vec<String>> {
        let answer = self.get(&format!("/channels/{channel}/presence")).await?;
        Ok(answer["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["client_id"].as_str().map(str::to_owned))
            .collect())
    }

    fn client(&self, name: &str) -> herald_sdk::ClientBuilder {
        let request = TokenRequest::new(name).allow("*", ["subscribe", "publish", "presence", "history"]);
        Client::builder(self.a.url())
            .url(self.b.url())
            .token_provider(self.publisher.token_provider(request))
            .configure(|cfg| cfg.backoff.initial = Duration::from_millis(100))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_recovered_with_no_gap_across_an_edge_sigkill_and_a_nats_restart() -> Result<()> {
    let mut nats = NatsServer::start().await;
    let mut c = cluster(&nats.url()).await?;
    c.put_namespace("hist", r#"{"history_size": 10000, "history_ttl": "1h"}"#).await?;
    let client = c.client("alice").connect().await?;
    let mut feed = client.subscribe("hist:feed").await?;

    // A publisher keeps numbered messages coming through the REST API for
    // the whole test; it remembers which ones were acknowledged.
    let publisher = c.publisher.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut n = 0u32;
        while !*stop_rx.borrow_and_update() {
            if publisher.publish("hist:feed", n.to_string()).await.is_ok() {
                acked.push(n);
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    });

    let mut received: Vec<u32> = Vec::new();
    let mut recovered_events = Vec::new();
    let next = |received: &mut Vec<u32>, recovered: &mut Vec<bool>, event: SubscriptionEvent| match event {
        SubscriptionEvent::Message(m) => {
            received.push(m.text().unwrap_or_default().parse().unwrap_or(u32::MAX));
        }
        SubscriptionEvent::Resubscribed { recovered: r } => recovered.push(r),
        _ => {}
    };
    while received.len() < 30 {
        let event = within("a message", feed.next_event()).await?.context("ended")?;
        next(&mut received, &mut recovered_events, event);
    }
    // The edge the client is on dies without a word.
    c.a.process.kill();
    while received.len() < 80 {
        let event = within("a message after the edge kill", feed.next_event()).await?.context("ended")?;
        next(&mut received, &mut recovered_events, event);
    }
    // NATS dies and comes back with its store.
    nats.restart().await;
    let target = received.len() + 50;
    while received.len() < target {
        let event = within("a message after the NATS restart", feed.next_event()).await?.context("ended")?;
        next(&mut received, &mut recovered_events, event);
    }
    stop_tx.send(true)?;
    let acked = producer.await?;
    // Drain what is still on its way.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), feed.next_event()).await {
        next(&mut received, &mut recovered_events, event);
    }
    assert!(recovered_events.contains(&true), "the client recovered after the edge kill: {recovered_events:?}");
    assert!(!recovered_events.contains(&false), "never had to give up: {recovered_events:?}");
    // No duplicate, in order, and every acknowledged message arrived.
    assert!(received.windows(2).all(|w| w[0] < w[1]), "order / duplicates: {received:?}");
    let got: BTreeSet<u32> = received.iter().copied().collect();
    let missing: Vec<u32> = acked.iter().filter(|n| !got.contains(n)).copied().collect();
    assert!(missing.is_empty(), "acknowledged but never delivered: {missing:?}");

    // The backend reads the same history.
    let page = c.get("/channels/hist:feed/history?since=0&limit=1000").await?;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(acked.len().min(1000)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_leave_across_edges_and_a_killed_edge_leaves_no_ghost() -> Result<()> {
    let mut c = cluster(&nats_url()).await?;
    c.put_namespace("room", r#"{"presence": true, "join_leave": true}"#).await?;
    let alice = Client::builder(c.a.url())
        .token_provider(c.publisher.token_provider(TokenRequest::new("alice").allow("*", ["subscribe", "presence"])))
        .connect()
        .await?;
    let mut room = alice.subscribe("room:1").await?;
    let bob = Client::builder(c.b.url())
        .token_provider(c.publisher.token_provider(TokenRequest::new("bob").allow("*", ["subscribe", "presence"])))
        .connect()
        .await?;
    let _bob_room = bob.subscribe("room:1").await?;
    let joined = within("bob's join", async {
        loop {
            if let Some(SubscriptionEvent::Presence(p)) = room.next_event().await {
                return p;
            }
        }
    })
    .await?;
    assert!(joined.joined && joined.member.client_id == "bob", "{joined:?}");
    // The control plane sees both, and the occupied channel.
    within("both members over REST", async {
        while c.members("room:1").await? != ["alice", "bob"] {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    assert_eq!(alice.presence("room:1").await?.len(), 2);
    within("subscriber counts", async {
        loop {
            let channels = c.get("/channels").await?;
            let count = channels["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|ch| ch["name"] == "room:1")
                .and_then(|ch| ch["subscribers"].as_u64());
            if count == Some(2) {
                return Ok::<_, anyhow::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await??;

    // Bob's edge is SIGKILLed: nobody says goodbye, the entries expire.
    c.b.process.kill();
    let left = within("bob's leave after the kill", async {
        loop {
            if let Some(SubscriptionEvent::Presence(p)) = room.next_event().await {
                return p;
            }
        }
    })
    .await?;
    assert!(!left.joined && left.member.client_id == "bob", "{left:?}");
    within("no ghost over REST", async {
        while c.members("room:1").await? != ["alice"] {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}
