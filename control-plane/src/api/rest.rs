//! The REST API (axum): routes, JSON bodies, extractors that turn every
//! rejection into an [`ApiError`], and the OpenAPI document generated from
//! the handlers' annotations (`GET /v1/openapi.json`).
//!
//! Every request body is read whole, bounded by `max_body_bytes` (`413
//! too_large` past it), and parsed strictly: unknown fields, wrong types and
//! malformed JSON answer `400 bad_request` naming the field.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use herald_proto::Capabilities;
use herald_proto::bus;
use herald_proto::units::HumanDuration;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Principal;
use crate::channels::{History, Occupancy, Presence};
use crate::error::{ApiError, ErrorBody};
use crate::now_ms;
use crate::publish::Published;
use crate::service::{AppSpec, Core, EffectiveLimits};
use crate::store::{ApiKey, App, LimitOverrides, Namespace};
use crate::tokens::{Jwks, Rotation};

type Shared = State<Arc<Core>>;

// ----- extractors ---------------------------------------------------------------

/// The authenticated caller (`Authorization: Bearer …`).
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<Core>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, ApiError> {
        let value = match parts.headers.get(header::AUTHORIZATION) {
            Some(v) => Some(v.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?),
            None => None,
        };
        Ok(Self(core.auth.authenticate(value).await?))
    }
}

/// A strict JSON body.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        parse_json(&bytes).map(Self)
    }
}

fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("the request body is larger than the server accepts (max_body_bytes)")
    } else {
        ApiError::bad_request(format!("could not read the request body: {}", r.body_text()))
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty; send a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body at `{path}`: {inner}"))
        }
    })?;
    Ok(value)
}

/// Path parameters, with errors in Herald's shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// Query parameters, strict, with errors in Herald's shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
    }
}

// ----- bodies -------------------------------------------------------------------

/// Per-app limits in a request; absent or 0 means the server default.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    /// Most concurrent connections across edges.
    pub max_connections: Option<u32>,
    /// Largest message payload, in bytes.
    pub max_message_bytes: Option<u32>,
    /// API publishes per second (per control-plane replica).
    pub publish_rate_per_sec: Option<u32>,
}

impl From<LimitsBody> for LimitOverrides {
    fn from(l: LimitsBody) -> Self {
        Self {
            max_connections: l.max_connections,
            max_message_bytes: l.max_message_bytes,
            publish_rate_per_sec: l.publish_rate_per_sec,
        }
    }
}

/// `POST /v1/apps`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppBody {
    /// The app id (1-64 of `A-Z a-z 0-9 _ -`); generated when absent.
    pub id: Option<String>,
    /// Display name.
    pub name: String,
    /// Limits; absent ones are the server defaults.
    #[serde(default)]
    pub limits: LimitsBody,
    /// Exact `Origin` values allowed to connect; empty allows every origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// `PATCH /v1/apps/{app_id}`: only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAppBody {
    /// Display name.
    pub name: Option<String>,
    /// Limits to change; 0 resets one to the server default.
    pub limits: Option<LimitsBody>,
    /// Replaces the Origin allowlist.
    pub allowed_origins: Option<Vec<String>>,
}

/// An app.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    /// The app id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The limits in force (defaults filled in).
    pub limits: EffectiveLimits,
    /// Exact `Origin` values allowed to connect; empty allows every origin.
    pub allowed_origins: Vec<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// `GET /v1/apps`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppList {
    /// Every app, by id.
    pub apps: Vec<AppView>,
}

/// `POST /v1/apps/{app_id}/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// Display name.
    pub name: String,
    /// Channel pattern → operations; everything when absent.
    #[schema(value_type = Option<HashMap<String, Vec<String>>>)]
    pub capabilities: Option<Capabilities>,
}

/// A new API key, with the whole secret — shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The key id.
    pub id: String,
    /// The whole key, `hk_<id>_<secret>`: send it as `Authorization: Bearer
    /// <key>`. Only its hash is stored.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What the key allows.
    #[schema(value_type = HashMap<String, Vec<String>>)]
    pub capabilities: Capabilities,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// An API key, without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// The key id.
    pub id: String,
    /// The app.
    pub app_id: String,
    /// Display name.
    pub name: String,
    /// What the key allows.
    #[schema(value_type = HashMap<String, Vec<String>>)]
    pub capabilities: Capabilities,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Revocation time, Unix seconds; absent while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// `GET /v1/apps/{app_id}/keys`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The app's keys, oldest first, revoked ones included.
    pub keys: Vec<KeyView>,
}

