//! `herald`: the one binary. It only parses the command line and calls into
//! the crates; every behaviour lives in a library crate and is tested there.

mod apps;
mod bench;
mod cli;
mod config_text;
mod console;
mod dev;
mod exit;
mod listen;
mod memory;
mod otel;
mod pusher_port;
mod settings;
mod webhooks;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use herald_bus::{Bus, NatsOptions};
use herald_edge::EdgeConfig;
use herald_proto::SubjectSpace;

use crate::exit::{Failure, explain_api_error};
use crate::settings::Overrides;

/// The version and the commit built (`herald --version`, `herald_build_info`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HERALD_COMMIT"), ")");

/// Herald: real-time pub/sub over WebSockets.
#[derive(Debug, Parser)]
#[command(name = "herald", version = VERSION, about, long_about = None)]
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
        /// Print the effective configuration as a TOML file that --config
        /// reads back (secrets left out, as comments), and exit.
        #[arg(long)]
        print_config: bool,
        #[command(flatten)]
        settings: Overrides<EdgeConfig>,
    },
    /// Run the control plane: apps, keys, tokens, REST and gRPC APIs, publishing.
    ControlPlane {
        /// Print the effective configuration as a TOML file that --config
        /// reads back (secrets left out, as comments), and exit.
        #[arg(long)]
        print_config: bool,
        /// Apply the database migrations and exit (for a deploy hook).
        #[arg(long)]
        migrate_only: bool,
        #[command(flatten)]
        settings: Overrides<herald_control_plane::Config>,
    },
    /// Run Herald embedded for development: control plane + one edge, SQLite, no services.
    Dev(dev::DevArgs),
    /// Manage apps (needs HERALD_ADMIN_TOKEN).
    Apps {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        #[command(subcommand)]
        command: apps::AppsCommand,
    },
    /// The web console: `herald console link` prints a one-time login link (needs HERALD_ADMIN_TOKEN).
    Console {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        #[command(subcommand)]
        command: console::ConsoleCommand,
    },
    /// Manage an app's API keys (needs HERALD_ADMIN_TOKEN).
    Keys {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        #[arg(long, env = "HERALD_APP_ID")]
        app_id: String,
        #[command(subcommand)]
        command: cli::KeysCommand,
    },
    /// Manage an app's channel namespaces: presence, history, client publishes (needs HERALD_ADMIN_TOKEN).
    Namespaces {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        #[arg(long, env = "HERALD_APP_ID")]
        app_id: String,
        #[command(subcommand)]
        command: cli::NamespacesCommand,
    },
    /// Manage an app's webhook endpoints (needs HERALD_ADMIN_TOKEN).
    Webhooks {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Mint a token for an end user with the API key; prints the JWT.
    Token {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, env = "HERALD_APP_ID")]
        app_id: String,
        #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
        api_key: String,
        /// The end user's id.
        #[arg(long, default_value = "herald-cli")]
        client_id: String,
        /// Capabilities as JSON (default: everything the key allows on every channel).
        #[arg(long)]
        capabilities: Option<String>,
        /// Lifetime in seconds (default 1 h, at most 24 h).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Publish DATA (JSON, or text) to CHANNEL through the REST API.
    Publish {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, env = "HERALD_APP_ID")]
        app_id: String,
        #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
        api_key: String,
        /// The channel.
        channel: String,
        /// The data: JSON when it parses as JSON, text otherwise.
        data: String,
        /// Event name.
        #[arg(long)]
        event: Option<String>,
        /// Idempotency id.
        #[arg(long)]
        id: Option<String>,
    },
    /// Print each message of CHANNEL on its own line (reconnects on its own).
    Subscribe {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[arg(long, env = "HERALD_APP_ID")]
        app_id: Option<String>,
        #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        #[command(flatten)]
        args: cli::SubscribeArgs,
    },
    /// Load-test a deployment: N subscribers, M messages; prints deliveries/s and latency.
    Bench(Box<bench::BenchArgs>),
    /// Print the close-code and error-code tables of the client protocol (Markdown).
    Codes,
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check FILE as `herald edge` or `herald control-plane` would read it:
    /// syntax, unknown keys, values, and the checks across keys. Prints
    /// which component it is valid for; exit code 3 and the bad key with its
    /// line otherwise.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
        /// The component it is for (default: told from its keys).
        #[arg(long, value_enum)]
        component: Option<config_text::Component>,
    },
}

