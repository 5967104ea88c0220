//! The load generator against a real edge: every delivery is counted and
//! latency is sampled.

use std::time::Duration;

use herald_bench::{BenchConfig, IdleSubscriptions, idle_memory, run};
use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::{TestAuthority, TestEdge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_every_delivery_and_samples_latency() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { jwks_url: auth.jwks_url(), publish_rate: 0, ..EdgeConfig::default() };
    let edge = TestEdge::start(config, Bus::local(&LocalBus::new())).await;
    let token = auth.token("app1", "bench", r#"{"*": ["subscribe", "publish"]}"#);
    let bench = BenchConfig {
        edges: vec![edge.addr],
        token: token.clone(),
        subscribers: 50,
        messages: 200,
        publishers: 2,
        sample_every: 5,
        grace: Duration::from_secs(10),
        ..BenchConfig::default()
    };
    let report = run(bench.clone(), |_| {}).await.expect("bench");
    assert_eq!(report.sent, 200);
    assert_eq!(report.delivered, 200 * 50, "{report}");
    assert_eq!(report.latency.len(), 200 * 10);
    // Sampled deliveries also have their arrival time at the socket, which
    // comes before the generator reads them. Not every one: the kernel
    // turns receive timestamps on for the whole host a little after the
    // first socket asks (deferred work), so the first reads may have none.
    if cfg!(target_os = "linux") {
        assert!(!report.arrival.is_empty() && report.arrival.len() <= 200 * 10, "{report}");
        assert!(report.arrival.max() <= report.latency.max(), "{report}");
    }
    assert!(report.deliveries_per_sec() > 0.0);

    let paced = run(BenchConfig { rate: Some(400.0), messages: 100, ..bench }, |_| {}).await.expect("paced");
    assert_eq!(paced.delivered, 100 * 50, "{paced}");
    assert!(paced.elapsed >= Duration::from_millis(200), "{paced}");

    let memory = idle_memory(edge.addr, &token, 200, IdleSubscriptions::Own, None, Duration::from_millis(500), |_| {})
        .await
        .expect("memory");
    assert!(memory.after > 0 && memory.before > 0);
}

/// Starts the floor in this process on a port the OS picks.
async fn start_floor() -> std::net::SocketAddr {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(herald_bench::floor::serve("127.0.0.1:0".parse().expect("addr"), |bound| {
        let _ = tx.send(bound);
    }));
    rx.await.expect("the floor is bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_delivers_every_message_and_its_process_is_watched() {
    let floor = start_floor().await;
    let watch = herald_bench::Watch::start(std::process::id());
    let bench = BenchConfig {
        edges: vec![floor],
        token: "none".into(),
        subscribers: 40,
        messages: 300,
        sample_every: 4,
        grace: Duration::from_secs(10),
        ..BenchConfig::default()
    };
    let report = run(bench, |_| {}).await.expect("bench");
    assert_eq!(report.delivered, 300 * 40, "{report}");
    assert_eq!(report.latency.len(), 300 * 10);
    if cfg!(target_os = "linux") {
        let usage = watch.expect("this process is watched").finish();
        assert!(usage.rss_peak >= usage.rss_before && usage.cpu_seconds > 0.0, "{usage:?}");
        let memory = idle_memory(
            floor,
            "none",
            50,
            IdleSubscriptions::Shared("x".into()),
            Some(std::process::id()),
            Duration::ZERO,
            |_| {},
        )
        .await
        .expect("memory of this process");
        assert!(memory.before > 0 && memory.after > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generators_without_publishers_count_what_another_one_publishes() {
    let floor = start_floor().await;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let receivers = BenchConfig {
        edges: vec![floor],
        token: "none".into(),
        subscribers: 30,
        messages: 5,
        publishers: 0,
        sample_every: 1,
        grace: Duration::from_secs(10),
        ..BenchConfig::default()
    };
    let receiving = tokio::spawn(run(receivers, move |p| {
        if let herald_bench::Progress::Ready { .. } = p
            && let Some(tx) = ready_tx.take()
        {
            let _ = tx.send(());
        }
    }));
    ready_rx.await.expect("the receivers are ready");
    let publisher =
        BenchConfig { edges: vec![floor], token: "none".into(), subscribers: 0, messages: 5, ..BenchConfig::default() };
    let sent = run(publisher, |_| {}).await.expect("publisher");
    assert_eq!(sent.sent, 5);
    let received = receiving.await.expect("task").expect("receivers");
    assert_eq!(received.delivered, 5 * 30, "{received}");
    assert_eq!(received.latency.len(), 5 * 30);
}