/// `DELETE /v1/apps/{app_id}/keys/{key_id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedKey {
    /// The key id.
    pub id: String,
    /// Revocation time, Unix seconds (the first one when revoked twice).
    pub revoked_at: i64,
    /// Whether edges were told before this answer (otherwise the event is
    /// retried in the background).
    pub edges_notified: bool,
}

/// `POST /v1/apps/{app_id}/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The end user.
    pub client_id: String,
    /// Channel pattern → operations; a subset of the key's (the key's when
    /// absent).
    #[schema(value_type = Option<HashMap<String, Vec<String>>>)]
    pub capabilities: Option<Capabilities>,
    /// Lifetime in seconds (default 3600, at most 86400 by default).
    pub ttl_seconds: Option<u64>,
    /// A JSON object shown to presence members (at most 1 KiB).
    #[schema(value_type = Option<Object>)]
    pub info: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A minted token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The JWT.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// `POST /v1/apps/{app_id}/channels/{channel}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// The payload: a string is sent as its text (or decoded with
    /// `encoding: "base64"`), any other JSON value as its JSON text.
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
    /// Event name (at most 128 bytes).
    pub name: Option<String>,
    /// Idempotency id (at most 128 bytes): retries with the same id within
    /// the window are accepted once. Becomes the message id.
    pub id: Option<String>,
    /// `"base64"` to send binary data given as a base64 string.
    pub encoding: Option<String>,
}

/// Where a message sits in its channel's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PositionView {
    /// Its sequence number in the namespace's stream.
    pub seq: u64,
    /// The stream's epoch (a new epoch restarts the numbering).
    pub epoch: String,
}

/// A position in one channel of a message sent to several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelPosition {
    /// The channel.
    pub channel: String,
    /// Its sequence number in the namespace's stream.
    pub seq: u64,
    /// The stream's epoch.
    pub epoch: String,
}

/// A message accepted by the bus.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// The channel sequence, for a message to one channel with history
    /// (`position.seq`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The message's position, for a message to one channel with history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<PositionView>,
    /// The position in every channel with history, for a message to
    /// several channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<ChannelPosition>,
    /// True when the idempotency id was seen within the window and nothing
    /// was sent again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl From<Published> for Accepted {
    fn from(p: Published) -> Self {
        let (position, positions) = match (p.channels, p.positions.as_slice()) {
            (1, [(_, pos)]) => (Some(PositionView { seq: pos.seq, epoch: pos.epoch.clone() }), Vec::new()),
            _ => (
                None,
                p.positions
                    .into_iter()
                    .map(|(c, pos)| ChannelPosition { channel: c.to_string(), seq: pos.seq, epoch: pos.epoch })
                    .collect(),
            ),
        };
        Self { id: p.id, seq: position.as_ref().map(|p| p.seq), position, positions, duplicate: p.duplicate }
    }
}

/// `PUT /v1/apps/{app_id}/namespaces/{name}`: the whole namespace; absent
/// fields take their defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceBody {
    /// Edges report who is subscribed; presence is served (default false).
    #[serde(default)]
    pub presence: bool,
    /// Subscribers get join and leave events; needs `presence` (default
    /// false).
    #[serde(default)]
    pub join_leave: bool,
    /// Clients may publish when their token allows it (default true). API
    /// keys publish regardless.
    pub client_publish: Option<bool>,
    /// Messages kept per channel (default 0: no history).
    #[serde(default)]
    pub history_size: u32,
    /// How long messages are kept, with a unit: `"30s"`, `"15m"`, `"24h"`
    /// (default none: no history). Set with `history_size`.
    #[schema(value_type = Option<String>)]
    pub history_ttl: Option<HumanDuration>,
}

/// A channel namespace.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceView {
    /// Its name: channels `<name>:…` take its options.
    pub name: String,
    /// Presence is reported and served.
    pub presence: bool,
    /// Subscribers get join and leave events.
    pub join_leave: bool,
    /// Clients may publish.
    pub client_publish: bool,
    /// Messages kept per channel; 0: no history.
    pub history_size: u32,
    /// How long messages are kept (`"0s"`: no history).
    pub history_ttl: String,
    /// The same, in milliseconds.
    pub history_ttl_ms: u64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// `GET /v1/apps/{app_id}/namespaces`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceList {
    /// The app's namespaces, by name.
    pub namespaces: Vec<NamespaceView>,
}