fn init_tracing(format: &str) {
    // Without an exporter the subscriber cannot fail to build.
    let _ = otel::Logging::install(format, None);
}

/// Client commands log warnings only, to keep their output clean.
fn init_tracing_quiet(format: &str) {
    if std::env::var_os("HERALD_LOG").is_none() {
        // SAFETY: single-threaded at this point (before any runtime starts).
        unsafe { std::env::set_var("HERALD_LOG", "warn") };
    }
    init_tracing(format);
}

/// Raises the soft limit on open files to the hard limit: every client
/// connection is a file, and a soft limit of 1,024 (a common default) would
/// cap an edge far below `max_connections`. Logged; a failure only warns.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current == limit.maximum {
            tracing::debug!(open_files = ?limit.current, "open files limit already at its maximum");
            return;
        }
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::info!(from = ?limit.current, to = ?limit.maximum, "open files limit raised"),
            Err(e) => tracing::warn!(error = %e, soft = ?limit.current, "open files limit not raised"),
        }
    }
}

/// The runtime of a server command (`dev`, `control-plane`, `edge`): a
/// worker per core, and the task that gives freed memory back.
fn server_runtime() -> Result<tokio::runtime::Runtime> {
    let runtime = tokio::runtime::Runtime::new()?;
    let _entered = runtime.enter();
    memory::spawn_trimmer();
    Ok(runtime)
}

fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
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
    listen::warn_if_capped("listen_backlog", config.listen_backlog);
    let listener = listen::bind(config.listen, config.listen_backlog)
        .with_context(|| format!("binding the edge to {}", config.listen))?;
    let options = NatsOptions {
        connection_name: format!("herald-edge {}", config.edge_id),
        channel_routing: config.channel_routing()?,
        ..NatsOptions::default()
    };
    let bus = Bus::connect_nats(&config.nats_url, subjects, options)
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats_url))
        .context(Failure::Unreachable)?;
    herald_edge::run(listener, config, bus, shutdown_signal()).await?;
    Ok(())
}

async fn run_control_plane(config: herald_control_plane::Config) -> Result<()> {
    config.validate()?;
    let subjects = SubjectSpace::new(&config.subject_prefix)?;
    listen::warn_if_capped("listen_backlog", config.listen_backlog);
    let listener = listen::bind(config.listen, config.listen_backlog)
        .with_context(|| format!("binding the control plane to {}", config.listen))?;
    let options = NatsOptions { connection_name: "herald-control-plane".into(), ..NatsOptions::default() };
    let bus = Bus::connect_nats(&config.nats_url, subjects, options)
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats_url))
        .context(Failure::Unreachable)?;
    herald_control_plane::run(listener, config, bus.clone(), shutdown_signal()).await?;
    bus.close().await;
    Ok(())
}

