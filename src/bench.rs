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
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true, default_value = "")]
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
    /// Publisher connections. 0: publish nothing, and wait for --messages
    /// published by another process (`ready: N subscribers` on stdout says
    /// when to publish): several generators can hold the subscribers of one
    /// broadcast between them (bench/scripts/scale.sh).
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
    /// Instead of the fan-out run: N clients spread over the edges (at
    /// least two --edge-url), subscribed to --failover-channels channels
    /// with history while --rate messages/s are published; after the
    /// warm-up the first edge is killed (--kill-pid) and the report says how
    /// its clients came back on the others, and whether anything was lost.
    #[arg(long, value_name = "N")]
    pub failover: Option<usize>,
    /// With --failover: the process id of the first edge, sent SIGKILL after
    /// the warm-up (without it, kill that edge yourself when told).
    #[arg(long, value_name = "PID")]
    pub kill_pid: Option<i32>,
    /// With --failover: how many channels, named `<--channel>-<i>` (the
    /// channel's namespace must keep history, e.g. --channel hist:failover).
    #[arg(long, default_value_t = 10)]
    pub failover_channels: usize,
    /// With --failover: seconds of publishing before the kill.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// With --failover: the clients' first reconnect delay in milliseconds
    /// (±10%, doubling after each failed attempt; the SDK's default is 1000).
    #[arg(long, default_value_t = 1000)]
    pub reconnect_delay_ms: u64,
    /// Instead of the fan-out run: for this many seconds, hold
    /// --idle-connections idle connections, --slow slow requests and a
    /// connect storm of --connect-storm clients every --storm-every
    /// seconds against the first edge, while a publisher and a subscriber
    /// keep working there at --rate; reports what was held.
    #[arg(long, value_name = "SECONDS")]
    pub soak: Option<u64>,
    /// With --soak: the control plane's URL, which gets half the slow
    /// requests (slow bodies); without it the edge gets them all.
    #[arg(long, env = "HERALD_API_URL")]
    pub api_url: Option<String>,
    /// With --soak and --api-url: the app (HERALD_APP_ID) and an API key of
    /// it (HERALD_API_KEY) the slow publish bodies are sent with.
    #[arg(long, env = "HERALD_APP_ID", default_value = "")]
    pub app_id: String,
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true, default_value = "")]
    pub api_key: String,
    /// With --soak: slow requests, one byte a second each.
    #[arg(long, default_value_t = 1000)]
    pub slow: usize,
    /// With --soak: seconds between connect storms.
    #[arg(long, default_value_t = 10)]
    pub storm_every: u64,
    /// Instead of generating load: serve the floor on this address — a bare
    /// WebSocket broadcaster (tokio, writes coalesced, no auth, no protocol
    /// beyond what the generator needs) that --floor-url compares with.
    #[arg(long, value_name = "ADDR")]
    pub serve_floor: Option<SocketAddr>,
    /// Run the same measurement against the floor at this URL first (a
    /// `herald bench --serve-floor` pinned to the server's core) and report
    /// each figure beside the server's as × floor.
    #[arg(long, value_name = "URL")]
    pub floor_url: Option<String>,
    /// With --floor-url: the floor's process id, to read its memory and CPU.
    #[arg(long, value_name = "PID")]
    pub floor_pid: Option<u32>,
    /// The server's process id (`herald dev`, or the edge): its resident
    /// memory (before, peak during the run, and after) and CPU time per
    /// delivery are read from /proc (Linux) and reported.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// With --idle-connections: seconds to hold them before memory is read.
    #[arg(long, default_value_t = 2)]
    pub idle_hold: u64,
    /// After a fan-out run with --server-pid: longest wait, in seconds, for
    /// the server's memory to come back to its figure before the run.
    #[arg(long, default_value_t = 10)]
    pub settle: u64,
}

/// Where one measurement runs: the server under test, or the floor.
struct Target {
    label: &'static str,
    edges: Vec<SocketAddr>,
    token: String,
    pid: Option<u32>,
    pusher_key: Option<String>,
}

/// The floor and the server, in the order measured.
fn targets(floor: Option<Target>, server: Target) -> Vec<Target> {
    floor.into_iter().chain(std::iter::once(server)).collect()
}