/// A member of a presence channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// The client id (the token's `sub`).
    pub client_id: String,
    /// The token's `info` object (`{}` when it had none).
    #[schema(value_type = Object)]
    pub info: Box<RawValue>,
    /// The client's connections in the channel, across edges.
    pub connections: u32,
}

/// `GET /v1/apps/{app_id}/channels/{channel}/presence`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceView {
    /// The channel.
    pub channel: String,
    /// A page of its members, by client id.
    pub members: Vec<MemberView>,
    /// The number of members in all.
    pub count: usize,
    /// Pass as `after` for the next page; absent when this page ends the
    /// list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /v1/apps/{app_id}/channels/{channel}/presence`.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PresenceQuery {
    /// Members whose client id comes after this one (default: from the
    /// first).
    pub after: Option<String>,
    /// Most members to return (default and most: 1,000).
    pub limit: Option<usize>,
}

/// `GET /v1/apps/{app_id}/channels`.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChannelsQuery {
    /// Only channels whose name starts with this.
    pub prefix: Option<String>,
}

/// An occupied channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelView {
    /// The channel name.
    pub name: String,
    /// Subscriptions across edges.
    pub subscribers: u64,
}

/// The app's occupied channels.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelList {
    /// Channels with subscribers, by name.
    pub channels: Vec<ChannelView>,
    /// True when more channels matched than the server lists
    /// (`max_channels_listed`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// `GET /v1/apps/{app_id}/channels/{channel}/history`.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages after this sequence number (default 0: from the oldest
    /// held).
    pub since: Option<u64>,
    /// Most messages to return (default 100, at most `max_history_limit`).
    pub limit: Option<usize>,
    /// The epoch `since` belongs to; when it is not the stream's, `since`
    /// is ignored and the page is not `complete`.
    pub epoch: Option<String>,
}

/// One message of a channel's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryMessageView {
    /// Its sequence number.
    pub seq: u64,
    /// The message id.
    pub id: String,
    /// Event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The payload, as publishing takes it: JSON text as that JSON value,
    /// other UTF-8 text as a string, other bytes as a base64 string with
    /// `encoding: "base64"`.
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
    /// `"base64"` when `data` is base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The publishing client, empty for the API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub publisher: String,
    /// When it was published, Unix ms.
    pub timestamp_ms: i64,
}

/// A page of a channel's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// The channel.
    pub channel: String,
    /// The stream's epoch; sequence numbers of another epoch mean nothing
    /// here.
    pub epoch: String,
    /// Messages after `since`, oldest first.
    pub messages: Vec<HistoryMessageView>,
    /// True when every message after `since` is still held: the page
    /// continues exactly where the caller was. False when some fell out of
    /// history (size or TTL) or the epoch changed.
    pub complete: bool,
    /// The channel's newest sequence number (0 when it holds none); read
    /// on with `since` = the last message's `seq` while it is below this.
    pub last_seq: u64,
}

/// One message of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchMessage {
    /// One channel…
    pub channel: Option<String>,
    /// …or several (not both).
    pub channels: Option<Vec<String>>,
    /// As in a single publish.
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
    /// Event name.
    pub name: Option<String>,
    /// Idempotency id.
    pub id: Option<String>,
    /// `"base64"` for binary data.
    pub encoding: Option<String>,
}

/// `POST /v1/apps/{app_id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The messages (at most `max_batch_messages`).
    pub messages: Vec<BatchMessage>,
}

/// The result of one message of a batch: `{"id", …}` or `{"error": …}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    /// Accepted.
    Ok(Accepted),
    /// Refused or failed.
    Err(ErrorBody),
}

/// The answer to a batch: one result per message, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResults {
    /// One per message.
    pub results: Vec<BatchResult>,
    /// Set (with status 503) when the bus was unavailable for some message:
    /// those were not accepted and may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorDetail>,
}

/// `POST /v1/signing-keys/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the retired key stays in the JWKS, in seconds (the server's
    /// `signing_key_overlap_secs` when absent; 0 drops it at once).
    pub overlap_seconds: Option<u64>,
}

