//! The edge's configuration: every limit, timeout and bound, with defaults,
//! strict parsing (`deny_unknown_fields`) and a validation that names the
//! failing key.
//!
//! The struct is flat, so one table serves a TOML file, command-line flags
//! and environment variables: field `foo_bar` is `--foo-bar` and
//! `HERALD_EDGE_FOO_BAR` ([`EdgeConfig::set`], [`EdgeConfig::apply_env`]).
//! Sizes and durations carry their unit in the value (`"64KiB"`, `"25s"`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use herald_proto::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

/// Longest token leeway accepted in config.
pub const MAX_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// Declares [`EdgeConfig`] from one list of documented fields, and from
/// the same list its field names ([`EdgeConfig::FIELDS`]) and their
/// documentation ([`EdgeConfig::HELP`], the help of each `--flag`).
macro_rules! edge_config {
    ($(#[$meta:meta])* pub struct $name:ident { $( $(#[doc = $doc:literal])* pub $field:ident : $ty:ty, )* }) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl $name {
            /// Every field name, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$( stringify!($field), )*];

            /// Every field's documentation, in [`Self::FIELDS`]' order (its
            /// doc comment's lines joined).
            pub const HELP: &'static [&'static str] = &[$( concat!($($doc, "\n",)*), )*];

            /// Every field's Rust type as written, in [`Self::FIELDS`]'
            /// order: what the flags' help names as the value's kind.
            pub const TYPES: &'static [&'static str] = &[$( stringify!($ty), )*];
        }
    };
}

