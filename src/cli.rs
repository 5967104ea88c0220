//! The operator and developer commands: `keys`, `namespaces`,
//! `token`, `publish`, `subscribe` (and `apps` and `webhooks`, in their
//! own modules, on the helpers here). They read `HERALD_API_URL`, `HERALD_EDGE_URL`,
//! `HERALD_APP_ID`, `HERALD_API_KEY`, `HERALD_ADMIN_TOKEN` (and
//! `HERALD_TOKEN`), parse, and call the SDK (REST, WebSocket) or the gRPC
//! admin API.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_proto::api::admin_service_client::AdminServiceClient;
use herald_proto::api::namespace_service_client::NamespaceServiceClient;
use herald_proto::api::{self, Capability};
use herald_sdk::{Client, ConnectionState, Data, Publisher, SubscriptionEvent, TokenRequest};
use tonic::metadata::MetadataValue;

/// Where the API is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The control plane's URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "HERALD_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api_url: String,
}

/// `herald keys …` (admin token).
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create an API key; prints the secret (shown this once), and with --pusher its Pusher secret on a second line.
    Create {
        /// A name for the key.
        name: String,
        /// Capabilities as JSON, e.g. '{"chat:*": ["subscribe", "publish"]}' (default: everything).
        #[arg(long)]
        capabilities: Option<String>,
        /// Also give the key a Pusher secret (the `secret` of Pusher's libraries for the app).
        #[arg(long)]
        pusher: bool,
    },
    /// List the app's keys.
    List,
    /// Revoke a key; connections holding its tokens are closed.
    Revoke {
        /// The key id.
        key_id: String,
    },
}

/// `herald namespaces …` (admin token).
#[derive(Debug, clap::Subcommand)]
pub enum NamespacesCommand {
    /// Create or replace a namespace: channels `<name>:…` take its options
    /// (flags not given take their defaults).
    Set {
        /// The namespace name.
        name: String,
        /// Edges report who is subscribed; presence is served.
        #[arg(long)]
        presence: bool,
        /// Subscribers get join and leave events (needs --presence).
        #[arg(long)]
        join_leave: bool,
        /// Clients may not publish (API keys still may).
        #[arg(long)]
        no_client_publish: bool,
        /// Messages kept per channel (with --history-ttl).
        #[arg(long, default_value_t = 0)]
        history_size: u32,
        /// How long messages are kept, e.g. 30s, 15m, 24h (with --history-size).
        #[arg(long)]
        history_ttl: Option<herald_proto::units::HumanDuration>,
    },
    /// List the app's namespaces.
    List,
    /// Show one namespace.
    Get {
        /// The namespace name.
        name: String,
    },
    /// Delete a namespace (and its history).
    Delete {
        /// The namespace name.
        name: String,
    },
}

fn capabilities_to_api(json: &str) -> Result<Vec<Capability>> {
    let caps: herald_proto::Capabilities =
        serde_json::from_str(json).context("--capabilities must be a JSON object of pattern -> operations")?;
    Ok(caps
        .iter()
        .map(|(pattern, ops)| Capability {
            pattern: pattern.as_str().to_owned(),
            operations: ops.iter().map(|o| o.as_str().to_owned()).collect(),
        })
        .collect())
}

pub(crate) async fn connect(api: &ApiArgs) -> Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(api.api_url.clone())
        .with_context(|| format!("invalid API URL {}", api.api_url))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {}", api.api_url))
}

pub(crate) async fn admin(api: &ApiArgs) -> Result<AdminServiceClient<tonic::transport::Channel>> {
    Ok(AdminServiceClient::new(connect(api).await?))
}

pub(crate) fn authorized<T>(message: T, token: &str) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> =
        format!("Bearer {token}").parse().context("the admin token holds characters a header cannot")?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// A gRPC status as an error, marked refused or unreachable for the exit
/// code when it is one.
pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    let error = anyhow::anyhow!("{}: {}", e.code(), e.message());
    match e.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => error.context(crate::exit::Failure::Refused),
        tonic::Code::Unavailable => error.context(crate::exit::Failure::Unreachable),
        _ => error,
    }
}