/// `/readyz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// What is not ready: `database`, `bus`, `shutting_down`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

fn app_view(core: &Core, app: &App) -> AppView {
    AppView {
        id: app.id.to_string(),
        name: app.name.clone(),
        limits: core.effective_limits(app),
        allowed_origins: app.allowed_origins.clone(),
        created_at: secs(app.created_at_ms),
    }
}

fn key_view(key: &ApiKey) -> KeyView {
    KeyView {
        id: key.id.to_string(),
        app_id: key.app_id.to_string(),
        name: key.name.clone(),
        capabilities: key.capabilities.clone(),
        created_at: secs(key.created_at_ms),
        revoked_at: key.revoked_at_ms.map(secs),
    }
}

fn namespace_view(ns: &Namespace) -> NamespaceView {
    let o = &ns.options;
    NamespaceView {
        name: ns.name.to_string(),
        presence: o.presence,
        join_leave: o.join_leave,
        client_publish: o.client_publish,
        history_size: o.history_size,
        history_ttl: HumanDuration::millis(o.history_ttl_ms).to_string(),
        history_ttl_ms: o.history_ttl_ms,
        created_at: secs(ns.created_at_ms),
        updated_at: secs(ns.updated_at_ms),
    }
}

/// `data` for a payload, the way publishing takes it, and its `encoding`.
pub(crate) fn data_view(payload: &[u8]) -> (Box<RawValue>, Option<String>) {
    if let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(payload) {
        return (raw, None);
    }
    let (text, encoding) = match std::str::from_utf8(payload) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(payload), Some("base64".to_owned())),
    };
    // A string always serializes; the default (`null`) is never used.
    (serde_json::value::to_raw_value(&text).unwrap_or_default(), encoding)
}

fn presence_view(p: Presence) -> PresenceView {
    let members: Vec<MemberView> = p
        .members
        .into_iter()
        .map(|m| {
            let info = if m.info.is_empty() { None } else { serde_json::from_slice::<Box<RawValue>>(&m.info).ok() };
            let info = info.unwrap_or_else(|| RawValue::from_string("{}".to_owned()).unwrap_or_default());
            MemberView { client_id: m.client_id, info, connections: m.connections }
        })
        .collect();
    PresenceView { channel: p.channel.to_string(), count: p.total, members, next: p.next }
}

fn channel_list(o: Occupancy) -> ChannelList {
    ChannelList {
        channels: o.channels.into_iter().map(|(n, c)| ChannelView { name: n.to_string(), subscribers: c }).collect(),
        truncated: o.truncated,
    }
}

fn history_view(h: History) -> HistoryView {
    HistoryView {
        channel: h.channel.to_string(),
        epoch: h.epoch,
        messages: h
            .messages
            .into_iter()
            .map(|m| {
                let (data, encoding) = data_view(&m.message.data);
                HistoryMessageView {
                    seq: m.seq,
                    id: m.message.id,
                    name: m.message.event,
                    data,
                    encoding,
                    publisher: m.message.publisher,
                    timestamp_ms: m.message.timestamp_ms,
                }
            })
            .collect(),
        complete: h.complete,
        last_seq: h.last_seq,
    }
}

/// The payload bytes of `data` (see [`PublishBody::data`]).
fn payload(data: &RawValue, encoding: Option<&str>) -> Result<Bytes, ApiError> {
    let text = data.get();
    let is_string = text.starts_with('"');
    match encoding {
        None | Some("utf-8" | "utf8" | "json") => {
            if is_string {
                let s: String = serde_json::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("`data` is not a valid JSON string: {e}")))?;
                Ok(Bytes::from(s))
            } else {
                Ok(Bytes::copy_from_slice(text.as_bytes()))
            }
        }
        Some("base64") => {
            if !is_string {
                return Err(ApiError::bad_request("with `encoding: \"base64\"`, `data` must be a string"));
            }
            let s: String = serde_json::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("`data` is not a valid JSON string: {e}")))?;
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Bytes::from)
                .map_err(|e| ApiError::bad_request(format!("`data` is not valid base64: {e}")))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown `encoding` {:?}; use \"base64\" or leave it out",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

// ----- handlers -------------------------------------------------------------------

