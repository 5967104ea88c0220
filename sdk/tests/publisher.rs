//! The publisher against a real control plane (SQLite, in-process bus), and
//! the whole path: a backend mints tokens and publishes through the REST
//! API, an app connected to an edge receives.

mod common;

use std::time::Duration;

use common::control_plane::{ControlPlane, setup};
use futures_util::StreamExt as _;
use herald_edge::testing::within;
use herald_proto::ErrorCode;
use herald_sdk::{BatchMessage, Client, Data, Publisher, RestError, TokenRequest};
use serde_json::{Value, json};

#[tokio::test]
async fn a_backend_mints_tokens_and_publishes_and_the_app_receives() {
    let (_bus, _cp, edge, publisher) = setup().await;
    let tokens = publisher.token_provider(
        TokenRequest::new("user-1").allow("orders:*", ["subscribe", "publish"]).ttl(Duration::from_secs(600)),
    );
    let client = Client::builder(edge.url()).token_provider(tokens).connect().await.expect("connect");
    assert_eq!(client.connection().expect("connected").client_id, "user-1");
    let mut orders = client.subscribe("orders:eu").await.expect("subscribe");

    // JSON, text and bytes, each as published.
    let accepted = publisher.publish("orders:eu", json!({"id": 1, "status": "paid"})).await.expect("publish json");
    assert!(!accepted.id.is_empty());
    let m = within(Duration::from_secs(10), "json", orders.next()).await.expect("open");
    assert_eq!(serde_json::from_slice::<Value>(&m.data).expect("json"), json!({"id": 1, "status": "paid"}));
    assert_eq!((m.publisher.as_deref(), m.id.as_str()), (None, accepted.id.as_str()));
    publisher
        .publish_message("orders:eu", "shipped", Some("order.updated"), Some("o1-v2"))
        .await
        .expect("publish text");
    let m = within(Duration::from_secs(10), "text", orders.next()).await.expect("open");
    assert_eq!((m.text(), m.event.as_deref(), m.id.as_str()), (Some("shipped"), Some("order.updated"), "o1-v2"));
    publisher.publish("orders:eu", Data::Binary(vec![0u8, 159, 255].into())).await.expect("publish bytes");
    let m = within(Duration::from_secs(10), "bytes", orders.next()).await.expect("open");
    assert_eq!(&m.data[..], &[0u8, 159, 255]);

    // A batch: one result per message, in order; a bad one fails alone.
    let results = publisher
        .publish_batch(vec![
            BatchMessage::new("orders:eu", "a"),
            BatchMessage::new("orders:eu", "b").name("letter").also_to("orders:us"),
            BatchMessage::new("bad*channel", "c"),
        ])
        .await
        .expect("batch");
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert_eq!(results[2].as_ref().err().and_then(RestError::code), Some(ErrorCode::InvalidChannel));
    for want in ["a", "b"] {
        let m = within(Duration::from_secs(10), "batch", orders.next()).await.expect("open");
        assert_eq!(m.text(), Some(want));
    }

    // The token only allows `orders:*`.
    let err = client.subscribe("payroll").await.expect_err("forbidden");
    assert_eq!(err.error_code(), Some(ErrorCode::Forbidden));
    // And the app publishes within it.
    client.publish("orders:eu", "from the app").await.expect("client publish");
    let m = within(Duration::from_secs(10), "own", orders.next()).await.expect("open");
    assert_eq!(m.publisher.as_deref(), Some("user-1"));
    client.close().await;
}

#[tokio::test]
async fn the_publisher_reports_typed_errors() {
    let (_bus, cp, _edge, publisher) = setup().await;

    let err = publisher.publish("bad channel", "x").await.expect_err("invalid channel");
    assert!(matches!(&err, RestError::Api { status: 400, code: ErrorCode::InvalidChannel, .. }), "{err}");

    let wrong_key = Publisher::new(cp.url(), "shop", "hk_nope_nope").expect("publisher");
    let err = wrong_key.publish("orders", "x").await.expect_err("unauthorized");
    assert!(matches!(&err, RestError::Api { status: 401, code: ErrorCode::Unauthorized, .. }), "{err}");
    let err = wrong_key.mint_token(&TokenRequest::new("u")).await.expect_err("unauthorized");
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized));

    let other_app = Publisher::new(cp.url(), "someone-else", publisher_key(&cp).await).expect("publisher");
    let err = other_app.publish("orders", "x").await.expect_err("other app");
    assert!(matches!(err.code(), Some(ErrorCode::Forbidden | ErrorCode::NotFound)), "{err}");

    let err = publisher.mint_token(&TokenRequest::new("u").allow("a", ["fly"])).await.expect_err("bad operation");
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));

    // Nobody listening: retried, then a transport error, within the timeout.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let nowhere = Publisher::builder(format!("http://{closed}"), "shop", "k")
        .max_retries(2)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("publisher");
    let err = nowhere.publish("orders", "x").await.expect_err("unreachable");
    assert!(matches!(err, RestError::Transport(_)), "{err}");
}

async fn publisher_key(cp: &ControlPlane) -> String {
    cp.app_with_key("another").await
}
