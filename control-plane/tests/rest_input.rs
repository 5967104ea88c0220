//! Bad input through the REST API, against a real database and NATS:
//! every malformed, oversized, unauthorized or out-of-range request gets a
//! clear error (status and code) and changes nothing; bodies that are not
//! one strict JSON document, too large or too slow are refused, and
//! connections that send nothing or sit idle are closed.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::http1::{closed, dribble, head, read_status, read_to_close};
use common::{ADMIN, Http, Server, TestDb, app_with_key, publish_url};
use herald_proto::units::{ByteSize, HumanDuration};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

#[tokio::test]
async fn bad_input_gets_clear_errors() -> Result<()> {
    let server = Server::start(TestDb::postgres().await?, |c| {
        c.max_body_size = ByteSize::kib(64);
        c.max_message_size_ceiling = ByteSize::kib(32);
        c.default_max_message_size = ByteSize::kib(1);
        c.max_batch_messages = 3;
    })
    .await?;
    let http = Http::default();
    let (app, key_id, key) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish", "subscribe"]}))).await?;
    let (other_app, _, other_key) = app_with_key(&http, &server, None).await?;
    let publish = publish_url(&server, &app, "chat:x");
    let tokens = server.url(&format!("/v1/apps/{app}/tokens"));
    let batch = server.url(&format!("/v1/apps/{app}/messages"));

    let expect = |r: common::Reply, status: u16, code: &str, what: &str| {
        assert_eq!((r.status, r.code().as_str()), (status, code), "{what}: {}", String::from_utf8_lossy(&r.body));
        assert!(r.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a message");
    };

    // Malformed JSON, wrong types, missing and unknown fields.
    expect(http.raw("POST", &publish, Some(&key), "{\"data\": ").await?, 400, "bad_request", "truncated json");
    expect(http.raw("POST", &publish, Some(&key), "not json").await?, 400, "bad_request", "not json");
    expect(http.raw("POST", &publish, Some(&key), "").await?, 400, "bad_request", "empty body");
    expect(http.json("POST", &publish, Some(&key), json!({"name": "e"})).await?, 400, "bad_request", "missing data");
    expect(
        http.json("POST", &publish, Some(&key), json!({"data": 1, "name": 5})).await?,
        400,
        "bad_request",
        "name as number",
    );
    expect(
        http.json("POST", &publish, Some(&key), json!({"data": 1, "nme": "e"})).await?,
        400,
        "bad_request",
        "unknown field",
    );
    expect(http.json("POST", &publish, Some(&key), json!([1, 2])).await?, 400, "bad_request", "array body");
    let r = http.json("POST", &tokens, Some(&key), json!({"client_id": "u", "ttl_seconds": "long"})).await?;
    assert!(r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("ttl_seconds")), "names the field");
    expect(r, 400, "bad_request", "ttl as string");
    expect(
        http.json("POST", &tokens, Some(&key), json!({"client_id": "u", "ttl_seconds": -5})).await?,
        400,
        "bad_request",
        "negative ttl",
    );
    expect(
        http.json("POST", &tokens, Some(&key), json!({"client_id": "u", "capabilities": {"a": ["fly"]}})).await?,
        400,
        "bad_request",
        "unknown operation",
    );
    expect(
        http.json("POST", &tokens, Some(&key), json!({"client_id": ""})).await?,
        400,
        "bad_request",
        "empty client id",
    );
    expect(
        http.json("POST", &publish, Some(&key), json!({"data": 1, "name": "x".repeat(129)})).await?,
        400,
        "bad_request",
        "event name too long",
    );
    expect(
        http.json("POST", &publish, Some(&key), json!({"data": 1, "id": "x".repeat(129)})).await?,
        400,
        "bad_request",
        "idempotency id too long",
    );
    expect(
        http.json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"name": "x", "id": "a.b"})).await?,
        400,
        "bad_request",
        "invalid app id",
    );
    expect(
        http.json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"name": "x", "allowed_origins": ["*"]})).await?,
        400,
        "bad_request",
        "invalid origin",
    );
    expect(
        http.json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"name": ""})).await?,
        400,
        "bad_request",
        "empty app name",
    );
    expect(
        http.json(
            "POST",
            &server.url("/v1/apps"),
            Some(ADMIN),
            json!({"name": "x", "limits": {"max_message_bytes": 999_999_999}}),
        )
        .await?,
        400,
        "bad_request",
        "limit above the ceiling",
    );

    // Sizes: the body limit (413), the app's message limit (413).
    let huge = json!({"data": "x".repeat(70 * 1024)});
    expect(http.json("POST", &publish, Some(&key), huge).await?, 413, "too_large", "body over max_body_bytes");
    expect(
        http.json("POST", &publish, Some(&key), json!({"data": "x".repeat(1025)})).await?,
        413,
        "too_large",
        "message over the app limit",
    );
    let big_info = json!({"client_id": "u", "info": {"bio": "x".repeat(2000)}});
    expect(http.json("POST", &tokens, Some(&key), big_info).await?, 413, "too_large", "info over 1 KiB");

    // Batches: over the limit, empty, channel and channels together.
    let four = json!({"messages": [{"channel": "chat:a", "data": 1}, {"channel": "chat:a", "data": 2}, {"channel": "chat:a", "data": 3}, {"channel": "chat:a", "data": 4}]});
    expect(http.json("POST", &batch, Some(&key), four).await?, 400, "limit_exceeded", "batch over max_batch_messages");
    expect(http.json("POST", &batch, Some(&key), json!({"messages": []})).await?, 400, "bad_request", "empty batch");
    let r = http
        .json(
            "POST",
            &batch,
            Some(&key),
            json!({"messages": [{"channel": "chat:a", "channels": ["chat:b"], "data": 1}, {"data": 2}]}),
        )
        .await?;
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["results"][0]["error"]["code"], "bad_request");
    assert_eq!(r.json()["results"][1]["error"]["code"], "bad_request");

    // Invalid channel names.
    for bad in ["a%2Ab", "*", "%3E", "a%20b", "%24sys", "herald:x", ":x", "%C3%A9", &"c".repeat(256)] {
        let r = http.json("POST", &publish_url(&server, &app, bad), Some(&key), json!({"data": 1})).await?;
        expect(r, 400, "invalid_channel", bad);
    }

    // Credentials: missing, malformed, wrong, another app's, revoked.
    expect(http.json("POST", &publish, None, json!({"data": 1})).await?, 401, "unauthorized", "no key");
    let r = http.send("POST", &publish, None, None).await?;
    expect(r, 401, "unauthorized", "no key, no body");
    expect(
        http.json("POST", &publish, Some("hk_kabc_wrong"), json!({"data": 1})).await?,
        401,
        "unauthorized",
        "unknown key",
    );
    let wrong_secret = format!("{}x", &key[..key.len() - 1]);
    expect(
        http.json("POST", &publish, Some(&wrong_secret), json!({"data": 1})).await?,
        401,
        "unauthorized",
        "wrong secret",
    );
    expect(http.json("POST", &publish, Some("garbage"), json!({"data": 1})).await?, 401, "unauthorized", "garbage");
    expect(
        http.json("POST", &publish, Some(&other_key), json!({"data": 1})).await?,
        403,
        "forbidden",
        "another app's key",
    );
    expect(
        http.json("POST", &server.url(&format!("/v1/apps/{other_app}/tokens")), Some(&key), json!({"client_id": "u"}))
            .await?,
        403,
        "forbidden",
        "token for another app",
    );
    expect(
        http.json("POST", &publish_url(&server, &app, "news"), Some(&key), json!({"data": 1})).await?,
        403,
        "forbidden",
        "no publish capability",
    );

    // Escalation when minting.
    expect(
        http.json("POST", &tokens, Some(&key), json!({"client_id": "u", "capabilities": {"*": ["subscribe"]}})).await?,
        403,
        "forbidden",
        "wider pattern",
    );
    expect(
        http.json("POST", &tokens, Some(&key), json!({"client_id": "u", "capabilities": {"chat:x": ["presence"]}}))
            .await?,
        403,
        "forbidden",
        "extra operation",
    );
    let ok = http
        .json("POST", &tokens, Some(&key), json!({"client_id": "u", "capabilities": {"chat:x": ["subscribe"]}}))
        .await?;
    assert_eq!(ok.status, 200, "a subset is fine: {}", String::from_utf8_lossy(&ok.body));

    // TTL out of range.
    expect(
        http.json("POST", &tokens, Some(&key), json!({"client_id": "u", "ttl_seconds": 0})).await?,
        400,
        "bad_request",
        "ttl 0",
    );
    expect(
        http.json("POST", &tokens, Some(&key), json!({"client_id": "u", "ttl_seconds": 86_401})).await?,
        400,
        "bad_request",
        "ttl over 24 h",
    );

    // Admin routes with an API key.
    expect(http.get(&server.url("/v1/apps"), Some(&key)).await?, 403, "forbidden", "list apps with a key");
    expect(
        http.json("POST", &server.url(&format!("/v1/apps/{app}/keys")), Some(&key), json!({"name": "x"})).await?,
        403,
        "forbidden",
        "create key with a key",
    );
    expect(
        http.send("DELETE", &server.url(&format!("/v1/apps/{app}")), Some(&key), None).await?,
        403,
        "forbidden",
        "delete app with a key",
    );
    expect(
        http.send("POST", &server.url("/v1/signing-keys/rotate"), Some(&key), None).await?,
        403,
        "forbidden",
        "rotate with a key",
    );
    expect(http.get(&server.url("/v1/apps"), None).await?, 401, "unauthorized", "admin route without credentials");

    // Unknown routes and methods answer in the same shape.
    expect(http.get(&server.url("/v1/nope"), Some(ADMIN)).await?, 404, "not_found", "unknown route");
    let r = http.send("PUT", &server.url("/v1/apps"), Some(ADMIN), None).await?;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "bad_request");

    // A revoked key stops at once.
    let r = http.send("DELETE", &server.url(&format!("/v1/apps/{app}/keys/{key_id}")), Some(ADMIN), None).await?;
    assert_eq!(r.status, 200);
    expect(http.json("POST", &publish, Some(&key), json!({"data": 1})).await?, 401, "unauthorized", "revoked key");
    expect(
        http.json("POST", &tokens, Some(&key), json!({"client_id": "u"})).await?,
        401,
        "unauthorized",
        "revoked key mints",
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bodies_are_strict_json() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |c| c.max_json_depth = 8).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish", "subscribe"]}))).await?;
    let publish = publish_url(&server, &app, "chat:x");
    let tokens = server.url(&format!("/v1/apps/{app}/tokens"));
    let refused = |r: common::Reply, says: &str| {
        let message = r.json()["error"]["message"].as_str().unwrap_or("").to_owned();
        assert_eq!((r.status, r.code().as_str()), (400, "bad_request"), "{says}: {message}");
        assert!(message.contains(says), "{message:?} should say {says:?}");
    };

    refused(http.raw("POST", &publish, Some(&key), r#"{"data":"x"} garbage"#).await?, "after the JSON value");
    refused(http.raw("POST", &publish, Some(&key), r#"{"data":"x"}{"data":"y"}"#).await?, "after the JSON value");
    refused(
        http.raw("POST", &publish, Some(&key), r#"{"data":1,"data":2}"#).await?,
        "duplicate key `data` in the object at `.`",
    );
    refused(
        http.raw("POST", &publish, Some(&key), r#"{"data":{"a":[{"b":1,"b":2}]}}"#).await?,
        "duplicate key `b` in the object at `data.a[0]`",
    );
    refused(
        http.raw(
            "POST",
            &tokens,
            Some(&key),
            r#"{"client_id":"u","capabilities":{"chat:x":["subscribe"],"chat:x":["publish"]}}"#,
        )
        .await?,
        "duplicate key `chat:x` in the object at `capabilities`",
    );
    // Escapes are undone before keys are compared.
    refused(http.raw("POST", &publish, Some(&key), r#"{"data":{"a":1,"\u0061":2}}"#).await?, "duplicate key `a`");
    refused(
        http.raw("POST", &publish, Some(&key), r#"{"data":[[[[[[[[1]]]]]]]]}"#).await?,
        "nesting deeper than 8 levels (max_json_depth)",
    );
    refused(http.raw("POST", &tokens, Some(&key), r#"{"client_id":"u","ttl_seconds":"1"}"#).await?, "ttl_seconds");

    // At the depth limit, with the same key in sibling objects: accepted.
    let ok = http.raw("POST", &publish, Some(&key), r#"{"data":[[[[[[{"k":1},{"k":2}]]]]]]} "#).await?;
    assert_eq!(ok.status, 202, "{}", String::from_utf8_lossy(&ok.body));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bodies_are_bounded_in_size_and_time_and_read_after_authentication() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |c| {
        c.max_body_size = ByteSize::kib(64);
        c.max_message_size_ceiling = ByteSize::kib(32);
        c.default_max_message_size = ByteSize::kib(1);
        c.body_read_timeout = HumanDuration::secs(1);
    })
    .await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish"]}))).await?;
    let path = format!("/v1/apps/{app}/channels/chat:x/messages");
    let deadline = Duration::from_secs(20);

    // A Content-Length over the limit: 413 with no byte of the body sent.
    let mut conn = TcpStream::connect(server.addr).await?;
    conn.write_all(head(&path, &key, 1 << 40).as_bytes()).await?;
    let status = read_status(&mut conn, deadline).await?;
    assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 413")), "{status:?}");

    // The same on an admin route.
    let mut conn = TcpStream::connect(server.addr).await?;
    conn.write_all(head("/v1/apps", ADMIN, 1 << 30).as_bytes()).await?;
    let status = read_status(&mut conn, deadline).await?;
    assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 413")), "{status:?}");

    // A body that stalls: 408 request_timeout naming the limit after
    // body_read_timeout, and the connection closed.
    let mut conn = TcpStream::connect(server.addr).await?;
    conn.write_all(head(&path, &key, 100).as_bytes()).await?;
    conn.write_all(br#"{"data":"#).await?;
    let answer = read_to_close(&mut conn, deadline).await?;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#) && answer.contains("body_read_timeout"), "{answer}");

    // A bad key with a stalled body: 401, not 408, so before the body.
    for bad in ["garbage", "hk_kabc_wrong"] {
        let mut conn = TcpStream::connect(server.addr).await?;
        conn.write_all(head(&path, bad, 100).as_bytes()).await?;
        conn.write_all(br#"{"data":"#).await?;
        let status = read_status(&mut conn, deadline).await?;
        assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 401")), "{bad}: {status:?}");
    }

    // And a whole body still goes through.
    let ok = http.json("POST", &server.url(&path), Some(&key), json!({"data": 1})).await?;
    assert_eq!(ok.status, 202, "{}", String::from_utf8_lossy(&ok.body));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn silent_connections_holding_every_place_make_room_for_a_publish() -> Result<()> {
    // Silent connections are not closed by the header timeout during this
    // test: only eviction can make room.
    let server = Server::start(TestDb::sqlite(), |c| {
        c.max_http_connections = 50;
        c.header_read_timeout = HumanDuration::secs(60);
    })
    .await?;
    let setup = Http::default();
    let (app, _, key) = app_with_key(&setup, &server, Some(json!({"chat:*": ["publish"]}))).await?;
    drop(setup);
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(server.addr).await?);
    }
    // Every place is taken; once the silent ones have been silent for a
    // second, a publish on a new connection gets a place.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let fresh = Http::default();
        match fresh.json("POST", &publish_url(&server, &app, "chat:x"), Some(&key), json!({"data": 1})).await {
            Ok(r) if r.status == 202 => break,
            other => {
                let status = other.map(|r| r.status);
                anyhow::ensure!(std::time::Instant::now() < deadline, "no publish got through: {status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Made by closing silent connections, the oldest first; most stay.
    let mut evicted = 0;
    for conn in &mut silent {
        evicted += usize::from(closed(conn, Duration::from_millis(20)).await);
    }
    assert!((1..=10).contains(&evicted), "{evicted} silent connections closed to make room");
    drop(silent);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |c| {
        c.max_http_connections = 200;
        c.header_read_timeout = HumanDuration::secs(1);
        c.http_idle_timeout = HumanDuration::secs(2);
    })
    .await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, Some(json!({"chat:*": ["publish"]}))).await?;
    let deadline = Duration::from_secs(30);

    // 300 connections that send nothing (100 over max_http_connections):
    // every one is closed.
    let mut silent = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let mut conn = TcpStream::connect(server.addr).await?;
        silent.spawn(async move { closed(&mut conn, deadline).await });
    }
    let mut closed_count = 0;
    while let Some(was_closed) = silent.join_next().await {
        closed_count += usize::from(was_closed?);
    }
    assert_eq!(closed_count, 300, "every silent connection is closed");

    // Then a publish goes through.
    let ok = http.json("POST", &publish_url(&server, &app, "chat:x"), Some(&key), json!({"data": 1})).await?;
    assert_eq!(ok.status, 202, "{}", String::from_utf8_lossy(&ok.body));

    // Half a request line, part of the HTTP/2 preface, half a head: closed.
    for start in ["POST /v1/ap", "PRI * HTTP/2.0\r\n", "GET /healthz HTTP/1.1\r\nhost: herald\r\n"] {
        let mut conn = TcpStream::connect(server.addr).await?;
        conn.write_all(start.as_bytes()).await?;
        assert!(closed(&mut conn, deadline).await, "{start:?} is closed");
    }

    // A keep-alive connection idle after a request: closed.
    let mut conn = TcpStream::connect(server.addr).await?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n").await?;
    let status = read_status(&mut conn, deadline).await?;
    assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 200")), "{status:?}");
    assert!(closed(&mut conn, deadline).await, "an idle keep-alive connection is closed");

    // An h2c connection (preface and SETTINGS) that opens no stream: closed.
    let mut conn = TcpStream::connect(server.addr).await?;
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await?;
    assert!(closed(&mut conn, deadline).await, "an idle HTTP/2 connection is closed");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_request_head_dribbled_in_is_cut_at_header_read_timeout() -> Result<()> {
    const TIMEOUT: Duration = Duration::from_secs(2);
    // How late the close may come: the server's timer and the client's
    // read.
    const MARGIN: Duration = Duration::from_millis(700);
    let server = Server::start(TestDb::sqlite(), |c| c.header_read_timeout = HumanDuration::secs(2)).await?;
    let slow_head = b"POST /v1/apps HTTP/1.1\r\nhost: herald\r\ncontent-length: 2\r\n\r\n{}";

    // The first request: one deadline from the accept, however the head's
    // bytes are spread (its second byte already tells HTTP/1.1 from HTTP/2).
    let accepted = std::time::Instant::now();
    let conn = TcpStream::connect(server.addr).await?;
    let took = dribble(conn, slow_head, accepted, Duration::from_secs(10)).await;
    let took = took.ok_or_else(|| anyhow::anyhow!("the dribbling connection was not closed"))?;
    assert!(took >= TIMEOUT - Duration::from_millis(100), "not before header_read_timeout: {took:?}");
    assert!(took <= TIMEOUT + MARGIN, "closed {took:?} after the accept, past header_read_timeout");

    // A keep-alive request: one deadline from the end of the previous
    // response.
    let mut conn = TcpStream::connect(server.addr).await?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n").await?;
    let status = read_status(&mut conn, Duration::from_secs(10)).await?;
    assert!(status.as_deref().is_some_and(|s| s.starts_with("HTTP/1.1 200")), "{status:?}");
    let answered = std::time::Instant::now();
    let took = dribble(conn, slow_head, answered, Duration::from_secs(10)).await;
    let took = took.ok_or_else(|| anyhow::anyhow!("the dribbling keep-alive connection was not closed"))?;
    assert!(took <= TIMEOUT + MARGIN, "closed {took:?} after the previous response, past header_read_timeout");

    // A head sent whole in time is served.
    let ok = Http::default().get(&server.url("/healthz"), None).await?;
    assert_eq!(ok.status, 200);
    server.stop().await;
    Ok(())
}
