//! Edges over a real NATS: delivery across edges, interest that follows
//! local subscribers, recovery after a NATS restart, publishes answered
//! once the server has them (several in flight per connection, answered in
//! order), revocations missed while cut off.

use std::time::Duration;

use herald_edge::EdgeConfig;
use herald_edge::testing::*;
use herald_proto::ErrorCode;
use herald_proto::client::{self, client_frame, server_frame};

const ALL: &str = r#"{"*": ["subscribe", "publish"]}"#;

fn config(auth: &TestAuthority) -> EdgeConfig {
    EdgeConfig { jwks_url: auth.jwks_url(), ..EdgeConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_edge_a_receives_what_a_client_on_edge_b_publishes() {
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    // Stands in for the control plane, which answers namespace requests.
    let _namespaces = serve_namespaces(&nats_url(), subjects.clone(), Vec::new()).await;
    let a = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;
    let b = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;
    let (mut sub, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    assert!(is_ok(&sub.subscribe("chat:lobby").await));
    let (mut publisher, _) = RawClient::connect(b.addr, &auth.token("app1", "bob", ALL)).await;
    for i in 0..50u32 {
        assert!(is_ok(&publisher.publish("chat:lobby", &i.to_be_bytes()).await));
    }
    for i in 0..50u32 {
        let m = sub.message().await;
        assert_eq!(&m.data[..], &i.to_be_bytes(), "in order");
        assert_eq!(m.publisher, "bob");
    }
    // Another deployment (another subject prefix) on the same NATS sees none
    // of it.
    let other_subjects = unique_subjects();
    let _other_namespaces = serve_namespaces(&nats_url(), other_subjects.clone(), Vec::new()).await;
    let other = TestEdge::start(config(&auth), nats_bus(&nats_url(), other_subjects).await).await;
    let (mut stranger, _) = RawClient::connect(other.addr, &auth.token("app1", "eve", ALL)).await;
    assert!(is_ok(&stranger.subscribe("chat:lobby").await));
    assert!(is_ok(&publisher.publish("chat:lobby", b"x").await));
    assert_eq!(&sub.message().await.data[..], b"x");
    assert_eq!(stranger.recv_within(Duration::from_millis(300)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_interest_follows_local_subscribers() {
    let nats = NatsServer::start().await;
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let prefix = format!("{}.ch.", subjects.prefix());
    let _namespaces = serve_namespaces(&nats.url(), subjects.clone(), Vec::new()).await;
    let edge = TestEdge::start(config(&auth), nats_bus(&nats.url(), subjects).await).await;
    let token = auth.token("app1", "u", ALL);
    let (mut c1, _) = RawClient::connect(edge.addr, &token).await;
    let (mut c2, _) = RawClient::connect(edge.addr, &token).await;
    assert!(nats.subscriptions_under(&prefix).await.is_empty());
    assert!(is_ok(&c1.subscribe("room").await));
    assert!(is_ok(&c2.subscribe("room").await));
    let subs = nats.subscriptions_under(&prefix).await;
    assert_eq!(subs.len(), 1, "one NATS subscription per channel, however many local subscribers: {subs:?}");
    unsubscribe(&mut c1, "room").await;
    assert_eq!(nats.subscriptions_under(&prefix).await.len(), 1, "c2 still subscribes");
    unsubscribe(&mut c2, "room").await;
    let gone = async {
        while !nats.subscriptions_under(&prefix).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within(Duration::from_secs(5), "interest removed", gone).await;
    // A closing connection removes its interest too.
    assert!(is_ok(&c1.subscribe("other").await));
    assert_eq!(nats.subscriptions_under(&prefix).await.len(), 1);
    drop(c1);
    let gone = async {
        while !nats.subscriptions_under(&prefix).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within(Duration::from_secs(5), "interest removed on close", gone).await;
}

async fn unsubscribe(c: &mut RawClient, channel: &str) {
    c.request(client_frame::Kind::Unsubscribe(client::Unsubscribe { channel: channel.into() })).await;
    assert!(is_ok(&c.reply().await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_answered_ok_only_once_the_nats_server_has_it() {
    let nats = NatsServer::start().await;
    let auth = TestAuthority::start().await;
    let edge = TestEdge::start(config(&auth), nats_bus(&nats.url(), unique_subjects()).await).await;
    let (mut publisher, _) = RawClient::connect(edge.addr, &auth.token("app1", "bob", ALL)).await;
    assert!(is_ok(&publisher.publish("feed", b"before").await));
    // A stopped server still takes bytes into its socket buffer: a publish
    // written there is not taken, and gets an error when the publish
    // timeout (5 s) passes. Three sent back to back are in flight together:
    // all three fail near the same time (one at a time they would take
    // three timeouts), answered in request order.
    nats.pause();
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for data in [b"1", b"2", b"3"] {
        ids.push(publisher.request(publish_request("feed", data)).await);
    }
    for id in ids {
        let reply = within(Duration::from_secs(15), "an answer", publisher.reply()).await;
        assert_eq!(reply.request_id, id);
        assert!(is_error(&reply, ErrorCode::Unavailable), "{reply:?}");
    }
    let took = started.elapsed();
    nats.resume();
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(10), "answered after {took:?}");
    let resumed = async {
        while !is_ok(&publisher.publish("feed", b"after").await) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    within(Duration::from_secs(20), "publishes work again", resumed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_cut_off_from_nats_reads_the_revocations_it_missed_when_it_reconnects() {
    let mut nats = NatsServer::start().await;
    let auth = TestAuthority::start().await;
    // The periodic refetch (default 5 min) would be far too late.
    let edge = TestEdge::start(config(&auth), nats_bus(&nats.url(), unique_subjects()).await).await;
    let token = auth.token("app1", "u", ALL);
    let (mut before, _) = RawClient::connect(edge.addr, &token).await;
    assert!(is_ok(&before.subscribe("a").await));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(auth.fetches(), 1, "the first connect to NATS is no reason to fetch again");
    nats.kill();
    // Revoked while the edge hears no event: only the JWKS says so.
    auth.revoke("app1", Some("key1"));
    nats.restart().await;
    let refused = async {
        loop {
            // Accepted (the JWKS not refetched yet), or refused.
            if let (_, Received::Frame(client::ServerFrame { kind: Some(server_frame::Kind::Disconnect(d)) })) =
                RawClient::hello(edge.addr, &token).await
            {
                assert_eq!(d.code, 4101);
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    within(Duration::from_secs(20), "the revocation after the reconnect", refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_after_nats_restarts() {
    let mut nats = NatsServer::start().await;
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let a = TestEdge::start(config(&auth), nats_bus(&nats.url(), subjects.clone()).await).await;
    let b = TestEdge::start(config(&auth), nats_bus(&nats.url(), subjects).await).await;
    let (mut sub, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    assert!(is_ok(&sub.subscribe("feed").await));
    let (mut publisher, _) = RawClient::connect(b.addr, &auth.token("app1", "bob", ALL)).await;
    assert!(is_ok(&publisher.publish("feed", b"before").await));
    assert_eq!(&sub.message().await.data[..], b"before");

    nats.kill();
    // While NATS is down, a publish fails with a retryable error — never a
    // false success.
    let reply = publisher.publish("feed", b"lost").await;
    assert!(is_error(&reply, ErrorCode::Unavailable), "{reply:?}");
    nats.restart().await;

    // The edges reconnect and resubscribe on their own.
    let resumed = async {
        loop {
            let reply = publisher.publish("feed", b"after").await;
            if is_ok(&reply) {
                if let Some(herald_edge::testing::Received::Frame(f)) = sub.recv_within(Duration::from_secs(1)).await
                    && let Some(herald_proto::client::server_frame::Kind::Message(m)) = f.kind
                    && &m.data[..] == b"after"
                {
                    return;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    within(Duration::from_secs(20), "delivery resumes after the restart", resumed).await;
}

fn publish_request(channel: &str, data: &[u8]) -> client_frame::Kind {
    client_frame::Kind::Publish(client::Publish {
        channel: channel.into(),
        data: bytes::Bytes::copy_from_slice(data),
        event: None,
        idempotency_id: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_sent_back_to_back_are_in_flight_together_and_answered_in_request_order() {
    const N: u32 = 300;
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let _namespaces = serve_namespaces(&nats_url(), subjects.clone(), Vec::new()).await;
    let unlimited = || EdgeConfig { publish_rate: 0, max_publishes_in_flight: 16, ..config(&auth) };
    let a = TestEdge::start(unlimited(), nats_bus(&nats_url(), subjects.clone()).await).await;
    let b = TestEdge::start(unlimited(), nats_bus(&nats_url(), subjects).await).await;
    let (mut sub, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    assert!(is_ok(&sub.subscribe("feed").await));
    let (mut publisher, _) = RawClient::connect(b.addr, &auth.token("app1", "bob", ALL)).await;
    // Every request written before any reply is read; a ping halfway.
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(publisher.request(publish_request("feed", &i.to_be_bytes())).await);
        if i == N / 2 {
            ids.push(publisher.request(client_frame::Kind::Ping(client::Ping {})).await);
        }
    }
    for id in ids {
        let reply = publisher.reply().await;
        assert_eq!(reply.request_id, id, "replies in request order");
        assert!(is_ok(&reply), "{reply:?}");
    }
    for i in 0..N {
        assert_eq!(&sub.message().await.data[..], &i.to_be_bytes(), "messages in publish order");
    }
}
