//! `herald webhooks …`: an app's webhook endpoints, through the gRPC
//! `WebhookService` with the admin token (`HERALD_API_URL`,
//! `HERALD_ADMIN_TOKEN`).

use anyhow::Result;
use herald_proto::api::webhook_service_client::WebhookServiceClient;
use herald_proto::api::{self, webhook_filter};
use herald_proto::units::HumanDuration;
use herald_proto::webhook::EventKind;

use crate::cli::{ApiArgs, authorized, connect, status};

/// Which channels, as flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only channels whose name starts with this.
    #[arg(long, conflicts_with = "namespace")]
    pub prefix: Option<String>,
    /// Only channels of this namespace (<namespace>:…).
    #[arg(long)]
    pub namespace: Option<String>,
}

impl FilterArgs {
    fn to_api(&self) -> Option<api::WebhookFilter> {
        let kind = match (&self.prefix, &self.namespace) {
            (Some(p), _) => webhook_filter::Kind::Prefix(p.clone()),
            (None, Some(ns)) => webhook_filter::Kind::Namespace(ns.clone()),
            (None, None) => return None,
        };
        Some(api::WebhookFilter { kind: Some(kind) })
    }
}

/// `herald webhooks …` (admin token).
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// Create an endpoint; prints its id, then its signing secret (shown this once).
    Create {
        /// The app's id.
        app: String,
        /// Where events are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (default: every type).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Body format and signature: herald or pusher (needs the app in Pusher mode).
        #[arg(long, default_value = "herald")]
        format: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// List the app's endpoints, one a line: id, status, format, URL, events, filter, dropped events.
    List {
        /// The app's id.
        app: String,
    },
    /// Show one endpoint.
    Get {
        /// The app's id.
        app: String,
        /// The endpoint id (wh_…).
        id: String,
    },
    /// Change an endpoint: only what is given changes.
    Update {
        /// The app's id.
        app: String,
        /// The endpoint id (wh_…).
        id: String,
        /// A new URL.
        #[arg(long)]
        url: Option<String>,
        /// New event types, comma-separated.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// A new format: herald or pusher.
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Remove the filter: every channel.
        #[arg(long, conflicts_with_all = ["prefix", "namespace"])]
        no_filter: bool,
        /// Turn a disabled endpoint on again.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the endpoint; its pending events are dropped.
        #[arg(long)]
        disable: bool,
    },
    /// Delete an endpoint, its pending events and its log.
    Delete {
        /// The app's id.
        app: String,
        /// The endpoint id (wh_…).
        id: String,
    },
    /// Give an endpoint a new signing secret; prints it (shown this once).
    RotateSecret {
        /// The app's id.
        app: String,
        /// The endpoint id (wh_…).
        id: String,
        /// How long requests are also signed with the previous secret, e.g. 1h (default 24h; 0s: not at all).
        #[arg(long)]
        overlap: Option<HumanDuration>,
    },
    /// Send a test request to an endpoint now; prints the status and latency.
    Test {
        /// The app's id.
        app: String,
        /// The endpoint id (wh_…).
        id: String,
    },
    /// An endpoint's last delivery attempts, newest first: time, event, attempt, status, latency, outcome, error.
    Deliveries {
        /// The app's id.
        app: String,
        /// The endpoint id (wh_…).
        id: String,
        /// Most attempts shown (default: all kept).
        #[arg(long)]
        limit: Option<u32>,
    },
}

/// One line: id, status, format, URL, events, filter, dropped (and why
/// it is failing or disabled).
fn print_webhook(hook: &api::Webhook) {
    let filter = match hook.filter.as_ref().and_then(|f| f.kind.as_ref()) {
        Some(webhook_filter::Kind::Prefix(p)) => format!("prefix={p}"),
        Some(webhook_filter::Kind::Namespace(ns)) => format!("namespace={ns}"),
        None => "all-channels".to_owned(),
    };
    let reason = hook.status_reason.as_deref().map(|r| format!("\treason={r}")).unwrap_or_default();
    println!(
        "{}\t{}\t{}\t{}\tevents={}\t{filter}\tdropped={}{reason}",
        hook.id,
        hook.status,
        hook.format,
        hook.url,
        hook.events.join(","),
        hook.dropped
    );
}

