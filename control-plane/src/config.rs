//! [`Config`]: every setting and limit of the control plane, in one flat,
//! strict struct.
//!
//! The fields are flat, so one table serves TOML (`deny_unknown_fields`: a
//! typo is an error that names the key), command-line flags and environment
//! variables: field `foo_bar` is `HERALD_CP_FOO_BAR` ([`Config::apply_env`]).
//! Sizes and durations carry their unit in the value, as the edge's do
//! ([`ByteSize`]: `"1MiB"`; [`HumanDuration`]: `"500ms"`, `"30s"`).
//! [`Config::validate`] checks the values and names the failing key. The
//! admin token is a [`Secret`]: its `Debug` prints `***`, so logging the
//! config never logs it.
//!
//! # Renamed keys
//!
//! Keys that used to carry their unit in the name (`cache_ttl_ms`,
//! `max_body_bytes`, …) are listed in [`RENAMED_KEYS`] with the unit their
//! bare numbers are in. They keep working in every form (TOML key, flag,
//! environment variable), each read logging a warning that names the old and
//! the new key; giving both in one source is an error. [`RenamedKey`] is the
//! table-driven mechanism: it knows nothing of this config, so any
//! component's loader can use it.

use std::fmt;
use std::time::Duration;

use herald_proto::units::{ByteSize, HumanDuration};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

mod renamed;

pub use renamed::RenamedKey;

/// The prefix of the environment variables [`Config::apply_env`] reads.
pub const ENV_PREFIX: &str = "HERALD_CP_";

/// The shortest idempotency window allowed, in seconds.
pub const MIN_IDEMPOTENCY_WINDOW_SECS: u64 = 120;

/// The shortest idempotency window allowed.
pub const MIN_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(MIN_IDEMPOTENCY_WINDOW_SECS);

/// The largest `max_json_depth` (serde_json stops at 128 levels).
pub const MAX_JSON_DEPTH: usize = 100;

/// A value that must never be logged.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Serialized as `***`: a configuration written out never holds the
/// secret.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A setting with an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    /// The failing key (field name).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self { key: key.to_owned(), message: message.into() }
    }
}

macro_rules! config {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $default:expr ; )*) => {
        /// The control plane's settings. See the module docs; every field
        /// has a default, so `Config::default()` runs an embedded control
        /// plane on SQLite.
        #[derive(Clone, Debug, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl Config {
            /// Every field name, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$( stringify!($field), )*];

            /// Every field's documentation, in [`Self::FIELDS`]' order (its
            /// doc comment's lines joined).
            pub const HELP: &'static [&'static str] = &[$( concat!($($doc, "\n",)*), )*];

            /// Every field's Rust type as written, in [`Self::FIELDS`]'
            /// order: what the flags' help names as the value's kind.
            pub const TYPES: &'static [&'static str] = &[$( stringify!($ty), )*];

            /// Sets the field named `key` (a current name) from its text
            /// form. Returns false when no field has that name.
            fn set_field(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
                match key {
                    $( stringify!($field) => { self.$field = parse_value::<$ty>(key, value)?; Ok(true) } )*
                    _ => Ok(false),
                }
            }
        }
    };
}