const TAG_ADMIN: &str = "admin";
const TAG_APP: &str = "app";
const TAG_OPS: &str = "operations";

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = TAG_OPS, responses((status = 200, description = "alive")))]
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database and the bus are reachable.
#[utoipa::path(get, path = "/readyz", tag = TAG_OPS, responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(core): Shared) -> Response {
    match core.readiness().await {
        Ok(()) => Json(Readiness { status: "ready".into(), failing: vec![] }).into_response(),
        Err(failing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness { status: "not_ready".into(), failing: failing.into_iter().map(String::from).collect() }),
        )
            .into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = TAG_OPS, responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(core): Shared) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], core.metrics.render()).into_response()
}

/// The public keys that verify tokens: the current one and those still in
/// their overlap.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = TAG_OPS, responses((status = 200, body = Jwks)))]
async fn jwks(State(core): Shared) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=60")], Json(core.signer.jwks_fresh(now_ms()).await)).into_response()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = TAG_OPS, responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// Creates an app.
#[utoipa::path(post, path = "/v1/apps", tag = TAG_ADMIN, request_body = CreateAppBody, security(("admin" = [])),
    responses((status = 201, body = AppView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_app(
    State(core): Shared,
    Caller(who): Caller,
    Body(body): Body<CreateAppBody>,
) -> Result<Response, ApiError> {
    let spec =
        AppSpec { name: Some(body.name), limits: body.limits.into(), allowed_origins: Some(body.allowed_origins) };
    let app = core.create_app(&who, body.id.as_deref(), spec).await?;
    Ok((StatusCode::CREATED, Json(app_view(&core, &app))).into_response())
}

/// Lists every app.
#[utoipa::path(get, path = "/v1/apps", tag = TAG_ADMIN, security(("admin" = [])),
    responses((status = 200, body = AppList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_apps(State(core): Shared, Caller(who): Caller) -> Result<Json<AppList>, ApiError> {
    let apps = core.list_apps(&who).await?;
    Ok(Json(AppList { apps: apps.iter().map(|a| app_view(&core, a)).collect() }))
}

/// One app.
#[utoipa::path(get, path = "/v1/apps/{app_id}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = AppView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_app(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<Json<AppView>, ApiError> {
    let app = core.get_app(&who, &app_id).await?;
    Ok(Json(app_view(&core, &app)))
}

/// Changes an app's name, limits or Origin allowlist.
#[utoipa::path(patch, path = "/v1/apps/{app_id}", tag = TAG_ADMIN, request_body = UpdateAppBody, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = AppView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_app(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<UpdateAppBody>,
) -> Result<Json<AppView>, ApiError> {
    let spec = AppSpec {
        name: body.name,
        limits: body.limits.map(Into::into).unwrap_or_default(),
        allowed_origins: body.allowed_origins,
    };
    let app = core.update_app(&who, &app_id, spec).await?;
    Ok(Json(app_view(&core, &app)))
}

/// Deletes an app and its keys; edges close its connections.
#[utoipa::path(delete, path = "/v1/apps/{app_id}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn delete_app(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    core.delete_app(&who, &app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates an API key; the answer holds the whole secret, this once.
#[utoipa::path(post, path = "/v1/apps/{app_id}/keys", tag = TAG_ADMIN, request_body = CreateKeyBody, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_key(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<CreateKeyBody>,
) -> Result<Response, ApiError> {
    let (key, secret) = core.create_key(&who, &app_id, &body.name, body.capabilities).await?;
    let created = CreatedKey {
        id: key.id.to_string(),
        key: secret,
        name: key.name,
        capabilities: key.capabilities,
        created_at: secs(key.created_at_ms),
    };
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(created)).into_response())
}

/// Lists an app's keys (without secrets).
#[utoipa::path(get, path = "/v1/apps/{app_id}/keys", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn list_keys(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = core.list_keys(&who, &app_id).await?;
    Ok(Json(KeyList { keys: keys.iter().map(key_view).collect() }))
}

/// Revokes a key: it stops working at once, and edges close connections
/// holding tokens it minted.
#[utoipa::path(delete, path = "/v1/apps/{app_id}/keys/{key_id}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("key_id" = String, Path, description = "The key id")),
    responses((status = 200, body = RevokedKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, key_id)): ApiPath<(String, String)>,
) -> Result<Json<RevokedKey>, ApiError> {
    let revoked = core.revoke_key(&who, &app_id, &key_id).await?;
    Ok(Json(RevokedKey { id: key_id, revoked_at: secs(revoked.revoked_at_ms), edges_notified: revoked.edges_notified }))
}

