//! End to end, faults: a dead control plane (edges keep serving without it
//! — connected clients keep exchanging messages, new connections with
//! tokens issued before are accepted, the JWKS being cached — and REST
//! publishes resume once a control plane is back on the same database); an
//! edge SIGKILLed under a steady publish rate (every client of it recovers
//! on the other edge with no gap and no duplicate, or is told it could not
//! when the history no longer covers the gap); and NATS restarted
//! mid-stream (no acknowledged publish missing from history, readiness
//! following the bus).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt as _;
use herald_bench::{FailoverConfig, FailoverReport};
use herald_edge::testing::NatsServer;
use herald_sdk::{Client, Publisher, Subscription, TokenRequest};
use herald_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(LIMIT, f).await.with_context(|| format!("timed out: {what}"))
}

async fn next_text(sub: &mut Subscription) -> Result<String> {
    let message = within("a message", sub.next()).await?.context("subscription ended")?;
    Ok(String::from_utf8_lossy(&message.data).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_serve_while_the_control_plane_is_dead_and_publishes_resume_when_it_is_back() -> Result<()> {
    let nats = nats_url();
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let mut cp = ControlPlaneProc::start(&db, &nats, &prefix).await?;
    let a = EdgeProc::start("edge-a", &cp, &nats, &prefix).await?;
    let b = EdgeProc::start("edge-b", &cp, &nats, &prefix).await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    let mint = |who: &str| TokenRequest::new(who).allow("*", ["subscribe", "publish"]);
    // Tokens issued while the control plane is up.
    let alice_token = publisher.mint_token(&mint("alice")).await?.token;
    let bob_token = publisher.mint_token(&mint("bob")).await?.token;
    let carol_token = publisher.mint_token(&mint("carol")).await?.token;

    let alice = Client::builder(a.url()).token(alice_token).connect().await?;
    let mut news = alice.subscribe("news").await?;
    let bob = Client::builder(b.url()).token(bob_token).connect().await?;
    bob.publish("news", "before").await?;
    assert_eq!(next_text(&mut news).await?, "before");

    // The control plane dies without a word.
    cp.process.kill();

    // Connected clients keep exchanging messages across edges.
    bob.publish("news", "during").await?;
    assert_eq!(next_text(&mut news).await?, "during");
    // A new connection with a token issued before is accepted.
    let carol = Client::builder(b.url()).token(carol_token).connect().await?;
    let mut carol_news = carol.subscribe("news").await?;
    bob.publish("news", "to both").await?;
    assert_eq!(next_text(&mut news).await?, "to both");
    assert_eq!(next_text(&mut carol_news).await?, "to both");
    // REST publishes fail meanwhile, with an error, not a hang.
    let failed = within("a REST publish with no control plane", publisher.publish("news", "lost")).await?;
    assert!(failed.is_err(), "published with the control plane dead");

    // A control plane comes back on the same database: REST publishes
    // resume, and reach both edges.
    let back = ControlPlaneProc::start(&db, &nats, &prefix).await?;
    let publisher = Publisher::new(back.url(), &app, &key)?;
    within("a REST publish after the restart", async {
        loop {
            if publisher.publish("news", "after").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await?;
    assert_eq!(next_text(&mut news).await?, "after");
    assert_eq!(next_text(&mut carol_news).await?, "after");
    Ok(())
}

/// A control plane and two edges over NATS at `nats`, an app, and a
/// namespace `ns` with `history_size` messages of history per channel.
struct Pair {
    _db: TestDb,
    cp: ControlPlaneProc,
    a: EdgeProc,
    b: EdgeProc,
    app: String,
    key: String,
    publisher: Publisher,
}

async fn pair(nats: &str) -> Result<Pair> {
    let prefix = unique_prefix();
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start(&db, nats, &prefix).await?;
    let a = EdgeProc::start("edge-a", &cp, nats, &prefix).await?;
    let b = EdgeProc::start("edge-b", &cp, nats, &prefix).await?;
    let (app, key) = cp.create_app_and_key()?;
    let publisher = Publisher::new(cp.url(), &app, &key)?;
    Ok(Pair { _db: db, cp, a, b, app, key, publisher })
}

impl Pair {
    async fn history_namespace(&self, ns: &str, history_size: u32) -> Result<()> {
        let path = format!("/v1/apps/{}/namespaces/{ns}", self.app);
        let body = format!(r#"{{"history_size": {history_size}, "history_ttl": "1h"}}"#);
        let (status, answer) = http_request(self.cp.addr, "PUT", &path, &self.cp.admin_token, Some(&body)).await?;
        anyhow::ensure!((200..300).contains(&status), "PUT {path}: {status} {answer}");
        Ok(())
    }

    async fn token(&self) -> Result<String> {
        let request = TokenRequest::new("failover").allow("*", ["subscribe", "publish", "history"]);
        Ok(self.publisher.mint_token(&request).await?.token)
    }

    /// The failover measurement with `clients` clients over both edges, on
    /// four channels of namespace `ns`; edge A is killed after 2 s.
    async fn failover(&mut self, ns: &str, clients: usize, reconnect_delay: Duration) -> Result<FailoverReport> {
        let config = FailoverConfig {
            edges: vec![self.a.addr, self.b.addr],
            token: self.token().await?,
            clients,
            channels: (0..4).map(|i| format!("{ns}:feed-{i}")).collect(),
            rate: 100.0,
            warmup: Duration::from_secs(2),
            after: Duration::from_secs(2),
            settle: LIMIT,
            reconnect_delay,
            ..FailoverConfig::default()
        };
        let a = &mut self.a;
        let report = within("the failover run", herald_bench::failover(config, || a.process.kill(), |_| {})).await??;
        println!("{report}");
        Ok(report)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_of_a_killed_edge_recovers_on_the_other_with_no_gap_and_no_duplicate() -> Result<()> {
    let mut c = pair(&nats_url()).await?;
    c.history_namespace("hist", 10_000).await?;
    let report = c.failover("hist", 200, Duration::from_millis(200)).await?;
    assert_eq!(report.orphans, 100, "{report}");
    assert_eq!(report.resubscribed, report.orphans, "every client of the dead edge is back: {report}");
    assert!(report.recovered >= report.orphans as u64, "{report}");
    assert_eq!(report.not_recovered, 0, "the history covered the gap: {report}");
    assert_eq!((report.silent_gaps, report.duplicates, report.dropped_replays), (0, 0, 0), "{report}");
    assert_eq!(report.behind_at_end, 0, "{report}");
    assert_eq!(report.bystanders_disconnected, 0, "edge B's clients stayed: {report}");
    assert!(report.published > 300 && report.unacknowledged == 0, "{report}");
    assert!(report.time_to_resubscribed.quantile(0.99) < Duration::from_secs(5), "{report}");
    assert!(report.held());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_whose_gap_outlived_the_history_are_told_they_did_not_recover() -> Result<()> {
    let mut c = pair(&nats_url()).await?;
    // Two messages per channel: a reconnect after 1 s misses about 25.
    c.history_namespace("tiny", 2).await?;
    let report = c.failover("tiny", 100, Duration::from_secs(1)).await?;
    assert_eq!(report.resubscribed, report.orphans, "{report}");
    assert_eq!(report.recovered, 0, "{report}");
    assert_eq!(report.not_recovered, report.orphans as u64, "each client of the dead edge was told once: {report}");
    // What they missed was announced, never silent; and after it, nothing
    // is missing.
    assert_eq!((report.silent_gaps, report.duplicates), (0, 0), "{report}");
    assert_eq!(report.behind_at_end, 0, "{report}");
    assert!(report.held());
    Ok(())
}

/// Polls `/readyz` of each address until its status is (or is not) 200.
async fn readiness(addrs: &[(SocketAddr, &str)], ready: bool) -> Result<()> {
    for (addr, what) in addrs {
        within(&format!("{what} ready: {ready}"), async {
            while http_get(*addr, "/readyz").await.is_none_or(|(status, _)| (status == 200) != ready) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_publish_is_missing_from_history_after_nats_restarts() -> Result<()> {
    let mut nats = NatsServer::start().await;
    let c = pair(&nats.url()).await?;
    c.history_namespace("hist", 10_000).await?;
    let nodes = [(c.cp.addr, "control plane"), (c.a.addr, "edge a"), (c.b.addr, "edge b")];

    // Numbered publishes through REST for the whole test, from four
    // publishers at once (so some are in flight when NATS dies), never
    // retried; the 202s are remembered, the other answers counted.
    const PUBLISHERS: u64 = 4;
    let path = format!("/v1/apps/{}/channels/hist:orders/messages", c.app);
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producers: Vec<_> = (0..PUBLISHERS)
        .map(|k| {
            let (acked, stop_rx, api, key, path) =
                (acked.clone(), stop_rx.clone(), c.cp.addr, c.key.clone(), path.clone());
            tokio::spawn(async move {
                let mut refused = BTreeMap::<u16, u64>::new();
                for n in (k..).step_by(PUBLISHERS as usize) {
                    if *stop_rx.borrow() {
                        break;
                    }
                    let body = format!(r#"{{"data": "n-{n}"}}"#);
                    match http_request(api, "POST", &path, &key, Some(&body)).await {
                        Ok((202, _)) => acked.lock().unwrap_or_else(|e| e.into_inner()).push(n),
                        Ok((status, _)) => *refused.entry(status).or_default() += 1,
                        Err(_) => *refused.entry(0).or_default() += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                refused
            })
        })
        .collect();
    let acked_count = || acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    within("publishes before the restart", async {
        while acked_count() < 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;

    // NATS dies mid-stream: every node says it is not ready while it is
    // down, and is ready again once it is back, without a restart.
    nats.kill();
    readiness(&nodes, false).await?;
    let during = acked_count();
    nats.restart().await;
    readiness(&nodes, true).await?;
    within("publishes after the restart", async {
        while acked_count() < during + 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    stop_tx.send(true)?;
    let mut refused = BTreeMap::<u16, u64>::new();
    for producer in producers {
        for (status, n) in within("the publishers stop", producer).await?? {
            *refused.entry(status).or_default() += n;
        }
    }
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // While the bus was down the API said so (503), never a false 202.
    assert!(refused.get(&503).is_some_and(|n| *n > 0), "refusals by status: {refused:?}");
    assert_eq!(refused.keys().copied().collect::<Vec<_>>(), vec![503], "refusals by status: {refused:?}");

    // Read the whole history back through REST.
    let mut held = Vec::new();
    let mut since = 0u64;
    let epoch = loop {
        let path = format!("/v1/apps/{}/channels/hist:orders/history?since={since}&limit=1000", c.app);
        let (status, body) = http_request(c.cp.addr, "GET", &path, &c.key, None).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
        let page: serde_json::Value = serde_json::from_str(&body)?;
        let messages = page["messages"].as_array().context("messages")?;
        for m in messages {
            let n = m["data"].as_str().and_then(|d| d.strip_prefix("n-")).and_then(|n| n.parse::<u64>().ok());
            held.push(n.context("a numbered message")?);
            since = m["seq"].as_u64().context("seq")?;
        }
        if messages.is_empty() || since >= page["last_seq"].as_u64().unwrap_or(0) {
            break page["epoch"].as_str().unwrap_or_default().to_owned();
        }
    };
    assert!(!epoch.is_empty());
    let kept: BTreeSet<u64> = held.iter().copied().collect();
    assert_eq!(kept.len(), held.len(), "no message stored twice");
    let missing: Vec<u64> = acked.iter().filter(|n| !kept.contains(n)).copied().collect();
    assert!(missing.is_empty(), "acknowledged but not in history: {missing:?} ({} acknowledged)", acked.len());
    println!("{} acknowledged, refused by status {refused:?}, {} in history", acked.len(), held.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_bench_failover_kills_the_first_edge_and_reports_what_held() -> Result<()> {
    let c = pair(&nats_url()).await?;
    c.history_namespace("hist", 10_000).await?;
    let token = c.token().await?;
    let pid = c.a.process.pid().context("edge a runs")?.to_string();
    let urls = format!("{},{}", c.a.url(), c.b.url());
    let args = [
        "bench",
        "--edge-url",
        &urls,
        "--token",
        &token,
        "--failover",
        "60",
        "--kill-pid",
        &pid,
        "--channel",
        "hist:f",
        "--failover-channels",
        "3",
        "--rate",
        "100",
        "--warmup",
        "1",
        "--reconnect-delay-ms",
        "200",
    ];
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out =
        tokio::task::spawn_blocking(move || cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])).await??;
    assert!(out.contains("resubscribed elsewhere:   30 of 30"), "{out}");
    assert!(out.contains("silent gaps:              0 messages, 0 clients"), "{out}");
    assert!(out.contains("held:                     yes"), "{out}");
    Ok(())
}