config! {
    /// Address the `herald control-plane` command listens on (REST and
    /// gRPC); the library takes a listener instead.
    listen: std::net::SocketAddr = std::net::SocketAddr::from(([0, 0, 0, 0], 8080));
    /// Pending connections the kernel queues on `listen` before they are
    /// accepted (`herald control-plane`, and both listeners of `herald
    /// dev`); the kernel caps it at `net.core.somaxconn`.
    listen_backlog: u32 = 4096;
    /// NATS server(s) of the bus, comma-separated (`herald
    /// control-plane`).
    nats_url: String = "nats://127.0.0.1:4222".to_owned();
    /// Prefix of every NATS subject; must match the edges'.
    subject_prefix: String = herald_proto::subject::DEFAULT_PREFIX.to_owned();
    /// `postgres://…` (cluster) or `sqlite:…` (embedded; the file and its
    /// folder are created).
    database_url: String = "sqlite://herald-data/control-plane.db".to_owned();
    /// Most connections in the database pool.
    database_max_connections: u32 = 16;
    /// Longest wait for a database connection.
    database_acquire_timeout: HumanDuration = HumanDuration::secs(5);
    /// The operators' bearer token. Unset: the admin API refuses every call.
    admin_token: Option<Secret> = None;
    /// The `iss` of minted tokens.
    issuer: String = herald_proto::claims::DEFAULT_ISSUER.to_owned();
    /// Largest request body (REST) or message (gRPC).
    max_body_size: ByteSize = ByteSize::mib(1);
    /// Most messages in one batch publish.
    max_batch_messages: usize = 100;
    /// Most channels one message may be published to.
    max_channels_per_message: usize = 100;
    /// Most messages one gRPC publish stream may carry.
    max_stream_messages: usize = 100_000;
    /// Most publishes of one stream or batch in flight to the bus at once.
    max_publishes_in_flight: usize = 256;
    /// Default per-app limit: concurrent connections.
    default_max_connections: u32 = 10_000;
    /// Default per-app limit: message payload size.
    default_max_message_size: ByteSize = ByteSize::kib(64);
    /// Default per-app limit: API publishes per second (per replica).
    default_publish_rate_per_sec: u32 = 1_000;
    /// The largest message size an app may be given.
    max_message_size_ceiling: ByteSize = ByteSize::mib(1);
    /// Most entries in an app's Origin allowlist.
    max_allowed_origins: usize = 100;
    /// Most API keys per app (revoked ones included).
    max_keys_per_app: u64 = 100;
    /// Token lifetime when the request gives none (whole seconds).
    token_default_ttl: HumanDuration = HumanDuration::secs(3_600);
    /// Shortest token lifetime (whole seconds).
    token_min_ttl: HumanDuration = HumanDuration::secs(1);
    /// Longest token lifetime (whole seconds).
    token_max_ttl: HumanDuration = HumanDuration::secs(86_400);
    /// How long a rotated-out signing key stays in the JWKS (whole
    /// seconds). Tokens it signed stop verifying after that.
    signing_key_overlap: HumanDuration = HumanDuration::secs(86_400);
    /// How often each replica reloads the signing keys from the database
    /// (besides reloading on a rotation event).
    signing_key_refresh_interval: HumanDuration = HumanDuration::secs(30);
    /// How long an idempotency id is remembered (at least 120 s).
    idempotency_window: HumanDuration = HumanDuration::secs(300);
    /// With PostgreSQL, share idempotency ids between replicas through the
    /// database (two more queries per publish that carries an id). SQLite
    /// serves one process and never needs it.
    idempotency_shared: bool = true;
    /// Most idempotency ids remembered per replica.
    idempotency_max_entries: usize = 1_000_000;
    /// How long a replica trusts a cached API key or app. Revocations on
    /// this replica take effect at once, on others within this bound (or at
    /// once when the bus delivers the revocation event).
    cache_ttl: HumanDuration = HumanDuration::secs(5);
    /// Most API keys and apps cached per replica.
    cache_max_entries: usize = 100_000;
    /// Most HTTP connections (REST and gRPC) at once; when full, one
    /// stalled in a request body is evicted to make room, otherwise the new
    /// one is closed at once.
    max_http_connections: usize = 10_000;
    /// Most HTTP connections from one client IP at once (0: no limit);
    /// loopback clients are exempt.
    max_connections_per_ip: usize = 0;
    /// Most concurrent requests (streams) on one HTTP/2 connection; more
    /// are refused with `REFUSED_STREAM`.
    max_http2_streams: u32 = 256;
    /// Largest header block (decoded) of an HTTP/2 request; a larger one is
    /// answered 431 and its stream refused.
    http2_max_header_list_size: ByteSize = ByteSize::kib(16);
    /// How often an HTTP/2 connection is pinged.
    http2_keepalive_interval: HumanDuration = HumanDuration::secs(20);
    /// How long a ping may go unanswered before the connection is closed.
    http2_keepalive_timeout: HumanDuration = HumanDuration::secs(20);
    /// Streams one HTTP/2 connection may reset per second (with as many at
    /// once); a client resetting faster is disconnected (rapid reset).
    http2_max_resets_per_sec: u32 = 100;
    /// PING and SETTINGS frames one HTTP/2 connection may send per second
    /// (with as many at once); a client sending more is disconnected.
    http2_max_control_frames_per_sec: u32 = 50;
    /// Largest gRPC response message; a larger one fails the call with
    /// `OUT_OF_RANGE` (requests are bounded by `max_body_size`).
    grpc_max_response_size: ByteSize = ByteSize::mib(64);
    /// TLS: the certificate chain (PEM) the API listener presents; with
    /// `tls_key`, REST, gRPC and `/metrics` are served over HTTPS only (h2
    /// and HTTP/1.1 by ALPN).
    tls_cert: Option<std::path::PathBuf> = None;
    /// TLS: the private key (PEM) of `tls_cert`.
    tls_key: Option<std::path::PathBuf> = None;
    /// Longest wait for a whole request head: from the accept for a
    /// connection's first (the TLS handshake included; for HTTP/2, the
    /// connection preface), from the end of the previous response for a
    /// keep-alive request.
    header_read_timeout: HumanDuration = HumanDuration::secs(10);
    /// Longest a connection may stay open with no request in flight; it is
    /// closed past it. Also the longest silence between two messages of a
    /// gRPC request stream (`DEADLINE_EXCEEDED` past it).
    http_idle_timeout: HumanDuration = HumanDuration::secs(60);
    /// Log one line per REST, gRPC and Pusher API request (target
    /// `herald::access`: method, route, status, latency, app, request id).
    access_log: bool = true;
    /// OpenTelemetry: export traces over OTLP/gRPC to this collector
    /// (`http://…:4317`; `https://` for TLS). Empty: no traces.
    otlp_endpoint: String = String::new();
    /// Share (0 to 1) of the traces that start here which are exported; a
    /// caller's sampled `traceparent` is always followed.
    otlp_sample_ratio: f64 = 1.0;
    /// Longest wait for a whole request body once its head arrived (408
    /// `request_timeout` past it; for a gRPC request message,
    /// `DEADLINE_EXCEEDED`).
    body_read_timeout: HumanDuration = HumanDuration::secs(30);
    /// Slowest a request body (or gRPC request message) may arrive, in
    /// bytes per second, after `body_rate_grace` (each byte buys `1/rate`
    /// more time); slower: 408 and the connection closed (gRPC:
    /// `DEADLINE_EXCEEDED`). 0: no rate, only `body_read_timeout`.
    min_body_rate_per_sec: ByteSize = ByteSize::kib(1);
    /// How long a request body may take before `min_body_rate_per_sec`
    /// counts.
    body_rate_grace: HumanDuration = HumanDuration::secs(5);
    /// Most requests of one API key (or the admin token) sending their body
    /// at once on this replica; more are answered 429.
    max_body_reads_per_key: usize = 32;
    /// Deepest nesting of arrays and objects a JSON request body may have
    /// (at most 100).
    max_json_depth: usize = 32;
    /// Longest wait for in-flight requests at shutdown.
    shutdown_timeout: HumanDuration = HumanDuration::secs(10);
    /// Longest wait for the database in `/readyz`.
    readiness_timeout: HumanDuration = HumanDuration::secs(2);
    /// Most channel namespaces per app.
    max_namespaces_per_app: u64 = 100;
    /// The largest `history_size` (messages kept per channel) a namespace
    /// may be given.
    max_history_size: u32 = 10_000;
    /// The longest `history_ttl` a namespace may be given.
    max_history_ttl: HumanDuration = HumanDuration::secs(7 * 86_400);
    /// Most bytes one history stream (one namespace of one app) may hold in
    /// JetStream; the oldest messages go first past it.
    history_stream_max_size: ByteSize = ByteSize::mib(256);
    /// Copies JetStream keeps of each history stream (1, 3 or 5; at most the
    /// number of NATS servers with JetStream).
    history_replicas: u8 = 1;
    /// Most messages one history read returns (`limit`).
    max_history_limit: usize = 1_000;
    /// How long presence and subscriber counts of an edge that stopped
    /// reporting are kept.
    presence_ttl: HumanDuration = HumanDuration::secs(30);
    /// Most presence entries (member connections, across edges) kept per
    /// channel; reports past it are ignored.
    presence_max_per_channel: u32 = 100_000;
    /// Most channels one channel listing returns (the rest are cut, and the
    /// answer says so).
    max_channels_listed: usize = 10_000;
    /// Most webhook endpoints per app.
    webhook_max_endpoints_per_app: u64 = 20;
    /// Allow webhook URLs on loopback, private and link-local addresses
    /// (refused by default against SSRF; `herald dev` allows them).
    webhook_allow_private_urls: bool = false;
    /// How long a channel must stay empty (a user absent) before
    /// `channel_vacated` (`member_removed`) is sent: a page reload sends
    /// nothing. Also the shortest gap between two `subscription_count`
    /// events of one channel.
    webhook_debounce: HumanDuration = HumanDuration::secs(3);
    /// Longest wait for an endpoint's answer; no answer counts as a failure
    /// and is retried.
    webhook_timeout: HumanDuration = HumanDuration::secs(5);
    /// How long a Herald-format event is retried before it is given up.
    webhook_retry_window: HumanDuration = HumanDuration::secs(86_400);
    /// How long a Pusher-format event is retried (Pusher's own window).
    webhook_pusher_retry_window: HumanDuration = HumanDuration::secs(300);
    /// An endpoint failing without a success for this long is disabled
    /// (its pending events dropped); turning it on again is an update.
    webhook_disable_after: HumanDuration = HumanDuration::secs(86_400);
    /// Most undelivered webhook deliveries per app; events past it are
    /// dropped, counted per endpoint and in the metrics.
    webhook_outbox_max_per_app: u64 = 10_000;
    /// Most webhook requests in flight from one replica.
    webhook_concurrency: usize = 64;
    /// Most webhook requests in flight to one endpoint from one replica (an
    /// endpoint also gets one request at a time per channel, to keep order).
    webhook_endpoint_concurrency: usize = 8;
    /// How often each replica looks for due deliveries (events of its own
    /// are looked for at once).
    webhook_poll_interval: HumanDuration = HumanDuration::millis(500);
    /// Delivery attempts kept per endpoint in its log.
    webhook_log_size: u64 = 100;
    /// Serve the web console under `/console`.
    console_enabled: bool = true;
    /// A separate address for the console; when set, the console is served
    /// there and not on the API address.
    console_addr: Option<std::net::SocketAddr> = None;
    /// How long a console session lasts after sign-in.
    console_session_ttl: HumanDuration = HumanDuration::secs(12 * 3_600);
    /// How long a one-time console login link stays usable.
    console_link_ttl: HumanDuration = HumanDuration::secs(15 * 60);
    /// Mark the console's session cookie `Secure` even when requests arrive
    /// over plain HTTP (behind a TLS-terminating proxy).
    console_secure_cookies: bool = false;
    /// Failed console sign-ins allowed per client IP per minute; past it
    /// sign-ins from that IP are refused until the minute is over.
    console_signin_attempts: u32 = 10;
    /// Most client IPs whose failed sign-ins are tracked; when full, new
    /// clients' sign-ins are refused until entries age out.
    console_signin_clients: usize = 10_000;
    /// How often this replica stores its own usage counts (1s to 5m), works
    /// out apps' quota states and announces those over a quota. Edges'
    /// figures of connections older than three intervals are not counted.
    usage_report_interval: HumanDuration = HumanDuration::secs(10);
    /// Most app entries kept in this replica's usage counts not yet stored;
    /// past it the oldest are dropped (and counted).
    usage_max_pending_apps: u32 = 100_000;
    /// How long per-minute usage is kept.
    usage_minute_retention: HumanDuration = HumanDuration::secs(7 * 86_400);
    /// How long per-hour usage is kept.
    usage_hour_retention: HumanDuration = HumanDuration::secs(90 * 86_400);
    /// How long per-day usage is kept (at least 32 days: monthly quotas
    /// add up the days of the month).
    usage_day_retention: HumanDuration = HumanDuration::secs(400 * 86_400);
    /// Most intervals one stats read returns (`limit`).
    usage_max_limit: usize = 1_000;
    /// Debug events this replica sends per second for one watched app
    /// (publishes, webhook deliveries); past it (after `debug_tap_burst`)
    /// they are dropped and counted.
    debug_tap_rate: u32 = 100;
    /// Debug events this replica may send at once for one watched app.
    debug_tap_burst: u32 = 200;
    /// Largest payload preview in a publish debug event (at most 64KiB).
    debug_tap_preview_size: ByteSize = ByteSize(256);
    /// Most debug-event watchers (`GET /v1/apps/{app}/debug/events`
    /// streams) one replica serves at once; more are answered 429.
    debug_tap_max_watchers: usize = 100;
    /// Debug events kept for the watchers of one app on this replica; a
    /// watcher further behind is told how many it missed and goes on.
    debug_tap_buffer: usize = 1024;
}

