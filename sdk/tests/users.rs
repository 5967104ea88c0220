//! What a backend does to particular connections and users, against a real
//! control plane and edge (SQLite, in-process bus): a publish that skips
//! one connection (`exclude_connection`), events to every connection of a
//! user, terminating a user's connections — and the errors of bad input.
//! Absence is proven with a fence: a later message that must come first.

mod common;

use std::time::Duration;

use common::control_plane::setup;
use futures_util::StreamExt as _;
use herald_edge::testing::{TestEdge, within};
use herald_proto::{CloseCode, ErrorCode};
use herald_sdk::{
    BatchMessage, Client, ConnectionState, Data, Error, MessageOptions, Publisher, RestError, Subscription,
    TokenRequest, UserEvent, UserEvents,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// A client of `user` on `edge`, with tokens minted by `publisher`.
async fn client(edge: &TestEdge, publisher: &Publisher, user: &str) -> Client {
    let request = TokenRequest::new(user).allow("chat:*", ["subscribe", "publish"]).ttl(Duration::from_secs(600));
    Client::builder(edge.url()).token_provider(publisher.token_provider(request)).connect().await.expect("connect")
}

async fn next_text(sub: &mut Subscription) -> String {
    let m = within(WAIT, "a message", sub.next()).await.expect("subscription open");
    m.text().expect("text").to_owned()
}

async fn next_user_message(inbox: &mut UserEvents) -> herald_sdk::UserMessage {
    within(WAIT, "a user event", inbox.next()).await.expect("user events open")
}

fn is_connection_id(id: &str) -> bool {
    id.split_once('.')
        .is_some_and(|(a, b)| [a, b].iter().all(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())))
}

#[tokio::test]
async fn a_publish_excluding_a_connection_reaches_everyone_else() {
    let (_bus, _cp, edge, publisher) = setup().await;
    let ada = client(&edge, &publisher, "ada").await;
    let bob = client(&edge, &publisher, "bob").await;
    let mut ada_room = ada.subscribe("chat:room").await.expect("subscribe");
    let mut bob_room = bob.subscribe("chat:room").await.expect("subscribe");
    let ada_id = ada.connection_id().expect("connected");
    let bob_id = bob.connection_id().expect("connected");
    assert!(is_connection_id(&ada_id) && is_connection_id(&bob_id), "{ada_id} {bob_id}");
    assert_ne!(ada_id, bob_id);
    assert_eq!(ada.connection().map(|c| c.connection_id), Some(ada_id.clone()));

    // Ada's own line, published by the backend, skips her; the fence after
    // it reaches both, so she has had her chance to receive it.
    let options = MessageOptions::new().name("line").exclude_connection(&ada_id);
    publisher.publish_with("chat:room", "ada says hi", options).await.expect("publish");
    publisher.publish("chat:room", "fence 1").await.expect("fence");
    assert_eq!(next_text(&mut bob_room).await, "ada says hi");
    assert_eq!(next_text(&mut bob_room).await, "fence 1");
    assert_eq!(next_text(&mut ada_room).await, "fence 1");

    // The same in a batch, per message.
    let results = publisher
        .publish_batch(vec![
            BatchMessage::new("chat:room", "bob says hi").exclude_connection(&bob_id),
            BatchMessage::new("chat:room", "fence 2"),
        ])
        .await
        .expect("batch");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(next_text(&mut ada_room).await, "bob says hi");
    assert_eq!(next_text(&mut ada_room).await, "fence 2");
    assert_eq!(next_text(&mut bob_room).await, "fence 2");

    // publish_message still works as before, excluding no one.
    publisher.publish_message("chat:room", "all", Some("e"), Some("id-1")).await.expect("publish");
    for room in [&mut ada_room, &mut bob_room] {
        let m = within(WAIT, "all", room.next()).await.expect("open");
        assert_eq!((m.text(), m.event.as_deref(), m.id.as_str()), (Some("all"), Some("e"), "id-1"));
    }
    ada.close().await;
    bob.close().await;
}

#[tokio::test]
async fn events_to_a_user_reach_every_connection_of_that_user_and_no_other() {
    let (_bus, _cp, edge, publisher) = setup().await;
    let (ada_phone, ada_laptop, bob) = (
        client(&edge, &publisher, "ada").await,
        client(&edge, &publisher, "ada").await,
        client(&edge, &publisher, "bob").await,
    );
    let mut phone = ada_phone.user_events().await.expect("user events");
    let mut laptop = ada_laptop.user_events().await.expect("user events");
    let mut bob_inbox = bob.user_events().await.expect("user events");

    // No subscription is needed.
    let id = publisher.publish_to_user("ada", json!({"unread": 3}), Some("inbox.updated")).await.expect("to ada");
    assert!(!id.is_empty());
    for inbox in [&mut phone, &mut laptop] {
        let m = next_user_message(inbox).await;
        assert_eq!((m.id.as_str(), m.event.as_deref()), (id.as_str(), Some("inbox.updated")));
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&m.data).expect("json"), json!({"unread": 3}));
        assert!(m.timestamp_ms > 0);
    }
    let bytes = publisher.publish_to_user("ada", Data::Binary(vec![0u8, 255].into()), None).await.expect("bytes");
    let m = next_user_message(&mut phone).await;
    assert_eq!((m.id.as_str(), &m.data[..], m.event), (bytes.as_str(), &[0u8, 255][..], None));

    // Bob's first event is the one sent to him after Ada's: he got none of
    // hers.
    let fence = publisher.publish_to_user("bob", "fence", None).await.expect("to bob");
    let m = next_user_message(&mut bob_inbox).await;
    assert_eq!((m.id.as_str(), m.text()), (fence.as_str(), Some("fence")));
    for client in [ada_phone, ada_laptop, bob] {
        client.close().await;
    }
}

