//! End to end: the debug tap. A control plane on PostgreSQL and an edge
//! over real NATS (the `herald` binary as processes); a watcher reads
//! `GET /v1/apps/{app}/debug/events` (Server-Sent Events) over HTTP while
//! WebSocket clients connect, subscribe, publish and are refused, and a
//! NATS client watches the tap subject itself.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt as _;
use herald_edge::testing::RawClient;
use herald_sdk::{BatchMessage, Publisher, TokenRequest};
use herald_tests::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(30);

/// A Server-Sent Events reader: the `data:` of each `event: debug`, parsed.
struct Watcher {
    events: mpsc::Receiver<Value>,
    _task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Opens the stream; fails unless it answers 200 `text/event-stream`.
    async fn open(addr: SocketAddr, app: &str, query: &str, bearer: &str) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (rd, mut wr) = stream.into_split();
        let request = format!(
            "GET /v1/apps/{app}/debug/events{query} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nAccept: text/event-stream\r\n\r\n"
        );
        wr.write_all(request.as_bytes()).await?;
        let mut lines = BufReader::new(rd).lines();
        let status = lines.next_line().await?.context("no status line")?;
        let mut content_type = String::new();
        while let Some(line) = lines.next_line().await? {
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-type")
            {
                content_type = value.trim().to_owned();
            }
        }
        if !status.contains(" 200 ") || content_type != "text/event-stream" {
            bail!("not an event stream: {status} ({content_type})");
        }
        let (tx, events) = mpsc::channel(10_000);
        let task = tokio::spawn(async move {
            let _wr = wr;
            let mut event = String::new();
            // The body is chunked: chunk sizes come as lines of their own,
            // which are neither `event:` nor `data:` lines.
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                } else if let Some(data) = line.strip_prefix("data:")
                    && event == "debug"
                    && let Ok(value) = serde_json::from_str::<Value>(data.trim())
                    && tx.send(value).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Self { events, _task: task })
    }

    /// Reads events until one passes `check`; returns it, and every event
    /// read before it.
    async fn until(&mut self, what: &str, check: impl Fn(&Value) -> bool) -> Result<(Value, Vec<Value>)> {
        let mut before = Vec::new();
        let found = tokio::time::timeout(LIMIT, async {
            while let Some(event) = self.events.recv().await {
                if check(&event) {
                    return Some(event);
                }
                before.push(event);
            }
            None
        })
        .await
        .with_context(|| format!("timed out waiting for {what}; saw {before:?}"))?
        .with_context(|| format!("the stream ended before {what}"))?;
        Ok((found, before))
    }
}

struct Setup {
    _db: TestDb,
    prefix: String,
    cp: ControlPlaneProc,
    edge: EdgeProc,
    app: String,
    publisher: Publisher,
}

async fn setup(cp_extra: &[(&str, String)], edge_extra: &[(&str, String)]) -> Result<Setup> {
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start_with(&db, &nats_url(), &prefix, cp_extra).await?;
    let edge = EdgeProc::start_with("edge-tap", free_addr(), &cp, &nats_url(), &prefix, edge_extra).await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    Ok(Setup { _db: db, prefix, cp, edge, app, publisher })
}

async fn token(publisher: &Publisher, client: &str) -> Result<String> {
    Ok(publisher.mint_token(&TokenRequest::new(client).allow("*", ["subscribe", "publish"])).await?.token)
}

