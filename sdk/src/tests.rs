//! The client task against a scripted in-memory edge, in paused Tokio time:
//! the reconnect schedule, the reset after a stable connection, drains,
//! heartbeats and terminal codes, checked to the millisecond without
//! waiting for real time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_proto::client::{self, client_frame, reply, server_frame};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::transport::{AbortOnDrop, BoxFuture, Connector, Inbound, Link, Outgoing};
use crate::{Backoff, Client, ConnectionState, DisconnectReason, Error};

/// What the fake edge does with one connection attempt.
#[derive(Clone, Debug)]
enum Script {
    /// Refuse the TCP connection.
    Refuse,
    /// Accept, send `Connected` with these heartbeat settings, answer
    /// requests, then end as `end` says after `after`.
    Accept { heartbeat_ms: (u32, u32), after: Duration, end: End },
    /// Accept and hand the server side of the connection to the test.
    Hand(mpsc::UnboundedSender<(mpsc::Receiver<Outgoing>, mpsc::Sender<Inbound>)>),
}

#[derive(Clone, Debug)]
enum End {
    /// Close with this code (or drop the connection without one).
    Close(Option<u16>),
    /// Never end; answer requests.
    Never,
    /// Go silent at once: no replies, no pings, never close.
    Silent,
}

#[derive(Default)]
struct FakeEdge {
    script: Mutex<VecDeque<Script>>,
    attempts: Mutex<Vec<(Instant, String)>>,
}

impl FakeEdge {
    fn new(script: impl IntoIterator<Item = Script>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(script.into_iter().collect()), attempts: Mutex::default() })
    }

    fn attempts(&self) -> Vec<(Instant, String)> {
        self.attempts.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

fn frame(kind: server_frame::Kind) -> Inbound {
    Inbound::Frame(client::ServerFrame { kind: Some(kind) })
}

async fn serve(
    mut out: mpsc::Receiver<Outgoing>,
    inbound: mpsc::Sender<Inbound>,
    heartbeat: (u32, u32),
    after: Duration,
    end: End,
) {
    // The Connect frame.
    if out.recv().await.is_none() {
        return;
    }
    let connected = client::Connected {
        connection_id: "fake-1".into(),
        client_id: "u".into(),
        heartbeat_interval_ms: heartbeat.0,
        heartbeat_timeout_ms: heartbeat.1,
        token_expires_at_ms: 0,
        limits: None,
        edge_id: "fake".into(),
    };
    let _ = inbound.send(frame(server_frame::Kind::Connected(connected))).await;
    if matches!(end, End::Silent) {
        // Keep the connection open and say nothing.
        while out.recv().await.is_some() {}
        return;
    }
    let deadline = tokio::time::sleep(after);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline, if !matches!(end, End::Never) => {
                if let End::Close(code) = end {
                    let _ = inbound.send(Inbound::Closed { code, reason: "scripted".into() }).await;
                }
                return;
            }
            item = out.recv() => {
                let Some(Outgoing::Frame(bytes)) = item else {
                    if item.is_none() { return; }
                    continue;
                };
                let Ok(request) = client::ClientFrame::decode(bytes) else { continue };
                let value = match request.kind {
                    Some(client_frame::Kind::Subscribe(_)) => Some(client::reply_ok::Value::Subscribed(client::SubscribeResult::default())),
                    _ => None,
                };
                let reply = client::Reply {
                    request_id: request.request_id,
                    result: Some(reply::Result::Ok(client::ReplyOk { value })),
                };
                let _ = inbound.send(frame(server_frame::Kind::Reply(reply))).await;
            }
        }
    }
}