/// `herald webhooks …`.
pub async fn run(api: ApiArgs, admin_token: String, command: WebhooksCommand) -> Result<()> {
    let mut client = WebhookServiceClient::new(connect(&api).await?);
    match command {
        WebhooksCommand::Create { app, url, events, format, filter } => {
            let events =
                if events.is_empty() { EventKind::ALL.iter().map(|k| k.as_str().to_owned()).collect() } else { events };
            let request = api::CreateWebhookRequest { app_id: app, url, events, format, filter: filter.to_api() };
            let created = client.create_webhook(authorized(request, &admin_token)?).await.map_err(status)?;
            let created = created.into_inner();
            let id = created.webhook.as_ref().map(|h| h.id.clone()).unwrap_or_default();
            eprintln!("webhook endpoint {id} created; its id and then its signing secret (shown this once) below:");
            println!("{id}");
            println!("{}", created.secret);
        }
        WebhooksCommand::List { app } => {
            let request = api::ListWebhooksRequest { app_id: app };
            let list = client.list_webhooks(authorized(request, &admin_token)?).await.map_err(status)?;
            for hook in &list.get_ref().webhooks {
                print_webhook(hook);
            }
        }
        WebhooksCommand::Get { app, id } => {
            let request = api::GetWebhookRequest { app_id: app, webhook_id: id };
            let hook = client.get_webhook(authorized(request, &admin_token)?).await.map_err(status)?;
            print_webhook(hook.get_ref());
        }
        WebhooksCommand::Update { app, id, url, events, format, filter, no_filter, enable, disable } => {
            let filter = if no_filter { Some(api::WebhookFilter { kind: None }) } else { filter.to_api() };
            let enabled = match (enable, disable) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let request = api::UpdateWebhookRequest {
                app_id: app,
                webhook_id: id,
                url,
                events: events.map(|events| api::WebhookEvents { events }),
                format,
                filter,
                enabled,
            };
            let hook = client.update_webhook(authorized(request, &admin_token)?).await.map_err(status)?;
            eprintln!("webhook endpoint {} updated", hook.get_ref().id);
            print_webhook(hook.get_ref());
        }
        WebhooksCommand::Delete { app, id } => {
            let request = api::DeleteWebhookRequest { app_id: app, webhook_id: id.clone() };
            client.delete_webhook(authorized(request, &admin_token)?).await.map_err(status)?;
            eprintln!("webhook endpoint {id} deleted");
        }
        WebhooksCommand::RotateSecret { app, id, overlap } => {
            let request = api::RotateWebhookSecretRequest {
                app_id: app,
                webhook_id: id.clone(),
                overlap_seconds: overlap.map(|d| d.0.as_secs()),
            };
            let rotated = client.rotate_webhook_secret(authorized(request, &admin_token)?).await.map_err(status)?;
            let rotated = rotated.into_inner();
            let until = rotated.webhook.as_ref().and_then(|h| h.previous_secret_expires_at_ms);
            match until {
                Some(ms) => eprintln!(
                    "webhook endpoint {id}: new signing secret below (shown this once); the previous one also signs \
                     until {ms} (Unix ms)"
                ),
                None => eprintln!("webhook endpoint {id}: new signing secret below (shown this once)"),
            }
            println!("{}", rotated.secret);
        }
        WebhooksCommand::Test { app, id } => {
            let request = api::TestWebhookRequest { app_id: app, webhook_id: id };
            let t = client.test_webhook(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            let status_text = t.status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
            println!("{}\t{status_text}\t{} ms\t{}", t.event_id, t.latency_ms, t.error.unwrap_or_default());
            if !t.status.is_some_and(|s| (200..300).contains(&s)) {
                anyhow::bail!("the endpoint did not take the test request");
            }
        }
        WebhooksCommand::Deliveries { app, id, limit } => {
            let request = api::ListWebhookDeliveriesRequest { app_id: app, webhook_id: id, limit };
            let list =
                client.list_webhook_deliveries(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            for d in list.deliveries {
                let status_text = d.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
                println!(
                    "{}\t{}\t{}\t{}\t#{}\t{status_text}\t{} ms\t{}\t{}",
                    d.at_ms,
                    d.event_id,
                    d.r#type,
                    d.channel,
                    d.attempt,
                    d.latency_ms,
                    d.outcome,
                    d.error.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