/// `herald keys …`.
pub async fn keys(api: ApiArgs, admin_token: String, app_id: String, command: KeysCommand) -> Result<()> {
    let mut client = admin(&api).await?;
    match command {
        KeysCommand::Create { name, capabilities, pusher } => {
            let capabilities = capabilities.as_deref().map(capabilities_to_api).transpose()?.unwrap_or_default();
            let request = api::CreateKeyRequest { app_id, name, capabilities, pusher };
            let created = client.create_key(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            let id = created.key.map(|k| k.id).unwrap_or_default();
            if pusher {
                eprintln!("key {id} created; the secret and then the Pusher secret below are shown this once:");
                println!("{}", created.secret);
                println!("{}", created.pusher_secret);
            } else {
                eprintln!("key {id} created; the secret below is shown this once:");
                println!("{}", created.secret);
            }
        }
        KeysCommand::List => {
            let keys = client
                .list_keys(authorized(api::ListKeysRequest { app_id }, &admin_token)?)
                .await
                .map_err(status)?
                .into_inner()
                .keys;
            for key in keys {
                let state = if key.revoked_at_ms > 0 { "revoked" } else { "active" };
                let pusher = if key.pusher { "\tpusher" } else { "" };
                println!("{}\t{}\t{state}{pusher}", key.id, key.name);
            }
        }
        KeysCommand::Revoke { key_id } => {
            let request = api::RevokeKeyRequest { app_id, key_id: key_id.clone() };
            client.revoke_key(authorized(request, &admin_token)?).await.map_err(status)?;
            eprintln!("key {key_id} revoked");
        }
    }
    Ok(())
}

fn print_namespace(ns: &api::Namespace) {
    let o = ns.options.unwrap_or_default();
    let ttl = herald_proto::units::HumanDuration::millis(o.history_ttl_ms);
    println!(
        "{}\tpresence={}\tjoin_leave={}\tclient_publish={}\thistory_size={}\thistory_ttl={ttl}",
        ns.name,
        o.presence,
        o.join_leave,
        o.client_publish.unwrap_or(true),
        o.history_size
    );
}

/// `herald namespaces …`.
pub async fn namespaces(api: ApiArgs, admin_token: String, app_id: String, command: NamespacesCommand) -> Result<()> {
    let mut client = NamespaceServiceClient::new(connect(&api).await?);
    match command {
        NamespacesCommand::Set { name, presence, join_leave, no_client_publish, history_size, history_ttl } => {
            let history_ttl_ms = history_ttl.map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX));
            let options = api::NamespaceOptions {
                presence,
                join_leave,
                client_publish: Some(!no_client_publish),
                history_size,
                history_ttl_ms,
            };
            let request = api::PutNamespaceRequest { app_id, name, options: Some(options) };
            let r = client.put_namespace(authorized(request, &admin_token)?).await.map_err(status)?.into_inner();
            if let Some(ns) = &r.namespace {
                eprintln!("namespace {} {}", ns.name, if r.created { "created" } else { "replaced" });
                print_namespace(ns);
            }
        }
        NamespacesCommand::List => {
            let request = api::ListNamespacesRequest { app_id };
            let list = client.list_namespaces(authorized(request, &admin_token)?).await.map_err(status)?;
            for ns in &list.get_ref().namespaces {
                print_namespace(ns);
            }
        }
        NamespacesCommand::Get { name } => {
            let request = api::GetNamespaceRequest { app_id, name };
            let ns = client.get_namespace(authorized(request, &admin_token)?).await.map_err(status)?;
            print_namespace(ns.get_ref());
        }
        NamespacesCommand::Delete { name } => {
            let request = api::DeleteNamespaceRequest { app_id, name: name.clone() };
            client.delete_namespace(authorized(request, &admin_token)?).await.map_err(status)?;
            eprintln!("namespace {name} deleted");
        }
    }
    Ok(())
}

fn publisher(api: &ApiArgs, app_id: &str, api_key: &str) -> Result<Publisher> {
    Ok(Publisher::new(&api.api_url, app_id, api_key)?)
}