fn parse_value<T: DeserializeOwned>(key: &str, value: &str) -> Result<T, ConfigError> {
    // JSON first (numbers, booleans, arrays), then the text as a string.
    if let Ok(v) = serde_json::from_str::<T>(value) {
        return Ok(v);
    }
    serde_json::from_value::<T>(serde_json::Value::String(value.to_owned()))
        .map_err(|e| ConfigError::new(key, format!("invalid value: {e}")))
}

const fn renamed(old: &'static str, new: &'static str, old_unit: &'static str) -> RenamedKey {
    RenamedKey { old, new, old_unit }
}

/// The control plane's renamed keys.
pub const RENAMED_KEYS: &[RenamedKey] = &[
    renamed("database_acquire_timeout_ms", "database_acquire_timeout", "ms"),
    renamed("max_body_bytes", "max_body_size", "B"),
    renamed("default_max_message_bytes", "default_max_message_size", "B"),
    renamed("max_message_bytes_ceiling", "max_message_size_ceiling", "B"),
    renamed("token_default_ttl_secs", "token_default_ttl", "s"),
    renamed("token_min_ttl_secs", "token_min_ttl", "s"),
    renamed("token_max_ttl_secs", "token_max_ttl", "s"),
    renamed("signing_key_overlap_secs", "signing_key_overlap", "s"),
    renamed("signing_key_refresh_secs", "signing_key_refresh_interval", "s"),
    renamed("idempotency_window_secs", "idempotency_window", "s"),
    renamed("cache_ttl_ms", "cache_ttl", "ms"),
    renamed("header_read_timeout_ms", "header_read_timeout", "ms"),
    renamed("shutdown_timeout_ms", "shutdown_timeout", "ms"),
    renamed("readiness_timeout_ms", "readiness_timeout", "ms"),
    renamed("max_history_ttl_secs", "max_history_ttl", "s"),
    renamed("history_stream_max_bytes", "history_stream_max_size", "B"),
    renamed("presence_ttl_ms", "presence_ttl", "ms"),
];