async fn migrate(config: herald_control_plane::Config) -> Result<()> {
    config.validate()?;
    let store = herald_control_plane::store::Store::connect(&config.database_url, 1, config.database_acquire_timeout.0)
        .await
        .context("connecting to the database and applying migrations")?;
    store.close().await;
    tracing::info!("migrations applied");
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(Failure::of(&e).map_or(1, Failure::code))
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    herald_bus::telemetry::set_build_info(env!("CARGO_PKG_VERSION"), env!("HERALD_COMMIT"));
    // One crypto provider for every TLS user in the process (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Codes => {
            print!("{}", herald_proto::codes::markdown_tables());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Check { file, component } } => {
            let valid_for = config_text::check_file(&file, component).context(Failure::Config)?;
            let name = match valid_for {
                config_text::Component::Edge => "herald edge",
                config_text::Component::ControlPlane => "herald control-plane",
            };
            println!("{}: valid configuration for `{name}`", file.display());
            Ok(())
        }
        Command::Apps { api, admin_token, command } => {
            let url = api.api_url.clone();
            client_runtime()?.block_on(apps::apps(api, admin_token, command)).map_err(|e| explain_api_error(e, &url))
        }
        Command::Console { api, admin_token, command } => {
            let url = api.api_url.clone();
            client_runtime()?
                .block_on(console::console(api, admin_token, command))
                .map_err(|e| explain_api_error(e, &url))
        }
        Command::Keys { api, admin_token, app_id, command } => {
            let url = api.api_url.clone();
            client_runtime()?
                .block_on(cli::keys(api, admin_token, app_id, command))
                .map_err(|e| explain_api_error(e, &url))
        }
        Command::Namespaces { api, admin_token, app_id, command } => {
            let url = api.api_url.clone();
            client_runtime()?
                .block_on(cli::namespaces(api, admin_token, app_id, command))
                .map_err(|e| explain_api_error(e, &url))
        }
        Command::Webhooks { api, admin_token, command } => {
            let url = api.api_url.clone();
            client_runtime()?.block_on(webhooks::run(api, admin_token, command)).map_err(|e| explain_api_error(e, &url))
        }
        Command::Token { api, app_id, api_key, client_id, capabilities, ttl } => {
            let url = api.api_url.clone();
            client_runtime()?
                .block_on(cli::token(api, app_id, api_key, client_id, capabilities, ttl))
                .map_err(|e| explain_api_error(e, &url))
        }
        Command::Publish { api, app_id, api_key, channel, data, event, id } => {
            let url = api.api_url.clone();
            client_runtime()?
                .block_on(cli::publish(api, app_id, api_key, channel, data, event, id))
                .map_err(|e| explain_api_error(e, &url))
        }
        Command::Subscribe { api, app_id, api_key, args } => {
            init_tracing_quiet(&cli.log_format);
            let url = api.api_url.clone();
            client_runtime()?
                .block_on(cli::subscribe(api, app_id, api_key, args))
                .map_err(|e| explain_api_error(e, &url))
        }
        Command::Bench(args) => {
            raise_open_files_limit();
            if let Some(addr) = args.serve_floor {
                // The floor runs as the edge does: a worker per core it may use.
                return tokio::runtime::Runtime::new()?.block_on(bench::serve_floor(addr));
            }
            // One core for the generator: a single-threaded runtime.
            tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(bench::run(*args))
        }
        Command::Dev(args) => {
            let mut cp = dev::control_plane_defaults();
            let mut edge = dev::edge_defaults();
            cp.apply_env(std::env::vars())?;
            edge.apply_env(std::env::vars())?;
            let runtime = server_runtime()?;
            // One process, one exporter: the control plane's settings.
            let otlp = otel::Otlp::new(&cp.otlp_endpoint, cp.otlp_sample_ratio, "herald-dev");
            let logging = runtime.block_on(async { otel::Logging::install(&cli.log_format, otlp.as_ref()) })?;
            raise_open_files_limit();
            let result = runtime.block_on(dev::run(args, cp, edge, shutdown_signal()));
            logging.shutdown();
            result
        }
        Command::ControlPlane { print_config, migrate_only, settings } => {
            // While loading, a renamed key read warns on stderr.
            let loading = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).finish();
            let config = tracing::subscriber::with_default(loading, || settings.load()).context(Failure::Config)?;
            if print_config {
                print!("{}", config_text::to_toml(&config, true));
                return Ok(());
            }
            let runtime = server_runtime()?;
            let otlp = otel::Otlp::new(&config.otlp_endpoint, config.otlp_sample_ratio, "herald-control-plane");
            let logging = runtime.block_on(async { otel::Logging::install(&cli.log_format, otlp.as_ref()) })?;
            raise_open_files_limit();
            let result = if migrate_only {
                runtime.block_on(migrate(config))
            } else {
                tracing::info!(config = %config_text::one_line(&config), "starting control plane");
                runtime.block_on(run_control_plane(config))
            };
            logging.shutdown();
            result
        }
        Command::Edge { print_config, settings } => {
            let config = settings.load().context(Failure::Config)?;
            if print_config {
                print!("{}", config_text::to_toml(&config, true));
                return Ok(());
            }
            let runtime = server_runtime()?;
            let otlp = otel::Otlp::new(&config.otlp_endpoint, config.otlp_sample_ratio, "herald-edge");
            let logging = runtime.block_on(async { otel::Logging::install(&cli.log_format, otlp.as_ref()) })?;
            raise_open_files_limit();
            tracing::info!(config = %config_text::one_line(&config), "starting edge");
            let result = runtime.block_on(run_edge(config));
            logging.shutdown();
            result
        }
    }
}