/// `herald bench --serve-floor ADDR`: serves the floor until stopped.
pub async fn serve_floor(addr: SocketAddr) -> Result<()> {
    herald_bench::floor::serve(addr, |bound| {
        println!("floor listening on {bound}");
        let _ = std::io::stdout().flush();
    })
    .await
    .with_context(|| format!("serving the floor on {addr}"))
}

/// Prints one comparison line: the server's figure, the floor's and their
/// ratio.
fn compare(what: &str, unit: &str, floor: f64, server: f64) {
    let ratio = if floor > 0.0 { format!("{:.2}", server / floor) } else { "-".to_owned() };
    println!("{what:<28} {server:>14.2} {unit:<12} floor {floor:>14.2}   × floor {ratio}");
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
    if args.token.is_empty() {
        bail!("give --token or HERALD_TOKEN (`herald token` mints one)");
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
            Progress::Ready { subscribers } => {
                println!("ready: {subscribers} subscribers");
                let _ = std::io::stdout().flush();
            }
        }
        let _ = std::io::stderr().flush();
    };
    // The soak and the failover use --connect-storm, --idle-connections and
    // --rate as their own options: they come first.
    if let Some(seconds) = args.soak {
        return soak(seconds, edges[0], &args).await;
    }
    if let Some(n) = args.failover {
        return failover(n, edges, &args).await;
    }
    let floor = match &args.floor_url {
        Some(url) => Some(Target {
            label: "floor",
            edges: vec![resolve(url).await?],
            token: "none".to_owned(),
            pid: args.floor_pid,
            pusher_key: None,
        }),
        None => None,
    };
    let server = Target {
        label: "server",
        edges,
        token: args.token.clone(),
        pid: args.server_pid,
        pusher_key: args.pusher_key.clone(),
    };
    let targets = targets(floor, server);
    if let Some(n) = args.connect_storm {
        check_open_files(n);
        let timeout = Duration::from_secs(args.storm_timeout.max(1));
        let mut rates = Vec::new();
        for target in &targets {
            println!("[{}] connect storm: {n} clients at once against {}", target.label, target.edges[0]);
            let watch = target.pid.and_then(herald_bench::Watch::start);
            let report = herald_bench::connect_storm(target.edges[0], &target.token, n, timeout).await?;
            println!("{report}");
            // The server's CPU per connection tells its cost even when the
            // generator, not the server, sets the pace.
            let cpu = watch.map(|w| w.finish().cpu_seconds * 1e6 / report.connected.max(1) as f64);
            if let Some(cpu) = cpu {
                println!("server cpu:           {cpu:.1} µs per connection");
            }
            rates.push((report.connected as f64 / report.elapsed.as_secs_f64().max(1e-9), cpu));
        }
        if let [(floor, floor_cpu), (server, server_cpu)] = rates[..] {
            compare("connects/s", "/s", floor, server);
            if let (Some(floor), Some(server)) = (floor_cpu, server_cpu) {
                compare("cpu per connection", "µs", floor, server);
            }
        }
        return Ok(());
    }
    if let Some(n) = args.idle_connections {
        check_open_files(n);
        let subscriptions = match args.idle_subscribe {
            IdleSubscribe::Own => IdleSubscriptions::Own,
            IdleSubscribe::Shared => IdleSubscriptions::Shared(args.channel.clone()),
            IdleSubscribe::None => IdleSubscriptions::None,
        };
        let hold = Duration::from_secs(args.idle_hold);
        let mut per_connection = Vec::new();
        for target in &targets {
            let report = herald_bench::idle_memory(
                target.edges[0],
                &target.token,
                n,
                subscriptions.clone(),
                target.pid,
                hold,
                progress,
            )
            .await?;
            eprintln!();
            println!("[{}] idle connections:  {} held {} s", target.label, report.connections, hold.as_secs());
            println!("[{}] resident before:   {:.1} MiB", target.label, report.before as f64 / 1048576.0);
            println!("[{}] resident after:    {:.1} MiB", target.label, report.after as f64 / 1048576.0);
            println!("[{}] per connection:    {:.2} KiB", target.label, report.per_connection() / 1024.0);
            per_connection.push(report.per_connection() / 1024.0);
        }
        if let [floor, server] = per_connection[..] {
            compare("memory per idle connection", "KiB", floor, server);
        }
        return Ok(());
    }
    let mut figures = Vec::new();
    for target in &targets {
        let config = BenchConfig {
            edges: target.edges.clone(),
            token: target.token.clone(),
            channel: args.channel.clone(),
            subscribers: args.subscribers,
            messages: args.messages,
            payload_size: args.payload_size,
            rate: args.rate,
            publishers: args.publishers,
            window: args.window,
            sample_every: args.sample_every,
            grace: Duration::from_secs(10),
            max_lag: args.max_lag,
            pusher_key: target.pusher_key.clone(),
            ..BenchConfig::default()
        };
        println!(
            "[{}] bench: {} {}subscribers, {} messages of {} bytes, {} publisher(s), rate {}",
            target.label,
            config.subscribers,
            if config.pusher_key.is_some() { "Pusher " } else { "" },
            config.messages,
            config.payload_size,
            config.publishers,
            config.rate.map_or("unpaced".to_owned(), |r| format!("{r}/s"))
        );
        // The server's memory with every subscriber in and idle, taken
        // when the last one has connected: what it must come back to.
        let idle = std::cell::Cell::new(None);
        let total = config.subscribers;
        let watched = |p: Progress| {
            if let (Progress::Connecting { connected, .. }, Some(pid)) = (p, target.pid)
                && connected == total
            {
                idle.set(herald_bench::resident_memory(pid));
            }
            progress(p);
        };
        let watch = target.pid.and_then(herald_bench::Watch::start);
        if target.pid.is_some() && watch.is_none() {
            eprintln!("warning: cannot read /proc of process {:?}: no memory or CPU figures", target.pid);
        }
        let report = herald_bench::run(config, watched).await?;
        let usage = watch.map(herald_bench::Watch::finish);
        eprintln!();
        println!("{report}");
        let mut settled = None;
        if let (Some(usage), Some(pid)) = (usage, target.pid) {
            let per_delivery = usage.cpu_seconds * 1e6 / report.delivered.max(1) as f64;
            let idle = idle.get().unwrap_or(usage.rss_before);
            println!(
                "server cpu:           {:.2} s ({:.0}% in the kernel), {per_delivery:.3} µs per delivery",
                usage.cpu_seconds,
                usage.system_seconds * 100.0 / usage.cpu_seconds.max(f64::EPSILON)
            );
            println!(
                "server resident:      {:.1} MiB before, {:.1} MiB with the subscribers idle, {:.1} MiB at peak",
                usage.rss_before as f64 / 1048576.0,
                idle as f64 / 1048576.0,
                usage.rss_peak as f64 / 1048576.0
            );
            let limit = Duration::from_secs(args.settle);
            let (took, rss) = herald_bench::settle(pid, idle, limit).await;
            match took {
                Some(took) => println!(
                    "server resident after: {:.1} MiB, back within {:.1} s",
                    rss as f64 / 1048576.0,
                    took.as_secs_f64()
                ),
                None => println!(
                    "server resident after: {:.1} MiB, not back after {} s",
                    rss as f64 / 1048576.0,
                    limit.as_secs()
                ),
            }
            settled = Some(usage);
        }
        figures.push((report, settled));
    }
    if let [(floor, floor_usage), (server, server_usage)] = &figures[..] {
        println!("---");
        compare("deliveries/s", "/s", floor.deliveries_per_sec(), server.deliveries_per_sec());
        let ms = |r: &herald_bench::Report, q| r.latency.quantile(q).as_secs_f64() * 1000.0;
        compare("latency when read p50", "ms", ms(floor, 0.5), ms(server, 0.5));
        compare("latency when read p99", "ms", ms(floor, 0.99), ms(server, 0.99));
        if !floor.arrival.is_empty() && !server.arrival.is_empty() {
            let at = |r: &herald_bench::Report, q| r.arrival.quantile(q).as_secs_f64() * 1000.0;
            compare("latency at socket p50", "ms", at(floor, 0.5), at(server, 0.5));
            compare("latency at socket p99", "ms", at(floor, 0.99), at(server, 0.99));
        }
        if let (Some(f), Some(s)) = (floor_usage, server_usage) {
            let per = |u: &herald_bench::ServerUsage, r: &herald_bench::Report| {
                u.cpu_seconds * 1e6 / r.delivered.max(1) as f64
            };
            compare("cpu per delivery", "µs", per(f, floor), per(s, server));
            compare("peak resident", "MiB", f.rss_peak as f64 / 1048576.0, s.rss_peak as f64 / 1048576.0);
        }
        if floor.delivered < floor.expected {
            println!("note: the floor missed {} deliveries", floor.expected - floor.delivered);
        }
    }
    Ok(())
}