/// Rotates the token signing keys; the previous key stays in the JWKS for
/// the overlap.
#[utoipa::path(post, path = "/v1/signing-keys/rotate", tag = TAG_ADMIN, request_body(content = RotateBody, description = "optional"),
    security(("admin" = [])),
    responses((status = 200, body = Rotation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn rotate(State(core): Shared, Caller(who): Caller, body: Bytes) -> Result<Json<Rotation>, ApiError> {
    let body: RotateBody = if body.is_empty() { RotateBody::default() } else { parse_json(&body)? };
    Ok(Json(core.rotate_signing_keys(&who, body.overlap_seconds).await?))
}

/// Mints a token for an end user.
#[utoipa::path(post, path = "/v1/apps/{app_id}/tokens", tag = TAG_APP, request_body = TokenBody, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = TokenView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "another app's key, or capabilities beyond the key's"),
              (status = 404, body = ErrorBody)))]
async fn mint_token(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<TokenBody>,
) -> Result<Json<TokenView>, ApiError> {
    let (token, expires_at) =
        core.mint_token(&who, &app_id, &body.client_id, body.capabilities, body.ttl_seconds, body.info).await?;
    Ok(Json(TokenView { token, expires_at }))
}

/// Publishes a message to one channel. Answers once the bus accepted it.
#[utoipa::path(post, path = "/v1/apps/{app_id}/channels/{channel}/messages", tag = TAG_APP, request_body = PublishBody,
    security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"),
           ("channel" = String, Path, description = "The channel name, percent-encoded")),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the bus is unavailable; nothing was accepted")))]
async fn publish(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, channel)): ApiPath<(String, String)>,
    Body(body): Body<PublishBody>,
) -> Result<Response, ApiError> {
    let (app, key, limits) = core.publish_context(&who, &app_id).await?;
    let data = payload(&body.data, body.encoding.as_deref())?;
    let msg = core.prepare(key, &limits, &[channel.as_str()], data, body.name, body.id)?;
    let published = core.publish_one(&app, &limits, msg).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted::from(published))).into_response())
}

/// Publishes a batch of messages; one result per message.
#[utoipa::path(post, path = "/v1/apps/{app_id}/messages", tag = TAG_APP, request_body = BatchBody, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 202, body = BatchResults, description = "processed; each result says accepted or why not"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody),
              (status = 503, body = BatchResults, description = "the bus was unavailable for some messages")))]
async fn publish_batch(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<BatchBody>,
) -> Result<Response, ApiError> {
    let (app, key, limits) = core.publish_context(&who, &app_id).await?;
    if body.messages.is_empty() {
        return Err(ApiError::bad_request("`messages` is empty"));
    }
    let max = core.config.max_batch_messages;
    if body.messages.len() > max {
        return Err(ApiError::limit_exceeded(format!(
            "{} messages in the batch; the limit is {max}",
            body.messages.len()
        )));
    }
    let items = body
        .messages
        .into_iter()
        .map(|m| {
            let channels: Vec<&str> = match (&m.channel, &m.channels) {
                (Some(c), None) => vec![c.as_str()],
                (None, Some(cs)) => cs.iter().map(String::as_str).collect(),
                (Some(_), Some(_)) => return Err(ApiError::bad_request("give `channel` or `channels`, not both")),
                (None, None) => return Err(ApiError::bad_request("give `channel` or `channels`")),
            };
            let data = payload(&m.data, m.encoding.as_deref())?;
            core.prepare(key, &limits, &channels, data, m.name.clone(), m.id.clone())
        })
        .collect();
    let results = core.publish_many(&app, &limits, items).await;
    let unavailable = results.iter().any(|r| matches!(r, Err(e) if e.code == herald_proto::ErrorCode::Unavailable));
    let results: Vec<BatchResult> = results
        .into_iter()
        .map(|r| match r {
            Ok(p) => BatchResult::Ok(p.into()),
            Err(e) => BatchResult::Err(e.body()),
        })
        .collect();
    if unavailable {
        let error = ApiError::unavailable(
            "the message bus is unavailable; messages with an `unavailable` result were not accepted",
        );
        let body = BatchResults { results, error: Some(error.body().error) };
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(BatchResults { results, error: None })).into_response())
}

