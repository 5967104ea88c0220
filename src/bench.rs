//! `herald bench`: parses its options and runs the load generator of
//! `herald-bench` against any deployment, printing progress and a report.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_bench::{BenchConfig, IdleSubscriptions, Progress};

/// Options of `herald bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Edge URL(s), e.g. ws://127.0.0.1:8081/v1/connect (comma-separated).
    #[arg(long, env = "HERALD_EDGE_URL", value_delimiter = ',')]
    pub edge_url: Vec<String>,
    /// Token with subscribe and publish on the channel (HERALD_TOKEN).
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Subscriber connections.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages to publish.
    #[arg(long, short = 'm', default_value_t = 10_000)]
    pub messages: usize,
    /// Payload size in bytes (at least 8).
    #[arg(long, default_value_t = 64)]
    pub payload_size: usize,
    /// Messages per second over all publishers (default: as fast as acks return).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Unacknowledged publishes per publisher when unpaced.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Channel to use.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Decode every N-th subscriber's messages for latency.
    #[arg(long, default_value_t = 10)]
    pub sample_every: usize,
    /// Unpaced runs: publishers wait while the slowest sampled subscriber is
    /// this many messages behind (0 = never wait).
    #[arg(long, default_value_t = 2000)]
    pub max_lag: u64,
    /// Instead of the fan-out run: open this many idle connections and
    /// report the edge's resident memory per connection.
    #[arg(long)]
    pub idle_connections: Option<usize>,
    /// Subscribers speak Pusher protocol 7 (`/app/KEY` on the edge) with
    /// this app key, on a public channel; publishers still use the token.
    #[arg(long)]
    pub pusher_key: Option<String>,
    /// With --idle-connections: what each subscribes to — its own channel
    /// (`own`), all `--channel` (`shared`) or nothing (`none`).
    #[arg(long, value_enum, default_value_t = IdleSubscribe::Own)]
    pub idle_subscribe: IdleSubscribe,
    /// Instead of the fan-out run: N clients connect at once (upgrade and
    /// connect with the token, as an idle connection does); reports the
    /// time until all are in, failures by reason and handshake latency.
    #[arg(long, value_name = "N")]
    pub connect_storm: Option<usize>,
    /// With --connect-storm: longest wait for one client, in seconds.
    #[arg(long, default_value_t = 60)]
    pub storm_timeout: u64,
}

/// Files the generator needs besides its connections.
const SPARE_FILES: u64 = 64;

/// Says so when the open-files limit (already raised to the hard limit at
/// start) is too low for `connections`.
fn check_open_files(connections: usize) {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let needed = connections as u64 + SPARE_FILES;
        if let Some(soft) = limit.current
            && soft < needed
        {
            eprintln!(
                "warning: the open files limit is {soft} (hard limit {}), below the {needed} this run needs; \
                 connections past it fail with \"too many open files\" (raise it with ulimit -n or the \
                 service manager's LimitNOFILE)",
                limit.maximum.map_or("none".to_owned(), |m| m.to_string())
            );
        }
    }
}

/// Values of `--idle-subscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdleSubscribe {
    Own,
    Shared,
    None,
}

/// Resolves `ws://host:port/...` to a socket address.
async fn resolve(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("{url}: herald bench speaks ws:// (put it beside the edge, not behind TLS)"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))
}

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.edge_url.is_empty() {
        bail!("give --edge-url or HERALD_EDGE_URL");
    }
    let mut edges = Vec::new();
    for url in &args.edge_url {
        edges.push(resolve(url).await?);
    }
    let progress = |p: Progress| {
        match p {
            Progress::Connecting { connected, total } => eprint!("\rconnecting {connected}/{total}        "),
            Progress::Running { sent, delivered, expected, elapsed } => {
                eprint!("\r{:>6.1}s  sent {sent}  delivered {delivered}/{expected}        ", elapsed.as_secs_f64())
            }
        }
        let _ = std::io::stderr().flush();
    };
    if let Some(n) = args.connect_storm {
        check_open_files(n);
        println!("connect storm: {n} clients at once against {}", edges[0]);
        let timeout = Duration::from_secs(args.storm_timeout.max(1));
        let report = herald_bench::connect_storm(edges[0], &args.token, n, timeout).await?;
        println!("{report}");
        return Ok(());
    }
    if let Some(n) = args.idle_connections {
        check_open_files(n);
        let subscriptions = match args.idle_subscribe {
            IdleSubscribe::Own => IdleSubscriptions::Own,
            IdleSubscribe::Shared => IdleSubscriptions::Shared(args.channel.clone()),
            IdleSubscribe::None => IdleSubscriptions::None,
        };
        let report = herald_bench::idle_memory(edges[0], &args.token, n, subscriptions, progress).await?;
        eprintln!();
        println!("idle connections:     {}", report.connections);
        println!("edge resident before: {:.1} MiB", report.before as f64 / 1048576.0);
        println!("edge resident after:  {:.1} MiB", report.after as f64 / 1048576.0);
        println!("per connection:       {:.2} KiB", report.per_connection() / 1024.0);
        return Ok(());
    }
    let config = BenchConfig {
        edges,
        token: args.token,
        channel: args.channel,
        subscribers: args.subscribers,
        messages: args.messages,
        payload_size: args.payload_size,
        rate: args.rate,
        publishers: args.publishers,
        window: args.window,
        sample_every: args.sample_every,
        grace: Duration::from_secs(10),
        max_lag: args.max_lag,
        pusher_key: args.pusher_key,
        ..BenchConfig::default()
    };
    println!(
        "bench: {} {}subscribers, {} messages of {} bytes, {} publisher(s), rate {}",
        config.subscribers,
        if config.pusher_key.is_some() { "Pusher " } else { "" },
        config.messages,
        config.payload_size,
        config.publishers,
        config.rate.map_or("unpaced".to_owned(), |r| format!("{r}/s"))
    );
    let report = herald_bench::run(config, progress).await?;
    eprintln!();
    println!("{report}");
    Ok(())
}