edge_config! {
/// Configuration of one edge node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Address the `herald edge` command listens on (the library takes a
    /// listener instead).
    pub listen: SocketAddr,
    /// Pending connections the kernel queues on `listen` before they are
    /// accepted (`herald edge`); the kernel caps it at
    /// `net.core.somaxconn`.
    pub listen_backlog: u32,
    /// NATS server(s) of the bus, comma-separated (`herald edge`).
    pub nats_url: String,
    /// Prefix of every NATS subject; deployments sharing a NATS use
    /// different prefixes.
    pub subject_prefix: String,
    /// How the edge follows on NATS the channels it has subscribers to
    /// (`herald edge`): `bucket`, one NATS subscription per bucket of an
    /// app's channels (at most 256 per app; little memory per channel, but
    /// the edge also receives the other channels of its buckets), or
    /// `channel`, one per channel (only its own channels' messages, about
    /// 6 KiB of NATS client queue each).
    pub nats_channel_routing: String,
    /// Name of this edge in logs, `Connected` frames and presence reports.
    /// Empty: generated at start.
    pub edge_id: String,
    /// Where the control plane publishes its signing keys, e.g.
    /// `http://control-plane:8080/.well-known/jwks.json` (or `https://…`).
    pub jwks_url: String,
    /// Expected `iss` of tokens.
    pub issuer: String,
    /// Clock skew allowed on `exp` and `nbf` (at most 60 s).
    pub token_leeway: HumanDuration,
    /// Refetch the JWKS at most this often when a token names an unknown key.
    pub jwks_min_refetch_interval: HumanDuration,
    /// Refetch the JWKS this often regardless (sooner when its
    /// `Cache-Control: max-age` says so).
    pub jwks_refresh_interval: HumanDuration,
    /// CA certificates (PEM) trusted for an `https://` `jwks_url`, besides
    /// the bundled web PKI roots (for a private CA).
    pub jwks_ca_file: Option<PathBuf>,
    /// OpenTelemetry: export traces over OTLP/gRPC to this collector
    /// (`http://…:4317`; `https://` for TLS). Empty: no traces.
    pub otlp_endpoint: String,
    /// Share (0 to 1) of the traces that start here which are exported; a
    /// publisher's sampled trace is always followed.
    pub otlp_sample_ratio: f64,
    /// TLS: serve `wss://` with this certificate chain (PEM); needs
    /// `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// TLS: the private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest WebSocket message accepted from a client (close 1009 above).
    pub max_frame_size: ByteSize,
    /// Largest publish payload (error `too_large` above); a token's app
    /// limit may lower it.
    pub max_message_size: ByteSize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: u32,
    /// Connections this edge accepts (close 4003 above).
    pub max_connections: u32,
    /// Connections of one app on this edge; 0 = no limit besides the token's.
    pub max_connections_per_app: u32,
    /// Sustained publishes per second per connection.
    pub publish_rate: u32,
    /// Burst of publishes per connection.
    pub publish_burst: u32,
    /// Client publishes of one connection handed to the bus and not yet
    /// confirmed by it; past this, the connection's next request waits for
    /// the oldest receipt.
    pub max_publishes_in_flight: u32,
    /// Frames queued for one connection before it is closed as a slow
    /// consumer.
    pub send_queue_frames: u32,
    /// Bytes queued for one connection before it is closed as a slow
    /// consumer.
    pub send_queue_bytes: ByteSize,
    /// Most messages of a busy channel kept to be pushed to its
    /// subscribers together (see docs/performance.md); 0 pushes every
    /// message on its own.
    pub fanout_burst: u32,
    /// A write to a client making no progress for this long drops the
    /// connection.
    pub write_timeout: HumanDuration,
    /// Time a client has to authenticate after the upgrade.
    pub handshake_timeout: HumanDuration,
    /// Interval of WebSocket pings to clients.
    pub heartbeat_interval: HumanDuration,
    /// A client silent this long is closed (4001).
    pub heartbeat_timeout: HumanDuration,
    /// Time a client has to send its HTTP request headers.
    pub http_header_timeout: HumanDuration,
    /// On SIGTERM, the longest wait for connections to close.
    pub drain_timeout: HumanDuration,
    /// On SIGTERM, how long clients told to move (`GoAway`) get to finish
    /// their requests and leave before the edge closes them with 1001;
    /// capped at `drain_timeout`.
    pub drain_grace: HumanDuration,
    /// How often the edge re-sends its presence entries and subscriber
    /// counts.
    pub presence_snapshot_interval: HumanDuration,
    /// Presence entries (and subscriber counts) of other edges not refreshed
    /// this long expire.
    pub presence_ttl: HumanDuration,
    /// Most presence entries (member connections, across edges) this edge
    /// keeps per channel; reports past it are ignored.
    pub presence_max_per_channel: u32,
    /// Join and leave events are sent while a channel has at most this many
    /// members (each event goes to every subscriber: a crowd joining a big
    /// channel would cost members² frames); above it, none.
    pub presence_events_max_members: u32,
    /// How long an app's namespace options are cached (a change made through
    /// the API also reaches edges at once, by a control event).
    pub namespace_cache_ttl: HumanDuration,
    /// Pusher connections: the `activity_timeout` told to clients; the edge
    /// sends `pusher:ping` after this long without a message from one.
    pub pusher_activity_timeout: HumanDuration,
    /// Pusher connections: after a `pusher:ping`, how long a client has to
    /// answer before it is closed (4201).
    pub pusher_pong_timeout: HumanDuration,
    /// Pusher presence channels: most users in one channel, when the app
    /// does not set its own.
    pub pusher_presence_max_members: u32,
    /// Pusher client events: largest `data`, when the app does not set its
    /// own.
    pub pusher_max_event_bytes: ByteSize,
    /// Pusher client events: most per second from one connection, when the
    /// app does not set its own.
    pub pusher_client_event_rate: u32,
    /// Webhook events (client events, cache misses) waiting to be reported
    /// to the control plane; past it, new ones are dropped and counted.
    pub webhook_report_queue: u32,
    /// How often the edge sends its per-app usage counts to the control
    /// plane (1s to 5m).
    pub usage_report_interval: HumanDuration,
    /// Most app entries kept in usage reports the control plane has not
    /// acknowledged; past it the oldest are dropped (and counted in
    /// `herald_usage_dropped_apps_total`).
    pub usage_max_pending_apps: u32,
    /// How long the edge keeps retrying to report one webhook event before
    /// dropping it.
    pub webhook_report_retry: HumanDuration,
    /// Debug events this edge sends per second for one watched app; past
    /// it (after `debug_tap_burst`) they are dropped and counted.
    pub debug_tap_rate: u32,
    /// Debug events this edge may send at once for one watched app.
    pub debug_tap_burst: u32,
    /// Largest payload preview in a publish debug event.
    pub debug_tap_preview_size: ByteSize,
}
}

