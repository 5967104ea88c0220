//! `herald apps …` (admin token): create, change, disable and enable,
//! list and delete apps, and read an app's usage and live debug events,
//! over the gRPC admin, stats and debug APIs.

use anyhow::Result;
use herald_proto::api;
use herald_proto::api::debug_service_client::DebugServiceClient;
use herald_proto::api::stats_service_client::StatsServiceClient;

use crate::cli::{ApiArgs, admin, authorized, connect, status};

/// Pusher mode flags of `herald apps create` and `update`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PusherArgs {
    /// Pusher mode: Pusher clients at /app/<app id> on edges, Pusher's HTTP API at /apps/<Pusher app id> (=false: off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pusher: Option<bool>,
    /// Pusher clients may send client- events (=false: may not).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pusher_client_events: Option<bool>,
    /// The numeric Pusher app id (appId) to keep, e.g. when moving from Pusher; drawn when Pusher mode is on without one.
    #[arg(long, value_name = "N")]
    pub pusher_app_id: Option<String>,
}

impl PusherArgs {
    /// The Pusher settings to set, if any flag was given.
    fn update(self) -> Option<api::PusherSettingsUpdate> {
        let given = self.pusher.is_some() || self.pusher_client_events.is_some() || self.pusher_app_id.is_some();
        given.then(|| api::PusherSettingsUpdate {
            enabled: self.pusher,
            client_events: self.pusher_client_events,
            app_id: self.pusher_app_id,
            ..Default::default()
        })
    }
}