#[tokio::test]
async fn terminating_a_user_stops_its_clients_for_good_and_leaves_the_others_connected() {
    let (_bus, _cp, edge, publisher) = setup().await;
    let ada = client(&edge, &publisher, "ada").await;
    let bob = client(&edge, &publisher, "bob").await;
    let mut ada_inbox = ada.user_events().await.expect("user events");
    let mut bob_inbox = bob.user_events().await.expect("user events");
    let mut ada_states = ada.state_events();
    let mut ada_room = ada.subscribe("chat:room").await.expect("subscribe");
    let bob_id = bob.connection_id().expect("connected");

    publisher.terminate_user("ada").await.expect("terminate");

    // Ada's client stops: its user events and subscriptions end with
    // user_terminated, and its state goes to Closed without a reconnect.
    match within(WAIT, "the end of Ada's user events", ada_inbox.next_event()).await {
        Some(UserEvent::Ended(e)) => assert_eq!(e.close_code(), Some(CloseCode::UserTerminated), "{e}"),
        other => panic!("expected the end, got {other:?}"),
    }
    assert_eq!(ada_inbox.end_reason().and_then(Error::close_code), Some(CloseCode::UserTerminated));
    assert!(within(WAIT, "the end of Ada's subscription", ada_room.next()).await.is_none());
    let mut seen = Vec::new();
    while !seen.last().is_some_and(ConnectionState::is_closed) {
        seen.push(within(WAIT, "Ada's states", ada_states.next()).await.expect("state events"));
    }
    assert!(
        matches!(seen.as_slice(), [ConnectionState::Disconnected { reason }, ConnectionState::Closed { error: Some(Error::Terminal { code: 4504, .. }) }]
            if reason.code() == Some(4504)),
        "{seen:?}"
    );
    assert!(matches!(ada.publish("chat:room", "x").await, Err(Error::Terminal { code: 4504, .. })));
    assert!(matches!(ada.user_events().await, Err(Error::Terminal { code: 4504, .. })));

    // Bob is still on the same connection and gets an event sent after the
    // termination was carried out.
    let fence = publisher.publish_to_user("bob", "still here", None).await.expect("to bob");
    assert_eq!(next_user_message(&mut bob_inbox).await.id, fence);
    assert_eq!(bob.connection_id(), Some(bob_id));
    bob.ping().await.expect("ping");

    // Ada may connect again.
    let again = client(&edge, &publisher, "ada").await;
    assert!(again.state().is_connected());
    again.close().await;
    bob.close().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let (_bus, cp, _edge, publisher) = setup().await;

    // User ids are checked before anything is sent.
    for user in ["", "line\nbreak", &"u".repeat(256)] {
        let err = publisher.publish_to_user(user, "x", None).await.expect_err("bad user id");
        assert!(matches!(&err, RestError::InvalidInput(m) if m.starts_with("user id")), "{err}");
        let err = publisher.terminate_user(user).await.expect_err("bad user id");
        assert!(matches!(&err, RestError::InvalidInput(_)), "{err}");
    }
    let err = publisher.publish_to_user("", "x", None).await.expect_err("empty");
    assert_eq!(err.to_string(), "invalid request: user id: client id is empty");

    // An exclusion that is no connection id is refused by the control plane.
    let options = MessageOptions::new().exclude_connection("not-a-connection");
    let err = publisher.publish_with("chat:room", "x", options).await.expect_err("bad exclusion");
    assert!(
        matches!(&err, RestError::Api { status: 400, code: ErrorCode::BadRequest, message, .. } if message.contains("exclude_connection")),
        "{err}"
    );
    let results = publisher
        .publish_batch(vec![
            BatchMessage::new("chat:room", "x").exclude_connection(""),
            BatchMessage::new("chat:room", "y"),
        ])
        .await
        .expect("batch");
    assert_eq!(results[0].as_ref().err().and_then(RestError::code), Some(ErrorCode::BadRequest), "{results:?}");
    assert!(results[1].is_ok(), "{results:?}");

    // An event name over 128 bytes.
    let err = publisher.publish_to_user("ada", "x", Some(&"n".repeat(129))).await.expect_err("long name");
    assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");

    // Users need a key that may publish on every channel.
    let limited =
        Publisher::new(cp.url(), "shop", cp.key_with("shop", json!({"chat:*": ["publish"]})).await).expect("publisher");
    let err = limited.publish_to_user("ada", "x", None).await.expect_err("forbidden");
    assert!(matches!(&err, RestError::Api { status: 403, code: ErrorCode::Forbidden, .. }), "{err}");
    let err = limited.terminate_user("ada").await.expect_err("forbidden");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    limited.publish("chat:room", "fine").await.expect("publishing to its channels still works");
}
