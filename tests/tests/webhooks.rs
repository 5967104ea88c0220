//! End to end, webhooks: control planes on PostgreSQL and edges over NATS
//! as processes, clients through the SDK, endpoints created over REST, and
//! real HTTP receivers in the test. Edges and control planes are SIGKILLed
//! like a crash would.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_sdk::{Client, Publisher, TokenRequest};
use herald_tests::webhooks::{Received, Receiver, Reply, event_name, has, herald_signature_valid};
use herald_tests::*;
use serde_json::{Value, json};

/// Fast presence: edges report every 500 ms, reports expire after 2 s.
fn fast_edge() -> Vec<(&'static str, String)> {
    vec![("HERALD_EDGE_PRESENCE_SNAPSHOT_INTERVAL", "500ms".into()), ("HERALD_EDGE_PRESENCE_TTL", "2s".into())]
}

/// Control-plane settings of these tests: fast presence expiry, a 1 s
/// debounce, receivers on loopback allowed, a 2 s answer timeout.
fn cp_env() -> Vec<(&'static str, String)> {
    vec![
        ("HERALD_CP_PRESENCE_TTL", "2s".into()),
        ("HERALD_CP_WEBHOOK_DEBOUNCE", "1s".into()),
        ("HERALD_CP_WEBHOOK_ALLOW_PRIVATE_URLS", "true".into()),
        ("HERALD_CP_WEBHOOK_TIMEOUT", "2s".into()),
        ("HERALD_CP_WEBHOOK_POLL_INTERVAL", "200ms".into()),
    ]
}

struct Setup {
    db: TestDb,
    prefix: String,
    cp: ControlPlaneProc,
    app: String,
    key: String,
    pusher_secret: String,
    publisher: Publisher,
}

