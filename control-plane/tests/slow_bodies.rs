//! Requests stalled in their body never lock others out: one key's
//! stalled uploads are capped (`max_body_reads_per_key`, 429), a body
//! slower than `min_body_rate_per_sec` is cut (408), and with stalled
//! bodies holding every allowed connection, those are evicted so that
//! `/healthz` and another client's publish still answer.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use common::http1::{closed, head, read_status};
use common::{ADMIN, Http, Server, TestDb, app_with_key, publish_url};
use herald_proto::units::{ByteSize, HumanDuration};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// A connection that sends a publish head and the first bytes of its body,
/// then nothing.
async fn stalled(server: &Server, path: &str, key: &str) -> Result<TcpStream> {
    let mut conn = TcpStream::connect(server.addr).await?;
    conn.write_all(head(path, key, 1_000).as_bytes()).await?;
    conn.write_all(br#"{"data":"#).await?;
    Ok(conn)
}

/// Polls `attempt` (each given at most a second) until one succeeds within
/// a second, for at most `deadline`; the attempts made.
async fn answers_within_a_second<F, Fut>(deadline: Duration, mut attempt: F) -> Result<usize>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let until = Instant::now() + deadline;
    let mut attempts = 0;
    while Instant::now() < until {
        attempts += 1;
        if let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(1), attempt()).await {
            return Ok(attempts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no answer within a second in {attempts} attempts over {deadline:?}")
}

#[tokio::test]
async fn stalled_bodies_holding_every_connection_never_lock_others_out() -> Result<()> {
    const MAX: usize = 10;
    let server = Server::start(TestDb::sqlite(), |c| {
        c.max_http_connections = MAX;
        c.max_body_reads_per_key = 100;
        c.body_rate_grace = HumanDuration::secs(20);
        c.body_read_timeout = HumanDuration::secs(40);
    })
    .await?;
    let http = Http::default();
    let (app, _, attacker) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish"]}))).await?;
    let (other_app, _, other) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish"]}))).await?;
    drop(http); // its pooled connection would hold a place
    let path = format!("/v1/apps/{app}/channels/chat:x/messages");

    // Every allowed connection, stalled in a body.
    let mut held = Vec::new();
    for _ in 0..MAX {
        held.push(stalled(&server, &path, &attacker).await?);
    }
    let started = Instant::now();

    // /healthz and another client's publish answer within a second.
    let healthz = server.url("/healthz");
    answers_within_a_second(Duration::from_secs(20), || {
        let url = healthz.clone();
        async move { Ok(Http::default().get(&url, None).await?.status == 200) }
    })
    .await
    .context("/healthz")?;
    let publish = publish_url(&server, &other_app, "chat:y");
    answers_within_a_second(Duration::from_secs(20), || {
        let (url, key) = (publish.clone(), other.clone());
        async move { Ok(Http::default().json("POST", &url, Some(&key), json!({"data": 1})).await?.status == 202) }
    })
    .await
    .context("another client's publish")?;

    // Each stalled request is closed within 45 s: evicted, or cut by
    // min_body_rate_per_sec once its grace is over.
    let mut closing = tokio::task::JoinSet::new();
    for mut conn in held {
        closing.spawn(async move { closed(&mut conn, Duration::from_secs(45)).await });
    }
    while let Some(was_closed) = closing.join_next().await {
        assert!(was_closed?, "a stalled request is closed");
    }
    assert!(started.elapsed() < Duration::from_secs(45), "closed in {:?}", started.elapsed());
    let metrics = Http::default().get(&server.url("/metrics"), None).await?;
    let page = String::from_utf8_lossy(&metrics.body);
    assert!(page.contains(r#"herald_cp_connections_closed_total{limit="evicted_stalled_body"}"#), "{page}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn one_key_cannot_hold_more_than_max_body_reads_per_key() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |c| c.max_body_reads_per_key = 2).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish"]}))).await?;
    let (other_app, _, other) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish"]}))).await?;
    let path = format!("/v1/apps/{app}/channels/chat:x/messages");
    let mut held = vec![stalled(&server, &path, &key).await?, stalled(&server, &path, &key).await?];

    // The third body of that key: 429 naming the limit (polled: the two
    // stalled ones take their places once their heads are read).
    let publish = publish_url(&server, &app, "chat:x");
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = http.json("POST", &publish, Some(&key), json!({"data": 1})).await?;
        if r.status == 429 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((refused.status, refused.code().as_str()), (429, "rate_limited"));
    let message = refused.json()["error"]["message"].as_str().unwrap_or("").to_owned();
    assert!(message.contains("max_body_reads_per_key"), "{message}");
    assert!(refused.headers.contains_key("retry-after"));

    // Other keys (and the operators) are not affected.
    let ok = http.json("POST", &publish_url(&server, &other_app, "chat:y"), Some(&other), json!({"data": 1})).await?;
    assert_eq!(ok.status, 202, "{}", String::from_utf8_lossy(&ok.body));
    let ok = http.get(&server.url("/v1/apps"), Some(ADMIN)).await?;
    assert_eq!(ok.status, 200);

    // Once one stalled body is finished, the key publishes again.
    let mut first = held.remove(0);
    let rest = format!(r#""{}"}}"#, "x".repeat(1_000 - 8 - 3));
    first.write_all(rest.as_bytes()).await?;
    let status = read_status(&mut first, Duration::from_secs(10)).await?;
    assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 202")), "{status:?}");
    let ok = http.json("POST", &publish, Some(&key), json!({"data": 1})).await?;
    assert_eq!(ok.status, 202, "{}", String::from_utf8_lossy(&ok.body));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bodies_slower_than_min_body_rate_are_cut() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |c| {
        c.min_body_rate_per_sec = ByteSize(200);
        c.body_rate_grace = HumanDuration::secs(1);
        c.body_read_timeout = HumanDuration::secs(60);
    })
    .await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish"]}))).await?;
    let path = format!("/v1/apps/{app}/channels/chat:x/messages");
    let body = format!(r#"{{"data":"{}"}}"#, "x".repeat(1_500 - 11));

    // One byte every 100 ms (10 B/s): 408 naming the limit, well before
    // body_read_timeout.
    let started = Instant::now();
    let mut slow = TcpStream::connect(server.addr).await?;
    slow.write_all(head(&path, &key, body.len() as u64).as_bytes()).await?;
    let trickle = async {
        for b in body.as_bytes() {
            if slow.write_all(std::slice::from_ref(b)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), trickle).await;
    let mut reply = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("min_body_rate_per_sec") && reply.contains(r#""code":"request_timeout""#), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(30), "cut after {:?}", started.elapsed());

    // Faster than the rate (500 B/s in 100-byte pieces): accepted.
    let mut steady = TcpStream::connect(server.addr).await?;
    steady.write_all(head(&path, &key, body.len() as u64).as_bytes()).await?;
    for piece in body.as_bytes().chunks(100) {
        steady.write_all(piece).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = read_status(&mut steady, Duration::from_secs(10)).await?;
    assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 202")), "{status:?}");
    server.stop().await;
    Ok(())
}
