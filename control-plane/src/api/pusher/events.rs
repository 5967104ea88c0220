//! Pusher's events: `POST /apps/{app_id}/events` (one event to 1-100
//! channels, or to one user on `#server-to-user-{user_id}`) and
//! `POST /apps/{app_id}/batch_events` (up to the app's `batch_max` events).
//!
//! `data` is a string, stored as its bytes (another JSON value is taken as
//! its JSON text); it may be at most the app's `max_event_bytes` (413).
//! `socket_id` names the connection that must not receive the event.
//! `info` (`user_count`, `subscription_count`) asks for the channels'
//! state after the publish: `{"channels": {name: {…}}}` for an event,
//! `{"batch": [{…}, …]}` for a batch; without it the answer is `{}`. A batch
//! is checked whole before anything is published.

use herald_bus::usage::Source;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use herald_proto::pusher::PusherChannel;
use herald_proto::{AppId, ChannelName};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Info, PusherError, Signed};
use crate::core::Core;
use crate::error::ApiError;
use crate::publish::Prepared;
use crate::services::publish::{PUSHER_MAX_EVENT_NAME_LEN, check_event_name, is_connection_id};
use crate::services::{Draft, EffectiveLimits};
use crate::store::ApiKey;

/// The channel prefix of Pusher's server-to-user events.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// Most channels one event may go to (Pusher's limit).
pub const MAX_EVENT_CHANNELS: usize = 100;

/// `POST /apps/{app_id}/events`.
#[derive(Debug, Deserialize)]
struct EventBody {
    name: String,
    data: Box<RawValue>,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
}

/// `POST /apps/{app_id}/batch_events`.
#[derive(Debug, Deserialize)]
struct BatchBody {
    batch: Vec<BatchEvent>,
}

/// One event of a batch.
#[derive(Debug, Deserialize)]
struct BatchEvent {
    channel: String,
    name: String,
    data: Box<RawValue>,
    socket_id: Option<String>,
    info: Option<String>,
}

/// Where an event goes.
enum Target {
    /// These channels.
    Channels(Vec<ChannelName>),
    /// Every connection of this user.
    User(String),
}

/// An event that passed the Pusher checks.
struct Event {
    target: Target,
    draft: Draft,
    info: Info,
}