impl Connector for Arc<FakeEdge> {
    fn connect(&self, url: &str) -> BoxFuture<Result<Link, String>> {
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.push((Instant::now(), url.to_owned()));
        }
        let next = self.script.lock().ok().and_then(|mut s| s.pop_front()).unwrap_or(Script::Refuse);
        Box::pin(async move {
            match next {
                Script::Refuse => Err("connection refused".to_owned()),
                Script::Hand(to_test) => {
                    let (out_tx, out_rx) = mpsc::channel(64);
                    let (in_tx, in_rx) = mpsc::channel(64);
                    let _ = to_test.send((out_rx, in_tx));
                    Ok(Link { out: out_tx, inbound: in_rx, _tasks: Vec::new() })
                }
                Script::Accept { heartbeat_ms, after, end } => {
                    let (out_tx, out_rx) = mpsc::channel(64);
                    let (in_tx, in_rx) = mpsc::channel(64);
                    let task = tokio::spawn(serve(out_rx, in_tx, heartbeat_ms, after, end));
                    Ok(Link { out: out_tx, inbound: in_rx, _tasks: vec![AbortOnDrop(task)] })
                }
            }
        })
    }
}

fn client(edge: &Arc<FakeEdge>, backoff: Backoff, urls: &[&str]) -> Client {
    let mut builder = Client::builder(urls[0]).token("t").backoff(backoff).connector(Arc::new(edge.clone()));
    for url in &urls[1..] {
        builder = builder.url(*url);
    }
    builder.connect_lazy().expect("client")
}

fn gaps(attempts: &[(Instant, String)]) -> Vec<Duration> {
    attempts.windows(2).map(|w| w[1].0 - w[0].0).collect()
}