/// Connects clients until the watcher sees one's connect event (the tap
/// reaches the edge shortly after the stream opens); returns that client
/// and its connection id.
async fn connect_seen(s: &Setup, watcher: &mut Watcher, token: &str) -> Result<(RawClient, String)> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (client, connected) = RawClient::connect(s.edge.addr, token).await;
        let id = connected.connection_id.clone();
        let seen = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(e) = watcher.events.recv().await {
                if e["type"] == "connect" && e["connection_id"] == id.as_str() {
                    return Some(e);
                }
            }
            None
        })
        .await;
        if let Ok(Some(event)) = seen {
            assert_eq!(event["protocol"], "herald");
            assert_eq!(event["node"], "edge-tap");
            assert_eq!(event["user_id"], "ada");
            assert_eq!(event["remote_ip"], "127.0.0.1");
            return Ok((client, id));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no connect event within {LIMIT:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_connects_subscribes_publishes_refusals_and_disconnects() -> Result<()> {
    let s = setup(&[], &[]).await?;
    let nats = async_nats::connect(nats_url()).await?;
    let mut tap = nats.subscribe(format!("{}.tap.{}", s.prefix, s.app)).await?;
    nats.flush().await?;
    let token = token(&s.publisher, "ada").await?;

    // Nobody watches: a connection, a subscribe and a publish send nothing
    // on the tap subject.
    let (mut quiet, _) = RawClient::connect(s.edge.addr, &token).await;
    assert!(herald_edge::testing::is_ok(&quiet.subscribe("chat:room").await));
    s.publisher.publish("chat:room", serde_json::json!({"unwatched": true})).await?;
    drop(quiet);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), tap.next()).await.is_err(),
        "a debug event went on the bus with nobody watching"
    );

    let mut watcher = Watcher::open(s.cp.addr, &s.app, "", &s.cp.admin_token).await?;
    let (mut client, id) = connect_seen(&s, &mut watcher, &token).await?;
    // From now on the bus carries the app's events.
    within(tap.next()).await?.context("tap subject ended")?;

    assert!(herald_edge::testing::is_ok(&client.subscribe("chat:room").await));
    let (sub, _) = watcher.until("the subscribe", |e| e["type"] == "subscribe").await?;
    assert_eq!((sub["channel"].as_str(), sub["connection_id"].as_str()), (Some("chat:room"), Some(id.as_str())));

    // A REST publish: its preview is cut at 256 bytes.
    let long = "x".repeat(400);
    s.publisher.publish("chat:room", serde_json::json!({ "text": long })).await?;
    let (publish, _) = watcher.until("the publish", |e| e["type"] == "publish" && e["source"] == "rest").await?;
    assert_eq!(publish["channel"], "chat:room");
    assert_eq!(publish["size"], 411);
    assert_eq!(publish["truncated"], true);
    let preview = publish["preview"].as_str().context("preview")?;
    assert_eq!(preview.len(), 256);
    assert!(preview.starts_with("{\"text\":\"xxx"), "{preview}");

    // A client publish.
    assert!(herald_edge::testing::is_ok(&client.publish("chat:room", b"from ada").await));
    let (mine, _) = watcher.until("the client publish", |e| e["type"] == "publish" && e["source"] == "client").await?;
    assert_eq!((mine["preview"].as_str(), mine["truncated"].as_bool()), (Some("from ada"), Some(false)));

    // A token whose signature is broken: refused, and the refusal shown.
    let mut forged: Vec<char> = token.chars().collect();
    let at = forged.len().checked_sub(10).context("token")?;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let (_, code) = RawClient::refused(s.edge.addr, &forged).await;
    let (refusal, _) = watcher.until("the refusal", |e| e["type"] == "refusal").await?;
    assert_eq!((refusal["code"].as_str(), refusal["number"].as_u64()), (Some("invalid_token"), Some(u64::from(code))));
    assert!(refusal["reason"].as_str().is_some_and(|r| r.contains("invalid token")), "{refusal}");

    // The client leaves with 1000.
    client.send_frame(true, 8, &1000u16.to_be_bytes()).await;
    let (gone, _) = watcher.until("the disconnect", |e| e["type"] == "disconnect").await?;
    assert_eq!((gone["connection_id"].as_str(), gone["code"].as_u64()), (Some(id.as_str()), Some(1000)));
    assert_eq!(gone["code_name"], "normal");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_keep_what_the_watcher_asked_for() -> Result<()> {
    let s = setup(&[], &[]).await?;
    let key_query = "?channel=news&types=publish";
    let mut watcher = Watcher::open(s.cp.addr, &s.app, key_query, &s.cp.admin_token).await?;
    // Publish to another channel, then to news, until news shows (the tap
    // turns on shortly after the stream opens).
    let deadline = tokio::time::Instant::now() + LIMIT;
    let seen = loop {
        s.publisher.publish("sports", "ignored").await?;
        s.publisher.publish("news:today", "kept").await?;
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), watcher.events.recv()).await {
            break e;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no event within {LIMIT:?}");
        }
    };
    assert_eq!((seen["type"].as_str(), seen["channel"].as_str()), (Some("publish"), Some("news:today")));
    // A connect is not a publish: not shown.
    let token = token(&s.publisher, "ada").await?;
    let _client = RawClient::connect(s.edge.addr, &token).await;
    s.publisher.publish("news:later", "after").await?;
    let (next, before) = watcher.until("the later publish", |e| e["channel"] == "news:later").await?;
    assert_eq!(next["type"], "publish");
    assert!(before.iter().all(|e| e["type"] == "publish" && e["channel"] == "news:today"), "{before:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_rate_is_shown_as_a_count_of_what_was_dropped() -> Result<()> {
    let rate = [("HERALD_CP_DEBUG_TAP_RATE", "2".to_owned()), ("HERALD_CP_DEBUG_TAP_BURST", "5".to_owned())];
    let s = setup(&rate, &[]).await?;
    let mut watcher = Watcher::open(s.cp.addr, &s.app, "?types=publish", &s.cp.admin_token).await?;
    // Wait until the tap is on at the control plane (its bucket then full).
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        s.publisher.publish("warm", "up").await?;
        if tokio::time::timeout(Duration::from_millis(500), watcher.events.recv()).await.is_ok_and(|e| e.is_some()) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the tap did not turn on within {LIMIT:?}");
        }
    }
    // 100 publishes in one batch: one event each, at once.
    let burst: Vec<BatchMessage> = (0..100).map(|i| BatchMessage::new("burst", format!("{i}"))).collect();
    for result in s.publisher.publish_batch(burst).await? {
        result?;
    }
    // Then one more each 300 ms until an event says what was dropped.
    let (mut shown, mut after) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + LIMIT;
    let dropped = loop {
        match tokio::time::timeout(Duration::from_millis(300), watcher.events.recv()).await {
            Ok(Some(e)) if e["dropped"].as_u64().is_some_and(|n| n > 0) => break e["dropped"].as_u64().unwrap_or(0),
            Ok(Some(e)) if e["channel"] == "burst" => shown += 1,
            Ok(Some(_)) => {}
            Ok(None) => bail!("the stream ended"),
            Err(_) => {
                s.publisher.publish("after", "one more").await?;
                after += 1;
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no event carried a dropped count within {LIMIT:?}");
        }
    };
    // The burst (5) was shown; the rest, and the publishes after it until
    // the bucket refilled, are counted, not sent.
    assert!(shown <= 5, "{shown} of the burst shown");
    assert!(
        shown + dropped >= 100 && dropped <= 100 - shown + after,
        "dropped {dropped}, shown {shown}, after {after}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_the_field_named() -> Result<()> {
    let s = setup(&[], &[]).await?;
    let path = |q: &str| format!("/v1/apps/{}/debug/events{q}", s.app);
    let (status, body) = http_request(s.cp.addr, "GET", &path("?types=publish,bogus"), &s.cp.admin_token, None).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`types`") && body.contains("bogus"), "{body}");
    let (status, body) = http_request(s.cp.addr, "GET", &path("?channel=a%20b"), &s.cp.admin_token, None).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`channel`"), "{body}");
    let (status, body) = http_request(s.cp.addr, "GET", &path("?colour=blue"), &s.cp.admin_token, None).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("colour"), "{body}");
    let (status, body) = http_request(s.cp.addr, "GET", &path(""), "", None).await?;
    assert_eq!(status, 401, "{body}");
    let (status, _) = http_request(s.cp.addr, "GET", "/v1/apps/nope/debug/events", &s.cp.admin_token, None).await?;
    assert_eq!(status, 404);
    Ok(())
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(LIMIT, f).await.context("timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_tails_the_events_one_line_each() -> Result<()> {
    let s = setup(&[], &[]).await?;
    let mut tail = tokio::process::Command::new(herald_bin()?)
        .args(["apps", "debug", &s.app, "--types", "publish", "--channel", "cli"])
        .env("HERALD_API_URL", s.cp.url())
        .env("HERALD_ADMIN_TOKEN", &s.cp.admin_token)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(tail.stdout.take().context("stdout")?).lines();
    // Publish until a line shows (the tap turns on shortly after the tail
    // starts).
    let deadline = tokio::time::Instant::now() + LIMIT;
    let line = loop {
        s.publisher.publish("cli:tail", "hello tail").await?;
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await {
            break line?.context("the tail ended")?;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the tail printed nothing within {LIMIT:?}");
        }
    };
    // `HH:MM:SS.mmm node type {fields}`
    let mut parts = line.splitn(4, ' ');
    let (time, node, kind) = (parts.next(), parts.next(), parts.next());
    assert!(time.is_some_and(|t| t.len() == 12 && t.as_bytes()[2] == b':'), "{line}");
    assert!(node.is_some_and(|n| n.starts_with("cp-")), "{line}");
    assert_eq!(kind, Some("publish"), "{line}");
    let fields: Value = serde_json::from_str(parts.next().unwrap_or_default().trim())?;
    assert_eq!((fields["channel"].as_str(), fields["preview"].as_str()), (Some("cli:tail"), Some("hello tail")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_does_not_hold_up_shutdown() -> Result<()> {
    let mut s = setup(&[("HERALD_CP_SHUTDOWN_TIMEOUT", "20s".to_owned())], &[]).await?;
    let mut watcher = Watcher::open(s.cp.addr, &s.app, "", &s.cp.admin_token).await?;
    let started = std::time::Instant::now();
    s.cp.process.terminate()?;
    // The stream ends, and the process exits well before its deadline.
    within(async { while watcher.events.recv().await.is_some() {} }).await?;
    assert!(s.cp.process.wait_exit(Duration::from_secs(10)).await?, "the control plane failed to exit");
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    Ok(())
}
