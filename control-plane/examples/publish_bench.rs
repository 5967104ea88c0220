//! Load generator for the REST publish path, beside its floor.
//!
//! Starts a control plane (its own runtime, like a separate process) over a
//! real NATS and a database, creates an app and an API key, then drives
//! `POST /v1/apps/{app}/channels/{channel}/messages` (single) or
//! `POST /v1/apps/{app}/messages` (batched) from keep-alive HTTP/1.1
//! connections for a fixed time, and prints requests/s, messages/s and
//! latency percentiles. Like `wrk`, the generator writes prepared requests
//! and reads each response (status and `content-length` body) before sending
//! the next on that connection; only `202` counts as a success.
//!
//! With `--floor`, the same generator first drives a bare axum server — a
//! runtime with the same worker count, in the same process — whose one
//! handler takes the single-message route, deserializes the same JSON body
//! into a struct shaped like the control plane's (the raw `data`, the
//! optional fields, unknown fields refused) and answers `202` with a small
//! JSON body: what one HTTP request with a JSON body costs on this machine
//! before Herald does anything. Then Herald single publishes, and with
//! `--batch B` Herald's batches too, each printed as a multiple of the
//! floor ("x floor"; a batch's messages/s beside the floor's requests/s,
//! and beside Herald's single publishes/s). Every run also prints the CPU
//! its server's threads used per request (from `/proc`), which other work
//! on the machine disturbs less than the rates.
//!
//! ```sh
//! cargo run --release -p herald-control-plane --example publish_bench -- \
//!     --connections 64 --seconds 10 --batch 1
//! cargo run --release -p herald-control-plane --example publish_bench -- --floor --batch 50
//! ```
//!
//! Flags: `--connections N` (64), `--seconds S` (10), `--batch B` (1 = the
//! single-message route; more = the batch route with B messages per
//! request), `--channels C` (100 distinct channels), `--payload BYTES` (100),
//! `--nats URL` (nats://127.0.0.1:4222), `--database URL` (a temporary
//! SQLite file), `--server-threads T` (2), `--client-threads T` (1),
//! `--local-bus` (the in-process bus instead of NATS, to tell the HTTP
//! side's cost from the bus's), `--floor` (measure the bare axum floor
//! first, as above).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use herald_bus::{Bus, NatsOptions};
use herald_control_plane::{Config, ControlPlane, Secret};
use herald_proto::SubjectSpace;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

struct Args {
    connections: usize,
    seconds: u64,
    batch: usize,
    channels: usize,
    payload: usize,
    nats: String,
    database: Option<String>,
    server_threads: usize,
    client_threads: usize,
    local_bus: bool,
    floor: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        connections: 64,
        seconds: 10,
        batch: 1,
        channels: 100,
        payload: 100,
        nats: "nats://127.0.0.1:4222".into(),
        database: None,
        server_threads: 2,
        client_threads: 1,
        local_bus: false,
        floor: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--connections" => a.connections = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--channels" => a.channels = value()?.parse()?,
            "--payload" => a.payload = value()?.parse()?,
            "--nats" => a.nats = value()?,
            "--database" => a.database = Some(value()?),
            "--server-threads" => a.server_threads = value()?.parse()?,
            "--client-threads" => a.client_threads = value()?.parse()?,
            "--local-bus" => a.local_bus = true,
            "--floor" => a.floor = true,
            other => bail!("unknown flag {other}"),
        }
    }
    if a.connections == 0 || a.batch == 0 || a.channels == 0 || a.seconds == 0 {
        bail!("--connections, --batch, --channels and --seconds must be positive");
    }
    Ok(a)
}

const ADMIN: &str = "bench-admin-token-0123456789";

/// A server runtime: its own worker threads, as if it were its own process.
fn server_runtime(args: &Args, name: &str) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .thread_name(name)
        .enable_all()
        .build()?)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let db_path = std::env::temp_dir().join(format!("herald_bench_{}.db", std::process::id()));
    let database = args.database.clone().unwrap_or_else(|| format!("sqlite://{}", db_path.display()));

    let server_rt = server_runtime(&args, "cp-server")?;
    let config = Config {
        database_url: database.clone(),
        admin_token: Some(Secret::new(ADMIN)),
        max_batch_messages: args.batch.max(100),
        ..Config::default()
    };
    let nats = args.nats.clone();
    let local_bus = args.local_bus;
    let addr = server_rt.block_on(async move {
        let subjects = SubjectSpace::new(&format!("bench{}", std::process::id()))?;
        let bus = if local_bus {
            Bus::local(&herald_bus::LocalBus::new())
        } else {
            Bus::connect_nats(&nats, subjects, NatsOptions::default()).await?
        };
        let cp = ControlPlane::new(config, bus).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = cp.serve(listener, std::future::pending()).await {
                eprintln!("server: {e}");
            }
        });
        anyhow::Ok(addr)
    })?;

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .thread_name("load-client")
        .enable_all()
        .build()?;
    let result = run(&args, addr, &client_rt);
    drop(server_rt);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db_path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    result
}

