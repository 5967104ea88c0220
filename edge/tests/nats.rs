//! Edges over a real NATS: delivery across edges, interest that follows
//! local subscribers (one NATS subscription per bucket of channels), recovery after a NATS restart, publishes answered
//! once the server has them (several in flight per connection, answered in
//! order), revocations missed while cut off.

use std::time::Duration;

use herald_bus::{Bus, ChannelRouting, NatsOptions};
use herald_edge::EdgeConfig;
use herald_edge::testing::*;
use herald_proto::client::{self, client_frame, server_frame};
use herald_proto::subject::token_bucket;
use herald_proto::{AppId, ChannelName, ErrorCode};

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

/// A channel in the same bucket as `channel`, and one in another bucket.
fn neighbours(channel: &str) -> (String, String) {
    let bucket = token_bucket(channel);
    let mut names = (0..).map(|i| format!("{channel}-{i}"));
    let same = names.by_ref().find(|n| token_bucket(n) == bucket).expect("a channel in the same bucket");
    let other = names.find(|n| token_bucket(n) != bucket).expect("a channel in another bucket");
    (same, other)
}

async fn subscriptions_become(nats: &NatsServer, prefix: &str, n: usize, what: &str) {
    let settled = async {
        while nats.subscriptions_under(prefix).await.len() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within(Duration::from_secs(5), what, settled).await;
}

/// A NATS server of the test's own (its subscriptions can be listed), a
/// token authority, a subject space with the prefix of its channel
/// subjects, and a stand-in for the control plane (keep it alive).
async fn own_nats() -> (NatsServer, TestAuthority, herald_proto::SubjectSpace, String, Bus) {
    let nats = NatsServer::start().await;
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let prefix = format!("{}.ch.", subjects.prefix());
    let namespaces = serve_namespaces(&nats.url(), subjects.clone(), Vec::new()).await;
    (nats, auth, subjects, prefix, namespaces)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_interest_follows_local_subscribers_by_bucket() {
    let (nats, auth, subjects, prefix, _namespaces) = own_nats().await;
    let edge = TestEdge::start(config(&auth), nats_bus(&nats.url(), subjects.clone()).await).await;
    let other_edge = TestEdge::start(config(&auth), nats_bus(&nats.url(), subjects.clone()).await).await;
    let token = auth.token("app1", "u", ALL);
    let (mut c1, _) = RawClient::connect(edge.addr, &token).await;
    let (mut c2, _) = RawClient::connect(edge.addr, &token).await;
    let (mut publisher, _) = RawClient::connect(other_edge.addr, &token).await;
    assert!(nats.subscriptions_under(&prefix).await.is_empty());
    assert!(is_ok(&c1.subscribe("room").await));
    assert!(is_ok(&c2.subscribe("room").await));
    let subs = nats.subscriptions_under(&prefix).await;
    let bucket = subjects.channel_bucket(&AppId::new("app1").expect("app"), token_bucket("room"));
    assert_eq!(subs, [bucket], "one NATS subscription for the channel's bucket, however many local subscribers");

    // A second channel of the bucket shares its subscription; a channel of
    // another bucket has its own.
    let (same, other) = neighbours("room");
    assert!(is_ok(&c1.subscribe(&same).await));
    assert_eq!(nats.subscriptions_under(&prefix).await.len(), 1, "{same} shares the bucket of room");
    assert!(is_ok(&c2.subscribe(&other).await));
    assert_eq!(nats.subscriptions_under(&prefix).await.len(), 2, "{other} is in another bucket");

    // Each message reaches its own channel's subscribers only, including a
    // message of a channel of the bucket nobody here subscribes to.
    let (unheard, _) = neighbours(&same);
    for channel in ["room", same.as_str(), other.as_str(), unheard.as_str()] {
        assert!(is_ok(&publisher.publish(channel, channel.as_bytes()).await));
    }
    let got = |m: client::Message| (m.channel, String::from_utf8(m.data.to_vec()).expect("utf-8"));
    assert_eq!(got(c1.message().await), ("room".to_owned(), "room".to_owned()));
    assert_eq!(got(c1.message().await), (same.clone(), same.clone()));
    assert_eq!(got(c2.message().await), ("room".to_owned(), "room".to_owned()));
    assert_eq!(got(c2.message().await), (other.clone(), other.clone()));
    assert_eq!(c1.recv_within(Duration::from_millis(300)).await, None, "nothing of {unheard}");
    assert_eq!(c2.recv_within(Duration::from_millis(100)).await, None, "nothing of {unheard}");

    // The bucket's subscription stays while any of its channels has local
    // subscribers, and delivery goes on for those that are left.
    unsubscribe(&mut c1, "room").await;
    unsubscribe(&mut c2, "room").await;
    assert_eq!(nats.subscriptions_under(&prefix).await.len(), 2, "{same} still holds the bucket");
    assert!(is_ok(&publisher.publish("room", b"gone").await));
    assert!(is_ok(&publisher.publish(&same, b"still").await));
    assert_eq!(got(c1.message().await), (same.clone(), "still".to_owned()));
    unsubscribe(&mut c1, &same).await;
    subscriptions_become(&nats, &prefix, 1, "the bucket's interest removed with its last channel").await;
    // A closing connection removes its interest too.
    drop(c2);
    subscriptions_become(&nats, &prefix, 0, "interest removed on close").await;
    // A bucket subscribed again works as the first time.
    assert!(is_ok(&c1.subscribe(&same).await));
    assert!(is_ok(&publisher.publish(&same, b"again").await));
    assert_eq!(got(c1.message().await), (same.clone(), "again".to_owned()));
}

/// With `nats_channel_routing = "channel"` every channel has its own NATS
/// subscription on its exact subject, even two channels of one bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_routing_follows_each_channel_by_its_own_subject() {
    let (nats, auth, subjects, prefix, _namespaces) = own_nats().await;
    let options = NatsOptions { channel_routing: ChannelRouting::Channel, ..NatsOptions::default() };
    let bus = Bus::connect_nats(&nats.url(), subjects.clone(), options).await.expect("connect to nats");
    let edge = TestEdge::start(config(&auth), bus).await;
    let other_edge = TestEdge::start(config(&auth), nats_bus(&nats.url(), subjects.clone()).await).await;
    let token = auth.token("app1", "u", ALL);
    let (mut c1, _) = RawClient::connect(edge.addr, &token).await;
    let (mut publisher, _) = RawClient::connect(other_edge.addr, &token).await;
    let (same, _) = neighbours("room");
    assert!(is_ok(&c1.subscribe("room").await));
    assert!(is_ok(&c1.subscribe(&same).await));
    let app = AppId::new("app1").expect("app");
    let mut subs = nats.subscriptions_under(&prefix).await;
    subs.sort();
    let mut expected = vec![
        subjects.channel(&app, &ChannelName::new("room").expect("channel")),
        subjects.channel(&app, &ChannelName::new(&same).expect("channel")),
    ];
    expected.sort();
    assert_eq!(subs, expected, "one exact subscription per channel");
    let (unheard, _) = neighbours(&same);
    for channel in [unheard.as_str(), "room", same.as_str()] {
        assert!(is_ok(&publisher.publish(channel, channel.as_bytes()).await));
    }
    assert_eq!(c1.message().await.channel, "room");
    assert_eq!(c1.message().await.channel, same);
    unsubscribe(&mut c1, "room").await;
    subscriptions_become(&nats, &prefix, 1, "room's subscription ended").await;
    assert_eq!(
        nats.subscriptions_under(&prefix).await,
        [expected.iter().find(|s| s.ends_with(&same)).expect("same").clone()]
    );
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
