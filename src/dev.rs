//! `herald dev`: the control plane and one edge in one process, SQLite in a
//! data folder, the in-process bus — no services needed.
//!
//! Channel history (namespaces with history) is kept in `DIR/history.log`
//! (the bus's `LocalHistory` file), so it, its epochs and sequence numbers
//! survive a restart and clients recover from their last position.
//!
//! On first start it creates an admin token, a `demo` app (in Pusher mode,
//! with client events) and an API key with a Pusher secret, and writes them
//! to `DIR/dev.json`; later starts reuse them (and the signing keys in the
//! database, so tokens minted before a restart still verify).
//!
//! Pusher mode is served on one address for the WebSocket and the HTTP API
//! (`--pusher-addr`, 127.0.0.1:6001 by default; see the `pusher_port`
//! module). When the default address is taken, `herald dev` says so and
//! runs without it; an explicit address that cannot be bound is an error.
//!
//! Each start also makes a one-time login link of the web console,
//! printed first among its `/console` URLs and written to `dev.json` as
//! `console_url`.
//!
//! `--webhook-url URL` registers a webhook endpoint for the demo app with
//! every event type (Pusher format when the URL's path contains `pusher`,
//! or `--webhook-format`), kept with its secret across restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use herald_bus::{Bus, LocalBus};
use herald_control_plane::auth::Principal;
use herald_control_plane::services::AppSpec;
use herald_control_plane::services::webhooks::{WebhookPatch, WebhookSpec};
use herald_control_plane::{Config as CpConfig, ControlPlane, Secret};
use herald_edge::EdgeConfig;
use herald_proto::webhook::EventKind;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What `dev.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevState {
    pub api_url: String,
    pub edge_url: String,
    pub admin_token: String,
    pub app_id: String,
    pub api_key: String,
    /// The Pusher address's URL (`http://host:port`), when it is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher_port: Option<u16>,
    /// The demo app's Pusher `app_id`, `key` and `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher_app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher_secret: Option<String>,
    /// The demo app's webhook endpoint of `--webhook-url`, its id, format
    /// and signing secret (the Herald format's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// A one-time login link of the web console, made at this start (it
    /// signs in once; the next start makes another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
}

/// The demo app's id.
const DEMO_APP: &str = "demo";

/// Options of `herald dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Folder for the SQLite database and dev.json.
    #[arg(long, env = "HERALD_DEV_DATA_DIR", default_value = "herald-data")]
    pub data_dir: PathBuf,
    /// Address of the REST/gRPC API.
    #[arg(long, env = "HERALD_DEV_API_ADDR", default_value = "127.0.0.1:8080")]
    pub api_addr: SocketAddr,
    /// Address of the edge (WebSocket connections).
    #[arg(long, env = "HERALD_DEV_EDGE_ADDR", default_value = "127.0.0.1:8081")]
    pub edge_addr: SocketAddr,
    /// Address of Pusher mode: pusher-js's WebSocket (/app/KEY) and the
    /// Pusher HTTP API (/apps/ID/...) on one port [default: 127.0.0.1:6001,
    /// skipped with a note when taken; 127.0.0.1:0 picks a free port].
    #[arg(long, env = "HERALD_DEV_PUSHER_ADDR")]
    pub pusher_addr: Option<SocketAddr>,
    /// Register a webhook endpoint for the demo app at this URL with every
    /// event type (kept across restarts; loopback addresses allowed).
    #[arg(long, env = "HERALD_DEV_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The endpoint's format, `herald` or `pusher` [default: pusher when the
    /// URL's path contains "pusher", else herald].
    #[arg(long, env = "HERALD_DEV_WEBHOOK_FORMAT", value_parser = ["herald", "pusher"])]
    pub webhook_format: Option<String>,
}

/// The format of `--webhook-url`: the flag's, else Pusher's when the URL's
/// path says `pusher`.
fn webhook_format(url: &str, flag: Option<&str>) -> &'static str {
    match flag {
        Some("pusher") => "pusher",
        Some(_) => "herald",
        None => {
            let path = url.split_once("://").map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
            if path.to_ascii_lowercase().contains("pusher") { "pusher" } else { "herald" }
        }
    }
}

