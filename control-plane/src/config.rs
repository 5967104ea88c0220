//! [`Config`]: every setting and limit of the control plane, in one flat,
//! strict struct.
//!
//! The fields are flat and carry their unit in the name (`_bytes`,
//! `_secs`, `_ms`), so one table serves TOML (`deny_unknown_fields`: a typo
//! is an error that names the key), command-line flags and environment
//! variables: field `foo_bar` is `HERALD_CP_FOO_BAR`
//! ([`Config::apply_env`]). [`Config::validate`] checks the values and names
//! the failing key. The admin token is a [`Secret`]: its `Debug` prints
//! `***`, so logging the config never logs it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The prefix of the environment variables [`Config::apply_env`] reads.
pub const ENV_PREFIX: &str = "HERALD_CP_";

/// The shortest idempotency window allowed.
pub const MIN_IDEMPOTENCY_WINDOW_SECS: u64 = 120;

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
        #[derive(Clone, Debug, Deserialize)]
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

            /// Sets the field named `key` from its text form. Returns false
            /// when no field has that name.
            ///
            /// # Errors
            ///
            /// [`ConfigError`] when the text is not a valid value.
            pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
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
    /// Longest wait for a database connection, in milliseconds.
    database_acquire_timeout_ms: u64 = 5_000;
    /// The operators' bearer token. Unset: the admin API refuses every call.
    admin_token: Option<Secret> = None;
    /// The `iss` of minted tokens.
    issuer: String = herald_proto::claims::DEFAULT_ISSUER.to_owned();
    /// Largest request body (REST) or message (gRPC), in bytes.
    max_body_bytes: usize = 1024 * 1024;
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
    /// Default per-app limit: message payload size, in bytes.
    default_max_message_bytes: u32 = 64 * 1024;
    /// Default per-app limit: API publishes per second (per replica).
    default_publish_rate_per_sec: u32 = 1_000;
    /// The largest message size an app may be given, in bytes.
    max_message_bytes_ceiling: u32 = 1024 * 1024;
    /// Most entries in an app's Origin allowlist.
    max_allowed_origins: usize = 100;
    /// Most API keys per app (revoked ones included).
    max_keys_per_app: u64 = 100;
    /// Token lifetime when the request gives none, in seconds.
    token_default_ttl_secs: u64 = 3_600;
    /// Shortest token lifetime, in seconds.
    token_min_ttl_secs: u64 = 1;
    /// Longest token lifetime, in seconds.
    token_max_ttl_secs: u64 = 86_400;
    /// How long a rotated-out signing key stays in the JWKS, in seconds.
    /// Tokens it signed stop verifying after that.
    signing_key_overlap_secs: u64 = 86_400;
    /// How often each replica reloads the signing keys from the database
    /// (besides reloading on a rotation event), in seconds.
    signing_key_refresh_secs: u64 = 30;
    /// How long an idempotency id is remembered, in seconds (at least 120).
    idempotency_window_secs: u64 = 300;
    /// With PostgreSQL, share idempotency ids between replicas through the
    /// database (two more queries per publish that carries an id). SQLite
    /// serves one process and never needs it.
    idempotency_shared: bool = true;
    /// Most idempotency ids remembered per replica.
    idempotency_max_entries: usize = 1_000_000;
    /// How long a replica trusts a cached API key or app, in milliseconds.
    /// Revocations on this replica take effect at once, on others within
    /// this bound (or at once when the bus delivers the revocation event).
    cache_ttl_ms: u64 = 5_000;
    /// Most API keys and apps cached per replica.
    cache_max_entries: usize = 100_000;
    /// Most HTTP connections (REST and gRPC) at once; more are closed at
    /// once.
    max_http_connections: usize = 10_000;
    /// Most concurrent requests (streams) on one HTTP/2 connection.
    max_http2_streams: u32 = 256;
    /// Longest wait for a request's head, in milliseconds.
    header_read_timeout_ms: u64 = 10_000;
    /// Longest wait for in-flight requests at shutdown, in milliseconds.
    shutdown_timeout_ms: u64 = 10_000;
    /// Longest wait for the database in `/readyz`, in milliseconds.
    readiness_timeout_ms: u64 = 2_000;
    /// Most channel namespaces per app.
    max_namespaces_per_app: u64 = 100;
    /// The largest `history_size` (messages kept per channel) a namespace
    /// may be given.
    max_history_size: u32 = 10_000;
    /// The longest `history_ttl` a namespace may be given, in seconds.
    max_history_ttl_secs: u64 = 7 * 86_400;
    /// Most bytes one history stream (one namespace of one app) may hold in
    /// JetStream; the oldest messages go first past it.
    history_stream_max_bytes: u64 = 256 * 1024 * 1024;
    /// Copies JetStream keeps of each history stream (1, 3 or 5; at most the
    /// number of NATS servers with JetStream).
    history_replicas: u8 = 1;
    /// Most messages one history read returns (`limit`).
    max_history_limit: usize = 1_000;
    /// How long presence and subscriber counts of an edge that stopped
    /// reporting are kept, in milliseconds.
    presence_ttl_ms: u64 = 30_000;
    /// Most presence entries (member connections, across edges) kept per
    /// channel; reports past it are ignored.
    presence_max_per_channel: u32 = 100_000;
    /// Most channels one channel listing returns (the rest are cut, and the
    /// answer says so).
    max_channels_listed: usize = 10_000;
}

fn parse_value<T: DeserializeOwned>(key: &str, value: &str) -> Result<T, ConfigError> {
    // JSON first (numbers, booleans, arrays), then the text as a string.
    if let Ok(v) = serde_json::from_str::<T>(value) {
        return Ok(v);
    }
    serde_json::from_value::<T>(serde_json::Value::String(value.to_owned()))
        .map_err(|e| ConfigError::new(key, format!("invalid value: {e}")))
}

