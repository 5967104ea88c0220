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

/// Asks `check` every 200 ms until it says yes (within the time limit).
async fn until(what: &str, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    within(what, async {
        while !check().await? {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?
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
    let cp = ControlPlaneProc::start_with(&db, nats, &prefix, &[("HERALD_CP_PRESENCE_TTL", "2s".into())]).await?;
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

    /// Every member of a channel over REST, page after page.
    async fn members(&self, channel: &str) -> Result<Vec<String>> {
        let mut members = Vec::new();
        let mut query = String::new();
        loop {
            let answer = self.get(&format!("/channels/{channel}/presence{query}")).await?;
            members.extend(
                answer["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["client_id"].as_str().map(str::to_owned)),
            );
            match answer["next"].as_str() {
                Some(next) => query = format!("?after={next}"),
                None => return Ok(members),
            }
        }
    }

    /// A channel's subscribers across edges, from the channel list.
    async fn subscribers(&self, channel: &str) -> Result<Option<u64>> {
        let channels = self.get("/channels").await?;
        Ok(channels["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|ch| ch["name"] == channel)
            .and_then(|ch| ch["subscribers"].as_u64()))
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
    // (A publish stored while NATS restarted may have lost only its answer:
    // history may hold more than was acknowledged, never less.)
    let held = page["messages"].as_array().map_or(0, Vec::len);
    assert!((acked.len().min(1000)..=1000).contains(&held), "{held} held, {} acknowledged", acked.len());
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
    until("both members over REST", async || Ok(c.members("room:1").await? == ["alice", "bob"])).await?;
    assert_eq!(alice.presence("room:1").await?.len(), 2);
    until("subscriber counts", async || Ok(c.subscribers("room:1").await? == Some(2))).await?;

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
    until("no ghost over REST", async || Ok(c.members("room:1").await? == ["alice"])).await?;
    Ok(())
}

/// A presence channel with 10,000 members, each its own client id on its own
/// connection, half on each edge: the control plane lists them all (in
/// pages), a member's connection lists them all, the channel list counts
/// them; members that leave and an edge that is SIGKILLed take their
/// entries with them. (Needs about 10,000 open files in this process and
/// 5,000 in each edge's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_channel_with_ten_thousand_members() -> Result<()> {
    const MEMBERS: usize = 10_000;
    let mut c = cluster(&nats_url()).await?;
    c.put_namespace("hall", r#"{"presence": true}"#).await?;
    let alice = c.client("alice").connect().await?;
    let _hall = alice.subscribe("hall:main").await?;

    // Tokens, then connections (64 at a time), each subscribed as a member.
    let publisher = std::sync::Arc::new(c.publisher.clone());
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut joins = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let (publisher, gate) = (publisher.clone(), gate.clone());
        let edge = if i % 2 == 0 { c.a.addr } else { c.b.addr };
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let request = TokenRequest::new(format!("m{i:05}"))
                .allow("hall:*", ["subscribe", "presence"])
                .info(serde_json::json!({"n": i}));
            let token = publisher.mint_token(&request).await?.token;
            let mut conn = herald_bench::Conn::connect(edge, &token).await?;
            conn.subscribe("hall:main").await?;
            Ok::<_, anyhow::Error>((i, conn))
        }));
    }
    let mut conns = Vec::with_capacity(MEMBERS);
    for join in joins {
        conns.push(within("a member's join", join).await???);
    }
    let total = MEMBERS + 1;
    let expected: Vec<String> =
        std::iter::once("alice".to_owned()).chain((0..MEMBERS).map(|i| format!("m{i:05}"))).collect();
    until("every member over REST", async || Ok(c.members("hall:main").await? == expected)).await?;
    let first = c.get("/channels/hall:main/presence").await?;
    assert_eq!((first["count"].as_u64(), first["members"].as_array().map(Vec::len)), (Some(total as u64), Some(1000)));
    assert_eq!(first["members"][1]["info"], serde_json::json!({"n": 0}));
    within("every member over the connection", async {
        loop {
            let listed = alice.presence("hall:main").await?;
            if listed.len() == total {
                let ids: Vec<String> = listed.into_iter().map(|m| m.client_id).collect();
                assert_eq!(ids, expected);
                return Ok::<_, anyhow::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await??;
    until("the subscriber count", async || Ok(c.subscribers("hall:main").await? == Some(total as u64))).await?;

    // 4,000 members close their connections.
    let (gone, stay): (Vec<_>, Vec<_>) = conns.into_iter().partition(|(i, _)| i % 5 < 2);
    drop(gone);
    let expected: Vec<String> =
        std::iter::once("alice".to_owned()).chain(stay.iter().map(|(i, _)| format!("m{i:05}"))).collect();
    until("the leaves over REST", async || Ok(c.members("hall:main").await? == expected)).await?;
    // Edge A learns of edge B's leaves over NATS, not at the same instant
    // as the control plane.
    until("the leaves over the connection", async || Ok(alice.presence("hall:main").await?.len() == expected.len()))
        .await?;

    // Edge B dies without a word: its 3,000 members expire.
    c.b.process.kill();
    let expected: Vec<String> = std::iter::once("alice".to_owned())
        .chain(stay.iter().filter(|(i, _)| i % 2 == 0).map(|(i, _)| format!("m{i:05}")))
        .collect();
    until("no ghost after the kill", async || Ok(c.members("hall:main").await? == expected)).await?;
    // Edge A drops them on the same TTL, checked every second.
    until("no ghost on edge A", async || Ok(alice.presence("hall:main").await?.len() == expected.len())).await?;
    Ok(())
}

/// `herald dev` runs the embedded mode: the same namespaces, history with
/// recovery and presence, on the in-process bus and store. Its history is
/// kept in the data folder: a restart keeps messages, epochs and sequence
/// numbers, so clients recover across it; a damaged file is read up to the
/// damage under a new epoch, a foreign one refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_keeps_history_and_presence() -> Result<()> {
    use herald_edge::testing::{RawClient, is_ok};
    use herald_proto::client::{reply, reply_ok};

    let dir = std::env::temp_dir().join(format!("herald-dev-{}", random_suffix()));
    let (api, edge) = (free_addr(), free_addr());
    let args = |dir: &std::path::Path| {
        vec![
            "dev".to_owned(),
            "--data-dir".to_owned(),
            dir.display().to_string(),
            "--api-addr".to_owned(),
            api.to_string(),
            "--edge-addr".to_owned(),
            edge.to_string(),
        ]
    };
    let start = |dir: &std::path::Path| {
        let args = args(dir);
        Process::start("dev", &args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let mut dev = start(&dir)?;
    wait_ready(api, "dev api").await?;
    wait_ready(edge, "dev edge").await?;
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("dev.json"))?)?;
    let field = |k: &str| state[k].as_str().map(str::to_owned).with_context(|| format!("dev.json lacks {k}"));
    let (app, admin) = (field("app_id")?, field("admin_token")?);
    let publisher = Publisher::new(&field("api_url")?, &app, &field("api_key")?)?;
    for (name, body) in [
        ("hist", r#"{"history_size": 100, "history_ttl": "1h"}"#),
        ("tiny", r#"{"history_size": 2, "history_ttl": "1h"}"#),
        ("room", r#"{"presence": true, "join_leave": true}"#),
    ] {
        let (status, answer) =
            http_request(api, "PUT", &format!("/v1/apps/{app}/namespaces/{name}"), &admin, Some(body)).await?;
        anyhow::ensure!(status == 201, "PUT namespace {name}: {status} {answer}");
    }
    let token = |who: &str| {
        let request = TokenRequest::new(who).allow("*", ["subscribe", "publish", "presence", "history"]);
        let publisher = publisher.clone();
        async move { Ok::<_, anyhow::Error>(publisher.mint_token(&request).await?.token) }
    };
    let subscribed = |r: &herald_proto::client::Reply| match &r.result {
        Some(reply::Result::Ok(herald_proto::client::ReplyOk { value: Some(reply_ok::Value::Subscribed(s)) })) => {
            s.clone()
        }
        other => panic!("expected a subscribe result, got {other:?}"),
    };

    // History: a client sees 3 messages, goes away, 3 more are published;
    // back from its last position it gets exactly those, then live.
    let (mut a, _) = RawClient::connect(edge, &token("alice").await?).await;
    assert!(subscribed(&a.subscribe("hist:feed").await).history);
    for i in 0..3 {
        publisher.publish("hist:feed", format!("m{i}")).await?;
    }
    let mut last = None;
    for i in 0..3 {
        let m = a.message().await;
        assert_eq!(m.data, format!("m{i}").as_bytes());
        last = Some((m.seq, m.epoch));
    }
    drop(a);
    let (seq, epoch) = last.context("positions")?;
    for i in 3..6 {
        publisher.publish("hist:feed", format!("m{i}")).await?;
    }
    let (mut back, _) = RawClient::connect(edge, &token("alice").await?).await;
    assert!(subscribed(&back.subscribe_from("hist:feed", seq, &epoch).await).recovered);
    for i in 3..6 {
        assert_eq!(back.message().await.data, format!("m{i}").as_bytes());
    }
    publisher.publish("hist:feed", "live").await?;
    assert_eq!(back.message().await.data, &b"live"[..]);
    assert!(back.recv_within(Duration::from_millis(200)).await.is_none(), "no duplicate");
    // A position that fell out of a two-message history is not recovered.
    let first = match back.publish("tiny:x", b"t0").await.result {
        Some(reply::Result::Ok(herald_proto::client::ReplyOk { value: Some(reply_ok::Value::Published(p)) })) => {
            p.position.context("a history publish has a position")?
        }
        other => anyhow::bail!("expected a publish result, got {other:?}"),
    };
    for i in 1..4 {
        publisher.publish("tiny:x", format!("t{i}")).await?;
    }
    assert!(!subscribed(&back.subscribe_from("tiny:x", first.seq, &first.epoch).await).recovered);
    // The backend reads the same history.
    let page = publisher_history(api, &app, &field("api_key")?, "hist:feed").await?;
    assert_eq!(page, ["m0", "m1", "m2", "m3", "m4", "m5", "live"]);

    // Presence: members over the connection and over REST, join events.
    let alice = Client::builder(field("edge_url")?)
        .token_provider(publisher.token_provider(TokenRequest::new("alice").allow("*", ["subscribe", "presence"])))
        .connect()
        .await?;
    let mut room = alice.subscribe("room:1").await?;
    let (mut bob, _) = RawClient::connect(edge, &token("bob").await?).await;
    assert!(is_ok(&bob.subscribe("room:1").await));
    let joined = within("bob's join", async {
        loop {
            if let Some(SubscriptionEvent::Presence(p)) = room.next_event().await {
                return p;
            }
        }
    })
    .await?;
    assert!(joined.joined && joined.member.client_id == "bob", "{joined:?}");
    let members: Vec<String> = alice.presence("room:1").await?.into_iter().map(|m| m.client_id).collect();
    assert_eq!(members, ["alice", "bob"]);
    let (status, body) =
        http_request(api, "GET", &format!("/v1/apps/{app}/channels/room:1/presence"), &field("api_key")?, None).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body)?["count"], 2);
    // The channel list follows subscriptions within seconds, not at the
    // next periodic report (10 s here).
    let key = field("api_key")?;
    let subscribers = async |channel: &str| -> Result<Option<u64>> {
        let (_, body) = http_request(api, "GET", &format!("/v1/apps/{app}/channels"), &key, None).await?;
        let list: serde_json::Value = serde_json::from_str(&body)?;
        Ok(list["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == channel)
            .and_then(|c| c["subscribers"].as_u64()))
    };
    let prompt = async |channel: &str, count: Option<u64>| -> Result<()> {
        tokio::time::timeout(Duration::from_secs(4), async {
            while subscribers(channel).await? != count {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, anyhow::Error>(())
        })
        .await
        .with_context(|| format!("{channel} never had {count:?} subscribers"))?
    };
    prompt("room:1", Some(2)).await?;
    drop(bob);
    let left = within("bob's leave", async {
        loop {
            if let Some(SubscriptionEvent::Presence(p)) = room.next_event().await {
                return p;
            }
        }
    })
    .await?;
    assert!(!left.joined && left.member.client_id == "bob", "{left:?}");
    prompt("room:1", Some(1)).await?;
    alice.close().await;
    prompt("room:1", None).await?;

    // A restart: history is kept in the data folder. The REST API shows
    // the old messages, a client recovers from its position before the
    // restart (same epoch), and sequence numbers go on.
    dev.terminate()?;
    dev.wait_exit(Duration::from_secs(20)).await?;
    let mut dev = start(&dir)?;
    wait_ready(api, "dev api after restart").await?;
    wait_ready(edge, "dev edge after restart").await?;
    let page = publisher_history(api, &app, &field("api_key")?, "hist:feed").await?;
    assert_eq!(page, ["m0", "m1", "m2", "m3", "m4", "m5", "live"], "history after a restart");
    let (mut after, _) = RawClient::connect(edge, &token("alice").await?).await;
    let result = subscribed(&after.subscribe_from("hist:feed", seq, &epoch).await);
    assert!(result.history && result.recovered, "{result:?}");
    for text in ["m3", "m4", "m5", "live"] {
        let m = after.message().await;
        assert_eq!(m.data, text.as_bytes());
        assert_eq!(m.epoch, epoch, "the epoch outlives the restart");
    }
    publisher.publish("hist:feed", "after").await?;
    let m = after.message().await;
    assert_eq!(m.data, &b"after"[..]);
    assert!(m.seq > seq + 4, "sequence numbers go on: {} after {}", m.seq, seq + 4);
    // The bounds hold across the restart: the two-message channel still
    // does not recover its first position.
    assert!(!subscribed(&after.subscribe_from("tiny:x", first.seq, &first.epoch).await).recovered);
    drop(after);

    // A history file cut short (the process died mid-write) is read up to
    // the cut with a warning; its streams get a new epoch, so an old
    // position is refused rather than recovered with a gap.
    dev.terminate()?;
    dev.wait_exit(Duration::from_secs(20)).await?;
    let history = dir.join("history.log");
    let bytes = std::fs::read(&history)?;
    std::fs::write(&history, &bytes[..bytes.len() - 2])?;
    let mut dev = start(&dir)?;
    wait_ready(api, "dev api after a damaged history file").await?;
    wait_ready(edge, "dev edge after a damaged history file").await?;
    let page = publisher_history(api, &app, &field("api_key")?, "hist:feed").await?;
    assert_eq!(page, ["m0", "m1", "m2", "m3", "m4", "m5", "live"], "all but the cut message");
    let (mut after, _) = RawClient::connect(edge, &token("alice").await?).await;
    let result = subscribed(&after.subscribe_from("hist:feed", seq, &epoch).await);
    assert!(result.history && !result.recovered, "{result:?}");
    assert_ne!(result.position.context("position")?.epoch, epoch, "a new epoch");
    drop(after);

    // A file that is not a history file stops the start with a clear error.
    dev.terminate()?;
    dev.wait_exit(Duration::from_secs(20)).await?;
    std::fs::write(&history, "something else")?;
    let out = std::process::Command::new(herald_tests::herald_bin()?)
        .args(args(&dir))
        .env_remove("HERALD_LOG")
        .stdin(std::process::Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "herald dev started on a foreign history file");
    assert!(stderr.contains("is not a Herald history file") && stderr.contains("history.log"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The texts of a channel's history, read through the REST API.
async fn publisher_history(api: std::net::SocketAddr, app: &str, key: &str, channel: &str) -> Result<Vec<String>> {
    let (status, body) =
        http_request(api, "GET", &format!("/v1/apps/{app}/channels/{channel}/history?limit=100"), key, None).await?;
    anyhow::ensure!(status == 200, "history: {status} {body}");
    let page: serde_json::Value = serde_json::from_str(&body)?;
    Ok(page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["data"].as_str().map(str::to_owned))
        .collect())
}