/// The demo app's endpoint for `--webhook-url`: the one registered by an
/// earlier start when it has the same URL (its secret kept, its events and
/// format brought up to date), else a new one. Returns (id, format, secret).
async fn dev_webhook(
    core: &herald_control_plane::Core,
    url: &str,
    format: &str,
    previous: Option<&DevState>,
) -> Result<(String, String)> {
    let events: Vec<String> = EventKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
    let kept = previous.and_then(|p| Some((p.webhook_id.clone()?, p.webhook_secret.clone()?, p.webhook_url.clone()?)));
    if let Some((id, secret, old_url)) = kept
        && old_url == url
        && core.get_webhook(&Principal::Admin, DEMO_APP, &id).await.is_ok()
    {
        let patch = WebhookPatch {
            events: Some(events),
            format: Some(format.to_owned()),
            enabled: Some(true),
            ..WebhookPatch::default()
        };
        core.update_webhook(&Principal::Admin, DEMO_APP, &id, patch).await?;
        return Ok((id, secret));
    }
    let spec = WebhookSpec { url: url.to_owned(), events, format: Some(format.to_owned()), filter: None };
    let created = core.create_webhook(&Principal::Admin, DEMO_APP, spec).await?;
    Ok((created.id, created.secret))
}

/// Where `herald dev` serves Pusher mode unless told otherwise: the port
/// Soketi and laravel-websockets users already have in their config.
const DEFAULT_PUSHER_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 6001);