impl Config {
    /// Sets the field named `key` from its text form. A renamed key's old
    /// name works too (its number taken in the old unit, with a warning).
    /// Returns false when no field has that name.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the text is not a valid value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let (key, value) = RenamedKey::resolve(RENAMED_KEYS, key, value, || "setting".to_owned())?;
        self.set_field(key, &value)
    }

    /// Applies environment variables `HERALD_CP_<FIELD>` (upper case) from
    /// `vars`, e.g. `HERALD_CP_DATABASE_URL`; a renamed key's old variable
    /// works too. Variables with the prefix that name no field are an error.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable with an invalid value or
    /// unknown name, or naming both keys when a renamed key's old and new
    /// variables are both set.
    pub fn apply_env<I, K, V>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut settings = Vec::new();
        for (k, v) in vars {
            let Some(field) = k.as_ref().strip_prefix(ENV_PREFIX) else { continue };
            settings.push((k.as_ref().to_owned(), field.to_ascii_lowercase(), v.as_ref().to_owned()));
        }
        RenamedKey::check_exclusive(RENAMED_KEYS, settings.iter().map(|(_, key, _)| key.as_str()))?;
        for (name, key, value) in &settings {
            let (key, value) =
                RenamedKey::resolve(RENAMED_KEYS, key, value, || format!("environment variable {name}"))?;
            if !self.set_field(key, &value)? {
                return Err(ConfigError::new(name, "unknown setting"));
            }
        }
        Ok(())
    }

    /// The environment variable of every field (current names).
    #[must_use]
    pub fn env_names() -> Vec<String> {
        Self::FIELDS.iter().map(|f| format!("{ENV_PREFIX}{}", f.to_ascii_uppercase())).collect()
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first failing key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.database_url;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
            return Err(ConfigError::new("database_url", "must start with postgres:// or sqlite:"));
        }
        herald_bus::trace::check_otlp(&self.otlp_endpoint, self.otlp_sample_ratio)
            .map_err(|(key, why)| ConfigError::new(key, why))?;
        let ms = |d: HumanDuration| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX);
        let positive: [(&str, u64); 55] = [
            ("listen_backlog", u64::from(self.listen_backlog)),
            ("max_http_connections", self.max_http_connections as u64),
            ("http_idle_timeout", ms(self.http_idle_timeout)),
            ("body_read_timeout", ms(self.body_read_timeout)),
            ("max_json_depth", self.max_json_depth as u64),
            ("max_http2_streams", u64::from(self.max_http2_streams)),
            ("http2_max_header_list_size", self.http2_max_header_list_size.0),
            ("http2_keepalive_interval", ms(self.http2_keepalive_interval)),
            ("http2_keepalive_timeout", ms(self.http2_keepalive_timeout)),
            ("http2_max_resets_per_sec", u64::from(self.http2_max_resets_per_sec)),
            ("http2_max_control_frames_per_sec", u64::from(self.http2_max_control_frames_per_sec)),
            ("grpc_max_response_size", self.grpc_max_response_size.0),
            ("max_body_reads_per_key", self.max_body_reads_per_key as u64),
            ("header_read_timeout", ms(self.header_read_timeout)),
            ("database_max_connections", u64::from(self.database_max_connections)),
            ("max_body_size", self.max_body_size.0),
            ("max_batch_messages", self.max_batch_messages as u64),
            ("max_channels_per_message", self.max_channels_per_message as u64),
            ("max_stream_messages", self.max_stream_messages as u64),
            ("max_publishes_in_flight", self.max_publishes_in_flight as u64),
            ("default_max_connections", u64::from(self.default_max_connections)),
            ("default_max_message_size", self.default_max_message_size.0),
            ("default_publish_rate_per_sec", u64::from(self.default_publish_rate_per_sec)),
            ("token_min_ttl", ms(self.token_min_ttl)),
            ("signing_key_refresh_interval", ms(self.signing_key_refresh_interval)),
            ("max_history_size", u64::from(self.max_history_size)),
            ("max_history_ttl", ms(self.max_history_ttl)),
            ("history_stream_max_size", self.history_stream_max_size.0),
            ("max_history_limit", self.max_history_limit as u64),
            ("presence_ttl", ms(self.presence_ttl)),
            ("presence_max_per_channel", u64::from(self.presence_max_per_channel)),
            ("max_channels_listed", self.max_channels_listed as u64),
            ("webhook_max_endpoints_per_app", self.webhook_max_endpoints_per_app),
            ("webhook_timeout", ms(self.webhook_timeout)),
            ("webhook_retry_window", ms(self.webhook_retry_window)),
            ("webhook_pusher_retry_window", ms(self.webhook_pusher_retry_window)),
            ("webhook_disable_after", ms(self.webhook_disable_after)),
            ("webhook_outbox_max_per_app", self.webhook_outbox_max_per_app),
            ("webhook_concurrency", self.webhook_concurrency as u64),
            ("webhook_endpoint_concurrency", self.webhook_endpoint_concurrency as u64),
            ("webhook_poll_interval", ms(self.webhook_poll_interval)),
            ("webhook_log_size", self.webhook_log_size),
            ("console_session_ttl", ms(self.console_session_ttl)),
            ("console_link_ttl", ms(self.console_link_ttl)),
            ("console_signin_attempts", u64::from(self.console_signin_attempts)),
            ("console_signin_clients", self.console_signin_clients as u64),
            ("usage_max_pending_apps", u64::from(self.usage_max_pending_apps)),
            ("usage_minute_retention", ms(self.usage_minute_retention)),
            ("usage_hour_retention", ms(self.usage_hour_retention)),
            ("usage_day_retention", ms(self.usage_day_retention)),
            ("usage_max_limit", self.usage_max_limit as u64),
            ("debug_tap_rate", u64::from(self.debug_tap_rate)),
            ("debug_tap_burst", u64::from(self.debug_tap_burst)),
            ("debug_tap_max_watchers", self.debug_tap_max_watchers as u64),
            ("debug_tap_buffer", self.debug_tap_buffer as u64),
        ];
        if self.debug_tap_preview_size.0 > herald_bus::debug_tap::MAX_PREVIEW_BYTES {
            return Err(ConfigError::new("debug_tap_preview_size", "must be at most 64KiB"));
        }
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
        }
        if i32::try_from(self.listen_backlog).is_err() {
            return Err(ConfigError::new("listen_backlog", "must be at most 2147483647"));
        }
        // Token lifetimes and the rotation overlap travel in whole seconds.
        for (key, d) in [
            ("token_default_ttl", self.token_default_ttl),
            ("token_min_ttl", self.token_min_ttl),
            ("token_max_ttl", self.token_max_ttl),
            ("signing_key_overlap", self.signing_key_overlap),
        ] {
            if d.0.subsec_nanos() != 0 {
                return Err(ConfigError::new(key, format!("must be whole seconds (is {d})")));
            }
        }
        if !matches!(self.history_replicas, 1 | 3 | 5) {
            return Err(ConfigError::new("history_replicas", "must be 1, 3 or 5"));
        }
        if self.max_message_size_ceiling.0 > u64::from(u32::MAX) {
            return Err(ConfigError::new("max_message_size_ceiling", "must be below 4GiB"));
        }
        if self.default_max_message_size > self.max_message_size_ceiling {
            return Err(ConfigError::new("default_max_message_size", "must not exceed max_message_size_ceiling"));
        }
        if self.max_message_size_ceiling > self.max_body_size {
            return Err(ConfigError::new("max_message_size_ceiling", "must not exceed max_body_size"));
        }
        if self.token_min_ttl > self.token_max_ttl {
            return Err(ConfigError::new("token_min_ttl", "must not exceed token_max_ttl"));
        }
        if !(self.token_min_ttl..=self.token_max_ttl).contains(&self.token_default_ttl) {
            return Err(ConfigError::new("token_default_ttl", "must lie between token_min_ttl and token_max_ttl"));
        }
        if self.idempotency_window.0 < MIN_IDEMPOTENCY_WINDOW {
            return Err(ConfigError::new(
                "idempotency_window",
                format!("must be at least {}", HumanDuration(MIN_IDEMPOTENCY_WINDOW)),
            ));
        }
        if let Err(e) = herald_proto::SubjectSpace::new(&self.subject_prefix) {
            return Err(ConfigError::new("subject_prefix", e.to_string()));
        }
        if self.nats_url.trim().is_empty() {
            return Err(ConfigError::new("nats_url", "must not be empty"));
        }
        if self.issuer.is_empty() {
            return Err(ConfigError::new("issuer", "must not be empty"));
        }
        if self.presence_ttl.0 < Duration::from_secs(1) {
            return Err(ConfigError::new("presence_ttl", "must be at least 1s (edges report every few seconds)"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.usage_report_interval.0) {
            return Err(ConfigError::new("usage_report_interval", "must be 1s to 5m"));
        }
        if self.usage_day_retention.0 < Duration::from_secs(32 * 86_400) {
            return Err(ConfigError::new("usage_day_retention", "must be at least 32d (monthly quotas read the days)"));
        }
        if self.max_json_depth > MAX_JSON_DEPTH {
            return Err(ConfigError::new("max_json_depth", format!("must be at most {MAX_JSON_DEPTH}")));
        }
        if self.max_history_ttl.0 > Duration::from_secs(10 * 365 * 86_400) {
            return Err(ConfigError::new("max_history_ttl", "must be at most ten years"));
        }
        if self.http2_max_header_list_size.0 > u64::from(u32::MAX) {
            return Err(ConfigError::new("http2_max_header_list_size", "must be below 4GiB"));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(ConfigError::new("tls_key", "must be set when tls_cert is")),
            (None, Some(_)) => return Err(ConfigError::new("tls_cert", "must be set when tls_key is")),
            _ => {}
        }
        if let Some(token) = &self.admin_token
            && token.expose().is_empty()
        {
            return Err(ConfigError::new("admin_token", "must not be empty when set"));
        }
        Ok(())
    }

    pub(crate) fn cache_ttl(&self) -> Duration {
        self.cache_ttl.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults");
    }

    #[test]
    fn env_overrides_and_names_the_key() {
        let mut c = Config::default();
        c.apply_env([
            ("HERALD_CP_DATABASE_URL", "postgres://x/y"),
            ("HERALD_CP_MAX_BATCH_MESSAGES", "7"),
            ("HERALD_CP_ADMIN_TOKEN", "s3cret-admin-token"),
            ("OTHER", "ignored"),
        ])
        .expect("env");
        assert_eq!(c.database_url, "postgres://x/y");
        assert_eq!(c.max_batch_messages, 7);
        c.apply_env([("HERALD_CP_LISTEN", "127.0.0.1:9000"), ("HERALD_CP_SUBJECT_PREFIX", "prod.eu")]).expect("env");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.subject_prefix, "prod.eu");
        assert_eq!(c.admin_token.as_ref().map(Secret::expose), Some("s3cret-admin-token"));
        assert!(!format!("{c:?}").contains("s3cret"), "the admin token must not be in Debug output");

        let err = Config::default().apply_env([("HERALD_CP_MAX_BATCH_MESSAGES", "many")]).expect_err("bad");
        assert_eq!(err.key, "max_batch_messages");
        let err = Config::default().apply_env([("HERALD_CP_NOPE", "1")]).expect_err("unknown");
        assert_eq!(err.key, "HERALD_CP_NOPE");
        assert!(Config::env_names().contains(&"HERALD_CP_TOKEN_MAX_TTL".to_owned()));
    }

    #[test]
    fn sizes_and_durations_carry_their_unit() {
        let mut c = Config::default();
        c.apply_env([("HERALD_CP_CACHE_TTL", "250ms"), ("HERALD_CP_MAX_BODY_SIZE", "2MiB")]).expect("env");
        assert_eq!(c.cache_ttl, HumanDuration::millis(250));
        assert_eq!(c.max_body_size, ByteSize::mib(2));
        assert_eq!(c.set("token_max_ttl", "12h"), Ok(true));
        assert_eq!(c.token_max_ttl, HumanDuration::secs(12 * 3600));
        assert_eq!(c.set("history_stream_max_size", "1048576"), Ok(true), "a bare size is bytes");
        assert_eq!(c.history_stream_max_size, ByteSize::mib(1));

        // A bare duration is ambiguous; a bad unit is refused; both name the key.
        let err = Config::default().apply_env([("HERALD_CP_CACHE_TTL", "5000")]).expect_err("no unit");
        assert_eq!(err.key, "cache_ttl");
        assert!(err.to_string().contains("needs a unit"), "{err}");
        let err = Config::default().set("max_body_size", "1XB").expect_err("bad unit");
        assert_eq!(err.key, "max_body_size");
        let err = Config::default().set("shutdown_timeout", "10 parsecs").expect_err("bad unit");
        assert_eq!(err.key, "shutdown_timeout");
    }

    #[test]
    fn old_keys_keep_their_unit() {
        let mut c = Config::default();
        c.apply_env([
            ("HERALD_CP_DATABASE_ACQUIRE_TIMEOUT_MS", "5000"),
            ("HERALD_CP_MAX_BODY_BYTES", "1048576"),
            ("HERALD_CP_TOKEN_MAX_TTL_SECS", "7200"),
        ])
        .expect("old env");
        assert_eq!(c.database_acquire_timeout, HumanDuration::secs(5));
        assert_eq!(c.max_body_size, ByteSize::mib(1));
        assert_eq!(c.token_max_ttl, HumanDuration::secs(7200));
        assert_eq!(c.set("presence_ttl_ms", "2500"), Ok(true));
        assert_eq!(c.presence_ttl, HumanDuration::millis(2500));
        assert_eq!(c.set("history_stream_max_bytes", "4096"), Ok(true));
        assert_eq!(c.history_stream_max_size, ByteSize::kib(4));

        // The old keys took bare numbers only.
        let err = Config::default().set("cache_ttl_ms", "5s").expect_err("unit on an old key");
        assert_eq!(err.key, "cache_ttl_ms");
        assert!(err.to_string().contains("cache_ttl"), "{err}");
    }

    #[test]
    fn old_and_new_together_is_an_error_naming_both() {
        let err = Config::default()
            .apply_env([("HERALD_CP_CACHE_TTL_MS", "5000"), ("HERALD_CP_CACHE_TTL", "5s")])
            .expect_err("both");
        assert_eq!(err.key, "cache_ttl");
        assert!(err.to_string().contains("cache_ttl_ms"), "{err}");
        let err =
            RenamedKey::check_exclusive(RENAMED_KEYS, ["max_body_size", "listen", "max_body_bytes"]).expect_err("both");
        assert!(err.to_string().contains("max_body_bytes") && err.to_string().contains("max_body_size"), "{err}");
    }

    #[test]
    fn the_renamed_table_is_sound() {
        for r in RENAMED_KEYS {
            assert!(Config::FIELDS.contains(&r.new), "{} renames to unknown key {}", r.old, r.new);
            assert!(!Config::FIELDS.contains(&r.old), "{} is still a field", r.old);
            let mut c = Config::default();
            assert_eq!(c.set(r.old, "1"), Ok(true), "{} takes a bare number", r.old);
        }
        for key in Config::FIELDS {
            let unit_in_name = ["_ms", "_secs", "_bytes"].iter().any(|u| key.ends_with(u));
            assert!(!unit_in_name, "{key} carries its unit in its name");
        }
    }

    #[test]
    fn old_keys_log_a_warning_naming_both() {
        use std::io::Write;
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, || {
            Config::default().apply_env([("HERALD_CP_CACHE_TTL_MS", "5000")]).expect("old env");
        });
        let logged = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(logged.contains("WARN"), "{logged}");
        assert!(logged.contains("`cache_ttl_ms`") && logged.contains("`cache_ttl`"), "{logged}");
        assert!(logged.contains("HERALD_CP_CACHE_TTL_MS"), "{logged}");
    }

    #[test]
    fn toml_like_input_is_strict() {
        let err = serde_json::from_str::<Config>(r#"{"databse_url": "x"}"#).expect_err("typo");
        assert!(err.to_string().contains("databse_url"), "{err}");
        let c: Config = serde_json::from_str(r#"{"token_max_ttl": "60s", "token_default_ttl": "30s"}"#).expect("ok");
        c.validate().expect("valid");
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config { idempotency_window: HumanDuration::secs(60), ..Config::default() };
        assert_eq!(c.validate().expect_err("short").key, "idempotency_window");
        let c = Config { token_default_ttl: HumanDuration::secs(100_000), ..Config::default() };
        assert_eq!(c.validate().expect_err("long").key, "token_default_ttl");
        let c = Config { token_max_ttl: HumanDuration::millis(1500), ..Config::default() };
        assert_eq!(c.validate().expect_err("fraction").key, "token_max_ttl");
        let c = Config { database_url: "mysql://x".into(), ..Config::default() };
        assert_eq!(c.validate().expect_err("scheme").key, "database_url");
        let c = Config { subject_prefix: "a..b".into(), ..Config::default() };
        assert_eq!(c.validate().expect_err("prefix").key, "subject_prefix");
        let c = Config { presence_ttl: HumanDuration::millis(500), ..Config::default() };
        assert_eq!(c.validate().expect_err("presence ttl").key, "presence_ttl");
        let c = Config { max_history_limit: 0, ..Config::default() };
        assert_eq!(c.validate().expect_err("history limit").key, "max_history_limit");
        let c = Config { history_stream_max_size: ByteSize(0), ..Config::default() };
        assert_eq!(c.validate().expect_err("stream bytes").key, "history_stream_max_size");
        let c = Config { default_max_message_size: ByteSize::mib(2), ..Config::default() };
        assert_eq!(c.validate().expect_err("default above ceiling").key, "default_max_message_size");
        let c = Config { max_body_size: ByteSize::kib(512), ..Config::default() };
        assert_eq!(c.validate().expect_err("ceiling above body").key, "max_message_size_ceiling");
    }
}