/// The runs: the floor (with `--floor`), Herald's single publishes (unless
/// only a batch was asked for without the floor), Herald's batches.
fn run(args: &Args, herald: std::net::SocketAddr, client_rt: &tokio::runtime::Runtime) -> Result<()> {
    let (app_id, key) = client_rt.block_on(setup(herald))?;
    let single = build_requests(args, &app_id, &key, 1);
    let floor = if args.floor {
        let floor_rt = server_runtime(args, "floor-server")?;
        let addr = floor_rt.block_on(floor::start())?;
        let figures = client_rt.block_on(drive(addr, single.clone(), args, "floor-server"))?;
        drop(floor_rt);
        figures.print("floor", args, 1);
        Some(figures)
    } else {
        None
    };
    let herald_single = if args.batch == 1 || args.floor {
        let figures = client_rt.block_on(drive(herald, single, args, "cp-server"))?;
        figures.print("herald", args, 1);
        Some(figures)
    } else {
        None
    };
    let herald_batch = if args.batch > 1 {
        let requests = build_requests(args, &app_id, &key, args.batch);
        let figures = client_rt.block_on(drive(herald, requests, args, "cp-server"))?;
        figures.print("herald", args, args.batch);
        Some(figures)
    } else {
        None
    };
    if let (Some(floor), Some(single)) = (&floor, &herald_single) {
        println!(
            "herald single: {:.0} requests/s = {:.2}x floor ({:.0} requests/s); server CPU per request {:.1} us = {:.2}x floor's ({:.1} us)",
            single.per_sec(),
            single.per_sec() / floor.per_sec(),
            floor.per_sec(),
            single.cpu_per_request(),
            single.cpu_per_request() / floor.cpu_per_request(),
            floor.cpu_per_request()
        );
    }
    if let Some(batch) = &herald_batch {
        let messages = batch.per_sec() * args.batch as f64;
        if let Some(floor) = &floor {
            println!(
                "herald batch-{}: {messages:.0} messages/s = {:.2}x floor's single requests/s",
                args.batch,
                messages / floor.per_sec()
            );
        }
        if let Some(single) = &herald_single {
            println!(
                "herald batch-{}: {messages:.0} messages/s = {:.2}x herald's single publishes/s; server CPU per message {:.1} us = 1/{:.1} of a single publish's",
                args.batch,
                messages / single.per_sec(),
                batch.cpu_per_request() / args.batch as f64,
                single.cpu_per_request() * args.batch as f64 / batch.cpu_per_request()
            );
        }
    }
    Ok(())
}

/// The floor: a bare axum server with one handler for the single-message
/// route that does the JSON work Herald's does (see the module docs).
mod floor {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::Json;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::serve::ListenerExt as _;
    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;