/// Binds the Pusher address: an explicit one must bind; the default may be
/// taken (then `None`, with a note).
async fn bind_pusher(
    explicit: Option<SocketAddr>,
    default: SocketAddr,
    backlog: u32,
) -> Result<Option<tokio::net::TcpListener>> {
    let addr = explicit.unwrap_or(default);
    match crate::listen::bind(addr, backlog) {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if explicit.is_none() => {
            eprintln!("note: {addr} is taken ({e}); running without Pusher mode's address (give --pusher-addr)");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding Pusher mode's address {addr}")),
    }
}

fn local_url(addr: SocketAddr) -> String {
    // A wildcard address is reachable on loopback.
    let host = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
    host.to_string()
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(format!("hadm_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

fn read_state(path: &Path) -> Result<Option<DevState>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_state(path: &Path, state: &DevState) -> Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Connections per app by default in development (production: 10,000).
pub const DEV_MAX_CONNECTIONS: u32 = 1_000_000;

/// REST publishes per second per app by default in development
/// (production: 1,000): high enough never to be the bottleneck.
pub const DEV_PUBLISH_RATE_PER_SEC: u32 = 1_000_000_000;

/// The control plane's settings before the environment's: production's,
/// with generous per-app limits (a benchmark or a load test against `herald
/// dev` measures Herald, not a quota) and webhook receivers allowed on this
/// machine. `HERALD_CP_DEFAULT_MAX_CONNECTIONS` and
/// `HERALD_CP_DEFAULT_PUBLISH_RATE_PER_SEC` still override them.
#[must_use]
pub fn control_plane_defaults() -> CpConfig {
    CpConfig {
        webhook_allow_private_urls: true,
        default_max_connections: DEV_MAX_CONNECTIONS,
        default_publish_rate_per_sec: DEV_PUBLISH_RATE_PER_SEC,
        ..CpConfig::default()
    }
}

/// The edge's settings before the environment's: production's, accepting as
/// many connections as an app may have in development
/// (`HERALD_EDGE_MAX_CONNECTIONS` overrides it).
#[must_use]
pub fn edge_defaults() -> EdgeConfig {
    EdgeConfig { max_connections: DEV_MAX_CONNECTIONS, ..EdgeConfig::default() }
}

/// Runs `herald dev` until `shutdown` resolves.
pub async fn run(
    args: DevArgs,
    mut cp_config: CpConfig,
    mut edge_config: EdgeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let state_path = args.data_dir.join("dev.json");
    let previous = read_state(&state_path)?;
    let admin_token = match &previous {
        Some(s) => s.admin_token.clone(),
        None => random_token()?,
    };
    let db = args.data_dir.join("control-plane.db");
    cp_config.database_url = format!("sqlite://{}", db.display());
    cp_config.admin_token = Some(Secret::new(admin_token.clone()));
    // Development: webhook receivers on this machine are the usual case.
    cp_config.webhook_allow_private_urls = true;

    crate::listen::warn_if_capped("HERALD_CP_LISTEN_BACKLOG", cp_config.listen_backlog);
    crate::listen::warn_if_capped("HERALD_EDGE_LISTEN_BACKLOG", edge_config.listen_backlog);
    let api_listener = crate::listen::bind(args.api_addr, cp_config.listen_backlog)
        .with_context(|| format!("binding the API to {}", args.api_addr))?;
    let edge_listener = crate::listen::bind(args.edge_addr, edge_config.listen_backlog)
        .with_context(|| format!("binding the edge to {}", args.edge_addr))?;
    let pusher_listener =
        bind_pusher(args.pusher_addr, SocketAddr::from(DEFAULT_PUSHER_ADDR), edge_config.listen_backlog).await?;
    let api_addr = api_listener.local_addr()?;
    let edge_addr = edge_listener.local_addr()?;

    let (console_enabled, console_addr) = (cp_config.console_enabled, cp_config.console_addr);
    let history_path = args.data_dir.join("history.log");
    let bus = LocalBus::with_history_file(&history_path)
        .with_context(|| format!("opening the channel history in {}", history_path.display()))?;
    let cp = ControlPlane::new(cp_config, Bus::local(&bus)).await?;
    let core = cp.core().clone();

    // The demo app and its key (with a Pusher secret), created once; Pusher
    // mode with client events, its numeric Pusher app id kept from start to
    // start.
    let app_exists = core.get_app(&Principal::Admin, DEMO_APP).await.is_ok();
    if !app_exists {
        let spec = AppSpec { name: Some("Demo".into()), ..AppSpec::default() };
        core.create_app(&Principal::Admin, Some(DEMO_APP), spec).await?;
    }
    let (api_key, pusher_secret) = match &previous {
        Some(DevState { api_key, pusher_secret: Some(secret), .. }) if app_exists => (api_key.clone(), secret.clone()),
        _ => {
            let (_, key, pusher_secret) = core.create_pusher_key(&Principal::Admin, DEMO_APP, "dev", None).await?;
            (key, pusher_secret)
        }
    };
    let client_events = !app_exists || previous.as_ref().is_none_or(|p| p.pusher_secret.is_none());
    let demo = if client_events {
        core.enable_pusher(&Principal::Admin, DEMO_APP, true).await?
    } else {
        // Keep what was changed since (client events turned off, say).
        let current = core.get_app(&Principal::Admin, DEMO_APP).await?;
        core.enable_pusher(&Principal::Admin, DEMO_APP, current.pusher.client_events).await?
    };
    let pusher_app_id =
        demo.pusher.app_id.map(|id| id.to_string()).context("Pusher mode gives the demo app a Pusher app id")?;
    let webhook = match &args.webhook_url {
        Some(url) => {
            let format = webhook_format(url, args.webhook_format.as_deref());
            let (id, secret) = dev_webhook(&core, url, format, previous.as_ref())
                .await
                .with_context(|| format!("registering the webhook endpoint {url}"))?;
            Some((url.clone(), id, format.to_owned(), secret))
        }
        None => None,
    };
    let console_url = if console_enabled {
        let token =
            herald_control_plane::console::create_login_link(&core).await.context("creating a console login link")?;
        let base = console_addr.map_or_else(|| local_url(api_addr), local_url);
        Some(format!("http://{base}/console/login/{token}"))
    } else {
        None
    };
    let pusher_addr = pusher_listener.as_ref().map(tokio::net::TcpListener::local_addr).transpose()?;
    let pusher_local = pusher_addr.map(|a| local_url(a).parse::<SocketAddr>()).transpose()?;
    let state = DevState {
        api_url: format!("http://{}", local_url(api_addr)),
        edge_url: format!("ws://{}{}", local_url(edge_addr), herald_proto::CONNECT_PATH),
        admin_token,
        app_id: DEMO_APP.to_owned(),
        api_key,
        pusher_url: pusher_local.map(|a| format!("http://{a}")),
        pusher_host: pusher_local.map(|a| a.ip().to_string()),
        pusher_port: pusher_local.map(|a| a.port()),
        pusher_app_id: Some(pusher_app_id),
        pusher_key: Some(DEMO_APP.to_owned()),
        pusher_secret: Some(pusher_secret),
        webhook_url: webhook.as_ref().map(|w| w.0.clone()),
        webhook_id: webhook.as_ref().map(|w| w.1.clone()),
        webhook_format: webhook.as_ref().map(|w| w.2.clone()),
        webhook_secret: webhook.as_ref().map(|w| w.3.clone()),
        console_url,
    };
    write_state(&state_path, &state)?;

    edge_config.jwks_url = format!("{}/.well-known/jwks.json", state.api_url);
    // Development: no per-connection publish rate unless one is asked for,
    // so `herald bench` against `herald dev` measures the edge.
    if std::env::var_os("HERALD_EDGE_PUBLISH_RATE").is_none() {
        edge_config.publish_rate = 0;
    }
    if edge_config.edge_id.is_empty() {
        edge_config.edge_id = "dev-edge".into();
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let cp_task = tokio::spawn(cp.serve(api_listener, stopped(stop_rx.clone())));
    if let Some(listener) = pusher_listener {
        tokio::spawn(crate::pusher_port::serve(listener, edge_addr, api_addr, stopped(stop_rx.clone())));
    }
    let edge_task = tokio::spawn(herald_edge::run(edge_listener, edge_config, Bus::local(&bus), stopped(stop_rx)));

    print_welcome(&state, &state_path);
    shutdown.await;
    let _ = stop_tx.send(true);
    edge_task.await.context("edge task")??;
    cp_task.await.context("control plane task")??;
    Ok(())
}

fn print_welcome(s: &DevState, path: &Path) {
    println!(
        r#"
Herald is running (embedded: control plane + edge, SQLite, in-process bus).

  REST/gRPC API  {api}
{console}  Edge           {edge}
  App            {app}
  Saved to       {path}

Next, in another terminal:

  export HERALD_API_URL={api} HERALD_EDGE_URL={edge} \
         HERALD_APP_ID={app} HERALD_API_KEY={key} HERALD_ADMIN_TOKEN={admin}

  cargo run -- subscribe chat                 # waits for messages on channel "chat"

and in a third:

  curl -X POST "$HERALD_API_URL/v1/apps/$HERALD_APP_ID/channels/chat/messages" \
       -H "Authorization: Bearer $HERALD_API_KEY" -H 'Content-Type: application/json' \
       -d '{{"data": {{"text": "hello"}}}}'
  cargo run -- publish chat '{{"text": "hi again"}}'
{pusher}
Stop with Ctrl-C.
"#,
        api = s.api_url,
        console = s
            .console_url
            .as_ref()
            .map(|u| format!("  Console        {u} (one-time sign-in link)\n"))
            .unwrap_or_default(),
        edge = s.edge_url,
        app = s.app_id,
        key = s.api_key,
        admin = s.admin_token,
        path = path.display(),
        pusher = pusher_welcome(s) + &webhook_welcome(s),
    );
}

fn webhook_welcome(s: &DevState) -> String {
    let (Some(url), Some(format), Some(secret)) = (&s.webhook_url, &s.webhook_format, &s.webhook_secret) else {
        return String::new();
    };
    let signing = if format == "pusher" {
        "signed with pusher_secret above (X-Pusher-Signature)".to_owned()
    } else {
        format!("signing secret {secret}")
    };
    format!(
        r#"
Webhooks (docs/webhooks.md): every event of the demo app is POSTed to

  {url}   ({format} format, {signing})
"#
    )
}

fn pusher_welcome(s: &DevState) -> String {
    let (Some(url), Some(host), Some(port), Some(app_id), Some(key), Some(secret)) =
        (&s.pusher_url, &s.pusher_host, &s.pusher_port, &s.pusher_app_id, &s.pusher_key, &s.pusher_secret)
    else {
        return String::new();
    };
    format!(
        r#"
Pusher mode (pusher-js, Laravel Echo, Pusher's server libraries; docs/pusher.md):

  pusher_url     {url}   (host {host}, port {port}, no TLS)
  pusher_app_id  {app_id}
  pusher_key     {key}
  pusher_secret  {secret}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_format_follows_the_flag_then_the_path() {
        assert_eq!(webhook_format("http://127.0.0.1:9000/pusher/hooks", None), "pusher");
        assert_eq!(webhook_format("http://pusher.example.com/hooks", None), "herald");
        assert_eq!(webhook_format("http://127.0.0.1:9000/pusher", Some("herald")), "herald");
        assert_eq!(webhook_format("http://127.0.0.1:9000/", Some("pusher")), "pusher");
    }

    #[tokio::test]
    async fn the_pusher_address_may_be_taken_only_when_it_is_the_default() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr");
        // The default, taken: run without it.
        assert!(bind_pusher(None, addr, 128).await.expect("not an error").is_none());
        // Asked for, taken: an error naming the address.
        let err = bind_pusher(Some(addr), addr, 128).await.expect_err("taken");
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
        // Port 0: any free port.
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = bind_pusher(Some(any), addr, 128).await.expect("binds").expect("a listener");
        assert_ne!(listener.local_addr().expect("addr").port(), 0);
    }
}
