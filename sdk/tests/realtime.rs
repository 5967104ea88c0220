//! The realtime client against real edges (in-process bus): order,
//! an edge killed and restarted mid-stream, drains, heartbeats, token
//! refresh and expiry, terminal errors, the publish queue's bounds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::{TestAuthority, within};
use herald_proto::units::HumanDuration;
use herald_proto::{ErrorCode, bus};
use herald_sdk::{
    Backoff, Client, ConnectionState, DisconnectReason, Error, PublishOptions, Subscription, SubscriptionEvent,
};

const LONG: Duration = Duration::from_secs(20);

async fn client(url: &str, auth: &TestAuthority, name: &str) -> Client {
    Client::builder(url).token(auth.token("app1", name, ALL)).connect().await.expect("connect")
}

/// The next message's text, failing after 10 s.
async fn next_text(sub: &mut Subscription) -> String {
    let m = within(Duration::from_secs(10), "a message", sub.next_message()).await.expect("subscription open");
    String::from_utf8(m.data.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn messages_arrive_in_order_and_publishes_are_acknowledged() {
    logs();
    let auth = TestAuthority::start().await;
    let bus = LocalBus::new();
    let edge = edge_on(&bus, edge_config(&auth)).await;
    let alice = client(&edge.url(), &auth, "alice").await;
    let bob = client(&edge.url(), &auth, "bob").await;
    let info = alice.connection().expect("connected");
    assert_eq!(info.client_id, "alice");
    let mut sub = alice.subscribe("chat:room").await.expect("subscribe");
    assert_eq!(sub.channel().as_str(), "chat:room");

    // 300 publishes in flight at once, acknowledged one by one, delivered
    // in the order they were made.
    let mut pending = Vec::new();
    for i in 0..300 {
        pending.push(bob.start_publish("chat:room", format!("m{i}"), PublishOptions::default()).await.expect("queued"));
    }
    let acks = futures_util::future::join_all(pending).await;
    for ack in &acks {
        assert!(!ack.as_ref().expect("acknowledged").id.is_empty());
    }
    for (i, ack) in acks.iter().enumerate() {
        let m = within(Duration::from_secs(10), "a message", sub.next()).await.expect("open");
        assert_eq!(m.text(), Some(format!("m{i}").as_str()));
        assert_eq!(m.publisher.as_deref(), Some("bob"));
        assert_eq!(m.channel.as_str(), "chat:room");
        assert!(m.timestamp_ms > 0);
        assert_eq!(m.id, ack.as_ref().expect("ack").id);
    }

    // A publish with an event name and an idempotency id.
    let options = PublishOptions::event("greeting").with_idempotency_id("hello-1");
    let ack = alice.publish_with("chat:room", "hi", options).await.expect("publish");
    assert_eq!(ack.id, "hello-1");
    let m = within(Duration::from_secs(10), "own message", sub.next()).await.expect("open");
    assert_eq!((m.event.as_deref(), m.id.as_str()), (Some("greeting"), "hello-1"));

    // The edge's refusals come back typed, and the connection goes on.
    let err = bob.publish("$reserved", "x").await.expect_err("invalid");
    assert!(matches!(err, Error::InvalidChannel(_)), "{err}");
    let limited = Client::builder(edge.url())
        .token(auth.token("app1", "carol", r#"{"news": ["subscribe"]}"#))
        .connect()
        .await
        .expect("connect");
    let err = limited.publish("news", "x").await.expect_err("forbidden");
    assert_eq!(err.error_code(), Some(ErrorCode::Forbidden));
    let err = limited.subscribe("chat:room").await.expect_err("forbidden");
    assert_eq!(err.error_code(), Some(ErrorCode::Forbidden));
    assert!(limited.ping().await.is_ok());

    // Unsubscribing is acknowledged; closing ends the subscription.
    let other = alice.subscribe("chat:other").await.expect("subscribe");
    other.unsubscribe().await.expect("unsubscribe");
    alice.unsubscribe("chat:nothing").await.expect("unsubscribe from nothing");
    alice.close().await;
    assert_eq!(alice.state(), ConnectionState::Closed { error: None });
    assert!(within(Duration::from_secs(5), "end", sub.next()).await.is_none());
    assert_eq!(alice.publish("chat:room", "late").await.expect_err("closed"), Error::Closed);
    bob.close().await;
}

#[tokio::test]
async fn two_subscriptions_to_one_channel_share_it() {
    let auth = TestAuthority::start().await;
    let bus = LocalBus::new();
    let edge = edge_on(&bus, edge_config(&auth)).await;
    let c = client(&edge.url(), &auth, "u").await;
    let mut a = c.subscribe("news").await.expect("a");
    let b = c.subscribe("news").await.expect("b");
    c.publish("news", "one").await.expect("publish");
    assert_eq!(next_text(&mut a).await, "one");
    b.unsubscribe().await.expect("unsubscribe b");
    // `a` still receives.
    c.publish("news", "two").await.expect("publish");
    assert_eq!(next_text(&mut a).await, "two");
    a.unsubscribe().await.expect("unsubscribe a");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_mid_stream_is_survived_with_queued_publishes_delivered() {
    logs();
    let auth = Arc::new(TestAuthority::start().await);
    let bus = LocalBus::new();
    let doomed = edge_on(&bus, edge_config(&auth)).await;
    let stable = edge_on(&bus, edge_config(&auth)).await;
    // The client reaches the doomed edge through a proxy, so killing the
    // edge also kills its TCP connections (dropping a TestEdge only stops
    // its accept loop; its connection tasks live on in this process).
    let proxy = Proxy::start(doomed.addr).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let subject = Client::builder(proxy.url())
        .token_provider(provider(&auth, "subject", &calls))
        .backoff(Backoff::default().with_initial(Duration::from_millis(200)).with_max(Duration::from_secs(1)))
        .connect()
        .await
        .expect("connect");
    let mut states = subject.state_events();
    let mut feed = subject.subscribe("feed").await.expect("subscribe");
    let observer = client(&stable.url(), &auth, "observer").await;
    let mut watched = observer.subscribe("feed").await.expect("observer subscribe");

    // A publisher on the stable edge keeps a numbered stream going.
    let publisher = client(&stable.url(), &auth, "publisher").await;
    let stream = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            for i in 0u32.. {
                if publisher.publish("feed", format!("live-{i}")).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let number = |text: &str| text.strip_prefix("live-").and_then(|n| n.parse::<u32>().ok());
    let mut last_live = None;
    while last_live.is_none_or(|n| n < 10) {
        last_live = number(&next_text(&mut feed).await);
    }

    // Kill the edge mid-stream.
    drop(doomed);
    proxy.kill();
    let state =
        wait_for(&mut states, LONG, "disconnected", |s| matches!(s, ConnectionState::Disconnected { .. })).await;
    assert!(matches!(&state, ConnectionState::Disconnected { reason: DisconnectReason::Transport(_) }), "{state:?}");
    wait_for(&mut states, LONG, "reconnecting", |s| matches!(s, ConnectionState::Reconnecting { .. })).await;

    // Publishes made while disconnected wait in the queue.
    let mut queued = Vec::new();
    for i in 0..5 {
        let pending = subject.start_publish("feed", format!("queued-{i}"), PublishOptions::default()).await;
        queued.push(pending.expect("queued"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!subject.state().is_connected());

    // A new edge takes the old one's place (same address, through the proxy).
    let reborn = edge_on(&bus, edge_config(&auth)).await;
    proxy.set_target(reborn.addr);
    wait_for(&mut states, LONG, "reconnected", ConnectionState::is_connected).await;
    for (i, publish) in queued.into_iter().enumerate() {
        let ack = within(LONG, "queued publish", publish).await;
        assert!(ack.is_ok(), "queued-{i}: {ack:?}");
    }

    // The observer sees the queued publishes, in order.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let text = next_text(&mut watched).await;
        if text.starts_with("queued-") {
            seen.push(text);
        }
    }
    assert_eq!(seen, (0..5).map(|i| format!("queued-{i}")).collect::<Vec<_>>());

    // The subject's subscription was restored on its own and says it could
    // not recover (the channel keeps no history), then the stream goes on,
    // in order, and the subject's own queued messages reach it too.
    let mut resubscribed = false;
    let mut own = 0;
    let mut after = Vec::new();
    while after.len() < 10 || own < 5 {
        match within(LONG, "subject event", feed.next_event()).await.expect("open") {
            SubscriptionEvent::Resubscribed { recovered } => {
                assert!(!recovered);
                resubscribed = true;
            }
            SubscriptionEvent::Message(m) => {
                let text = m.text().unwrap_or_default().to_owned();
                if text.starts_with("queued-") {
                    assert!(resubscribed, "own message before the resubscribe event");
                    own += 1;
                } else if let Some(n) = number(&text)
                    && resubscribed
                {
                    after.push(n);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");
    assert!(after[0] > last_live.unwrap_or(0));
    // The cached token was reused: one provider call for both connections.
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    stream.abort();
    subject.close().await;
    observer.close().await;
    publisher.close().await;
}

#[tokio::test]
async fn a_drain_moves_the_client_to_the_next_edge_at_once() {
    let auth = Arc::new(TestAuthority::start().await);
    let bus = LocalBus::new();
    let mut first = edge_on(&bus, edge_config(&auth)).await;
    let second = edge_on(&bus, edge_config(&auth)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Client::builder(first.url())
        .url(second.url())
        .token_provider(provider(&auth, "u", &calls))
        .connect()
        .await
        .expect("connect");
    let mut states = c.state_events();
    let mut sub = c.subscribe("news").await.expect("subscribe");
    first.begin_shutdown();
    let state = wait_for(&mut states, LONG, "drain", |s| matches!(s, ConnectionState::Disconnected { .. })).await;
    // Told to move (GoAway) with nothing in flight, the client leaves by
    // itself rather than waiting for the edge's 1001.
    assert_eq!(state, ConnectionState::Disconnected { reason: DisconnectReason::Moved });
    match wait_for(&mut states, LONG, "reconnecting", |s| matches!(s, ConnectionState::Reconnecting { .. })).await {
        ConnectionState::Reconnecting { delay, .. } => assert!(delay <= Duration::from_millis(500), "{delay:?}"),
        _ => unreachable!(),
    }
    match wait_for(&mut states, LONG, "connected", ConnectionState::is_connected).await {
        ConnectionState::Connected(info) => assert_eq!(info.url, second.url()),
        _ => unreachable!(),
    }
    assert!(matches!(
        within(LONG, "resubscribed", sub.next_event()).await,
        Some(SubscriptionEvent::Resubscribed { recovered: false })
    ));
    let other = client(&second.url(), &auth, "v").await;
    other.publish("news", "after the drain").await.expect("publish");
    assert_eq!(next_text(&mut sub).await, "after the drain");
    first.join().await.expect("first edge stopped");
    c.close().await;
}

#[tokio::test]
async fn a_frozen_connection_is_detected_by_the_heartbeat_and_replaced() {
    let auth = Arc::new(TestAuthority::start().await);
    let bus = LocalBus::new();
    let config = EdgeConfig {
        heartbeat_interval: HumanDuration::millis(200),
        heartbeat_timeout: HumanDuration::millis(1500),
        ..edge_config(&auth)
    };
    let edge = edge_on(&bus, config).await;
    let proxy = Proxy::start(edge.addr).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Client::builder(proxy.url()).token_provider(provider(&auth, "u", &calls)).connect().await.expect("connect");
    let mut states = c.state_events();
    let mut sub = c.subscribe("news").await.expect("subscribe");
    proxy.freeze();
    let started = tokio::time::Instant::now();
    let state =
        wait_for(&mut states, LONG, "heartbeat timeout", |s| matches!(s, ConnectionState::Disconnected { .. })).await;
    assert_eq!(state, ConnectionState::Disconnected { reason: DisconnectReason::HeartbeatTimeout });
    assert!(started.elapsed() >= Duration::from_millis(1000), "{:?}", started.elapsed());
    wait_for(&mut states, LONG, "reconnected", ConnectionState::is_connected).await;
    assert!(matches!(
        within(LONG, "resubscribed", sub.next_event()).await,
        Some(SubscriptionEvent::Resubscribed { recovered: false })
    ));
    let other = client(&edge.url(), &auth, "v").await;
    other.publish("news", "alive").await.expect("publish");
    assert_eq!(next_text(&mut sub).await, "alive");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_refreshed_in_band_with_no_gap() {
    logs();
    let auth = Arc::new(TestAuthority::start().await);
    let bus = LocalBus::new();
    let config = EdgeConfig { token_leeway: HumanDuration::secs(0), ..edge_config(&auth) };
    let edge = edge_on(&bus, config).await;
    // Tokens live 4 s; the client refreshes at 80% of that.
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let (auth, calls) = (auth.clone(), calls.clone());
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let claims = TestAuthority::claims("app1", "u", ALL, Duration::from_secs(4));
            std::future::ready(Ok::<_, std::io::Error>(auth.sign(&claims)))
        }
    };
    let c = Client::builder(edge.url()).token_provider(provider).connect().await.expect("connect");
    let mut states = c.state_events();
    let mut sub = c.subscribe("ticks").await.expect("subscribe");
    let publisher = client(&edge.url(), &auth, "publisher").await;
    let count = 200u32;
    let stream = tokio::spawn(async move {
        for i in 0..count {
            publisher.publish("ticks", i.to_string()).await.expect("publish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        publisher
    });
    // 200 messages over 10 s: the first token would have expired twice.
    for i in 0..count {
        let m = within(Duration::from_secs(10), "tick", sub.next()).await.expect("open");
        assert_eq!(m.text(), Some(i.to_string().as_str()), "gap or reorder");
    }
    within(LONG, "publisher done", stream).await.expect("join").close().await;
    assert!(calls.load(Ordering::SeqCst) >= 3, "refreshes: {}", calls.load(Ordering::SeqCst));
    // The connection never dropped.
    assert!(c.state().is_connected());
    let never = tokio::time::timeout(Duration::from_millis(100), async {
        while let Some(state) = states.next().await {
            if !state.is_connected() {
                return state;
            }
        }
        ConnectionState::Closed { error: None }
    })
    .await;
    assert!(never.is_err(), "the connection changed state: {never:?}");
    c.close().await;
}

#[tokio::test]
async fn a_fixed_token_that_expires_stops_the_client_with_a_typed_error() {
    let auth = TestAuthority::start().await;
    let bus = LocalBus::new();
    let config = EdgeConfig { token_leeway: HumanDuration::secs(0), ..edge_config(&auth) };
    let edge = edge_on(&bus, config).await;
    let token = auth.sign(&TestAuthority::claims("app1", "u", ALL, Duration::from_secs(2)));
    let c = Client::builder(edge.url()).token(token).connect().await.expect("connect");
    let mut sub = c.subscribe("news").await.expect("subscribe");
    match within(LONG, "end", sub.next_event()).await {
        Some(SubscriptionEvent::Ended(Error::Terminal { code: 4100, .. })) => {}
        other => panic!("expected a terminal end, got {other:?}"),
    }
    assert!(matches!(c.state(), ConnectionState::Closed { error: Some(Error::Terminal { code: 4100, .. }) }));
}

#[tokio::test]
async fn a_terminal_auth_error_stops_reconnecting_and_surfaces_a_typed_error() {
    let auth = Arc::new(TestAuthority::start().await);
    let impostor = TestAuthority::start().await;
    let bus = LocalBus::new();
    let edge = edge_on(&bus, edge_config(&auth)).await;

    // A token the edge cannot verify: connect fails at once, typed.
    let err =
        Client::builder(edge.url()).token(impostor.token("app1", "u", ALL)).connect().await.expect_err("invalid token");
    assert!(matches!(err, Error::Terminal { code: 4500, .. }), "{err}");
    assert_eq!(err.close_code(), Some(herald_proto::CloseCode::InvalidToken));

    // Mid-connection: the key is revoked (4101: get a fresh token), and the
    // provider now hands out tokens the edge refuses (4500: terminal).
    let calls = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(impostor.token("app1", "u", ALL));
    let provider = {
        let (auth, calls, bad) = (auth.clone(), calls.clone(), bad.clone());
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let token = if n == 0 { auth.token("app1", "u", ALL) } else { (*bad).clone() };
            std::future::ready(Ok::<_, std::io::Error>(token))
        }
    };
    let c = Client::builder(edge.url()).token_provider(provider).connect().await.expect("connect");
    let mut states = c.state_events();
    let mut sub = c.subscribe("news").await.expect("subscribe");
    let revoke = bus::ControlEvent {
        timestamp_ms: 0,
        kind: Some(bus::control_event::Kind::KeyRevoked(bus::KeyRevoked {
            app_id: "app1".into(),
            key_id: "key1".into(),
            ..Default::default()
        })),
    };
    Bus::local(&bus).publish_control(&revoke).await.expect("revoke");
    let state = wait_for(&mut states, LONG, "revoked", |s| matches!(s, ConnectionState::Disconnected { .. })).await;
    assert_eq!(
        state.clone(),
        ConnectionState::Disconnected {
            reason: DisconnectReason::Closed {
                code: 4101,
                reason: "the api key that minted this token was revoked".into()
            }
        }
    );
    let state = wait_for(&mut states, LONG, "closed", ConnectionState::is_closed).await;
    assert!(matches!(state, ConnectionState::Closed { error: Some(Error::Terminal { code: 4500, .. }) }), "{state:?}");
    match within(LONG, "end", sub.next_event()).await {
        Some(SubscriptionEvent::Ended(Error::Terminal { code: 4500, .. })) => {}
        other => panic!("expected a terminal end, got {other:?}"),
    }
    // No further attempts.
    let calls_then = calls.load(Ordering::SeqCst);
    assert_eq!(calls_then, 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(calls.load(Ordering::SeqCst), calls_then);
    assert!(matches!(c.publish("news", "x").await, Err(Error::Terminal { code: 4500, .. })));
}

#[tokio::test]
async fn the_publish_queue_is_bounded_and_publishes_time_out() {
    let auth = Arc::new(TestAuthority::start().await);
    let bus = LocalBus::new();
    let edge = edge_on(&bus, edge_config(&auth)).await;
    let proxy = Proxy::start(edge.addr).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Client::builder(proxy.url())
        .token_provider(provider(&auth, "u", &calls))
        .publish_queue_capacity(3)
        .backoff(Backoff::default().with_initial(Duration::from_millis(100)).with_max(Duration::from_millis(300)))
        .connect()
        .await
        .expect("connect");
    let observer = client(&edge.url(), &auth, "observer").await;
    let mut watched = observer.subscribe("q").await.expect("subscribe");
    let mut states = c.state_events();
    proxy.kill();
    wait_for(&mut states, LONG, "disconnected", |s| matches!(s, ConnectionState::Disconnected { .. })).await;

    let spawn = |text: &'static str, timeout: Option<Duration>| {
        let c = c.clone();
        tokio::spawn(async move {
            let options = timeout.map_or_else(PublishOptions::default, |t| PublishOptions::default().with_timeout(t));
            c.publish_with("q", text, options).await
        })
    };
    let one = spawn("one", None);
    let two = spawn("two", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let expiring = spawn("expiring", Some(Duration::from_millis(300)));
    assert_eq!(
        within(LONG, "timeout", expiring).await.expect("join"),
        Err(Error::TimedOut(Duration::from_millis(300)))
    );
    // The timed-out publish leaves the queue: two fit, the third does not.
    let three = spawn("three", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let full = c.publish("q", "four").await;
    assert_eq!(full, Err(Error::QueueFull { capacity: 3 }));

    proxy.set_target(edge.addr);
    for publish in [one, two, three] {
        assert!(within(LONG, "queued publish", publish).await.expect("join").is_ok());
    }
    for want in ["one", "two", "three"] {
        assert_eq!(next_text(&mut watched).await, want);
    }
    c.close().await;
}

#[tokio::test]
async fn close_waits_for_queued_publishes() {
    let auth = TestAuthority::start().await;
    let bus = LocalBus::new();
    let edge = edge_on(&bus, edge_config(&auth)).await;
    let c = client(&edge.url(), &auth, "u").await;
    let observer = client(&edge.url(), &auth, "observer").await;
    let mut watched = observer.subscribe("last-words").await.expect("subscribe");
    let publishes: Vec<_> = (0..20)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.publish("last-words", format!("w{i}")).await })
        })
        .collect();
    tokio::task::yield_now().await;
    c.close().await;
    let mut acked = 0;
    for p in publishes {
        match p.await.expect("join") {
            Ok(_) => acked += 1,
            Err(Error::Closed) => {}
            Err(e) => panic!("{e}"),
        }
    }
    for _ in 0..acked {
        assert!(next_text(&mut watched).await.starts_with('w'));
    }
    assert!(c.state().is_closed());
    // Closing twice is harmless.
    c.close().await;
}

#[tokio::test]
async fn wss_with_a_private_root_certificate() {
    let auth = TestAuthority::start().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed cert");
    let dir = std::env::temp_dir().join(format!("herald-sdk-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let config = EdgeConfig { tls_cert: Some(cert_path), tls_key: Some(key_path), ..edge_config(&auth) };
    // Not a TestEdge: its readiness probe speaks plain HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let edge = tokio::spawn(herald_edge::run(listener, config, Bus::local(&LocalBus::new()), std::future::pending()));
    let url = format!("wss://localhost:{port}");

    // The public roots do not trust a self-signed certificate.
    let err = Client::builder(&url)
        .token(auth.token("app1", "u", ALL))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect_err("untrusted certificate");
    assert!(matches!(&err, Error::Connect(reason) if reason.contains("certificate")), "{err}");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let c = Client::builder(&url)
        .token(auth.token("app1", "u", ALL))
        .tls_config(Arc::new(tls))
        .connect()
        .await
        .expect("connect over wss");
    let mut sub = c.subscribe("secure").await.expect("subscribe");
    c.publish("secure", "over tls").await.expect("publish");
    assert_eq!(next_text(&mut sub).await, "over tls");
    c.close().await;
    edge.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