    /// Shaped like the control plane's single-publish body.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PublishBody {
        data: Box<RawValue>,
        name: Option<String>,
        id: Option<String>,
        encoding: Option<String>,
        exclude_connection: Option<String>,
    }

    #[derive(Serialize)]
    struct Accepted {
        id: String,
    }

    static NEXT_ID: AtomicU64 = AtomicU64::new(0);

    async fn publish(
        Path((app, channel)): Path<(String, String)>,
        Json(body): Json<PublishBody>,
    ) -> (StatusCode, Json<Accepted>) {
        std::hint::black_box((&app, &channel, &body.data, &body.name, &body.id, &body.encoding));
        std::hint::black_box(&body.exclude_connection);
        // As long as Herald's message ids: `m` and 20 characters.
        let id = format!("m{:020}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        (StatusCode::ACCEPTED, Json(Accepted { id }))
    }

    /// Starts the floor on the current runtime; its address.
    pub(super) async fn start() -> anyhow::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let router = axum::Router::new().route("/v1/apps/{app_id}/channels/{channel}/messages", post(publish));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("floor: {e}");
            }
        });
        Ok(addr)
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Reads one HTTP/1.1 response with a `content-length` body; returns its
/// status. `buf` keeps what was read past it.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end])?;
            let status: u16 = head.get(9..12).context("status line")?.parse()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = head_end + 4 + len;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            buf.drain(..total);
            return Ok(status);
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        bail!("connection closed");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn connect(addr: std::net::SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn request(sender: &mut Sender, method: &str, path: &str, auth: &str, body: Bytes) -> Result<(u16, Bytes)> {
    sender.ready().await?;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench")
        .header("authorization", format!("Bearer {auth}"))
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Creates the app (with a publish rate the bench cannot reach) and an
/// API key: their id and secret.
async fn setup(addr: std::net::SocketAddr) -> Result<(String, String)> {
    let mut admin = connect(addr).await?;
    let app = serde_json::json!({"name": "bench", "limits": {"publish_rate_per_sec": 10_000_000}});
    let (status, body) = request(&mut admin, "POST", "/v1/apps", ADMIN, Bytes::from(app.to_string())).await?;
    anyhow::ensure!(status == 201, "create app: {status} {}", String::from_utf8_lossy(&body));
    let app_id = serde_json::from_slice::<serde_json::Value>(&body)?["id"].as_str().context("id")?.to_owned();
    let (status, body) =
        request(&mut admin, "POST", &format!("/v1/apps/{app_id}/keys"), ADMIN, Bytes::from(r#"{"name": "bench"}"#))
            .await?;
    anyhow::ensure!(status == 201, "create key: {status}");
    let key = serde_json::from_slice::<serde_json::Value>(&body)?["key"].as_str().context("key")?.to_owned();
    Ok((app_id, key))
}

/// The requests, built up front, one per channel: the generator spends its
/// CPU on sending and reading, not on formatting.
fn build_requests(args: &Args, app_id: &str, key: &str, batch: usize) -> Arc<Vec<Bytes>> {
    let data = "x".repeat(args.payload);
    let requests = (0..args.channels)
        .map(|ch| {
            let (path, body) = if batch == 1 {
                (
                    format!("/v1/apps/{app_id}/channels/bench:{ch}/messages"),
                    format!(r#"{{"data": {{"n": {ch}, "pad": "{data}"}}}}"#),
                )
            } else {
                let msgs: Vec<String> = (0..batch)
                    .map(|j| {
                        format!(
                            r#"{{"channel": "bench:{}", "data": {{"n": {j}, "pad": "{data}"}}}}"#,
                            (ch + j) % args.channels
                        )
                    })
                    .collect();
                (format!("/v1/apps/{app_id}/messages"), format!(r#"{{"messages": [{}]}}"#, msgs.join(",")))
            };
            Bytes::from(format!(
                "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ))
        })
        .collect();
    Arc::new(requests)
}

/// The CPU time (user and system) the threads of this process named
/// `name` have used, from `/proc/self/task/*/stat` (in clock ticks of
/// 1/100 s; zero where `/proc` cannot be read).
fn threads_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Duration::ZERO };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if &stat[open + 1..close] != name {
            continue;
        }
        // After the name: state is field 3; utime and stime are 14 and 15.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        ticks += field(14) + field(15);
    }
    Duration::from_millis(ticks * 10)
}

/// What one run measured.
struct Figures {
    /// Latencies of the `202`s, sorted.
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: f64,
    /// CPU the server's threads used meanwhile.
    server_cpu: Duration,
}

impl Figures {
    fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed
    }

    /// The server's CPU per request, in microseconds.
    fn cpu_per_request(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }

    fn pct(&self, p: f64) -> f64 {
        let l = &self.latencies;
        let i = ((l.len() as f64 * p).ceil() as usize).saturating_sub(1).min(l.len().saturating_sub(1));
        l.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    fn print(&self, target: &str, args: &Args, batch: usize) {
        println!(
            "target={target} mode={} connections={} seconds={:.1} payload={}B channels={}{}",
            if batch == 1 { "single".to_owned() } else { format!("batch-{batch}") },
            args.connections,
            self.elapsed,
            args.payload,
            args.channels,
            if target == "herald" && args.local_bus { " bus=local" } else { "" }
        );
        println!(
            "requests={} errors={} requests/s={:.0} messages/s={:.0} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms \
             server-cpu/request={:.1}us server-cpu/message={:.1}us",
            self.latencies.len(),
            self.errors,
            self.per_sec(),
            self.per_sec() * batch as f64,
            self.pct(0.50),
            self.pct(0.90),
            self.pct(0.99),
            self.pct(1.0),
            self.cpu_per_request(),
            self.cpu_per_request() / batch as f64
        );
    }
}

/// Drives `requests` round-robin over `args.connections` keep-alive
/// connections to `addr` for `args.seconds`.
async fn drive(addr: std::net::SocketAddr, requests: Arc<Vec<Bytes>>, args: &Args, server: &str) -> Result<Figures> {
    let cpu_before = threads_cpu(server);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut buf = Vec::with_capacity(4096);
            let mut i = c;
            while Instant::now() < deadline {
                let started = Instant::now();
                if stream.write_all(&requests[i % requests.len()]).await.is_err() {
                    errors += 1;
                    break;
                }
                match read_response(&mut stream, &mut buf).await {
                    Ok(202) => latencies.push(started.elapsed()),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = threads_cpu(server).saturating_sub(cpu_before);
    latencies.sort_unstable();
    Ok(Figures { latencies, errors, elapsed, server_cpu })
}