fn token_request(client_id: &str, capabilities: Option<&str>, ttl: Option<u64>) -> Result<TokenRequest> {
    let mut request = TokenRequest::new(client_id);
    match capabilities {
        Some(json) => {
            for cap in capabilities_to_api(json)? {
                request = request.allow(cap.pattern, cap.operations);
            }
        }
        None => request = request.allow("*", ["subscribe", "publish", "presence", "history"]),
    }
    if let Some(ttl) = ttl {
        request = request.ttl(Duration::from_secs(ttl));
    }
    Ok(request)
}

/// `herald token`: prints a JWT.
pub async fn token(
    api: ApiArgs,
    app_id: String,
    api_key: String,
    client_id: String,
    capabilities: Option<String>,
    ttl: Option<u64>,
) -> Result<()> {
    let minted = publisher(&api, &app_id, &api_key)?
        .mint_token(&token_request(&client_id, capabilities.as_deref(), ttl)?)
        .await?;
    println!("{}", minted.token);
    Ok(())
}

/// `herald publish CHANNEL DATA`: JSON when DATA parses as JSON, text
/// otherwise.
pub async fn publish(
    api: ApiArgs,
    app_id: String,
    api_key: String,
    channel: String,
    data: String,
    event: Option<String>,
    id: Option<String>,
) -> Result<()> {
    let data = match serde_json::from_str::<serde_json::Value>(&data) {
        Ok(json) => Data::Json(json),
        Err(_) => Data::Text(data),
    };
    let accepted =
        publisher(&api, &app_id, &api_key)?.publish_message(&channel, data, event.as_deref(), id.as_deref()).await?;
    eprintln!("published {}", accepted.id);
    Ok(())
}

/// Options of `herald subscribe`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubscribeArgs {
    /// The channel.
    pub channel: String,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Client id for the minted token.
    #[arg(long, default_value = "herald-cli")]
    pub client_id: String,
    /// Edge URL(s), comma-separated; reconnects move to the next.
    #[arg(long, env = "HERALD_EDGE_URL", value_delimiter = ',', default_value = "ws://127.0.0.1:8081/v1/connect")]
    pub edge_url: Vec<String>,
    /// A token to use instead of minting one with the API key.
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Give up (exit code 4) after this long without a connection, at the
    /// start or after a drop, e.g. 30s, 5m; 0s: never.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub give_up_after: herald_proto::units::HumanDuration,
}

