//! History recovery and presence through the edge's WebSocket protocol, over
//! a real NATS with JetStream (two edges, a stand-in for the control plane
//! that answers namespace requests).

use std::time::Duration;

use bytes::Bytes;
use herald_bus::{Bus, HistorySpec};
use herald_edge::EdgeConfig;
use herald_edge::testing::*;
use herald_proto::client::{self, presence_event, reply, reply_ok};
use herald_proto::{AppId, ChannelName, ErrorCode, NamespaceName, bus};
use prost::Message as _;

const ALL: &str = r#"{"*": ["subscribe", "publish", "presence", "history"]}"#;

fn config(auth: &TestAuthority) -> EdgeConfig {
    EdgeConfig {
        jwks_url: auth.jwks_url(),
        presence_snapshot_interval: herald_proto::units::HumanDuration(Duration::from_secs(1)),
        presence_ttl: herald_proto::units::HumanDuration(Duration::from_secs(2)),
        ..EdgeConfig::default()
    }
}

fn subscribed(r: &client::Reply) -> client::SubscribeResult {
    match &r.result {
        Some(reply::Result::Ok(client::ReplyOk { value: Some(reply_ok::Value::Subscribed(s)) })) => s.clone(),
        other => panic!("expected a subscribe result, got {other:?}"),
    }
}

fn published(r: &client::Reply) -> client::StreamPosition {
    match &r.result {
        Some(reply::Result::Ok(client::ReplyOk { value: Some(reply_ok::Value::Published(p)) })) => {
            p.position.clone().expect("a history channel's publish has a position")
        }
        other => panic!("expected a publish result, got {other:?}"),
    }
}

fn history(size: u32) -> bus::NamespaceOptions {
    bus::NamespaceOptions { client_publish: true, history_size: size, history_ttl_ms: 3_600_000, ..Default::default() }
}