/// Creates or replaces a channel namespace: channels `<name>:…` take its
/// options. `201` when created, `200` when replaced.
#[utoipa::path(put, path = "/v1/apps/{app_id}/namespaces/{name}", tag = TAG_ADMIN, request_body = NamespaceBody,
    security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("name" = String, Path, description = "The namespace")),
    responses((status = 200, body = NamespaceView, description = "replaced"), (status = 201, body = NamespaceView, description = "created"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the database or the bus (history stream) is unavailable; nothing was changed")))]
async fn put_namespace(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, name)): ApiPath<(String, String)>,
    Body(body): Body<NamespaceBody>,
) -> Result<Response, ApiError> {
    let history_ttl_ms = body.history_ttl.map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX));
    let options = bus::NamespaceOptions {
        presence: body.presence,
        join_leave: body.join_leave,
        client_publish: body.client_publish.unwrap_or(true),
        history_size: body.history_size,
        history_ttl_ms,
    };
    let (ns, created) = core.put_namespace(&who, &app_id, &name, options).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(namespace_view(&ns))).into_response())
}

/// Lists an app's namespaces.
#[utoipa::path(get, path = "/v1/apps/{app_id}/namespaces", tag = TAG_APP, security(("admin" = []), ("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = NamespaceList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn list_namespaces(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<Json<NamespaceList>, ApiError> {
    let list = core.list_namespaces(&who, &app_id).await?;
    Ok(Json(NamespaceList { namespaces: list.iter().map(namespace_view).collect() }))
}

/// One namespace.
#[utoipa::path(get, path = "/v1/apps/{app_id}/namespaces/{name}", tag = TAG_APP, security(("admin" = []), ("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("name" = String, Path, description = "The namespace")),
    responses((status = 200, body = NamespaceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_namespace(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, name)): ApiPath<(String, String)>,
) -> Result<Json<NamespaceView>, ApiError> {
    Ok(Json(namespace_view(&core.get_namespace(&who, &app_id, &name).await?)))
}

