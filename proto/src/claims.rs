//! The claims of a Herald token.
//!
//! The control plane mints a JWT for an end user with these claims and signs
//! it with an asymmetric key named by the header's `kid`; edges verify it
//! offline against the control plane's JWKS. The JSON shape:
//!
//! ```json
//! {
//!   "iss": "herald", "aud": "herald",
//!   "sub": "user-42", "app": "app_1", "key": "key_9",
//!   "iat": 1764100000, "nbf": 1764100000, "exp": 1764103600,
//!   "jti": "tok_…",
//!   "caps": {"chat:*": ["subscribe", "publish"]},
//!   "info": {"name": "Ada"},
//!   "origins": ["https://app.example.com"],
//!   "lim": {"max_message_bytes": 65536, "publish_rate": 50, "max_connections": 10000}
//! }
//! ```

use serde::{Deserialize, Serialize};

use crate::caps::Capabilities;
use crate::ids::{AppId, ClientId, KeyId};

/// The `aud` every Herald token carries.
pub const AUDIENCE: &str = "herald";

/// The default `iss`; deployments may configure their own.
pub const DEFAULT_ISSUER: &str = "herald";

/// Longest `info` object, serialized, in bytes.
pub const MAX_INFO_BYTES: usize = 1024;

/// Longest token accepted anywhere, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 128;

/// Longest idempotency id (message id), in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// Claims of a Herald token.
///
/// ```
/// use herald_proto::{Claims, Operation};
/// let claims: Claims = serde_json::from_str(r#"{
///     "iss": "herald", "aud": "herald", "sub": "user-42", "app": "app_1", "key": "key_9",
///     "iat": 1764100000, "nbf": 1764100000, "exp": 1764103600, "jti": "tok_1",
///     "caps": {"chat:*": ["subscribe", "publish"]}
/// }"#)?;
/// assert_eq!((claims.sub.as_str(), claims.app.as_str()), ("user-42", "app_1"));
/// assert!(claims.caps.allows("chat:lobby", Operation::Publish));
/// assert!(claims.info.is_none() && claims.origins.is_empty() && claims.lim.is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience: always [`AUDIENCE`].
    pub aud: String,
    /// The end user (client id).
    pub sub: ClientId,
    /// The app the token belongs to.
    pub app: AppId,
    /// The API key that minted the token; revoking the key closes the
    /// connections holding the token.
    pub key: KeyId,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expiry (Unix seconds). Required. An integer beyond `i64` (or a
    /// float at least as large) reads as `i64::MAX`: never expires.
    #[serde(deserialize_with = "saturating_seconds")]
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// What the token allows.
    pub caps: Capabilities,
    /// Optional JSON object shown to other presence members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Map<String, serde_json::Value>>,
    /// The app's exact `Origin` allowlist when the token was minted; absent
    /// or empty allows every origin. Carried in the token so edges decide
    /// offline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// The app's limits when the token was minted; edges apply the stricter
    /// of these and their own configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lim: Option<AppLimits>,
}

/// Per-app limits carried in a token (`lim` claim). Absent fields mean "the
/// edge's default".
///
/// ```
/// use herald_proto::claims::AppLimits;
/// let lim: AppLimits = serde_json::from_str(r#"{"publish_rate": 50}"#)?;
/// assert_eq!(lim, AppLimits { publish_rate: Some(50), ..AppLimits::default() });
/// assert_eq!(serde_json::to_string(&lim)?, r#"{"publish_rate":50}"#, "absent limits stay absent");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AppLimits {
    /// Largest message payload, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u32>,
    /// Publishes per second per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_rate: Option<u32>,
    /// Connections of the app on one edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

/// The JWKS member in which the control plane lists revoked tokens.
pub const REVOKED_MEMBER: &str = "herald_revoked";

/// Most revocations a JWKS lists (the newest first); edges read at most
/// this many.
pub const MAX_REVOCATIONS: usize = 10_000;

/// Tokens edges must refuse although their signature is good: those minted
/// from an API key that was revoked (`key` set), or for an app that was
/// deleted (`key` absent), up to the revocation. Listed by the control plane in its JWKS under
/// [`REVOKED_MEMBER`] until `until` (Unix seconds), when every such token
/// has expired anyway; edges also learn them at once from the
/// `KeyRevoked` / `AppDeleted` events.
///
/// ```
/// use herald_proto::claims::Revocation;
/// let revoked: Revocation = serde_json::from_str(r#"{"app": "app_1", "key": "key_9", "at": 1764100000, "until": 1764190000}"#)?;
/// assert_eq!(revoked.key.as_ref().map(|k| k.as_str()), Some("key_9"));
/// assert!(!revoked.disabled, "a revoked key, not a disabled app");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The app.
    pub app: AppId,
    /// The revoked key; absent when the whole app is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyId>,
    /// Tokens issued (`iat`) then or before are refused (Unix seconds): the
    /// revocation, plus the time control-plane replicas may still trust
    /// their cached copy and mint; an app created again under the same id
    /// mints tokens that pass after that.
    pub at: i64,
    /// When the entry may be forgotten (Unix seconds): past the revocation
    /// by at least the longest token lifetime.
    pub until: i64,
    /// The app (`key` absent) was disabled rather than deleted: the refusal
    /// says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// Reads Unix seconds as an `i64`, saturating integers and floats beyond
/// its range at `i64::MAX`; any other float is refused.
fn saturating_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Seconds;
    impl serde::de::Visitor<'_> for Seconds {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Unix seconds, an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            Ok(i64::try_from(v).unwrap_or(i64::MAX))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            if v >= i64::MAX as f64 {
                Ok(i64::MAX)
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    deserializer.deserialize_any(Seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let json = r#"{"iss":"herald","aud":"herald","sub":"user-42","app":"app_1","key":"key_9",
            "iat":1,"nbf":1,"exp":3601,"jti":"t1","caps":{"chat:*":["subscribe"]},"info":{"name":"Ada"}}"#;
        let claims: Claims = serde_json::from_str(json).expect("claims");
        assert_eq!(claims.sub.as_str(), "user-42");
        let back: Claims = serde_json::from_str(&serde_json::to_string(&claims).expect("ser")).expect("de");
        assert_eq!(back, claims);
    }

    #[test]
    fn invalid_fields_are_refused() {
        let base = r#"{"iss":"herald","aud":"herald","sub":"u","app":"APP","key":"k","iat":1,"nbf":1,"exp":2,"jti":"t","caps":{}}"#;
        serde_json::from_str::<Claims>(base).expect("base is valid");
        for (from, to) in [
            (r#""app":"APP""#, r#""app":"a.b""#),
            (r#""caps":{}"#, r#""caps":{"a>":["subscribe"]}"#),
            (r#""sub":"u""#, r#""sub":"""#),
            (r#","exp":2"#, ""),
        ] {
            let bad = base.replace(from, to);
            assert!(serde_json::from_str::<Claims>(&bad).is_err(), "{bad}");
        }
    }
}
