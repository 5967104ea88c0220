//! Gap-free recovery against real edges (in-process bus with history): a
//! subscriber whose edge dies mid-stream resumes on a new one from the
//! last position it saw, with no gap and no duplicate.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald_bus::{Bus, HistorySpec, LocalBus};
use herald_edge::testing::{StaticNamespaces, TestAuthority, namespace, within};
use herald_proto::bus;
use herald_sdk::{Backoff, Client, SubscriptionEvent};

const LONG: Duration = Duration::from_secs(20);

async fn client(url: &str, auth: &TestAuthority, name: &str) -> Client {
    Client::builder(url).token(auth.token("app1", name, ALL)).connect().await.expect("connect")
}

#[tokio::test]
async fn a_history_channel_is_recovered_with_no_gap_and_no_duplicate_after_an_edge_dies() {
    logs();
    let auth = Arc::new(TestAuthority::start().await);
    let bus = LocalBus::new();
    // The embedded mode's in-process history, as the control plane sets it up.
    let cp = Bus::local(&bus);
    let options = bus::NamespaceOptions {
        client_publish: true,
        history_size: 10_000,
        history_ttl_ms: 3_600_000,
        ..Default::default()
    };
    cp.serve_namespaces(Arc::new(StaticNamespaces(vec![namespace("hist", options)]))).await.expect("serve");
    let spec = HistorySpec { size: 10_000, ttl: Duration::from_secs(3600), max_bytes: 64 << 20, replicas: 1 };
    let (app, ns) =
        (herald_proto::AppId::new("app1").expect("app"), herald_proto::NamespaceName::new("hist").expect("ns"));
    cp.ensure_history(&app, &ns, &spec).await.expect("history");

    let mut doomed = Some(edge_on(&bus, edge_config(&auth)).await);
    let stable = edge_on(&bus, edge_config(&auth)).await;
    let proxy = Proxy::start(doomed.as_ref().expect("edge").addr).await;
    let mut reborn = None;
    let subject = Client::builder(proxy.url())
        .token(auth.token("app1", "subject", ALL))
        .backoff(Backoff::default().with_initial(Duration::from_millis(100)).with_max(Duration::from_millis(300)))
        .connect()
        .await
        .expect("connect");
    let mut states = subject.state_events();
    let mut feed = subject.subscribe("hist:feed").await.expect("subscribe");

    // Messages keep flowing from another edge the whole time.
    let publisher = client(&stable.url(), &auth, "publisher").await;
    let stream = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            for i in 0u32.. {
                if publisher.publish("hist:feed", format!("{i}")).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let mut seen: Vec<u32> = Vec::new();
    let mut last_seq = 0;
    let mut recovered = None;
    let mut killed = false;
    while seen.len() < 400 {
        match within(LONG, "subject event", feed.next_event()).await.expect("open") {
            SubscriptionEvent::Message(m) => {
                let position = m.position.clone().expect("history messages carry a position");
                assert!(position.seq > last_seq, "sequence goes forward");
                last_seq = position.seq;
                seen.push(m.text().unwrap_or_default().parse().expect("number"));
            }
            SubscriptionEvent::Resubscribed { recovered: r } => recovered = Some(r),
            other => panic!("unexpected {other:?}"),
        }
        if seen.len() == 100 && !killed {
            killed = true;
            drop(doomed.take());
            proxy.kill();
            wait_for(&mut states, LONG, "disconnected", |s| !s.is_connected()).await;
            // Messages go on while the subject is away.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let edge = edge_on(&bus, edge_config(&auth)).await;
            proxy.set_target(edge.addr);
            reborn = Some(edge);
        }
    }
    stream.abort();
    drop(reborn);
    assert_eq!(recovered, Some(true), "the subscription said it recovered");
    let first = seen[0];
    assert_eq!(seen, (first..first + seen.len() as u32).collect::<Vec<_>>(), "no gap, no duplicate");
    subject.close().await;
    publisher.close().await;
}