/// The prefix of the environment variables [`EdgeConfig::apply_env`] reads.
pub const ENV_PREFIX: &str = "HERALD_EDGE_";

/// Variables with the prefix that are not settings: the edge URL the client
/// commands read, and the config file of `herald edge`.
pub const ENV_NOT_SETTINGS: &[&str] = &["HERALD_EDGE_URL", "HERALD_EDGE_CONFIG"];

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            listen_backlog: 4096,
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            subject_prefix: herald_proto::subject::DEFAULT_PREFIX.to_owned(),
            nats_channel_routing: "bucket".to_owned(),
            edge_id: String::new(),
            jwks_url: "http://127.0.0.1:8080/.well-known/jwks.json".to_owned(),
            issuer: herald_proto::claims::DEFAULT_ISSUER.to_owned(),
            token_leeway: HumanDuration::secs(5),
            jwks_min_refetch_interval: HumanDuration::secs(5),
            jwks_refresh_interval: HumanDuration::secs(300),
            jwks_ca_file: None,
            otlp_endpoint: String::new(),
            otlp_sample_ratio: 1.0,
            tls_cert: None,
            tls_key: None,
            max_frame_size: ByteSize::kib(68),
            max_message_size: ByteSize::kib(64),
            max_subscriptions: 128,
            max_connections: 50_000,
            max_connections_per_app: 0,
            publish_rate: 50,
            publish_burst: 100,
            max_publishes_in_flight: 64,
            send_queue_frames: 16_384,
            send_queue_bytes: ByteSize::mib(2),
            fanout_burst: 64,
            write_timeout: HumanDuration::secs(10),
            handshake_timeout: HumanDuration::secs(10),
            heartbeat_interval: HumanDuration::secs(25),
            heartbeat_timeout: HumanDuration::secs(60),
            http_header_timeout: HumanDuration::secs(10),
            drain_timeout: HumanDuration::secs(30),
            drain_grace: HumanDuration::secs(5),
            presence_snapshot_interval: HumanDuration::secs(10),
            presence_ttl: HumanDuration::secs(30),
            presence_max_per_channel: 100_000,
            presence_events_max_members: 1_000,
            namespace_cache_ttl: HumanDuration::secs(30),
            pusher_activity_timeout: HumanDuration::secs(120),
            pusher_pong_timeout: HumanDuration::secs(30),
            pusher_presence_max_members: 100,
            pusher_max_event_bytes: ByteSize::kib(10),
            pusher_client_event_rate: 10,
            webhook_report_queue: 10_000,
            webhook_report_retry: HumanDuration::secs(60),
            usage_report_interval: HumanDuration::secs(10),
            usage_max_pending_apps: 100_000,
            debug_tap_rate: 100,
            debug_tap_burst: 200,
            debug_tap_preview_size: ByteSize(256),
        }
    }
}

/// A configuration value out of range; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid edge config `{key}`: {problem}")]
pub struct ConfigError {
    /// The failing key.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn err(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key, problem: problem.into() }
}

impl EdgeConfig {
    /// [`Self::nats_channel_routing`], parsed.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for anything but `bucket` and `channel`.
    pub fn channel_routing(&self) -> Result<herald_bus::ChannelRouting, ConfigError> {
        self.nats_channel_routing.parse().map_err(|why| err("nats_channel_routing", why))
    }

    /// How long clients told to move get before the edge closes them:
    /// `drain_grace`, capped at `drain_timeout`.
    #[must_use]
    pub fn move_grace(&self) -> std::time::Duration {
        self.drain_grace.0.min(self.drain_timeout.0)
    }