/// The bytes of `data`: a string's text; another JSON value's JSON text.
fn event_data(data: &RawValue) -> Result<Bytes, PusherError> {
    let text = data.get();
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text)
            .map_err(|e| PusherError::bad_request(format!("`data` is not a valid JSON string: {e}")))?;
        Ok(Bytes::from(s))
    } else if text == "null" {
        Err(PusherError::bad_request("`data` is required"))
    } else {
        Ok(Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// The Pusher checks of one event: name, channels, data size, socket id.
fn check_event(
    max_event_bytes: u32,
    name: String,
    data: &RawValue,
    channels: Vec<String>,
    socket_id: Option<String>,
    info: Option<&str>,
) -> Result<Event, PusherError> {
    check_event_name(Some(&name), PUSHER_MAX_EVENT_NAME_LEN)?;
    if channels.is_empty() {
        return Err(PusherError::bad_request("give `channel` or a non-empty `channels`"));
    }
    if channels.len() > MAX_EVENT_CHANNELS {
        return Err(PusherError::bad_request(format!(
            "{} channels; an event may go to at most {MAX_EVENT_CHANNELS}",
            channels.len()
        )));
    }
    let target = if channels.iter().any(|c| c.starts_with(SERVER_TO_USER_PREFIX)) {
        let [channel] = channels.as_slice() else {
            return Err(PusherError::bad_request(format!(
                "an event to a user ({SERVER_TO_USER_PREFIX}…) goes to that one channel only"
            )));
        };
        Target::User(channel[SERVER_TO_USER_PREFIX.len()..].to_owned())
    } else {
        let mut names = Vec::with_capacity(channels.len());
        for c in &channels {
            let channel = PusherChannel::new(c).map_err(|e| PusherError::bad_request(e.to_string()))?;
            names.push(channel.channel_name());
        }
        Target::Channels(names)
    };
    if let Some(id) = &socket_id
        && !is_connection_id(id)
    {
        return Err(PusherError::bad_request(format!(
            "invalid socket_id {:?}: expected digits, a dot, digits",
            id.chars().take(64).collect::<String>()
        )));
    }
    let data = event_data(data)?;
    if data.len() > max_event_bytes as usize {
        return Err(PusherError::too_large(format!(
            "the event's data is {} bytes; this app allows at most {max_event_bytes} (pusher.max_event_bytes)",
            data.len()
        )));
    }
    let info = Info::parse(info)?;
    let draft = Draft { data, event: Some(name), idempotency_id: None, exclude_connection: socket_id };
    Ok(Event { target, draft, info })
}

/// The Herald checks of an event to channels (capabilities, app limits).
fn prepare(
    core: &Core,
    key: Option<&ApiKey>,
    limits: &EffectiveLimits,
    channels: &[ChannelName],
    draft: Draft,
) -> Result<Prepared, ApiError> {
    let names: Vec<&str> = channels.iter().map(ChannelName::as_str).collect();
    core.prepare_with(key, limits, &names, draft, PUSHER_MAX_EVENT_NAME_LEN)
}

/// `{"name": {attributes}}` of `channels` after a publish.
async fn channel_info(
    core: &Core,
    app: &AppId,
    channels: &[ChannelName],
    info: Info,
) -> Result<Map<String, Value>, PusherError> {
    let states = core.channel_states(app, channels).await?;
    Ok(channels.iter().zip(&states).map(|(c, s)| (c.to_string(), Value::Object(info.attributes(s)))).collect())
}

/// `POST /apps/{app_id}/events`.
pub(super) async fn trigger(State(core): State<Arc<Core>>, signed: Signed) -> Result<Json<Value>, PusherError> {
    let body: EventBody = signed.json()?;
    let channels = match (body.channel, body.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) => cs,
        (Some(_), Some(_)) => return Err(PusherError::bad_request("give `channel` or `channels`, not both")),
        (None, None) => return Err(PusherError::bad_request("give `channel` or `channels`")),
    };
    let max = signed.caller.app.pusher.max_event_bytes;
    let event = check_event(max, body.name, &body.data, channels, body.socket_id, body.info.as_deref())?;
    let who = &signed.caller.who;
    match event.target {
        Target::User(user) => {
            core.publish_to_user_with(who, signed.app(), &user, event.draft, PUSHER_MAX_EVENT_NAME_LEN).await?;
            Ok(Json(Value::Object(Map::new())))
        }
        Target::Channels(channels) => {
            let (app, key, limits) = core.publish_context(who, signed.app()).await?;
            let msg = prepare(&core, key, &limits, &channels, event.draft)?;
            core.publish_one(&app, &limits, msg, Source::PusherHttp).await?;
            if !event.info.any() {
                return Ok(Json(Value::Object(Map::new())));
            }
            let info = channel_info(&core, &app, &channels, event.info).await?;
            Ok(Json(serde_json::json!({ "channels": info })))
        }
    }
}

/// `POST /apps/{app_id}/batch_events`.
pub(super) async fn trigger_batch(State(core): State<Arc<Core>>, signed: Signed) -> Result<Json<Value>, PusherError> {
    let body: BatchBody = signed.json()?;
    let settings = signed.caller.app.pusher;
    if body.batch.is_empty() {
        return Err(PusherError::bad_request("`batch` is empty"));
    }
    if body.batch.len() > settings.batch_max as usize {
        return Err(PusherError::bad_request(format!(
            "{} events in the batch; this app allows at most {} (pusher.batch_max)",
            body.batch.len(),
            settings.batch_max
        )));
    }
    let at = |i: usize| move |e: PusherError| PusherError { message: format!("batch[{i}]: {}", e.message), ..e };
    let mut events = Vec::with_capacity(body.batch.len());
    for (i, e) in body.batch.into_iter().enumerate() {
        let event =
            check_event(settings.max_event_bytes, e.name, &e.data, vec![e.channel], e.socket_id, e.info.as_deref())
                .map_err(at(i))?;
        events.push(event);
    }
    let who = &signed.caller.who;
    let (app, key, limits) = core.publish_context(who, signed.app()).await?;
    // Every event is checked before any is published.
    let mut prepared = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if let Target::Channels(channels) = &event.target {
            let msg = prepare(&core, key, &limits, channels, event.draft.clone()).map_err(|e| at(i)(e.into()))?;
            prepared.push(Ok(msg));
        }
    }
    for result in core.publish_many(&app, &limits, prepared, Source::PusherHttp).await {
        result?;
    }
    for event in &events {
        if let Target::User(user) = &event.target {
            core.publish_to_user_with(who, app.as_str(), user, event.draft.clone(), PUSHER_MAX_EVENT_NAME_LEN).await?;
        }
    }
    if !events.iter().any(|e| e.info.any()) {
        return Ok(Json(Value::Object(Map::new())));
    }
    let mut batch = Vec::with_capacity(events.len());
    for event in &events {
        let attributes = match &event.target {
            Target::Channels(channels) if event.info.any() => {
                let states = core.channel_states(&app, channels).await?;
                states.first().map(|s| event.info.attributes(s)).unwrap_or_default()
            }
            _ => Map::new(),
        };
        batch.push(Value::Object(attributes));
    }
    Ok(Json(serde_json::json!({ "batch": batch })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("raw")
    }

    fn check(channels: &[&str], socket_id: Option<&str>) -> Result<Event, PusherError> {
        let channels = channels.iter().map(|c| (*c).to_owned()).collect();
        check_event(10, "e".into(), &raw(r#""{}""#), channels, socket_id.map(str::to_owned), None)
    }

    #[test]
    fn event_checks() {
        assert!(
            matches!(check(&["private-a.b", "c"], Some("1.2")).map(|e| e.target), Ok(Target::Channels(c)) if c.len() == 2)
        );
        assert!(matches!(check(&["#server-to-user-u1"], None).map(|e| e.target), Ok(Target::User(u)) if u == "u1"));
        for (channels, socket) in [
            (&["a:b"][..], None),
            (&[][..], None),
            (&["#server-to-user-u1", "c"][..], None),
            (&["c"][..], Some("1")),
            (&["c"][..], Some("1.x")),
        ] {
            assert_eq!(check(channels, socket).err().map(|e| e.status.as_u16()), Some(400), "{channels:?} {socket:?}");
        }
        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        let e = check_event(10, "e".into(), &raw(r#""x""#), many, None, None).err().map(|e| e.status.as_u16());
        assert_eq!(e, Some(400));
        let big = check_event(3, "e".into(), &raw(r#""abcd""#), vec!["c".into()], None, None);
        assert_eq!(big.err().map(|e| e.status.as_u16()), Some(413));
        let long = check_event(10, "e".repeat(201), &raw(r#""x""#), vec!["c".into()], None, None);
        assert_eq!(long.err().map(|e| e.status.as_u16()), Some(400));
        assert!(check_event(10, "e".repeat(200), &raw(r#""x""#), vec!["c".into()], None, None).is_ok());
    }

    #[test]
    fn data_is_a_strings_text_or_json_text() {
        assert_eq!(event_data(&raw(r#""{\"a\":1}""#)).expect("string"), Bytes::from_static(br#"{"a":1}"#));
        assert_eq!(event_data(&raw(r#"{"a": 1}"#)).expect("object"), Bytes::from_static(br#"{"a": 1}"#));
        assert!(event_data(&raw("null")).is_err());
    }
}