/// `herald bench --failover N`: runs the measurement and fails when
/// anything was lost silently, duplicated or left behind.
async fn failover(clients: usize, edges: Vec<SocketAddr>, args: &BenchArgs) -> Result<()> {
    use herald_bench::FailoverProgress;
    check_open_files(clients);
    let config = herald_bench::FailoverConfig {
        edges,
        token: args.token.clone(),
        clients,
        channels: (0..args.failover_channels.max(1)).map(|i| format!("{}-{i}", args.channel)).collect(),
        rate: args.rate.unwrap_or(100.0),
        payload_size: args.payload_size.max(16),
        warmup: Duration::from_secs(args.warmup),
        reconnect_delay: Duration::from_millis(args.reconnect_delay_ms),
        ..herald_bench::FailoverConfig::default()
    };
    println!(
        "failover: {clients} clients over {} edges, {} channels, {}/s published; then {} is killed",
        config.edges.len(),
        config.channels.len(),
        config.rate,
        config.edges[0]
    );
    let kill_pid = args.kill_pid;
    let kill = move || match kill_pid {
        Some(pid) => {
            let sent = rustix::process::Pid::from_raw(pid)
                .context("--kill-pid must be a positive process id")
                .and_then(|pid| Ok(rustix::process::kill_process(pid, rustix::process::Signal::KILL)?));
            match sent {
                Ok(()) => eprintln!("\nsent SIGKILL to {pid}"),
                Err(e) => eprintln!("\nSIGKILL to {pid} failed: {e:#}"),
            }
        }
        None => eprintln!("\nkill the first edge now"),
    };
    let progress = |p: FailoverProgress| {
        match p {
            FailoverProgress::Connecting { connected, total } => eprint!("\rconnecting {connected}/{total}        "),
            FailoverProgress::Running { published, resubscribed, orphans, elapsed } => eprint!(
                "\r{:>6.1}s  published {published}  resubscribed {resubscribed}/{orphans}        ",
                elapsed.as_secs_f64()
            ),
            FailoverProgress::Killed => {}
        }
        let _ = std::io::stderr().flush();
    };
    let report = herald_bench::failover(config, kill, progress).await?;
    eprintln!();
    println!("{report}");
    if !report.held() {
        bail!("the failover lost, duplicated or left behind messages, or clients did not come back");
    }
    Ok(())
}

