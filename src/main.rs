//! `herald`: the one binary. It only parses the command line and calls into
//! the crates; every behaviour lives in a library crate and is tested there.

mod bench;
mod dev;
mod settings;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use herald_edge::EdgeConfig;
use herald_edge::backplane::{Backplane, NatsOptions};
use herald_proto::SubjectSpace;

use crate::settings::{Overrides, redacted_toml};

/// Herald: real-time pub/sub over WebSockets.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "HERALD_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an edge: WebSocket connections and fan-out over NATS.
    Edge {
        /// Print the effective configuration (secrets redacted) and exit.
        #[arg(long)]
        print_config: bool,
        #[command(flatten)]
        settings: Overrides<EdgeConfig>,
    },
    /// Run Herald embedded for development: control plane + one edge, SQLite, no services.
    Dev(dev::DevArgs),
    /// Load-test a deployment: N subscribers, M messages; prints deliveries/s and latency.
    Bench(bench::BenchArgs),
    /// Print the close-code and error-code tables of the client protocol (Markdown).
    Codes,
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}

async fn run_edge(config: EdgeConfig) -> Result<()> {
    config.validate()?;
    let subjects = SubjectSpace::new(&config.subject_prefix)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the edge to {}", config.listen))?;
    let options = NatsOptions { connection_name: format!("herald-edge {}", config.edge_id), ..NatsOptions::default() };
    let backplane = Backplane::connect_nats(&config.nats_url, subjects, options)
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats_url))?;
    herald_edge::run(listener, config, backplane, shutdown_signal()).await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // One crypto provider for every TLS user in the process (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Codes => {
            print!("{}", herald_proto::codes::markdown_tables());
            Ok(())
        }
        Command::Bench(args) => {
            // One core for the generator: a single-threaded runtime.
            tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(bench::run(args))
        }
        Command::Dev(args) => {
            init_tracing(&cli.log_format);
            let mut cp = herald_control_plane::Config::default();
            cp.apply_env(std::env::vars())?;
            let mut edge = EdgeConfig::default();
            edge.apply_env(std::env::vars())?;
            tokio::runtime::Runtime::new()?.block_on(dev::run(args, cp, edge, shutdown_signal()))
        }
        Command::Edge { print_config, settings } => {
            let config = settings.load()?;
            if print_config {
                print!("{}", redacted_toml(&config));
                return Ok(());
            }
            init_tracing(&cli.log_format);
            tracing::info!(config = %redacted_toml(&config), "starting edge");
            tokio::runtime::Runtime::new()?.block_on(run_edge(config))
        }
    }
}
