//! The JSON bodies of the REST API: what a publish, a batch publish and a
//! token request send ([`Data`], [`BatchMessage`], [`TokenRequest`]) and
//! what the control plane answers ([`Accepted`], [`MintedToken`], a batch's
//! results).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use super::error::{ErrorEnvelope, RestError, api_error};

/// A message payload for the REST API.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Any JSON value; subscribers receive its JSON text.
    Json(serde_json::Value),
    /// Text; subscribers receive it as UTF-8.
    Text(String),
    /// Bytes; sent base64-encoded, subscribers receive the bytes.
    Binary(Bytes),
}

impl From<serde_json::Value> for Data {
    fn from(v: serde_json::Value) -> Self {
        Self::Json(v)
    }
}

impl From<&str> for Data {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for Data {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<Bytes> for Data {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

impl From<Vec<u8>> for Data {
    fn from(b: Vec<u8>) -> Self {
        Self::Binary(Bytes::from(b))
    }
}

impl Data {
    /// The `data` and `encoding` fields of a request body.
    pub(super) fn fields(&self) -> (serde_json::Value, Option<&'static str>) {
        match self {
            Self::Json(v) => (v.clone(), None),
            Self::Text(s) => (serde_json::Value::String(s.clone()), None),
            Self::Binary(b) => {
                (serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b)), Some("base64"))
            }
        }
    }
}

/// A message accepted by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// The channel sequence, for channels with history (when known).
    #[serde(default)]
    pub seq: Option<u64>,
    /// True when the idempotency id was seen recently and nothing was sent
    /// again.
    #[serde(default)]
    pub duplicate: bool,
}

/// One message of [`Publisher::publish_batch`](super::Publisher::publish_batch).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMessage {
    /// The channels it goes to (one or more).
    pub channels: Vec<String>,
    /// The payload.
    pub data: Data,
    /// An event name.
    pub name: Option<String>,
    /// An idempotency id.
    pub id: Option<String>,
}

impl BatchMessage {
    /// A message for `channel`.
    #[must_use]
    pub fn new(channel: impl Into<String>, data: impl Into<Data>) -> Self {
        Self { channels: vec![channel.into()], data: data.into(), name: None, id: None }
    }

    /// Also sends it to `channel`.
    #[must_use]
    pub fn also_to(mut self, channel: impl Into<String>) -> Self {
        self.channels.push(channel.into());
        self
    }

    /// Sets the event name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the idempotency id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        let (data, encoding) = self.data.fields();
        let mut body = serde_json::Map::new();
        match self.channels.as_slice() {
            [one] => body.insert("channel".into(), one.clone().into()),
            many => body.insert("channels".into(), many.to_vec().into()),
        };
        body.insert("data".into(), data);
        if let Some(encoding) = encoding {
            body.insert("encoding".into(), encoding.into());
        }
        if let Some(name) = &self.name {
            body.insert("name".into(), name.clone().into());
        }
        if let Some(id) = &self.id {
            body.insert("id".into(), id.clone().into());
        }
        serde_json::Value::Object(body)
    }
}

/// What a token allows and for whom.
///
/// ```
/// use std::time::Duration;
/// use herald_sdk::TokenRequest;
///
/// let request = TokenRequest::new("user-42")
///     .allow("chat:*", ["subscribe", "publish"])
///     .allow("lobby", ["subscribe", "presence"])
///     .ttl(Duration::from_secs(900))
///     .info(serde_json::json!({"name": "Ada"}));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenRequest {
    /// The end user's client id.
    pub client_id: String,
    /// Channel pattern → operations (`subscribe`, `publish`, `presence`,
    /// `history`); `None`: everything the API key allows.
    pub capabilities: Option<BTreeMap<String, Vec<String>>>,
    /// Lifetime; `None`: the control plane's default (an hour).
    pub ttl: Option<Duration>,
    /// A JSON object shown to presence members.
    pub info: Option<serde_json::Value>,
}

impl TokenRequest {
    /// A token for `client_id` with the API key's capabilities.
    #[must_use]
    pub fn new(client_id: impl Into<String>) -> Self {
        Self { client_id: client_id.into(), ..Self::default() }
    }

    /// Allows `operations` on channels matching `pattern`.
    #[must_use]
    pub fn allow<I, S>(mut self, pattern: impl Into<String>, operations: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let caps = self.capabilities.get_or_insert_with(BTreeMap::new);
        caps.entry(pattern.into()).or_default().extend(operations.into_iter().map(Into::into));
        self
    }

    /// Sets the lifetime (whole seconds, at least one).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the `info` object.
    #[must_use]
    pub fn info(mut self, info: serde_json::Value) -> Self {
        self.info = Some(info);
        self
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("client_id".into(), self.client_id.clone().into());
        if let Some(caps) = &self.capabilities {
            body.insert("capabilities".into(), serde_json::json!(caps));
        }
        if let Some(ttl) = self.ttl {
            body.insert("ttl_seconds".into(), ttl.as_secs().max(1).into());
        }
        if let Some(info) = &self.info {
            body.insert("info".into(), info.clone());
        }
        serde_json::Value::Object(body)
    }
}

/// A minted token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MintedToken {
    /// The JWT to give the realtime client.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// One result of a batch publish.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum BatchItem {
    Err(ErrorEnvelope),
    Ok(Accepted),
}

/// The answer to a batch publish.
#[derive(Deserialize)]
pub(super) struct BatchAnswer {
    pub(super) results: Vec<BatchItem>,
}

impl BatchAnswer {
    /// One result per message, in order; `status` is the answer's.
    pub(super) fn into_results(self, status: u16) -> Vec<Result<Accepted, RestError>> {
        self.results
            .into_iter()
            .map(|item| match item {
                BatchItem::Ok(accepted) => Ok(accepted),
                BatchItem::Err(envelope) => Err(api_error(status, envelope.error, None)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_encode_as_the_api_expects() {
        let m = BatchMessage::new("a", serde_json::json!({"x": 1})).name("e").id("i");
        assert_eq!(m.to_json(), serde_json::json!({"channel": "a", "data": {"x": 1}, "name": "e", "id": "i"}));
        let m = BatchMessage::new("a", vec![0u8, 1]).also_to("b");
        assert_eq!(m.to_json(), serde_json::json!({"channels": ["a", "b"], "data": "AAE=", "encoding": "base64"}));
        let t = TokenRequest::new("u").allow("chat:*", ["subscribe"]).ttl(Duration::from_secs(60));
        assert_eq!(
            t.to_json(),
            serde_json::json!({"client_id": "u", "capabilities": {"chat:*": ["subscribe"]}, "ttl_seconds": 60})
        );
    }
}