/// Deletes a namespace: its channels fall back to the defaults, and its
/// history is dropped.
#[utoipa::path(delete, path = "/v1/apps/{app_id}/namespaces/{name}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("name" = String, Path, description = "The namespace")),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the database or the bus is unavailable; nothing was deleted")))]
async fn delete_namespace(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    core.delete_namespace(&who, &app_id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads a channel's history (channels of a namespace with history).
#[utoipa::path(get, path = "/v1/apps/{app_id}/channels/{channel}/history", tag = TAG_APP, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"),
           ("channel" = String, Path, description = "The channel name, percent-encoded"), HistoryQuery),
    responses((status = 200, body = HistoryView), (status = 400, body = ErrorBody,
               description = "bad query or channel; `not_enabled` when the channel's namespace keeps no history"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn history(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, channel)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    let h = core.history(&who, &app_id, &channel, q.since.unwrap_or(0), q.limit, q.epoch.as_deref()).await?;
    Ok(Json(history_view(h)))
}

/// The members of a channel (channels of a namespace with presence),
/// counted per client id across connections and edges, in pages by client
/// id.
#[utoipa::path(get, path = "/v1/apps/{app_id}/channels/{channel}/presence", tag = TAG_APP, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"),
           ("channel" = String, Path, description = "The channel name, percent-encoded"), PresenceQuery),
    responses((status = 200, body = PresenceView), (status = 400, body = ErrorBody,
               description = "bad channel; `not_enabled` when the channel's namespace has no presence"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn presence(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, channel)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PresenceQuery>,
) -> Result<Json<PresenceView>, ApiError> {
    Ok(Json(presence_view(core.presence(&who, &app_id, &channel, q.after.as_deref(), q.limit).await?)))
}

/// The app's channels with subscribers, and how many.
#[utoipa::path(get, path = "/v1/apps/{app_id}/channels", tag = TAG_APP, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"), ChannelsQuery),
    responses((status = 200, body = ChannelList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn channels(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChannelsQuery>,
) -> Result<Json<ChannelList>, ApiError> {
    Ok(Json(channel_list(core.occupied_channels(&who, &app_id, q.prefix.as_deref()).await?)))
}

async fn not_found(req: Request) -> Response {
    if crate::api::grpc::is_grpc(req.headers()) {
        return crate::api::grpc::unimplemented();
    }
    ApiError::not_found(format!("no route {} {}", req.method(), req.uri().path())).into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    let mut response = ApiError::bad_request(format!("method {} is not allowed on {}", req.method(), req.uri().path()))
        .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// The OpenAPI document of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Herald control plane", description = "Apps, API keys, tokens, namespaces, publishing, history and presence. Errors are `{\"error\": {\"code\", \"message\"}}`; `code` is a Herald error code name."),
    paths(healthz, readyz, metrics, jwks, openapi, create_app, list_apps, get_app, update_app, delete_app,
          create_key, list_keys, revoke_key, rotate, mint_token, publish, publish_batch,
          put_namespace, list_namespaces, get_namespace, delete_namespace, history, presence, channels),
    modifiers(&Security),
    tags((name = "admin", description = "Operators, with the admin token"),
         (name = "app", description = "Customers' backends, with an API key of the app"),
         (name = "operations", description = "Health, metrics, keys for edges")),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("api_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The REST routes.
pub fn router(core: Arc<Core>) -> Router {
    let limit = core.config.max_body_size.as_usize();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/apps", post(create_app).get(list_apps))
        .route("/v1/apps/{app_id}", get(get_app).patch(update_app).delete(delete_app))
        .route("/v1/apps/{app_id}/keys", post(create_key).get(list_keys))
        .route("/v1/apps/{app_id}/keys/{key_id}", delete(revoke_key))
        .route("/v1/apps/{app_id}/tokens", post(mint_token))
        .route("/v1/apps/{app_id}/channels/{channel}/messages", post(publish))
        .route("/v1/apps/{app_id}/messages", post(publish_batch))
        .route("/v1/apps/{app_id}/namespaces", get(list_namespaces))
        .route("/v1/apps/{app_id}/namespaces/{name}", put(put_namespace).get(get_namespace).delete(delete_namespace))
        .route("/v1/apps/{app_id}/channels", get(channels))
        .route("/v1/apps/{app_id}/channels/{channel}/history", get(history))
        .route("/v1/apps/{app_id}/channels/{channel}/presence", get(presence))
        .route("/v1/signing-keys/rotate", post(rotate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(core)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("raw")
    }

    #[test]
    fn payloads() {
        assert_eq!(payload(&raw(r#""hi""#), None).expect("string"), Bytes::from_static(b"hi"));
        assert_eq!(payload(&raw(r#"{"a": 1}"#), None).expect("object"), Bytes::from_static(br#"{"a": 1}"#));
        assert_eq!(payload(&raw("42"), None).expect("number"), Bytes::from_static(b"42"));
        assert_eq!(payload(&raw(r#""AAE=""#), Some("base64")).expect("b64"), Bytes::from_static(&[0, 1]));
        assert!(payload(&raw(r#""!!""#), Some("base64")).is_err());
        assert!(payload(&raw("1"), Some("base64")).is_err());
        assert!(payload(&raw(r#""x""#), Some("rot13")).is_err());
    }

    #[test]
    fn raw_values_survive_path_tracking() {
        let body: PublishBody = parse_json(br#"{"data": {"x": [1, 2]}, "name": "e"}"#).expect("body");
        assert_eq!(body.data.get(), r#"{"x": [1, 2]}"#);
        let err = parse_json::<TokenBody>(br#"{"client_id": "u", "ttl_seconds": "long"}"#).expect_err("type");
        assert!(err.message.contains("ttl_seconds"), "{}", err.message);
    }

    #[test]
    fn openapi_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        for path in [
            "/v1/apps",
            "/v1/apps/{app_id}",
            "/v1/apps/{app_id}/keys",
            "/v1/apps/{app_id}/keys/{key_id}",
            "/v1/apps/{app_id}/tokens",
            "/v1/apps/{app_id}/channels/{channel}/messages",
            "/v1/apps/{app_id}/messages",
            "/v1/apps/{app_id}/namespaces",
            "/v1/apps/{app_id}/namespaces/{name}",
            "/v1/apps/{app_id}/channels",
            "/v1/apps/{app_id}/channels/{channel}/history",
            "/v1/apps/{app_id}/channels/{channel}/presence",
            "/v1/signing-keys/rotate",
            "/.well-known/jwks.json",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
        }
    }
}