async fn wait_attempts(edge: &FakeEdge, n: usize) {
    for _ in 0..10_000 {
        if edge.attempts().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("only {} attempts", edge.attempts().len());
}

const UP: (u32, u32) = (25_000, 60_000);

#[tokio::test(start_paused = true)]
async fn reconnect_delays_follow_the_backoff_schedule() {
    let edge = FakeEdge::new([]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    let mut states = client.state_events();
    wait_attempts(&edge, 9).await;
    let gaps = gaps(&edge.attempts());
    let bases = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0];
    for (gap, base) in gaps.iter().zip(bases) {
        let secs = gap.as_secs_f64();
        assert!(secs >= base * 0.9 - 0.001 && secs <= base * 1.1 + 0.001, "gap {secs} for base {base}: {gaps:?}");
    }
    // The states announce each attempt and its delay before it happens.
    let mut announced = Vec::new();
    while announced.len() < 8 {
        if let Some(ConnectionState::Reconnecting { attempt, delay }) = states.next().await {
            announced.push((attempt, delay));
        }
    }
    for (i, ((attempt, delay), gap)) in announced.iter().zip(&gaps).enumerate() {
        assert_eq!(*attempt as usize, i + 1);
        assert!(gap.abs_diff(*delay) < Duration::from_millis(5), "announced {delay:?}, waited {gap:?}");
    }
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_clients_apart() {
    // Two clients failing in lockstep do not retry in lockstep.
    let (a, b) = (FakeEdge::new([]), FakeEdge::new([]));
    let (ca, cb) = (client(&a, Backoff::default(), &["ws://a"]), client(&b, Backoff::default(), &["ws://a"]));
    wait_attempts(&a, 5).await;
    wait_attempts(&b, 5).await;
    assert_ne!(gaps(&a.attempts())[..4], gaps(&b.attempts())[..4]);
    ca.close().await;
    cb.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_stable_connection_resets_the_schedule_and_a_flapping_one_does_not() {
    let stable = Script::Accept { heartbeat_ms: UP, after: Duration::from_secs(15), end: End::Close(None) };
    let flapping = Script::Accept { heartbeat_ms: UP, after: Duration::from_secs(2), end: End::Close(None) };
    let edge = FakeEdge::new([
        Script::Refuse,
        Script::Refuse,
        Script::Refuse,
        stable,
        Script::Refuse,
        flapping,
        Script::Refuse,
    ]);
    let client = client(&edge, Backoff { jitter: 0.0, ..Backoff::default() }, &["ws://a"]);
    wait_attempts(&edge, 8).await;
    let gaps: Vec<u64> = gaps(&edge.attempts()).iter().map(|g| g.as_millis() as u64).collect();
    // 1, 2, 4 s of refusals; 15 s up, then 1 s again (reset); a refusal
    // (2 s); 2 s up, then 4 s: the short connection did not reset the count;
    // a refusal (8 s).
    assert_eq!(gaps, [1000, 2000, 4000, 15_000 + 1000, 2000, 2000 + 4000, 8000], "{gaps:?}");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_drain_reconnects_at_once_to_the_next_url() {
    let draining = Script::Accept { heartbeat_ms: UP, after: Duration::from_secs(5), end: End::Close(Some(1001)) };
    let up = Script::Accept { heartbeat_ms: UP, after: Duration::ZERO, end: End::Never };
    let edge = FakeEdge::new([draining, up]);
    let client = client(&edge, Backoff::default(), &["ws://a", "ws://b"]);
    wait_attempts(&edge, 2).await;
    let attempts = edge.attempts();
    let gap = attempts[1].0 - attempts[0].0;
    assert!(gap >= Duration::from_secs(5) && gap <= Duration::from_millis(5500), "{gap:?}");
    assert_eq!((attempts[0].1.as_str(), attempts[1].1.as_str()), ("ws://a", "ws://b"));
    client.wait_connected(Duration::from_secs(1)).await.expect("connected to b");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn silence_past_the_heartbeat_timeout_is_a_dead_connection() {
    let silent = Script::Accept { heartbeat_ms: (100, 1000), after: Duration::ZERO, end: End::Silent };
    let up = Script::Accept { heartbeat_ms: UP, after: Duration::ZERO, end: End::Never };
    let edge = FakeEdge::new([silent, up]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    let mut states = client.state_events();
    let connected_at = loop {
        if let Some(ConnectionState::Connected(_)) = states.next().await {
            break Instant::now();
        }
    };
    let dead_at = loop {
        match states.next().await {
            Some(ConnectionState::Disconnected { reason }) => {
                assert_eq!(reason, DisconnectReason::HeartbeatTimeout);
                break Instant::now();
            }
            Some(_) => {}
            None => panic!("client gone"),
        }
    };
    let silent_for = dead_at - connected_at;
    assert!(silent_for >= Duration::from_secs(1) && silent_for < Duration::from_millis(1100), "{silent_for:?}");
    client.wait_connected(Duration::from_secs(5)).await.expect("reconnected");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn pings_keep_a_quiet_connection_alive() {
    // The edge says nothing on its own, but answers pings: no timeout.
    let up = Script::Accept { heartbeat_ms: (100, 1000), after: Duration::ZERO, end: End::Never };
    let edge = FakeEdge::new([up]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    client.wait_connected(Duration::from_secs(1)).await.expect("connected");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(client.state().is_connected());
    assert_eq!(edge.attempts().len(), 1);
    assert!(client.ping().await.is_ok());
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_terminal_code_stops_reconnecting() {
    let refused = Script::Accept { heartbeat_ms: UP, after: Duration::from_secs(1), end: End::Close(Some(4503)) };
    let edge = FakeEdge::new([refused]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    let mut sub = client.subscribe("news").await.expect("subscribe");
    match sub.next_event().await {
        Some(crate::SubscriptionEvent::Ended(Error::Terminal { code: 4503, .. })) => {}
        other => panic!("expected the end of the subscription, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(edge.attempts().len(), 1);
    assert!(matches!(client.state(), ConnectionState::Closed { error: Some(Error::Terminal { code: 4503, .. }) }));
    assert!(matches!(client.publish("news", "x").await, Err(Error::Terminal { code: 4503, .. })));
}

#[tokio::test(start_paused = true)]
async fn the_client_gives_up_after_max_attempts() {
    let edge = FakeEdge::new([]);
    let backoff = Backoff { max_attempts: Some(3), ..Backoff::default() };
    let client = client(&edge, backoff, &["ws://a"]);
    let err = client.wait_connected(Duration::from_secs(600)).await.expect_err("gives up");
    assert!(matches!(err, Error::GaveUp { attempts: 3, .. }), "{err}");
    assert_eq!(edge.attempts().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn connect_reports_the_last_failure_when_it_times_out() {
    let edge = FakeEdge::new([]);
    let err = Client::builder("ws://a")
        .token("t")
        .connect_timeout(Duration::from_secs(5))
        .connector(Arc::new(edge.clone()))
        .connect()
        .await
        .expect_err("no edge");
    assert_eq!(err, Error::Connect("connection refused".into()));
}

/// The test's side of a handed-over connection.
struct Server {
    out: mpsc::Receiver<Outgoing>,
    inbound: mpsc::Sender<Inbound>,
}

/// The server side of the next connection handed to the test.
async fn handed_server(
    handed: &mut mpsc::UnboundedReceiver<(mpsc::Receiver<Outgoing>, mpsc::Sender<Inbound>)>,
) -> Server {
    loop {
        if let Ok((out, inbound)) = handed.try_recv() {
            return Server { out, inbound };
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl Server {
    async fn request(&mut self) -> client::ClientFrame {
        loop {
            match self.out.recv().await {
                Some(Outgoing::Frame(bytes)) => {
                    let frame = client::ClientFrame::decode(bytes).expect("client frame");
                    if !matches!(frame.kind, Some(client_frame::Kind::Ping(_))) {
                        return frame;
                    }
                }
                Some(_) => {}
                None => panic!("client hung up"),
            }
        }
    }

    async fn send(&self, kind: server_frame::Kind) {
        self.inbound.send(frame(kind)).await.expect("client listening");
    }

    async fn accept(&mut self) {
        let connect = self.request().await;
        assert!(matches!(connect.kind, Some(client_frame::Kind::Connect(_))));
        let connected =
            client::Connected { heartbeat_interval_ms: 25_000, heartbeat_timeout_ms: 60_000, ..Default::default() };
        self.send(server_frame::Kind::Connected(connected)).await;
    }

    async fn reply(&self, request_id: u64, value: Option<client::reply_ok::Value>) {
        let reply = client::Reply { request_id, result: Some(reply::Result::Ok(client::ReplyOk { value })) };
        self.send(server_frame::Kind::Reply(reply)).await;
    }

    async fn message(&self, seq: u64, epoch: &str, text: &str) {
        let m = client::Message {
            channel: "prices".into(),
            data: text.as_bytes().to_vec().into(),
            seq,
            epoch: epoch.into(),
            id: format!("m{seq}"),
            ..Default::default()
        };
        self.send(server_frame::Kind::Message(m)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn resubscribes_resume_from_the_last_position_seen() {
    let (hand, mut handed) = mpsc::unbounded_channel();
    let edge = FakeEdge::new([Script::Hand(hand.clone()), Script::Hand(hand.clone()), Script::Hand(hand)]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    let next_server = |handed: &mut mpsc::UnboundedReceiver<_>| {
        let (out, inbound) = handed.try_recv().expect("a connection");
        Server { out, inbound }
    };
    tokio::task::yield_now().await;
    let mut server = handed_server(&mut handed).await;
    server.accept().await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("prices").await }
    });
    let subscribe = server.request().await;
    let Some(client_frame::Kind::Subscribe(s)) = &subscribe.kind else { panic!("{subscribe:?}") };
    assert_eq!(s.recover_from, None);
    // A message may arrive before the subscribe's reply; it is kept.
    server.message(7, "e1", "first").await;
    let position = client::StreamPosition { seq: 6, epoch: "e1".into() };
    let result = client::SubscribeResult { history: true, recovered: false, position: Some(position) };
    server.reply(subscribe.request_id, Some(client::reply_ok::Value::Subscribed(result))).await;
    let mut sub = subscribing.await.expect("join").expect("subscribed");
    assert!(sub.has_history());
    let m = sub.next_message().await.expect("first");
    assert_eq!((m.text(), m.position.as_ref().map(|p| p.seq)), (Some("first"), Some(7)));
    server.message(8, "e1", "second").await;
    assert_eq!(sub.next_message().await.expect("second").text(), Some("second"));

    // The connection drops; the next one resumes after seq 8 of epoch e1.
    drop(server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut server = next_server(&mut handed);
    server.accept().await;
    let subscribe = server.request().await;
    let Some(client_frame::Kind::Subscribe(s)) = &subscribe.kind else { panic!("{subscribe:?}") };
    assert_eq!(s.recover_from, Some(client::StreamPosition { seq: 8, epoch: "e1".into() }));
    // Replayed messages: one the client already has (dropped), then new ones.
    server.message(8, "e1", "second again").await;
    server.message(9, "e1", "third").await;
    let position = client::StreamPosition { seq: 9, epoch: "e1".into() };
    let result = client::SubscribeResult { history: true, recovered: true, position: Some(position) };
    server.reply(subscribe.request_id, Some(client::reply_ok::Value::Subscribed(result))).await;
    let mut events = Vec::new();
    while events.len() < 2 {
        events.push(sub.next_event().await.expect("event"));
    }
    assert!(matches!(&events[0], crate::SubscriptionEvent::Message(m) if m.text() == Some("third")), "{events:?}");
    assert_eq!(events[1], crate::SubscriptionEvent::Resubscribed { recovered: true });

    // The stream was lost meanwhile: not recovered, and the client takes the
    // new epoch's position from the reply.
    drop(server);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut server = next_server(&mut handed);
    server.accept().await;
    let subscribe = server.request().await;
    let Some(client_frame::Kind::Subscribe(s)) = &subscribe.kind else { panic!("{subscribe:?}") };
    assert_eq!(s.recover_from, Some(client::StreamPosition { seq: 9, epoch: "e1".into() }));
    let position = client::StreamPosition { seq: 2, epoch: "e2".into() };
    let result = client::SubscribeResult { history: true, recovered: false, position: Some(position) };
    server.reply(subscribe.request_id, Some(client::reply_ok::Value::Subscribed(result))).await;
    assert_eq!(sub.next_event().await, Some(crate::SubscriptionEvent::Resubscribed { recovered: false }));
    server.message(3, "e2", "fresh").await;
    assert_eq!(sub.next_message().await.expect("fresh").text(), Some("fresh"));
    drop(server);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_loses_the_newest_messages_and_is_told_how_many() {
    let (hand, mut handed) = mpsc::unbounded_channel();
    let edge = FakeEdge::new([Script::Hand(hand)]);
    let client = Client::builder("ws://a")
        .token("t")
        .subscription_buffer(4)
        .connector(Arc::new(edge.clone()))
        .connect_lazy()
        .expect("client");
    let mut server = handed_server(&mut handed).await;
    server.accept().await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("prices").await }
    });
    let subscribe = server.request().await;
    server.reply(subscribe.request_id, None).await;
    let mut sub = subscribing.await.expect("join").expect("subscribed");
    for seq in 1..=10 {
        server.message(0, "", &format!("m{seq}")).await;
    }
    // Let the client task deliver everything before reading.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.message(0, "", "m11").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(sub.next_message().await.expect("message").text().map(str::to_owned).unwrap_or_default());
    }
    assert_eq!(seen, ["m1", "m2", "m3", "m4"]);
    server.message(0, "", "m12").await;
    assert_eq!(sub.next_event().await, Some(crate::SubscriptionEvent::Lagged { dropped: 7 }));
    assert_eq!(sub.next_message().await.expect("m12").text(), Some("m12"));
    drop(server);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn go_away_lets_publishes_in_flight_finish_then_moves_with_the_rest() {
    let (hand, mut handed) = mpsc::unbounded_channel();
    let edge = FakeEdge::new([Script::Hand(hand.clone()), Script::Hand(hand)]);
    let client = client(&edge, Backoff::default(), &["ws://a", "ws://b"]);
    let mut states = client.state_events();
    let mut a = handed_server(&mut handed).await;
    a.accept().await;
    let first = client.start_publish("orders", "1", crate::PublishOptions::default()).await.expect("queued");
    let publish = a.request().await;
    assert!(matches!(publish.kind, Some(client_frame::Kind::Publish(_))), "{publish:?}");

    // The edge starts draining; what the client publishes now waits for the
    // next edge.
    a.send(server_frame::Kind::GoAway(client::GoAway { within_ms: 10_000 })).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = client.start_publish("orders", "2", crate::PublishOptions::default()).await.expect("queued");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.out.try_recv().is_err(), "nothing new goes to a draining edge");
    assert_eq!(edge.attempts().len(), 1, "the client waits for its publish in flight");

    // Its answer arrives: the client closes normally and moves to b at once.
    let left_at = Instant::now();
    a.reply(publish.request_id, None).await;
    assert!(first.await.is_ok());
    let close = loop {
        match a.out.recv().await {
            Some(Outgoing::Close(code, _)) => break code,
            Some(_) => {}
            None => panic!("closed without a close frame"),
        }
    };
    assert_eq!(close, 1000);
    loop {
        match states.next().await {
            Some(ConnectionState::Disconnected { reason }) => {
                assert_eq!(reason, DisconnectReason::Moved);
                break;
            }
            Some(_) => {}
            None => panic!("no disconnect"),
        }
    }
    let mut b = handed_server(&mut handed).await;
    assert!(Instant::now() - left_at <= Duration::from_millis(600), "reconnected after {:?}", Instant::now() - left_at);
    assert_eq!(edge.attempts()[1].1, "ws://b");
    b.accept().await;
    let publish = b.request().await;
    let Some(client_frame::Kind::Publish(p)) = &publish.kind else { panic!("{publish:?}") };
    assert_eq!(&p.data[..], b"2");
    b.reply(publish.request_id, None).await;
    assert!(second.await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn go_away_with_an_unanswered_request_moves_at_the_deadline() {
    let (hand, mut handed) = mpsc::unbounded_channel();
    let edge = FakeEdge::new([Script::Hand(hand.clone()), Script::Hand(hand)]);
    let client = client(&edge, Backoff::default(), &["ws://a", "ws://b"]);
    let mut a = handed_server(&mut handed).await;
    a.accept().await;
    let pinging = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    // The ping goes out and is never answered.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let told_at = Instant::now();
    a.send(server_frame::Kind::GoAway(client::GoAway { within_ms: 5_000 })).await;
    wait_attempts(&edge, 2).await;
    let waited = edge.attempts()[1].0 - told_at;
    // 80 % of the grace, plus the reconnect jitter (at most 500 ms).
    assert!(waited >= Duration::from_secs(4) && waited <= Duration::from_millis(4600), "{waited:?}");
    assert!(pinging.await.expect("join").is_err(), "the unanswered ping fails");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn user_events_arrive_without_a_subscription_and_user_terminated_is_final() {
    let (hand, mut handed) = mpsc::unbounded_channel();
    let edge = FakeEdge::new([Script::Hand(hand.clone()), Script::Hand(hand)]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    let mut inbox = client.user_events().await.expect("user events");
    let mut server = handed_server(&mut handed).await;
    server.accept().await;
    let user_event = |id: &str| client::Message {
        data: format!("for {id}").into_bytes().into(),
        event: Some("note".into()),
        id: id.into(),
        timestamp_ms: 7,
        ..Default::default()
    };
    server.send(server_frame::Kind::Message(user_event("u1"))).await;
    let m = inbox.next_message().await.expect("user event");
    assert_eq!((m.id.as_str(), m.event.as_deref(), m.text(), m.timestamp_ms), ("u1", Some("note"), Some("for u1"), 7));

    // A dropped connection: the reader is told, and events go on after it.
    drop(server);
    let mut server = handed_server(&mut handed).await;
    server.accept().await;
    assert_eq!(inbox.next_event().await, Some(crate::UserEvent::Reconnected));
    server.send(server_frame::Kind::Message(user_event("u2"))).await;
    assert_eq!(inbox.next_message().await.map(|m| m.id), Some("u2".to_owned()));

    // The app terminated the user: terminal, no reconnect.
    server.inbound.send(Inbound::Closed { code: Some(4504), reason: "user terminated".into() }).await.expect("open");
    match inbox.next_event().await {
        Some(crate::UserEvent::Ended(e)) => assert_eq!(e.close_code(), Some(herald_proto::CloseCode::UserTerminated)),
        other => panic!("expected the end, got {other:?}"),
    }
    assert_eq!(inbox.next_event().await, None);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(edge.attempts().len(), 2);
    assert!(matches!(client.state(), ConnectionState::Closed { error: Some(Error::Terminal { code: 4504, .. }) }));
    assert!(matches!(client.user_events().await, Err(Error::Terminal { code: 4504, .. })));
}