    /// Sets the field named `key` from its text form (`"64KiB"`, `"25s"`,
    /// `"128"`, a path). Returns false when no field has that name.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the text is not a valid value for the field.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let Some(key) = Self::FIELDS.iter().copied().find(|f| *f == key) else { return Ok(false) };
        let json = serde_json::to_value(&*self).map_err(|e| err(key, e.to_string()))?;
        let parsed = serde_json::from_str::<serde_json::Value>(value)
            .ok()
            .filter(|v| !v.is_string())
            .unwrap_or_else(|| serde_json::Value::String(value.to_owned()));
        let attempt = |v: serde_json::Value| {
            let mut json = json.clone();
            json[key] = v;
            serde_json::from_value::<EdgeConfig>(json)
        };
        let updated = attempt(parsed)
            .or_else(|_| attempt(serde_json::Value::String(value.to_owned())))
            .map_err(|e| err(key, format!("invalid value {value:?}: {e}")))?;
        *self = updated;
        Ok(true)
    }

    /// Applies environment variables `HERALD_EDGE_<FIELD>` from `vars`.
    /// Variables with the prefix that name no field are an error.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable.
    pub fn apply_env<I, K, V>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (k, v) in vars {
            let Some(field) = k.as_ref().strip_prefix(ENV_PREFIX) else { continue };
            if ENV_NOT_SETTINGS.contains(&k.as_ref()) {
                continue;
            }
            if !self.set(&field.to_ascii_lowercase(), v.as_ref())? {
                return Err(ConfigError { key: "environment", problem: format!("unknown setting {}", k.as_ref()) });
            }
        }
        Ok(())
    }

    /// The TLS certificate and key, when both are set.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when only one of them is set.
    pub fn tls(&self) -> Result<Option<(&PathBuf, &PathBuf)>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(err("tls_key", "must be set when tls_cert is")),
            (None, Some(_)) => Err(err("tls_cert", "must be set when tls_key is")),
        }
    }

    /// Checks every value and the relations between them.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tls()?;
        herald_bus::trace::check_otlp(&self.otlp_endpoint, self.otlp_sample_ratio)
            .map_err(|(key, why)| err(key, why))?;
        if herald_proto::SubjectSpace::new(&self.subject_prefix).is_err() {
            return Err(err("subject_prefix", "must be dot-separated tokens of ASCII letters, digits, '_' and '-'"));
        }
        if self.nats_url.trim().is_empty() {
            return Err(err("nats_url", "must not be empty"));
        }
        self.channel_routing()?;
        if !(self.jwks_url.starts_with("http://") || self.jwks_url.starts_with("https://")) {
            return Err(err(
                "jwks_url",
                "must be an http:// or https:// URL of the control plane's /.well-known/jwks.json",
            ));
        }
        if self.token_leeway.0 > MAX_TOKEN_LEEWAY {
            return Err(err("token_leeway", "must be at most 60s"));
        }
        if self.max_frame_size.0 < 1024 || self.max_frame_size.0 > 16 * 1024 * 1024 {
            return Err(err("max_frame_size", "must be between 1KiB and 16MiB"));
        }
        if self.max_message_size.0 == 0 || self.max_message_size.0 + 512 > self.max_frame_size.0 {
            return Err(err("max_message_size", "must be above 0 and at least 512 bytes below max_frame_size"));
        }
        if self.presence_events_max_members == 0 {
            return Err(err("presence_events_max_members", "must be at least 1"));
        }
        if self.presence_max_per_channel == 0 {
            return Err(err("presence_max_per_channel", "must be at least 1"));
        }
        if self.max_subscriptions == 0 {
            return Err(err("max_subscriptions", "must be at least 1"));
        }
        if self.listen_backlog == 0 || i32::try_from(self.listen_backlog).is_err() {
            return Err(err("listen_backlog", "must be between 1 and 2147483647"));
        }
        if self.max_connections == 0 {
            return Err(err("max_connections", "must be at least 1"));
        }
        if self.max_publishes_in_flight == 0 || self.max_publishes_in_flight > 4096 {
            return Err(err("max_publishes_in_flight", "must be 1-4096"));
        }
        if self.publish_burst == 0 && self.publish_rate > 0 {
            return Err(err("publish_burst", "must be at least 1 when publish_rate is set"));
        }
        if self.send_queue_frames < 16 {
            return Err(err("send_queue_frames", "must be at least 16"));
        }
        if self.fanout_burst > 4096 {
            return Err(err("fanout_burst", "must be at most 4096"));
        }
        if self.send_queue_bytes.0 < self.max_frame_size.0 {
            return Err(err("send_queue_bytes", "must be at least max_frame_size"));
        }
        for (key, d) in [
            ("write_timeout", self.write_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("http_header_timeout", self.http_header_timeout),
            ("jwks_min_refetch_interval", self.jwks_min_refetch_interval),
            ("jwks_refresh_interval", self.jwks_refresh_interval),
            ("presence_snapshot_interval", self.presence_snapshot_interval),
            ("namespace_cache_ttl", self.namespace_cache_ttl),
            ("pusher_pong_timeout", self.pusher_pong_timeout),
            ("webhook_report_retry", self.webhook_report_retry),
        ] {
            if d.0.is_zero() {
                return Err(err(key, "must be above 0"));
            }
        }
        if self.pusher_activity_timeout.0 < Duration::from_secs(1) {
            return Err(err("pusher_activity_timeout", "must be at least 1s (Pusher counts it in seconds)"));
        }
        if self.pusher_presence_max_members == 0 {
            return Err(err("pusher_presence_max_members", "must be at least 1"));
        }
        if self.pusher_max_event_bytes.0 == 0 || self.pusher_max_event_bytes.0 > self.max_frame_size.0 {
            return Err(err("pusher_max_event_bytes", "must be above 0 and at most max_frame_size"));
        }
        if self.pusher_client_event_rate == 0 {
            return Err(err("pusher_client_event_rate", "must be at least 1"));
        }
        if self.webhook_report_queue == 0 {
            return Err(err("webhook_report_queue", "must be at least 1"));
        }
        if self.usage_report_interval.0 < Duration::from_secs(1)
            || self.usage_report_interval.0 > Duration::from_secs(300)
        {
            return Err(err("usage_report_interval", "must be 1s to 5m"));
        }
        if self.usage_max_pending_apps == 0 || self.usage_max_pending_apps > 1_000_000 {
            return Err(err("usage_max_pending_apps", "must be 1 to 1000000"));
        }
        if self.debug_tap_rate == 0 {
            return Err(err("debug_tap_rate", "must be at least 1"));
        }
        if self.debug_tap_burst == 0 {
            return Err(err("debug_tap_burst", "must be at least 1"));
        }
        if self.debug_tap_preview_size.0 > herald_bus::debug_tap::MAX_PREVIEW_BYTES {
            return Err(err("debug_tap_preview_size", "must be at most 64KiB"));
        }
        if self.presence_ttl.0 < self.presence_snapshot_interval.0 * 2 {
            return Err(err("presence_ttl", "must be at least twice presence_snapshot_interval"));
        }
        if self.heartbeat_timeout.0 <= self.heartbeat_interval.0 {
            return Err(err("heartbeat_timeout", "must be longer than heartbeat_interval"));
        }
        if self.edge_id.len() > 64 || self.edge_id.contains(|c: char| c.is_control() || c.is_whitespace()) {
            return Err(err("edge_id", "must be at most 64 characters without whitespace"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        EdgeConfig::default().validate().expect("defaults");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<EdgeConfig>(r#"{"max_frame_sise": "1MiB"}"#).expect_err("unknown key");
        assert!(e.to_string().contains("max_frame_sise"), "{e}");
    }

    #[test]
    fn fields_are_settable_from_text() {
        let mut c = EdgeConfig::default();
        for key in EdgeConfig::FIELDS {
            let v = serde_json::to_value(&c).expect("json");
            assert!(v.get(*key).is_some(), "FIELDS lists unknown key {key}");
        }
        assert_eq!(
            serde_json::to_value(&c).expect("json").as_object().map(|o| o.len()),
            Some(EdgeConfig::FIELDS.len())
        );
        assert_eq!(c.set("max_frame_size", "1MiB"), Ok(true));
        assert_eq!(c.max_frame_size, ByteSize::mib(1));
        assert_eq!(c.set("heartbeat_interval", "10s"), Ok(true));
        assert_eq!(c.heartbeat_interval, HumanDuration::secs(10));
        assert_eq!(c.set("max_subscriptions", "7"), Ok(true));
        assert_eq!(c.max_subscriptions, 7);
        assert_eq!(c.set("edge_id", "e-1"), Ok(true));
        assert_eq!(c.edge_id, "e-1");
        assert_eq!(c.set("edge_id", "123"), Ok(true), "numbers are fine as strings");
        assert_eq!(c.edge_id, "123");
        assert_eq!(c.set("tls_cert", "/etc/cert.pem"), Ok(true));
        assert_eq!(c.set("listen", "127.0.0.1:9000"), Ok(true));
        assert_eq!(c.set("nope", "1"), Ok(false));
        assert_eq!(c.set("max_subscriptions", "many").map_err(|e| e.key), Err("max_subscriptions"));
        let mut c = EdgeConfig::default();
        c.apply_env([("HERALD_EDGE_PUBLISH_RATE", "9"), ("PATH", "/bin"), ("HERALD_EDGE_URL", "ws://x")]).expect("env");
        assert_eq!(c.publish_rate, 9);
        assert!(c.apply_env([("HERALD_EDGE_PUBLISH_RAET", "9")]).is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let cases: Vec<(EdgeConfig, &str)> = vec![
            (EdgeConfig { jwks_url: "ftp://x".into(), ..Default::default() }, "jwks_url"),
            (EdgeConfig { token_leeway: HumanDuration::secs(61), ..Default::default() }, "token_leeway"),
            (EdgeConfig { max_message_size: ByteSize::kib(68), ..Default::default() }, "max_message_size"),
            (EdgeConfig { heartbeat_timeout: HumanDuration::secs(25), ..Default::default() }, "heartbeat_timeout"),
            (EdgeConfig { send_queue_frames: 1, ..Default::default() }, "send_queue_frames"),
            (EdgeConfig { fanout_burst: 5000, ..Default::default() }, "fanout_burst"),
            (EdgeConfig { max_subscriptions: 0, ..Default::default() }, "max_subscriptions"),
            (EdgeConfig { max_publishes_in_flight: 0, ..Default::default() }, "max_publishes_in_flight"),
            (EdgeConfig { max_publishes_in_flight: 4097, ..Default::default() }, "max_publishes_in_flight"),
            (EdgeConfig { write_timeout: HumanDuration::secs(0), ..Default::default() }, "write_timeout"),
            (EdgeConfig { tls_cert: Some("c.pem".into()), ..Default::default() }, "tls_key"),
            (EdgeConfig { subject_prefix: "a.>".into(), ..Default::default() }, "subject_prefix"),
            (EdgeConfig { nats_channel_routing: "all".into(), ..Default::default() }, "nats_channel_routing"),
            (
                EdgeConfig { pusher_activity_timeout: HumanDuration(Duration::from_millis(10)), ..Default::default() },
                "pusher_activity_timeout",
            ),
            (EdgeConfig { pusher_max_event_bytes: ByteSize::mib(1), ..Default::default() }, "pusher_max_event_bytes"),
            (EdgeConfig { pusher_client_event_rate: 0, ..Default::default() }, "pusher_client_event_rate"),
            (EdgeConfig { webhook_report_queue: 0, ..Default::default() }, "webhook_report_queue"),
            (EdgeConfig { debug_tap_rate: 0, ..Default::default() }, "debug_tap_rate"),
            (EdgeConfig { debug_tap_preview_size: ByteSize::kib(65), ..Default::default() }, "debug_tap_preview_size"),
            (EdgeConfig { webhook_report_retry: HumanDuration::secs(0), ..Default::default() }, "webhook_report_retry"),
        ];
        for (config, key) in cases {
            assert_eq!(config.validate().map_err(|e| e.key), Err(key));
        }
    }
}
