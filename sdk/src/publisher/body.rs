//! The JSON bodies of the REST API: what a publish, a batch publish, an
//! event to a user and a token request send ([`Data`], [`MessageOptions`],
//! [`BatchMessage`], [`TokenRequest`]) and what the control plane answers
//! ([`Accepted`], [`MintedToken`], a batch's results, a user event's id).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use super::error::{ErrorEnvelope, RestError, api_error};

/// A message payload for the REST API.
///
/// ```
/// use herald_sdk::Data;
/// assert_eq!(Data::from("hello"), Data::Text("hello".into()));
/// assert_eq!(Data::from(serde_json::json!({"id": 42})), Data::Json(serde_json::json!({"id": 42})));
/// assert!(matches!(Data::from(vec![0u8, 159, 146]), Data::Binary(_)), "sent base64-encoded");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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

    /// Adds the `data` and `encoding` fields to a request body.
    fn insert_into(&self, body: &mut serde_json::Map<String, serde_json::Value>) {
        let (data, encoding) = self.fields();
        body.insert("data".into(), data);
        insert_opt(body, "encoding", encoding);
    }
}

/// The options of one publish through the REST API
/// ([`Publisher::publish_with`](super::Publisher::publish_with)): an event
/// name, an idempotency id, a connection that must not receive it.
///
/// ```
/// use herald_sdk::MessageOptions;
///
/// // `connection_id` is the sender's own realtime connection, from
/// // `Client::connection_id()` (what a Pusher client calls its socket_id).
/// # let connection_id = "1.42";
/// let options = MessageOptions::new().name("chat.message").id("msg-42").exclude_connection(connection_id);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageOptions {
    /// An event name (at most 128 bytes).
    pub name: Option<String>,
    /// An idempotency id (at most 128 bytes); it becomes the message id.
    pub id: Option<String>,
    /// A connection id (`"1234.5678"`, as in
    /// [`ConnectionInfo::connection_id`](crate::ConnectionInfo::connection_id))
    /// that must not receive the message — typically the sender's own, so
    /// that an app publishing through its backend does not get its own
    /// message back. The control plane refuses anything not shaped like a
    /// connection id with `bad_request`.
    pub exclude_connection: Option<String>,
}

impl MessageOptions {
    /// No name, no idempotency id, no exclusion.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
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

    /// Keeps the message from connection `connection_id`.
    #[must_use]
    pub fn exclude_connection(mut self, connection_id: impl Into<String>) -> Self {
        self.exclude_connection = Some(connection_id.into());
        self
    }

    /// The body of a publish of `data` with these options.
    pub(super) fn body(&self, data: &Data) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        data.insert_into(&mut body);
        insert_opt(&mut body, "name", self.name.as_deref());
        insert_opt(&mut body, "id", self.id.as_deref());
        insert_opt(&mut body, "exclude_connection", self.exclude_connection.as_deref());
        serde_json::Value::Object(body)
    }
}

/// Adds `key` to `body` when `value` is given.
fn insert_opt(body: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        body.insert(key.into(), value.into());
    }
}

/// The body of an event to a user: `data` (and `encoding`) and an optional
/// event `name`.
pub(super) fn user_event_body(data: &Data, name: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    data.insert_into(&mut body);
    insert_opt(&mut body, "name", name);
    serde_json::Value::Object(body)
}

/// The answer to an event to a user.
#[derive(Deserialize)]
pub(super) struct UserEventAccepted {
    pub(super) id: String,
}

/// The answer to terminating a user.
#[derive(Deserialize)]
pub(super) struct UserTerminated {
    pub(super) user_id: String,
}

/// A message accepted by the control plane.
///
/// ```no_run
/// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
/// use herald_sdk::MessageOptions;
/// let options = MessageOptions::new().id("order-42-v3");
/// let accepted = publisher.publish_with("orders", "shipped", options).await?;
/// if accepted.duplicate {
///     println!("{} was already sent", accepted.id);
/// } else if let Some(seq) = accepted.seq {
///     println!("{} stored at {seq}", accepted.id);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
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
///
/// ```
/// use herald_sdk::{BatchMessage, Data};
/// let message = BatchMessage::new("orders", serde_json::json!({"id": 42}))
///     .also_to("audit")
///     .name("order.shipped")
///     .id("order-42-shipped")
///     .exclude_connection("1234.5678");
/// assert_eq!(message.channels, ["orders", "audit"]);
/// assert_eq!((message.name.as_deref(), message.id.as_deref()), (Some("order.shipped"), Some("order-42-shipped")));
/// assert_eq!(message.exclude_connection.as_deref(), Some("1234.5678"));
/// assert_eq!(message.data, Data::Json(serde_json::json!({"id": 42})));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BatchMessage {
    /// The channels it goes to (one or more).
    pub channels: Vec<String>,
    /// The payload.
    pub data: Data,
    /// An event name.
    pub name: Option<String>,
    /// An idempotency id.
    pub id: Option<String>,
    /// A connection that must not receive it (see
    /// [`MessageOptions::exclude_connection`]).
    pub exclude_connection: Option<String>,
}

impl BatchMessage {
    /// A message for `channel`.
    #[must_use]
    pub fn new(channel: impl Into<String>, data: impl Into<Data>) -> Self {
        Self { channels: vec![channel.into()], data: data.into(), name: None, id: None, exclude_connection: None }
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

    /// Keeps the message from connection `connection_id` (see
    /// [`MessageOptions::exclude_connection`]).
    #[must_use]
    pub fn exclude_connection(mut self, connection_id: impl Into<String>) -> Self {
        self.exclude_connection = Some(connection_id.into());
        self
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        match self.channels.as_slice() {
            [one] => body.insert("channel".into(), one.clone().into()),
            many => body.insert("channels".into(), many.to_vec().into()),
        };
        self.data.insert_into(&mut body);
        insert_opt(&mut body, "name", self.name.as_deref());
        insert_opt(&mut body, "id", self.id.as_deref());
        insert_opt(&mut body, "exclude_connection", self.exclude_connection.as_deref());
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
#[non_exhaustive]
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
///
/// ```no_run
/// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
/// use herald_sdk::TokenRequest;
/// let minted = publisher.mint_token(&TokenRequest::new("user-42").allow("chat:*", ["subscribe"])).await?;
/// println!("give {} to the browser; it expires at {}", minted.token, minted.expires_at);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
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
        let m = BatchMessage::new("a", vec![0u8, 1]).also_to("b").exclude_connection("1.2");
        assert_eq!(
            m.to_json(),
            serde_json::json!({"channels": ["a", "b"], "data": "AAE=", "encoding": "base64", "exclude_connection": "1.2"})
        );
        let o = MessageOptions::new().name("e").exclude_connection("3.4");
        assert_eq!(
            o.body(&Data::from("hi")),
            serde_json::json!({"data": "hi", "name": "e", "exclude_connection": "3.4"})
        );
        assert_eq!(
            MessageOptions::default().body(&Data::from(serde_json::json!([1]))),
            serde_json::json!({"data": [1]})
        );
        assert_eq!(
            user_event_body(&Data::from(vec![255u8]), Some("n")),
            serde_json::json!({"data": "/w==", "encoding": "base64", "name": "n"})
        );
        let t = TokenRequest::new("u").allow("chat:*", ["subscribe"]).ttl(Duration::from_secs(60));
        assert_eq!(
            t.to_json(),
            serde_json::json!({"client_id": "u", "capabilities": {"chat:*": ["subscribe"]}, "ttl_seconds": 60})
        );
    }
}
