//! Load generator for the REST publish path.
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
//! ```sh
//! cargo run --release -p herald-control-plane --example publish_bench -- \
//!     --connections 64 --seconds 10 --batch 1
//! cargo run --release -p herald-control-plane --example publish_bench -- --batch 50
//! ```
//!
//! Flags: `--connections N` (64), `--seconds S` (10), `--batch B` (1 = the
//! single-message route; more = the batch route with B messages per
//! request), `--channels C` (100 distinct channels), `--payload BYTES` (100),
//! `--nats URL` (nats://127.0.0.1:4222), `--database URL` (a temporary
//! SQLite file), `--server-threads T` (2), `--client-threads T` (1),
//! `--local-bus` (the in-process bus instead of NATS, to tell the HTTP
//! side's cost from the bus's).

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
            other => bail!("unknown flag {other}"),
        }
    }
    if a.connections == 0 || a.batch == 0 || a.channels == 0 || a.seconds == 0 {
        bail!("--connections, --batch, --channels and --seconds must be positive");
    }
    Ok(a)
}

const ADMIN: &str = "bench-admin-token-0123456789";

fn main() -> Result<()> {
    let args = parse_args()?;
    let db_path = std::env::temp_dir().join(format!("herald_bench_{}.db", std::process::id()));
    let database = args.database.clone().unwrap_or_else(|| format!("sqlite://{}", db_path.display()));

    // The server: its own runtime, as if it were its own process.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .thread_name("cp-server")
        .enable_all()
        .build()?;
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
    let result = client_rt.block_on(drive(addr, &args));
    drop(server_rt);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db_path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    result
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

async fn drive(addr: std::net::SocketAddr, args: &Args) -> Result<()> {
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

    let data = "x".repeat(args.payload);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    // Requests are built up front, one per channel: the generator spends
    // its CPU on sending and reading, not on formatting.
    let requests: Vec<Bytes> = (0..args.channels)
        .map(|ch| {
            let (path, body) = if args.batch == 1 {
                (
                    format!("/v1/apps/{app_id}/channels/bench:{ch}/messages"),
                    format!(r#"{{"data": {{"n": {ch}, "pad": "{data}"}}}}"#),
                )
            } else {
                let msgs: Vec<String> = (0..args.batch)
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
    let requests = std::sync::Arc::new(requests);
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
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let requests = latencies.len() as f64;
    println!(
        "mode={} connections={} seconds={:.1} payload={}B channels={}",
        if args.batch == 1 { "single".to_owned() } else { format!("batch-{}", args.batch) },
        args.connections,
        elapsed,
        args.payload,
        args.channels
    );
    println!(
        "requests={} errors={} requests/s={:.0} messages/s={:.0} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        latencies.len(),
        errors,
        requests / elapsed,
        requests * args.batch as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