/// A control plane, an app in Pusher mode, a key with a Pusher secret.
async fn setup(extra: &[(&'static str, String)]) -> Result<Setup> {
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let mut env = cp_env();
    env.extend(extra.iter().cloned());
    let cp = ControlPlaneProc::start_with(&db, &nats_url(), &prefix, &env).await?;
    let admin = [("HERALD_API_URL", cp.url()), ("HERALD_ADMIN_TOKEN", cp.admin_token.clone())];
    let app = cli(&["apps", "create", "hooks", "--pusher", "--pusher-client-events"], &admin)?;
    let app = app.lines().next().context("no app id")?.to_owned();
    let mut env = admin.to_vec();
    env.push(("HERALD_APP_ID", app.clone()));
    let keys = cli(&["keys", "create", "hooks-key", "--pusher"], &env)?;
    let mut lines = keys.lines();
    let key = lines.next().context("no key")?.to_owned();
    let pusher_secret = lines.next().context("no Pusher secret")?.to_owned();
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    Ok(Setup { db, prefix, cp, app, key, pusher_secret, publisher })
}

impl Setup {
    /// Creates an endpoint over REST; returns (id, secret).
    async fn endpoint(&self, body: Value) -> Result<(String, String)> {
        let path = format!("/v1/apps/{}/webhooks", self.app);
        let (status, answer) =
            http_request(self.cp.addr, "POST", &path, &self.cp.admin_token, Some(&body.to_string())).await?;
        if status != 201 {
            bail!("POST {path}: {status} {answer}");
        }
        let v: Value = serde_json::from_str(&answer)?;
        Ok((v["id"].as_str().context("id")?.to_owned(), v["secret"].as_str().context("secret")?.to_owned()))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let path = format!("/v1/apps/{}{path}", self.app);
        let (status, body) = http_request(self.cp.addr, "GET", &path, &self.cp.admin_token, None).await?;
        if status != 200 {
            bail!("GET {path}: {status} {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    fn client(&self, edge: &EdgeProc, user: &str) -> herald_sdk::ClientBuilder {
        let request = TokenRequest::new(user).allow("*", ["subscribe", "publish", "presence"]);
        Client::builder(edge.url())
            .token_provider(self.publisher.token_provider(request))
            .configure(|cfg| cfg.backoff.initial = Duration::from_millis(100))
    }
}

/// The (type, channel, user) of every delivered event, in order.
fn summary(events: &[(Value, Received)]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|(e, _)| {
            let user = e["data"]["user_id"].as_str().or_else(|| e["user_id"].as_str()).unwrap_or("").to_owned();
            (event_name(e).to_owned(), e["channel"].as_str().unwrap_or("").to_owned(), user)
        })
        .collect()
}

fn count(events: &[(Value, Received)], name: &str, channel: &str, user: &str) -> usize {
    summary(events).iter().filter(|(n, c, u)| n == name && c == channel && u == user).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_and_members_across_edges_reach_both_formats_once_and_a_killed_edge_is_counted_out() -> Result<()> {
    let s = setup(&[]).await?;
    let herald = Receiver::start().await?;
    let pusher = Receiver::start().await?;
    let (_, secret) = s.endpoint(json!({"url": herald.url("/herald"), "events": ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "subscription_count"]})).await?;
    s.endpoint(json!({"url": pusher.url("/pusher"), "format": "pusher", "events": ["channel_occupied", "channel_vacated", "member_added", "member_removed"]}))
        .await?;
    let mut a = EdgeProc::start_with("edge-a", free_addr(), &s.cp, &nats_url(), &s.prefix, &fast_edge()).await?;
    let mut b = EdgeProc::start_with("edge-b", free_addr(), &s.cp, &nats_url(), &s.prefix, &fast_edge()).await?;

    // Ada on edge A, Bob on edge B: one presence channel, one plain one.
    let ada = s.client(&a, "ada").connect().await?;
    let _ada_room = ada.subscribe("presence-room").await?;
    let _ada_news = ada.subscribe("news").await?;
    let bob = s.client(&b, "bob").connect().await?;
    let _bob_room = bob.subscribe("presence-room").await?;
    let _bob_news = bob.subscribe("news").await?;
    let wait = Duration::from_secs(15);
    herald
        .wait(wait, |_| {
            let d = herald.delivered();
            has(&d, "channel_occupied", "news")
                && count(&d, "member_added", "presence-room", "ada") == 1
                && count(&d, "member_added", "presence-room", "bob") == 1
        })
        .await?;
    // A client publish is a client event.
    ada.publish("news", "hello").await?;
    herald.wait(wait, |_| has(&herald.delivered(), "client_event", "news")).await?;

    // Bob reloads his page: gone and back within the debounce — nothing.
    bob.close().await;
    let bob = s.client(&b, "bob").connect().await?;
    let _bob_room = bob.subscribe("presence-room").await?;
    let _bob_news = bob.subscribe("news").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = herald.delivered();
    assert_eq!(count(&d, "member_removed", "presence-room", "bob"), 0, "{:?}", summary(&d));

    // Edge A dies with Ada on it: her reports expire (2 s), then the
    // debounce (1 s); she is removed, the channel stays occupied by Bob.
    a.process.kill();
    herald.wait(wait, |_| count(&herald.delivered(), "member_removed", "presence-room", "ada") == 1).await?;
    // Edge B dies too, with Bob: he is removed, and both channels are
    // vacated.
    b.process.kill();
    herald
        .wait(wait, |_| {
            let d = herald.delivered();
            has(&d, "channel_vacated", "presence-room") && has(&d, "channel_vacated", "news")
        })
        .await?;

    let d = herald.delivered();
    let seen = summary(&d);
    // Two edges, one occupation each; every member change once.
    for (name, channel, user) in [
        ("channel_occupied", "news", ""),
        ("channel_occupied", "presence-room", ""),
        ("member_added", "presence-room", "ada"),
        ("member_added", "presence-room", "bob"),
        ("member_removed", "presence-room", "ada"),
        ("member_removed", "presence-room", "bob"),
        ("channel_vacated", "presence-room", ""),
        ("channel_vacated", "news", ""),
    ] {
        assert_eq!(count(&d, name, channel, user), 1, "{name} {channel} {user}: {seen:?}");
    }
    // Order within the channel: removals before the vacating.
    let room: Vec<&(String, String, String)> = seen.iter().filter(|(_, c, _)| c == "presence-room").collect();
    assert_eq!(room.last().map(|(n, _, _)| n.as_str()), Some("channel_vacated"), "{room:?}");
    // Signed, with a unique id each, the client event carrying its data.
    let ids: BTreeSet<&str> = d.iter().map(|(e, _)| e["id"].as_str().unwrap_or("")).collect();
    assert_eq!(ids.len(), d.len(), "one id per event");
    for (e, r) in &d {
        assert!(herald_signature_valid(r, &secret, Duration::from_secs(300)), "signature of {e}");
        assert_eq!(r.header("herald-webhook-id"), e["id"].as_str().unwrap_or("-"));
        assert_eq!(e["app"], json!(s.app));
    }
    let client_event = d.iter().find(|(e, _)| event_name(e) == "client_event").context("client event")?;
    assert_eq!(client_event.0["data"]["data"], "hello");
    assert_eq!(client_event.0["data"]["user_id"], "ada");
    // Subscriber counts over both edges (news had two).
    let counts: Vec<i64> = d
        .iter()
        .filter(|(e, _)| event_name(e) == "subscription_count" && e["channel"] == "news")
        .filter_map(|(e, _)| e["data"]["subscription_count"].as_i64())
        .collect();
    assert!(counts.contains(&2), "news counts {counts:?}");

    // The Pusher endpoint got the same changes in Pusher's format.
    pusher.wait(wait, |_| has(&pusher.delivered(), "channel_vacated", "news")).await?;
    let p = pusher.delivered();
    assert_eq!(count(&p, "member_removed", "presence-room", "ada"), 1, "{:?}", summary(&p));
    assert_eq!(count(&p, "channel_occupied", "news", ""), 1, "{:?}", summary(&p));
    for (_, r) in &p {
        assert_eq!(r.header("x-pusher-key"), s.app);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.pusher_secret.as_bytes());
        let expected: String = ring::hmac::sign(&key, &r.body).as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r.header("x-pusher-signature"), expected);
        assert!(r.json()["time_ms"].as_i64().is_some());
    }

    // The delivery log shows the attempts.
    let hooks = s.get("/webhooks").await?;
    let id = hooks["webhooks"][0]["id"].as_str().context("endpoint id")?.to_owned();
    let log = s.get(&format!("/webhooks/{id}/deliveries")).await?;
    assert!(log["deliveries"].as_array().is_some_and(|l| l.len() >= 8), "{log}");
    drop((bob, s.key));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_gets_the_event_again_with_its_id_and_a_dead_one_delays_no_other() -> Result<()> {
    let s = setup(&[]).await?;
    let flaky = Receiver::start().await?;
    flaky.script(&[Reply::Status(500), Reply::Status(503), Reply::Status(429)]);
    let dead = Receiver::start().await?;
    dead.answer(Reply::Hang);
    let healthy = Receiver::start().await?;
    let occupied = json!(["channel_occupied"]);
    s.endpoint(json!({"url": dead.url("/"), "events": occupied})).await?;
    s.endpoint(json!({"url": flaky.url("/"), "events": occupied})).await?;
    s.endpoint(json!({"url": healthy.url("/"), "events": occupied})).await?;
    let edge = EdgeProc::start_with("edge", free_addr(), &s.cp, &nats_url(), &s.prefix, &fast_edge()).await?;
    let client = s.client(&edge, "ada").connect().await?;
    let mut subs = Vec::new();
    for i in 0..5 {
        subs.push(client.subscribe(format!("room-{i}")).await?);
    }
    // The healthy endpoint gets all five while the dead one holds its own
    // requests open (2 s timeout, retried).
    let start = tokio::time::Instant::now();
    healthy.wait(Duration::from_secs(10), |r| r.len() >= 5).await?;
    let took = start.elapsed();
    assert!(!dead.requests().is_empty(), "the dead endpoint was tried");
    assert!(took < Duration::from_secs(8), "the healthy endpoint waited {took:?}");

    // The flaky one: refused three times, then delivered — same id each time.
    flaky
        .wait(Duration::from_secs(30), |_| flaky.delivered().len() == 5)
        .await
        .context("the flaky endpoint got all five in the end")?;
    let requests = flaky.requests();
    let mut attempts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &requests {
        attempts
            .entry(r.json()["id"].as_str().unwrap_or("").to_owned())
            .or_default()
            .push(r.header("herald-webhook-attempt").to_owned());
    }
    assert_eq!(attempts.len(), 5, "{attempts:?}");
    // Three refusals, each retried under the same id with the next attempt
    // number.
    let retries: usize = attempts.values().map(|a| a.len() - 1).sum();
    assert_eq!(retries, 3, "{attempts:?}");
    for numbers in attempts.values() {
        let expected: Vec<String> = (1..=numbers.len()).map(|n| n.to_string()).collect();
        assert_eq!(numbers, &expected, "{attempts:?}");
    }
    let delivered_ids: Vec<String> =
        flaky.delivered().iter().map(|(e, _)| e["id"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(delivered_ids.iter().collect::<BTreeSet<_>>().len(), 5, "each delivered once");

    // The dead endpoint shows as failing (once its first requests timed
    // out), with the reason.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let hooks = s.get("/webhooks").await?;
        let dead_view = hooks["webhooks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["url"] == dead.url("/"))
            .context("dead endpoint listed")?
            .clone();
        if dead_view["status"] == "failing" {
            assert!(dead_view["status_reason"].as_str().is_some_and(|r| r.contains("no answer")), "{dead_view}");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the dead endpoint never showed as failing: {dead_view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_killed_mid_delivery_sends_again_after_restart_and_two_replicas_send_once() -> Result<()> {
    let mut s = setup(&[]).await?;
    let receiver = Receiver::start().await?;
    // The first request hangs: the control plane dies during it.
    receiver.script(&[Reply::Hang]);
    s.endpoint(json!({"url": receiver.url("/"), "events": ["channel_occupied", "channel_vacated"]})).await?;
    let edge = EdgeProc::start_with("edge", free_addr(), &s.cp, &nats_url(), &s.prefix, &fast_edge()).await?;
    let client = s.client(&edge, "ada").connect().await?;
    let _first = client.subscribe("first").await?;
    receiver.wait(Duration::from_secs(10), |r| !r.is_empty()).await?;
    s.cp.process.kill();
    // Two replicas on the same database and bus take over.
    let one = ControlPlaneProc::start_with(&s.db, &nats_url(), &s.prefix, &cp_env()).await?;
    let two = ControlPlaneProc::start_with(&s.db, &nats_url(), &s.prefix, &cp_env()).await?;
    let first = receiver.wait(Duration::from_secs(20), |_| !receiver.delivered().is_empty()).await?;
    assert_eq!(first[0].json()["id"], first.last().map_or(Value::Null, Received::json)["id"], "same event, same id");

    // Twenty more channels: each occupied event once, with two replicas
    // computing and delivering.
    let mut subs = Vec::new();
    for i in 0..20 {
        subs.push(client.subscribe(format!("more-{i}")).await?);
    }
    receiver.wait(Duration::from_secs(20), |_| receiver.delivered().len() >= 21).await?;
    drop(subs);
    client.close().await;
    receiver
        .wait(Duration::from_secs(20), |_| {
            summary(&receiver.delivered()).iter().filter(|(n, _, _)| n == "channel_vacated").count() >= 21
        })
        .await?;
    // Settle, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = receiver.delivered();
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (name, channel, _) in summary(&d) {
        *per.entry((name, channel)).or_default() += 1;
    }
    assert!(per.values().all(|n| *n == 1), "{per:?}");
    assert_eq!(per.len(), 42, "{per:?}");
    drop((one, two));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_dev_sends_pusher_webhooks_that_pushers_own_libraries_validate() -> Result<()> {
    use herald_tests::pusher::{PusherDev, Script, require_installed, run_script_with};
    require_installed(true)?;
    let receiver = Receiver::start().await?;
    let url = receiver.url("/pusher/webhooks");
    let dev = PusherDev::start_with(&["--webhook-url", &url]).await?;
    // And a Herald-format endpoint for every event, over REST.
    let state: Value = serde_json::from_str(&std::fs::read_to_string(dev.data_dir.join("dev.json"))?)?;
    assert_eq!(state["webhook_format"], "pusher", "{state}");
    let api: std::net::SocketAddr =
        state["api_url"].as_str().and_then(|u| u.strip_prefix("http://")).context("api_url")?.parse()?;
    let admin = state["admin_token"].as_str().context("admin_token")?;
    let herald = Receiver::start().await?;
    let all: Vec<&str> = herald_proto::webhook::EventKind::ALL.iter().map(|k| k.as_str()).collect();
    let body = json!({"url": herald.url("/herald"), "events": all}).to_string();
    let (status, created) = http_request(api, "POST", "/v1/apps/demo/webhooks", admin, Some(&body)).await?;
    anyhow::ensure!(status == 201, "{status} {created}");
    let herald_secret = serde_json::from_str::<Value>(&created)?["secret"].as_str().context("secret")?.to_owned();
    let channel = format!("presence-hooks-{}", random_suffix());
    let cache = format!("cache-hooks-{}", random_suffix());
    let env = [("WEBHOOK_CHANNEL", channel.clone()), ("WEBHOOK_CACHE_CHANNEL", cache.clone())];
    run_script_with(&dev.endpoint, Script::Node("webhook_activity"), Duration::from_secs(60), &env).await?;
    // Everything, up to the channel vacated after the debounce (3 s in dev).
    receiver
        .wait(Duration::from_secs(20), |_| {
            let d = receiver.delivered();
            has(&d, "channel_vacated", &channel) && count(&d, "member_removed", &channel, "bob") == 1
        })
        .await?;
    let d = receiver.delivered();
    let seen = summary(&d);
    for (name, user) in [
        ("channel_occupied", ""),
        ("member_added", "alice"),
        ("member_added", "bob"),
        ("member_removed", "alice"),
        ("member_removed", "bob"),
        ("channel_vacated", ""),
    ] {
        assert_eq!(count(&d, name, &channel, user), 1, "{name} {user}: {seen:?}");
    }
    let client_event = d.iter().find(|(e, _)| event_name(e) == "client_event").context("a client event")?;
    assert_eq!(client_event.0["event"], "client-typing");
    assert_eq!(client_event.0["user_id"], "alice");
    assert!(client_event.0["socket_id"].as_str().is_some_and(|s| s.contains('.')), "{}", client_event.0);
    assert_eq!(serde_json::from_str::<Value>(client_event.0["data"].as_str().unwrap_or(""))?, json!({"typing": true}));
    assert!(has(&d, "cache_miss", &cache), "{seen:?}");
    assert!(has(&d, "subscription_count", &channel), "{seen:?}");

    // The Herald endpoint got every kind too, each signed with its secret.
    herald.wait(Duration::from_secs(10), |_| has(&herald.delivered(), "channel_vacated", &channel)).await?;
    let h = herald.delivered();
    for kind in herald_proto::webhook::EventKind::ALL {
        assert!(h.iter().any(|(e, _)| event_name(e) == kind.as_str()), "no {kind}: {:?}", summary(&h));
    }
    for (e, r) in &h {
        assert!(herald_signature_valid(r, &herald_secret, Duration::from_secs(300)), "signature of {e}");
    }

    // Pusher's own libraries validate every one.
    let file = dev.data_dir.join("webhooks.json");
    let requests: Vec<Value> = receiver
        .requests()
        .iter()
        .map(|r| json!({"headers": r.headers, "body": String::from_utf8_lossy(&r.body)}))
        .collect();
    std::fs::write(&file, serde_json::to_vec(&requests)?)?;
    let env = [("WEBHOOKS_FILE", file.display().to_string())];
    let node = run_script_with(&dev.endpoint, Script::Node("webhook_validate"), Duration::from_secs(60), &env).await?;
    assert!(node.contains(&format!("client_event {channel}")), "{node}");
    let python =
        run_script_with(&dev.endpoint, Script::Python("webhook_validate"), Duration::from_secs(60), &env).await?;
    assert!(python.contains(&format!("member_added {channel}")), "{python}");
    Ok(())
}