async fn with_history(cp: &Bus, ns: &str, size: u32) {
    let spec = HistorySpec { size, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    cp.ensure_history(&AppId::new("app1").expect("app"), &NamespaceName::new(ns).expect("ns"), &spec)
        .await
        .expect("stream");
}

async fn drop_history(cp: &Bus, ns: &str) {
    cp.drop_history(&AppId::new("app1").expect("app"), &NamespaceName::new(ns).expect("ns")).await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscribe_with_a_position_replays_the_gap_then_goes_live() {
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let namespaces = vec![namespace("hist", history(100)), namespace("tiny", history(2))];
    let cp = serve_namespaces(&nats_url(), subjects.clone(), namespaces).await;
    with_history(&cp, "hist", 100).await;
    with_history(&cp, "tiny", 2).await;
    let a = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;
    let b = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;

    let (mut sub, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    let first = subscribed(&sub.subscribe("hist:room").await);
    assert!(first.history);
    let epoch = first.position.expect("position").epoch;
    assert!(!epoch.is_empty());
    let (mut publisher, _) = RawClient::connect(b.addr, &auth.token("app1", "bob", ALL)).await;
    let mut seqs = Vec::new();
    for i in 0..3u8 {
        let at = published(&publisher.publish("hist:room", &[i]).await);
        assert_eq!(at.epoch, epoch);
        seqs.push(at.seq);
        let m = sub.message().await;
        assert_eq!((m.seq, m.epoch.as_str(), &m.data[..]), (at.seq, epoch.as_str(), &[i][..]));
    }
    // The subscriber goes away; three more messages are published.
    drop(sub);
    for i in 3..6u8 {
        seqs.push(published(&publisher.publish("hist:room", &[i]).await).seq);
    }
    // Back, from the last position it saw: exactly the three it missed, then
    // live, no duplicate.
    let (mut back, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    let result = subscribed(&back.subscribe_from("hist:room", seqs[2], &epoch).await);
    assert!(result.recovered, "{result:?}");
    assert_eq!(result.position.expect("position").seq, seqs[5]);
    for (i, seq) in seqs.iter().enumerate().skip(3) {
        let m = back.message().await;
        assert_eq!((m.seq, &m.data[..]), (*seq, &[i as u8][..]));
    }
    let live = published(&publisher.publish("hist:room", b"live").await);
    let m = back.message().await;
    assert_eq!((m.seq, &m.data[..]), (live.seq, &b"live"[..]));
    assert!(back.recv_within(Duration::from_millis(200)).await.is_none(), "no duplicate");

    // Another epoch: not recovered, nothing replayed.
    let (mut stale, _) = RawClient::connect(a.addr, &auth.token("app1", "carol", ALL)).await;
    let result = subscribed(&stale.subscribe_from("hist:room", seqs[2], "0").await);
    assert!(!result.recovered);
    assert!(stale.recv_within(Duration::from_millis(200)).await.is_none());

    // A position that fell out of a two-message history: not recovered.
    let tiny: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..5u8 {
            v.push(published(&publisher.publish("tiny:x", &[i]).await));
        }
        v
    };
    let (mut late, _) = RawClient::connect(a.addr, &auth.token("app1", "dan", ALL)).await;
    let result = subscribed(&late.subscribe_from("tiny:x", tiny[0].seq, &tiny[0].epoch).await);
    assert!(!result.recovered, "{result:?}");
    assert_eq!(result.position.expect("position").seq, tiny[4].seq);
    // From a position still held, it is recovered.
    let (mut recent, _) = RawClient::connect(a.addr, &auth.token("app1", "erin", ALL)).await;
    let result = subscribed(&recent.subscribe_from("tiny:x", tiny[3].seq, &tiny[3].epoch).await);
    assert!(result.recovered);
    assert_eq!(recent.message().await.seq, tiny[4].seq);

    // Channels outside a history namespace have no history.
    assert!(!subscribed(&recent.subscribe("plain").await).history);
    drop_history(&cp, "hist").await;
    drop_history(&cp, "tiny").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_leave_across_two_edges_and_ghosts_expire() {
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let presence =
        bus::NamespaceOptions { presence: true, join_leave: true, client_publish: true, ..Default::default() };
    let cp = serve_namespaces(&nats_url(), subjects.clone(), vec![namespace("room", presence)]).await;
    let a = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;
    let b = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;

    let (mut alice, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    assert!(is_ok(&alice.subscribe("room:1").await));
    let (mut bob, _) = RawClient::connect(b.addr, &auth.token("app1", "bob", ALL)).await;
    assert!(is_ok(&bob.subscribe("room:1").await));
    let joined = alice.presence_event_within(Duration::from_secs(5)).await.expect("bob's join");
    assert_eq!(joined.kind, presence_event::Kind::Join as i32);
    assert_eq!(joined.member.expect("member").client_id, "bob");
    // A second tab of bob's is not a new member.
    let (mut bob2, _) = RawClient::connect(a.addr, &auth.token("app1", "bob", ALL)).await;
    assert!(is_ok(&bob2.subscribe("room:1").await));
    // Bob (on edge B) learns that alice was there before him, by the sync.
    let page = |r: &client::Reply| match &r.result {
        Some(reply::Result::Ok(client::ReplyOk { value: Some(reply_ok::Value::Presence(p)) })) => p.clone(),
        other => panic!("expected members, got {other:?}"),
    };
    let members = |r: &client::Reply| page(r).members.iter().map(|m| m.client_id.clone()).collect::<Vec<_>>();
    within(Duration::from_secs(5), "bob sees alice", async {
        while members(&bob.presence_query("room:1").await) != ["alice", "bob"] {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(members(&alice.presence_query("room:1").await), ["alice", "bob"]);
    drop(bob2);
    assert!(alice.presence_event_within(Duration::from_millis(300)).await.is_none(), "bob still has a tab");
    drop(bob);
    let left = alice.presence_event_within(Duration::from_secs(5)).await.expect("bob's leave");
    assert_eq!(left.kind, presence_event::Kind::Leave as i32);
    assert_eq!(left.member.expect("member").client_id, "bob");

    // An edge that died: its entries arrive once and are never refreshed.
    let app = AppId::new("app1").expect("app");
    let channel = ChannelName::new("room:1").expect("channel");
    let ghost = |conn: usize| bus::PresenceEntry {
        channel: "room:1".into(),
        connection_id: format!("ghost-{conn}"),
        client_id: format!("ghost{conn}"),
        info: Default::default(),
    };
    let join = bus::PresenceReport {
        edge_id: "dead-edge".into(),
        app_id: "app1".into(),
        ttl_ms: 0,
        kind: Some(bus::presence_report::Kind::Join(bus::PresenceJoin { entry: Some(ghost(0)) })),
    };
    cp.publish_presence(&app, &channel, &join).await.expect("publish");
    let e = alice.presence_event_within(Duration::from_secs(5)).await.expect("ghost join");
    assert_eq!((e.kind, e.member.expect("member").client_id.as_str()), (presence_event::Kind::Join as i32, "ghost0"));
    // 10,000 more members, in snapshot chunks: no join storm, all listed.
    let entries: Vec<_> = (1..=10_000).map(ghost).collect();
    for chunk in entries.chunks(500) {
        let snapshot = bus::PresenceReport {
            edge_id: "dead-edge".into(),
            app_id: "app1".into(),
            ttl_ms: 0,
            kind: Some(bus::presence_report::Kind::Snapshot(bus::PresenceSnapshot {
                entries: chunk.to_vec(),
                taken_at_ms: 0,
            })),
        };
        cp.publish_presence(&app, &channel, &snapshot).await.expect("publish");
    }
    within(Duration::from_secs(5), "10,002 members", async {
        while page(&alice.presence_query("room:1").await).total != 10_002 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Listed in pages of at most 1,000, each member once, in order.
    let (mut listed, mut after, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let p = page(&alice.presence_page("room:1", &after, 0).await);
        assert!(p.members.len() <= 1000 && !p.members.is_empty(), "page of {}", p.members.len());
        listed.extend(p.members.into_iter().map(|m| m.client_id));
        pages += 1;
        if p.next.is_empty() {
            break;
        }
        after = p.next;
    }
    assert_eq!(pages, 11);
    assert_eq!(listed.len(), 10_002);
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "sorted by client id, no repeat");
    let small = page(&alice.presence_page("room:1", "", 7).await);
    assert_eq!((small.members.len(), small.total), (7, 10_002));
    // The dead edge never refreshes: within the TTL (2 s) plus a tick, every
    // ghost leaves.
    let mut leaves = 0;
    while leaves < 10_001 {
        let e = alice.presence_event_within(Duration::from_secs(6)).await.expect("ghost leaves");
        assert_eq!(e.kind, presence_event::Kind::Leave as i32);
        leaves += 1;
    }
    assert_eq!(members(&alice.presence_query("room:1").await), ["alice"]);

    // Presence where the namespace has none, and without the capability.
    assert!(is_error(&alice.presence_query("plain").await, ErrorCode::NotEnabled));
    let (mut nocap, _) = RawClient::connect(a.addr, &auth.token("app1", "nocap", r#"{"*": ["subscribe"]}"#)).await;
    assert!(is_error(&nocap.presence_query("room:1").await, ErrorCode::Forbidden));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_nats_kill_and_live_delivery_has_no_gap_after_it() {
    let mut nats = NatsServer::start().await;
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let cp = serve_namespaces(&nats.url(), subjects.clone(), vec![namespace("hist", history(1000))]).await;
    with_history(&cp, "hist", 1000).await;
    let a = TestEdge::start(config(&auth), nats_bus(&nats.url(), subjects.clone()).await).await;
    let (mut sub, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    assert!(subscribed(&sub.subscribe("hist:feed").await).history);
    let app = AppId::new("app1").expect("app");
    let channel = ChannelName::new("hist:feed").expect("channel");
    let message = |i: u32| bus::ChannelMessage {
        app_id: "app1".into(),
        channel: "hist:feed".into(),
        data: i.to_be_bytes().to_vec().into(),
        id: format!("m{i}"),
        ..Default::default()
    };
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(cp.publish_history(&app, &channel, &message(i)).await.expect("stored").seq);
    }
    for seq in &acked[..5] {
        assert_eq!(sub.message().await.seq, *seq);
    }
    // NATS dies (SIGKILL) and comes back; publishing resumes as soon as it
    // is accepted, possibly before the edge has resubscribed.
    nats.restart().await;
    let mut i = 5;
    while i < 15 {
        match cp.publish_history(&app, &channel, &message(i)).await {
            Ok(p) => {
                acked.push(p.seq);
                i += 1;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // Every acknowledged message arrives once, in order: the ones the edge
    // missed while resubscribing come from the stream.
    for seq in &acked[5..] {
        let m = within(Duration::from_secs(10), "message after restart", sub.message()).await;
        assert_eq!(m.seq, *seq);
    }
    assert!(sub.recv_within(Duration::from_millis(200)).await.is_none(), "no duplicate");
    // What was acknowledged before the kill is still in history.
    let page = cp.read_history(&app, &channel, 0, 100).await.expect("history");
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), acked);
    assert!(page.complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_replay_waits_for_room_in_the_send_queue_and_live_messages_follow_it() {
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let cp = serve_namespaces(&nats_url(), subjects.clone(), vec![namespace("long", history(10_000))]).await;
    let (app, ns) = (AppId::new("app1").expect("app"), NamespaceName::new("long").expect("ns"));
    let spec = HistorySpec { size: 10_000, ttl: Duration::from_secs(3600), max_bytes: 64 << 20, replicas: 1 };
    cp.ensure_history(&app, &ns, &spec).await.expect("stream");
    // A send queue of 128 KiB; the replay below is 16 MiB.
    let small_queue = EdgeConfig { send_queue_bytes: herald_proto::units::ByteSize::kib(128), ..config(&auth) };
    let a = TestEdge::start(small_queue, nats_bus(&nats_url(), subjects.clone()).await).await;
    let channel = ChannelName::new("long:x").expect("channel");
    let message = |i: u32| bus::ChannelMessage {
        app_id: "app1".into(),
        channel: "long:x".into(),
        data: Bytes::from(vec![(i % 251) as u8; 16_384]),
        id: format!("m{i}"),
        ..Default::default()
    };

    let (mut sub, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    let from = subscribed(&sub.subscribe("long:x").await).position.expect("position");
    drop(sub);
    let mut seqs = Vec::new();
    for i in 0..1_000 {
        seqs.push(cp.publish_history(&app, &channel, &message(i)).await.expect("stored").seq);
    }
    let (mut back, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    let result = subscribed(&back.subscribe_from("long:x", from.seq, &from.epoch).await);
    assert!(result.recovered, "{result:?}");
    // More are published while the replay waits for the reader, which does
    // not read for a second: 320 KiB of live messages held, more than the
    // queue takes at once.
    let live = {
        let (cp, app, channel) = (cp.clone(), app.clone(), channel.clone());
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 1_000..1_020 {
                seqs.push(cp.publish_history(&app, &channel, &message(i)).await.expect("stored").seq);
            }
            seqs
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, seq) in seqs.iter().enumerate() {
        let m = back.message().await;
        assert_eq!((m.seq, m.data.len(), m.data[0]), (*seq, 16_384, (i % 251) as u8), "replayed message {i}");
    }
    for (i, seq) in live.await.expect("live publisher").iter().enumerate() {
        let m = back.message().await;
        assert_eq!((m.seq, m.data[0]), (*seq, ((1_000 + i) % 251) as u8), "live message {i}");
    }
    assert!(back.recv_within(Duration::from_millis(200)).await.is_none(), "no duplicate, still open");
    assert!(is_ok(&back.subscribe("plain").await), "the connection is still open");
    cp.drop_history(&app, &ns).await.expect("drop");
}

fn stored(channel: &str, i: u32) -> bus::ChannelMessage {
    bus::ChannelMessage {
        app_id: "app1".into(),
        channel: channel.into(),
        data: i.to_be_bytes().to_vec().into(),
        id: format!("{channel}-{i}"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_created_again_gets_a_new_epoch_on_an_edge_that_met_the_old_one() {
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let cp = serve_namespaces(&nats_url(), subjects.clone(), vec![namespace("hist", history(100))]).await;
    with_history(&cp, "hist", 100).await;
    let a = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;
    let app = AppId::new("app1").expect("app");
    let (ch_a, ch_b) = (ChannelName::new("hist:a").expect("channel"), ChannelName::new("hist:b").expect("channel"));
    cp.publish_history(&app, &ch_a, &stored("hist:a", 0)).await.expect("stored");
    cp.publish_history(&app, &ch_b, &stored("hist:b", 0)).await.expect("stored");
    // The edge follows channel A only, and meets the stream's epoch there.
    let (mut sub, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    let old_epoch = subscribed(&sub.subscribe("hist:a").await).position.expect("position").epoch;
    let seen = cp.publish_history(&app, &ch_a, &stored("hist:a", 1)).await.expect("stored");
    let m = sub.message().await;
    assert_eq!((m.seq, m.epoch.as_str()), (seen.seq, old_epoch.as_str()));

    // The stream is lost and created again; channel B, which this edge does
    // not follow, takes the first sequence numbers of the new stream, so
    // the next message on A has a sequence above the last one seen there.
    drop_history(&cp, "hist").await;
    with_history(&cp, "hist", 100).await;
    for i in 1..6 {
        cp.publish_history(&app, &ch_b, &stored("hist:b", i)).await.expect("stored");
    }
    let new = cp.publish_history(&app, &ch_a, &stored("hist:a", 2)).await.expect("stored");
    assert!(new.seq > seen.seq, "{new:?} after {seen:?}");
    assert_ne!(new.epoch, old_epoch);
    let m = sub.message().await;
    assert_eq!((m.seq, m.epoch.as_str()), (new.seq, new.epoch.as_str()), "the new stream's epoch");
    // What was seen before the stream was lost is not recoverable.
    let (mut back, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    let result = subscribed(&back.subscribe_from("hist:a", seen.seq, &old_epoch).await);
    assert!(!result.recovered, "{result:?}");
    assert_eq!(result.position.expect("position").epoch, new.epoch);
    // From the position delivered live, it is.
    let (mut live, _) = RawClient::connect(a.addr, &auth.token("app1", "bob", ALL)).await;
    let result = subscribed(&live.subscribe_from("hist:a", m.seq, &m.epoch).await);
    assert!(result.recovered, "{result:?}");

    // Created again once more: its first message (sequence 1, below the last
    // one delivered on A) still reaches the subscriber, with its epoch.
    drop_history(&cp, "hist").await;
    with_history(&cp, "hist", 100).await;
    let first = cp.publish_history(&app, &ch_a, &stored("hist:a", 3)).await.expect("stored");
    assert_eq!(first.seq, 1);
    let m = within(Duration::from_secs(5), "the new stream's first message", sub.message()).await;
    assert_eq!((m.seq, m.epoch.as_str()), (first.seq, first.epoch.as_str()));
    drop_history(&cp, "hist").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publish_recreates_a_lost_stream() {
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let cp = serve_namespaces(&nats_url(), subjects.clone(), vec![namespace("hist", history(100))]).await;
    with_history(&cp, "hist", 100).await;
    let a = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;
    let (mut publisher, _) = RawClient::connect(a.addr, &auth.token("app1", "bob", ALL)).await;
    let before = published(&publisher.publish("hist:room", b"before").await);
    // The stream is deleted behind Herald's back.
    drop_history(&cp, "hist").await;
    let after = published(&publisher.publish("hist:room", b"after").await);
    assert_ne!(after.epoch, before.epoch);
    let app = AppId::new("app1").expect("app");
    let page = cp.read_history(&app, &ChannelName::new("hist:room").expect("channel"), 0, 10).await.expect("history");
    assert_eq!(page.epoch, after.epoch);
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [after.seq]);
    let data = bus::ChannelMessage::decode(page.messages[0].payload.clone()).expect("decodable").data;
    assert_eq!(&data[..], b"after");
    drop_history(&cp, "hist").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_options_turn_client_publishes_and_join_leave_events_off() {
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let quiet =
        bus::NamespaceOptions { presence: true, join_leave: false, client_publish: false, ..Default::default() };
    let loud = bus::NamespaceOptions { presence: true, join_leave: true, client_publish: true, ..Default::default() };
    let _cp =
        serve_namespaces(&nats_url(), subjects.clone(), vec![namespace("quiet", quiet), namespace("loud", loud)]).await;
    let a = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects.clone()).await).await;

    let (mut alice, _) = RawClient::connect(a.addr, &auth.token("app1", "alice", ALL)).await;
    assert!(is_ok(&alice.subscribe("quiet:1").await));
    assert!(is_ok(&alice.subscribe("loud:1").await));
    // The token allows publishing everywhere; the namespace does not.
    assert!(is_error(&alice.publish("quiet:1", b"no").await, ErrorCode::Forbidden));
    assert!(is_ok(&alice.publish("loud:1", b"yes").await));
    assert_eq!(&alice.message().await.data[..], b"yes");
    // Bob joins both: an event only where join/leave is on, yet he is a
    // member of both.
    let (mut bob, _) = RawClient::connect(a.addr, &auth.token("app1", "bob", ALL)).await;
    assert!(is_ok(&bob.subscribe("quiet:1").await));
    assert!(is_ok(&bob.subscribe("loud:1").await));
    let e = alice.presence_event_within(Duration::from_secs(5)).await.expect("a join on loud:1");
    assert_eq!((e.channel.as_str(), e.kind), ("loud:1", presence_event::Kind::Join as i32));
    assert!(alice.presence_event_within(Duration::from_millis(500)).await.is_none(), "none on quiet:1");
    let members = |r: &client::Reply| match &r.result {
        Some(reply::Result::Ok(client::ReplyOk { value: Some(reply_ok::Value::Presence(p)) })) => {
            p.members.iter().map(|m| m.client_id.clone()).collect::<Vec<_>>()
        }
        other => panic!("expected members, got {other:?}"),
    };
    assert_eq!(members(&alice.presence_query("quiet:1").await), ["alice", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_leave_events_stop_above_their_member_bound() {
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let room = bus::NamespaceOptions { presence: true, join_leave: true, client_publish: true, ..Default::default() };
    let _cp = serve_namespaces(&nats_url(), subjects.clone(), vec![namespace("room", room)]).await;
    let small = EdgeConfig { presence_events_max_members: 2, ..config(&auth) };
    let a = TestEdge::start(small, nats_bus(&nats_url(), subjects.clone()).await).await;
    let join = async |who: &str| {
        let (mut c, _) = RawClient::connect(a.addr, &auth.token("app1", who, ALL)).await;
        assert!(is_ok(&c.subscribe("room:1").await));
        c
    };
    let mut alice = join("alice").await;
    let bob = join("bob").await;
    let e = alice.presence_event_within(Duration::from_secs(5)).await.expect("bob's join: 2 members");
    assert_eq!((e.kind, e.member.expect("member").client_id.as_str()), (presence_event::Kind::Join as i32, "bob"));
    let carol = join("carol").await;
    assert!(alice.presence_event_within(Duration::from_millis(500)).await.is_none(), "3 members: no join event");
    let page = match alice.presence_query("room:1").await.result {
        Some(reply::Result::Ok(client::ReplyOk { value: Some(reply_ok::Value::Presence(p)) })) => p,
        other => panic!("expected members, got {other:?}"),
    };
    assert_eq!(page.total, 3, "carol is a member all the same");
    drop(carol);
    assert!(alice.presence_event_within(Duration::from_millis(500)).await.is_none(), "she leaves unannounced too");
    drop(bob);
    let e = alice.presence_event_within(Duration::from_secs(5)).await.expect("bob's leave: back within the bound");
    assert_eq!((e.kind, e.member.expect("member").client_id.as_str()), (presence_event::Kind::Leave as i32, "bob"));
}