impl Config {
    /// Applies environment variables `HERALD_CP_<FIELD>` (upper case) from
    /// `vars`, e.g. `HERALD_CP_DATABASE_URL`. Variables with the prefix that
    /// name no field are an error.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable with an invalid value or
    /// unknown name.
    pub fn apply_env<I, K, V>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (k, v) in vars {
            let Some(field) = k.as_ref().strip_prefix(ENV_PREFIX) else { continue };
            let field = field.to_ascii_lowercase();
            if !self.set(&field, v.as_ref())? {
                return Err(ConfigError::new(k.as_ref(), "unknown setting"));
            }
        }
        Ok(())
    }

    /// The environment variable of every field.
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
        let positive: [(&str, u64); 21] = [
            ("max_http_connections", self.max_http_connections as u64),
            ("max_http2_streams", u64::from(self.max_http2_streams)),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("database_max_connections", u64::from(self.database_max_connections)),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_batch_messages", self.max_batch_messages as u64),
            ("max_channels_per_message", self.max_channels_per_message as u64),
            ("max_stream_messages", self.max_stream_messages as u64),
            ("max_publishes_in_flight", self.max_publishes_in_flight as u64),
            ("default_max_connections", u64::from(self.default_max_connections)),
            ("default_max_message_bytes", u64::from(self.default_max_message_bytes)),
            ("default_publish_rate_per_sec", u64::from(self.default_publish_rate_per_sec)),
            ("token_min_ttl_secs", self.token_min_ttl_secs),
            ("signing_key_refresh_secs", self.signing_key_refresh_secs),
            ("max_history_size", u64::from(self.max_history_size)),
            ("max_history_ttl_secs", self.max_history_ttl_secs),
            ("history_stream_max_bytes", self.history_stream_max_bytes),
            ("max_history_limit", self.max_history_limit as u64),
            ("presence_ttl_ms", self.presence_ttl_ms),
            ("presence_max_per_channel", u64::from(self.presence_max_per_channel)),
            ("max_channels_listed", self.max_channels_listed as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
        }
        if !matches!(self.history_replicas, 1 | 3 | 5) {
            return Err(ConfigError::new("history_replicas", "must be 1, 3 or 5"));
        }
        if self.default_max_message_bytes > self.max_message_bytes_ceiling {
            return Err(ConfigError::new("default_max_message_bytes", "must not exceed max_message_bytes_ceiling"));
        }
        if self.max_message_bytes_ceiling as usize > self.max_body_bytes {
            return Err(ConfigError::new("max_message_bytes_ceiling", "must not exceed max_body_bytes"));
        }
        if self.token_min_ttl_secs > self.token_max_ttl_secs {
            return Err(ConfigError::new("token_min_ttl_secs", "must not exceed token_max_ttl_secs"));
        }
        if !(self.token_min_ttl_secs..=self.token_max_ttl_secs).contains(&self.token_default_ttl_secs) {
            return Err(ConfigError::new(
                "token_default_ttl_secs",
                "must lie between token_min_ttl_secs and token_max_ttl_secs",
            ));
        }
        if self.idempotency_window_secs < MIN_IDEMPOTENCY_WINDOW_SECS {
            return Err(ConfigError::new(
                "idempotency_window_secs",
                format!("must be at least {MIN_IDEMPOTENCY_WINDOW_SECS}"),
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
        if self.presence_ttl_ms < 1_000 {
            return Err(ConfigError::new("presence_ttl_ms", "must be at least 1000 (edges report every few seconds)"));
        }
        if self.max_history_ttl_secs > 10 * 365 * 86_400 {
            return Err(ConfigError::new("max_history_ttl_secs", "must be at most ten years"));
        }
        if let Some(token) = &self.admin_token
            && token.expose().is_empty()
        {
            return Err(ConfigError::new("admin_token", "must not be empty when set"));
        }
        Ok(())
    }

    pub(crate) fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
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
        assert!(Config::env_names().contains(&"HERALD_CP_TOKEN_MAX_TTL_SECS".to_owned()));
    }

    #[test]
    fn toml_like_input_is_strict() {
        let err = serde_json::from_str::<Config>(r#"{"databse_url": "x"}"#).expect_err("typo");
        assert!(err.to_string().contains("databse_url"), "{err}");
        let c: Config =
            serde_json::from_str(r#"{"token_max_ttl_secs": 60, "token_default_ttl_secs": 30}"#).expect("ok");
        c.validate().expect("valid");
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config { idempotency_window_secs: 60, ..Config::default() };
        assert_eq!(c.validate().expect_err("short").key, "idempotency_window_secs");
        let c = Config { token_default_ttl_secs: 100_000, ..Config::default() };
        assert_eq!(c.validate().expect_err("long").key, "token_default_ttl_secs");
        let c = Config { database_url: "mysql://x".into(), ..Config::default() };
        assert_eq!(c.validate().expect_err("scheme").key, "database_url");
        let c = Config { subject_prefix: "a..b".into(), ..Config::default() };
        assert_eq!(c.validate().expect_err("prefix").key, "subject_prefix");
        let c = Config { presence_ttl_ms: 500, ..Config::default() };
        assert_eq!(c.validate().expect_err("presence ttl").key, "presence_ttl_ms");
        let c = Config { max_history_limit: 0, ..Config::default() };
        assert_eq!(c.validate().expect_err("history limit").key, "max_history_limit");
        let c = Config { history_stream_max_bytes: 0, ..Config::default() };
        assert_eq!(c.validate().expect_err("stream bytes").key, "history_stream_max_bytes");
    }
}