/// `herald apps …` (admin token).
#[derive(Debug, clap::Subcommand)]
pub enum AppsCommand {
    /// Create an app; prints its id (and, in Pusher mode, its Pusher app id on a second line).
    Create {
        /// Display name.
        name: String,
        /// Allowed Origin values (repeat; none = every origin).
        #[arg(long = "origin")]
        origins: Vec<String>,
        #[command(flatten)]
        pusher: PusherArgs,
    },
    /// Change an app's name, quotas or Pusher mode; in Pusher mode, prints its Pusher app id.
    Update {
        /// The app's id.
        id: String,
        /// A new display name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        pusher: PusherArgs,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// Show an app's usage: one line per minute, hour or day with usage, newest first.
    Stats {
        /// The app's id.
        id: String,
        /// minute, hour or day.
        #[arg(long, default_value = "minute")]
        unit: String,
        /// Intervals starting at or after this time (Unix ms).
        #[arg(long)]
        start: Option<i64>,
        /// Intervals starting at or before this time (Unix ms; default now).
        #[arg(long)]
        end: Option<i64>,
        /// Most lines.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Disable an app: its API keys are refused (403 app_disabled), edges close its connections, and its tokens minted before are refused; nothing is deleted.
    Disable {
        /// The app's id.
        id: String,
        /// Why, shown to the app's callers (at most 200 bytes).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enable a disabled app again: its keys work and new tokens connect (tokens minted before the disable stay refused).
    Enable {
        /// The app's id.
        id: String,
    },
    /// List apps (a disabled one says so, with its reason).
    List,
    /// Delete an app: its keys, namespaces and history go, and edges close
    /// its connections and refuse its tokens.
    Delete {
        /// The app's id.
        id: String,
    },
    /// Tail an app's live debug events (connects, subscribes, publishes, refusals, webhook deliveries), one line each, until interrupted.
    Debug {
        /// The app's id.
        id: String,
        /// Only events about channels whose name starts with this.
        #[arg(long)]
        channel: Option<String>,
        /// Only these types, comma-separated: publish, connect, disconnect, subscribe, unsubscribe, refusal, webhook.
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
    },
}

/// Quota flags of `herald apps update` (0 removes a quota).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct QuotaArgs {
    /// Most messages published per UTC day (0: no quota).
    #[arg(long, value_name = "N")]
    pub quota_messages_per_day: Option<u64>,
    /// Most messages published per UTC month (0: no quota).
    #[arg(long, value_name = "N")]
    pub quota_messages_per_month: Option<u64>,
    /// Most concurrent connections across edges (0: no quota).
    #[arg(long, value_name = "N")]
    pub quota_connections: Option<u32>,
}

impl QuotaArgs {
    /// The limits to change, if any flag was given.
    fn update(self) -> Option<api::AppLimitsUpdate> {
        let given = self.quota_messages_per_day.is_some()
            || self.quota_messages_per_month.is_some()
            || self.quota_connections.is_some();
        given.then(|| api::AppLimitsUpdate {
            quota_messages_per_day: self.quota_messages_per_day,
            quota_messages_per_month: self.quota_messages_per_month,
            quota_connections: self.quota_connections,
            ..Default::default()
        })
    }
}

/// `herald apps …`.
pub async fn apps(api: ApiArgs, admin_token: String, command: AppsCommand) -> Result<()> {
    let mut client = admin(&api).await?;
    match command {
        AppsCommand::Create { name, origins, pusher } => {
            let pusher = pusher.update();
            let request = api::CreateAppRequest { name, allowed_origins: origins, pusher, ..Default::default() };
            let app = client.create_app(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            println!("{}", app.id);
            print_pusher_app_id(&app);
        }
        AppsCommand::Update { id, name, pusher, quotas } => {
            let request = api::UpdateAppRequest {
                app_id: id,
                name,
                pusher: pusher.update(),
                limits: quotas.update(),
                ..Default::default()
            };
            let app = client.update_app(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            eprintln!("app {} updated", app.id);
            print_pusher_app_id(&app);
        }
        AppsCommand::Disable { id, reason } => {
            let request = api::UpdateAppRequest {
                app_id: id,
                disabled: Some(true),
                disabled_reason: reason,
                ..Default::default()
            };
            let app = client.update_app(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            println!("disabled {}", app.id);
        }
        AppsCommand::Enable { id } => {
            let request = api::UpdateAppRequest { app_id: id, disabled: Some(false), ..Default::default() };
            let app = client.update_app(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            println!("enabled {}", app.id);
        }
        AppsCommand::List => {
            let apps = client.list_apps(authorized(api::ListAppsRequest {}, &admin_token)?).await.map_err(status)?;
            for app in apps.into_inner().apps {
                let mut line = format!("{}\t{}", app.id, app.name);
                if let Some(p) = app.pusher.filter(|p| p.enabled) {
                    line.push_str(&format!("\tpusher app_id {}", p.app_id));
                }
                match app.disabled {
                    Some(d) if d.reason.is_empty() => line.push_str("\tdisabled"),
                    Some(d) => line.push_str(&format!("\tdisabled: {}", d.reason)),
                    None => {}
                }
                println!("{line}");
            }
        }
        AppsCommand::Delete { id } => {
            let request = api::DeleteAppRequest { app_id: id.clone() };
            client.delete_app(authorized(request, &admin_token)?).await.map_err(status)?;
            println!("deleted {id}");
        }
        AppsCommand::Stats { id, unit, start, end, limit } => {
            let mut stats = StatsServiceClient::new(connect(&api).await?);
            let request = api::GetAppStatsRequest { app_id: id, unit, start, end, limit, direction: String::new() };
            let page = stats.get_app_stats(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            print!("{}", stats_table(&page.entries));
        }
        AppsCommand::Debug { id, channel, types } => {
            let mut debug = DebugServiceClient::new(connect(&api).await?);
            let request = api::WatchDebugEventsRequest { app_id: id, channel: channel.unwrap_or_default(), types };
            let call = debug.watch_debug_events(authorized(request, &admin_token)?);
            let mut events = call.await.map_err(status)?.into_inner();
            eprintln!("watching; events show as they happen (Ctrl-C ends)");
            while let Some(item) = events.message().await.map_err(status)? {
                println!("{}", debug_line(&item.json));
            }
        }
    }
    Ok(())
}

/// A small table of usage entries, one line each, with a header.
fn stats_table(entries: &[api::AppStatsEntry]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:<17} {:>9} {:>9} {:>10} {:>10} {:>6} {:>6} {:>6} {:>5} {:>5} {:>7}\n",
        "interval (UTC)",
        "published",
        "delivered",
        "bytes_in",
        "bytes_out",
        "conns",
        "peak_c",
        "peak_ch",
        "wh_ok",
        "wh_ko",
        "refused"
    );
    for e in entries {
        let refused: i64 = e.refusals.iter().map(|r| r.count).sum();
        let _ = writeln!(
            out,
            "{:<17} {:>9} {:>9} {:>10} {:>10} {:>6} {:>6} {:>6} {:>5} {:>5} {:>7}",
            herald_control_plane::usage::format_utc_minute(e.interval_start),
            e.published,
            e.delivered,
            e.bytes_in,
            e.bytes_out,
            e.connections_opened,
            e.peak_connections,
            e.peak_channels,
            e.webhooks_ok,
            e.webhooks_failed,
            refused
        );
    }
    if entries.is_empty() {
        out.push_str("(no usage in this range)\n");
    }
    out
}

/// One debug event (the JSON object of docs/debug.md) as one line: its
/// time (UTC), node and type, then its other fields as JSON.
fn debug_line(json: &str) -> String {
    let Ok(serde_json::Value::Object(mut event)) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.to_owned();
    };
    let ms = event.remove("timestamp_ms").and_then(|v| v.as_i64()).unwrap_or_default();
    let node = event.remove("node").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let kind = event.remove("type").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let day_ms = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (day_ms / 3_600_000, day_ms / 60_000 % 60, day_ms / 1000 % 60, day_ms % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03} {node} {kind:<11} {}", serde_json::Value::Object(event))
}

/// In Pusher mode, prints the app's Pusher app id (stdout) and what to
/// give Pusher's libraries (stderr).
fn print_pusher_app_id(app: &api::App) {
    if let Some(p) = app.pusher.as_ref().filter(|p| p.enabled) {
        eprintln!("Pusher mode on: appId {} (below), key {} (the app id)", p.app_id, app.id);
        println!("{}", p.app_id);
    }
}