/// `herald bench --soak SECONDS`: runs the soak and fails when the working
/// pair lost anything or an idle connection was dropped.
async fn soak(seconds: u64, edge: SocketAddr, args: &BenchArgs) -> Result<()> {
    let api = match &args.api_url {
        Some(url) => {
            let authority = url.strip_prefix("http://").with_context(|| format!("{url}: the soak speaks http://"))?;
            let authority = authority.split('/').next().unwrap_or(authority);
            let addr =
                tokio::net::lookup_host(authority).await.with_context(|| format!("resolving {authority}"))?.next();
            Some(addr.with_context(|| format!("{authority} has no address"))?)
        }
        None => None,
    };
    let config = herald_bench::SoakConfig {
        edge,
        api,
        app_id: args.app_id.clone(),
        api_key: args.api_key.clone(),
        token: args.token.clone(),
        channel: args.channel.clone(),
        duration: Duration::from_secs(seconds.max(1)),
        idle: args.idle_connections.unwrap_or(0),
        slow: args.slow,
        storm: args.connect_storm.unwrap_or(0),
        storm_every: Duration::from_secs(args.storm_every.max(1)),
        rate: args.rate.unwrap_or(50.0),
        ..herald_bench::SoakConfig::default()
    };
    check_open_files(config.idle + config.slow + config.storm + 2);
    println!(
        "soak: {seconds} s against {edge}: {} idle, {} slow requests, storms of {} every {} s, {}/s published",
        config.idle,
        config.slow,
        config.storm,
        config.storm_every.as_secs(),
        config.rate
    );
    let report = herald_bench::soak(config).await?;
    println!("{report}");
    if !report.held() {
        bail!("the soak harmed the working publisher and subscriber or dropped idle connections");
    }
    Ok(())
}
