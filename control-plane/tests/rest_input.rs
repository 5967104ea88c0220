//! Bad input through the REST API, against a real PostgreSQL and NATS:
//! every malformed, oversized, unauthorized or out-of-range request gets a
//! clear error (status and code) and changes nothing.

mod common;

use anyhow::Result;
use common::{ADMIN, Http, Server, TestDb, app_with_key, publish_url};
use herald_proto::units::ByteSize;
use serde_json::json;

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
