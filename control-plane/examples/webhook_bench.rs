//! Load generator for webhooks: how fast state changes become delivered
//! requests.
//!
//! Starts a control plane on the in-process bus and a database, an app with
//! one webhook endpoint per `--endpoints` pointing at a receiver in this
//! process (HTTP/1.1, answering 200), then plays an edge: one occupancy
//! report makes `--channels` channels occupied at once; later an empty one
//! vacates them all. Prints, for each wave, how long until every event was
//! received, events/s, and the latency from the event to its receipt
//! (p50, p99, max) — the outbox write, the lease, the request.
//!
//! ```sh
//! cargo run --release -p herald-control-plane --example webhook_bench -- --channels 2000
//! cargo run --release -p herald-control-plane --example webhook_bench -- \
//!     --database postgres://postgres@127.0.0.1:5432/test --channels 2000 --endpoints 2
//! ```
//!
//! Flags: `--channels N` (2000), `--endpoints E` (1), `--database URL` (a
//! temporary SQLite file; a PostgreSQL URL gets a fresh database of its
//! own), `--debounce D` (1s).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use herald_bus::{Bus, LocalBus, now_ms};
use herald_control_plane::auth::Principal;
use herald_control_plane::services::AppSpec;
use herald_control_plane::services::webhooks::WebhookSpec;
use herald_control_plane::{Config, ControlPlane, Secret};
use herald_proto::units::HumanDuration;
use herald_proto::{AppId, bus};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use sqlx::Connection as _;

struct Args {
    channels: usize,
    endpoints: usize,
    database: Option<String>,
    debounce: HumanDuration,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { channels: 2000, endpoints: 1, database: None, debounce: HumanDuration::secs(1) };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--channels" => a.channels = value()?.parse()?,
            "--endpoints" => a.endpoints = value()?.parse()?,
            "--database" => a.database = Some(value()?),
            "--debounce" => a.debounce = value()?.parse().map_err(|e| anyhow::anyhow!("--debounce: {e}"))?,
            other => bail!("unknown flag {other}"),
        }
    }
    if a.channels == 0 || a.endpoints == 0 {
        bail!("--channels and --endpoints must be at least 1");
    }
    Ok(a)
}

/// What the receiver saw: per event type, the latencies (ms) from the
/// event to its receipt.
#[derive(Default)]
struct Seen {
    latencies: Vec<(String, i64)>,
}

async fn receiver(seen: Arc<Mutex<Seen>>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                            let kind = v["type"].as_str().unwrap_or("").to_owned();
                            let latency = now_ms() - v["timestamp_ms"].as_i64().unwrap_or(0);
                            seen.lock().unwrap_or_else(|e| e.into_inner()).latencies.push((kind, latency));
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(url)
}

/// Waits until `n` events of `kind` arrived; prints the wave's figures.
async fn wave(seen: &Arc<Mutex<Seen>>, kind: &str, n: usize, started: Instant, limit: Duration) -> Result<()> {
    loop {
        let mut got: Vec<i64> = {
            let s = seen.lock().unwrap_or_else(|e| e.into_inner());
            s.latencies.iter().filter(|(k, _)| k == kind).map(|(_, l)| *l).collect()
        };
        if got.len() >= n {
            let took = started.elapsed();
            got.sort_unstable();
            let at = |q: f64| got[((got.len() - 1) as f64 * q) as usize];
            println!(
                "{kind:<17} {n:>6} events in {:>7.3} s = {:>8.0} events/s; event to receipt p50 {} ms, p99 {} ms, max {} ms",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64(),
                at(0.5),
                at(0.99),
                at(1.0),
            );
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("only {} of {n} {kind} events arrived within {limit:?}", got.len());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let (database, _cleanup) = match &args.database {
        Some(url) if url.starts_with("postgres") => {
            let name = format!("webhook_bench_{}", herald_control_plane::keys::random_alnum(8));
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
            let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
            (format!("{base}/{name}"), None)
        }
        Some(url) => (url.clone(), None),
        None => {
            let dir =
                std::env::temp_dir().join(format!("webhook-bench-{}", herald_control_plane::keys::random_alnum(8)));
            std::fs::create_dir_all(&dir)?;
            (format!("sqlite://{}/cp.db", dir.display()), Some(dir))
        }
    };
    let config = Config {
        database_url: database.clone(),
        admin_token: Some(Secret::new("bench-admin-token")),
        webhook_allow_private_urls: true,
        webhook_debounce: args.debounce,
        presence_max_per_channel: 100_000,
        ..Config::default()
    };
    let local = LocalBus::new();
    let cp = ControlPlane::new(config, Bus::local(&local)).await?;
    let core = cp.core().clone();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = receiver(seen.clone()).await?;
    let app = "bench";
    core.create_app(&Principal::Admin, Some(app), AppSpec { name: Some("bench".into()), ..AppSpec::default() }).await?;
    for _ in 0..args.endpoints {
        let spec = WebhookSpec {
            url: url.clone(),
            events: vec!["channel_occupied".into(), "channel_vacated".into()],
            format: None,
            filter: None,
        };
        core.create_webhook(&Principal::Admin, app, spec).await?;
    }
    println!(
        "webhook bench: {} channels, {} endpoint(s), {} database, debounce {}",
        args.channels,
        args.endpoints,
        if database.starts_with("postgres") { "PostgreSQL" } else { "SQLite" },
        args.debounce
    );
    // Let the engine load its endpoints.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let edge = Bus::local(&local);
    let app_id = AppId::new(app)?;
    let report = |channels: Vec<bus::ChannelCount>| bus::OccupancyReport {
        edge_id: "bench-edge".into(),
        app_id: app.into(),
        channels,
        part: 0,
        parts: 1,
        ttl_ms: 600_000,
    };
    let channels: Vec<bus::ChannelCount> =
        (0..args.channels).map(|i| bus::ChannelCount { channel: format!("room-{i}"), subscribers: 1 }).collect();
    let n = args.channels * args.endpoints;
    let limit = Duration::from_secs(300);

    let started = Instant::now();
    edge.publish_occupancy(&app_id, &report(channels)).await?;
    wave(&seen, "channel_occupied", n, started, limit).await?;

    let started = Instant::now();
    edge.publish_occupancy(&app_id, &report(Vec::new())).await?;
    wave(&seen, "channel_vacated", n, started, limit).await?;
    println!("(channel_vacated waits the debounce, {}, before it is due)", args.debounce);
    drop(cp);
    Ok(())
}
