//! The edge's configuration: every limit, timeout and bound, with defaults,
//! strict parsing (`deny_unknown_fields`) and a validation that names the
//! failing key.

use std::path::PathBuf;
use std::time::Duration;

use herald_proto::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

/// Longest token leeway accepted in config.
pub const MAX_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// Configuration of one edge node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Name of this edge in logs, `Connected` frames and presence reports.
    /// Empty: generated at start.
    pub edge_id: String,
    /// Where the control plane publishes its signing keys, e.g.
    /// `http://control-plane:8080/.well-known/jwks.json`.
    pub jwks_url: String,
    /// Expected `iss` of tokens.
    pub issuer: String,
    /// Clock skew allowed on `exp` and `nbf` (at most 60 s).
    pub token_leeway: HumanDuration,
    /// Refetch the JWKS at most this often when a token names an unknown key.
    pub jwks_min_refetch_interval: HumanDuration,
    /// Refetch the JWKS this often regardless.
    pub jwks_refresh_interval: HumanDuration,
    /// TLS: serve `wss://` with this certificate chain and key (PEM).
    pub tls: Option<TlsConfig>,
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
    /// Frames queued for one connection before it is closed as a slow
    /// consumer.
    pub send_queue_frames: u32,
    /// Bytes queued for one connection before it is closed as a slow
    /// consumer.
    pub send_queue_bytes: ByteSize,
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
}

/// TLS files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain.
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            edge_id: String::new(),
            jwks_url: "http://127.0.0.1:8080/.well-known/jwks.json".to_owned(),
            issuer: herald_proto::claims::DEFAULT_ISSUER.to_owned(),
            token_leeway: HumanDuration::secs(5),
            jwks_min_refetch_interval: HumanDuration::secs(5),
            jwks_refresh_interval: HumanDuration::secs(300),
            tls: None,
            max_frame_size: ByteSize::kib(68),
            max_message_size: ByteSize::kib(64),
            max_subscriptions: 128,
            max_connections: 50_000,
            max_connections_per_app: 0,
            publish_rate: 50,
            publish_burst: 100,
            send_queue_frames: 1024,
            send_queue_bytes: ByteSize::mib(4),
            write_timeout: HumanDuration::secs(10),
            handshake_timeout: HumanDuration::secs(10),
            heartbeat_interval: HumanDuration::secs(25),
            heartbeat_timeout: HumanDuration::secs(60),
            http_header_timeout: HumanDuration::secs(10),
            drain_timeout: HumanDuration::secs(30),
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
    /// Checks every value and the relations between them.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.jwks_url.starts_with("http://") {
            return Err(err("jwks_url", "must be an http:// URL of the control plane's /.well-known/jwks.json"));
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
        if self.max_subscriptions == 0 {
            return Err(err("max_subscriptions", "must be at least 1"));
        }
        if self.max_connections == 0 {
            return Err(err("max_connections", "must be at least 1"));
        }
        if self.publish_burst == 0 && self.publish_rate > 0 {
            return Err(err("publish_burst", "must be at least 1 when publish_rate is set"));
        }
        if self.send_queue_frames < 16 {
            return Err(err("send_queue_frames", "must be at least 16"));
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
        ] {
            if d.0.is_zero() {
                return Err(err(key, "must be above 0"));
            }
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
    fn validation_names_the_key() {
        let cases: Vec<(EdgeConfig, &str)> = vec![
            (EdgeConfig { jwks_url: "https://x".into(), ..Default::default() }, "jwks_url"),
            (EdgeConfig { token_leeway: HumanDuration::secs(61), ..Default::default() }, "token_leeway"),
            (EdgeConfig { max_message_size: ByteSize::kib(68), ..Default::default() }, "max_message_size"),
            (EdgeConfig { heartbeat_timeout: HumanDuration::secs(25), ..Default::default() }, "heartbeat_timeout"),
            (EdgeConfig { send_queue_frames: 1, ..Default::default() }, "send_queue_frames"),
            (EdgeConfig { max_subscriptions: 0, ..Default::default() }, "max_subscriptions"),
            (EdgeConfig { write_timeout: HumanDuration::secs(0), ..Default::default() }, "write_timeout"),
        ];
        for (config, key) in cases {
            assert_eq!(config.validate().map_err(|e| e.key), Err(key));
        }
    }
}