/// `herald subscribe CHANNEL`: prints each message's data on its own line,
/// and presence changes and resubscribes on stderr; survives edge restarts
/// (the SDK reconnects, resubscribes and recovers history channels).
pub async fn subscribe(
    api: ApiArgs,
    app_id: Option<String>,
    api_key: Option<String>,
    args: SubscribeArgs,
) -> Result<()> {
    let mut urls = args.edge_url.iter();
    let Some(first) = urls.next() else { bail!("give --edge-url or HERALD_EDGE_URL") };
    let mut builder = Client::builder(first.clone());
    for url in urls {
        builder = builder.url(url.clone());
    }
    let builder = match (args.token, app_id, api_key) {
        (Some(token), _, _) => builder.token(token),
        (None, Some(app), Some(key)) => {
            let publisher = publisher(&api, &app, &key)?;
            let request =
                TokenRequest::new(args.client_id).allow(args.channel.clone(), ["subscribe", "presence", "history"]);
            builder.token_provider(publisher.token_provider(request))
        }
        _ => bail!("set HERALD_TOKEN, or HERALD_APP_ID and HERALD_API_KEY to mint a token"),
    };
    let client = builder.connect_lazy()?;
    let (connected_tx, mut connected) = tokio::sync::watch::channel(false);
    let mut watcher = tokio::spawn(watch_connection(client.state_events(), connected_tx, args.give_up_after.0));
    // Subscribe once connected: the SDK resubscribes after every reconnect.
    tokio::select! {
        result = connected.wait_for(|up| *up) => {
            if result.is_err() {
                return Err(watcher.await.unwrap_or_else(|e| Err(anyhow::anyhow!("{e}"))).err()
                    .unwrap_or_else(|| anyhow::anyhow!("the client stopped")));
            }
        }
        outcome = &mut watcher => {
            return Err(outcome.unwrap_or_else(|e| Err(anyhow::anyhow!("{e}"))).err()
                .unwrap_or_else(|| anyhow::anyhow!("the client stopped")));
        }
    }
    let mut subscription = client.subscribe(&args.channel).await?;
    eprintln!("subscribed to {}", args.channel);
    let mut seen = 0u64;
    loop {
        let event = tokio::select! {
            event = subscription.next_event() => match event {
                Some(event) => event,
                None => break,
            },
            outcome = &mut watcher => {
                client.close().await;
                return Err(outcome.unwrap_or_else(|e| Err(anyhow::anyhow!("{e}"))).err()
                    .unwrap_or_else(|| anyhow::anyhow!("the client stopped")));
            }
        };
        match event {
            SubscriptionEvent::Message(message) => {
                println!("{}", String::from_utf8_lossy(&message.data));
                seen += 1;
                if args.count.is_some_and(|n| seen >= n) {
                    break;
                }
            }
            SubscriptionEvent::Presence(change) => {
                let what = if change.joined { "joined" } else { "left" };
                eprintln!("{} {what}", change.member.client_id);
            }
            SubscriptionEvent::Resubscribed { recovered: true } => eprintln!("resubscribed; nothing was missed"),
            SubscriptionEvent::Resubscribed { recovered: false } => {
                eprintln!("resubscribed; messages published meanwhile are not recovered");
            }
            SubscriptionEvent::Lagged { dropped } => eprintln!("too slow: {dropped} messages dropped"),
            SubscriptionEvent::Ended(e) => return Err(e.into()),
            _ => {}
        }
    }
    client.close().await;
    Ok(())
}

/// Prints the connection's states on stderr (connecting, connected,
/// disconnected with the reason, retrying in N s) and says on `connected`
/// whether it is up. Ends with an error after `give_up_after` (zero:
/// never) without a connection, or when the client stops (a refused token,
/// say).
async fn watch_connection(
    mut states: herald_sdk::StateEvents,
    connected: tokio::sync::watch::Sender<bool>,
    give_up_after: Duration,
) -> Result<()> {
    let mut down_since = Some(tokio::time::Instant::now());
    let mut last_reason = String::from("no answer yet");
    let mut url = String::new();
    loop {
        let give_up = async {
            match down_since {
                Some(since) if !give_up_after.is_zero() => tokio::time::sleep_until(since + give_up_after).await,
                _ => std::future::pending().await,
            }
        };
        let state = tokio::select! {
            state = states.next() => state,
            () = give_up => {
                return Err(crate::exit::Unreachable {
                    what: "the edge",
                    url,
                    reason: format!(
                        "{}; gave up after {}",
                        crate::exit::short_reason(&last_reason),
                        herald_proto::units::HumanDuration(give_up_after)
                    ),
                    flag: "--edge-url (HERALD_EDGE_URL)",
                }.into());
            }
        };
        let Some(state) = state else { return Ok(()) };
        match state {
            ConnectionState::Connecting { url: to, attempt } => {
                if attempt == 0 {
                    eprintln!("connecting to {to}");
                }
                url = to;
            }
            ConnectionState::Connected(info) => {
                eprintln!("connected to {} (edge {}, connection {})", info.url, info.edge_id, info.connection_id);
                down_since = None;
                connected.send_replace(true);
            }
            ConnectionState::Disconnected { reason } => {
                eprintln!("disconnected: {reason}");
                last_reason = reason.to_string();
                down_since.get_or_insert_with(tokio::time::Instant::now);
                connected.send_replace(false);
            }
            ConnectionState::Reconnecting { attempt, delay } => {
                eprintln!("retrying in {:.1} s (attempt {attempt}): {last_reason}", delay.as_secs_f64());
            }
            ConnectionState::Closed { error: Some(e) } => return Err(e.into()),
            ConnectionState::Closed { error: None } => return Ok(()),
            _ => {}
        }
    }
}
