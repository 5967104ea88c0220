//! Presence channels of the Pusher protocol: members are users, counted
//! across edges in the hub's presence table (the same one Herald clients of
//! the channel are members of, a Herald client id being a user id).
//!
//! - A subscription's `channel_data` is `{"user_id": …, "user_info": …}`;
//!   a numeric `user_id` is taken as its decimal text.
//! - A channel holds at most the app's `presence_max_members` users (0:
//!   the edge's `pusher_presence_max_members`); a new user past it is
//!   refused. Another connection of a member is always let in. The count
//!   is this edge's view: other edges' members are known once their
//!   snapshots answered the sync a new channel asks for.
//! - `pusher_internal:member_added` and `member_removed` go out when a
//!   user's first connection joins and its last one leaves, on any edge
//!   (the hub announces them; see [`crate::hub::pusher`]).

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, bus};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::hub::Hub;

/// Longest user id, in bytes.
pub(super) const MAX_USER_ID_LEN: usize = 128;

/// Largest `user_info`, as JSON, in bytes.
pub(super) const MAX_USER_INFO_BYTES: usize = 1024;

#[derive(Deserialize)]
struct ChannelData {
    user_id: Value,
    #[serde(default)]
    user_info: Option<Value>,
}

/// A user id from JSON: a non-empty string of at most [`MAX_USER_ID_LEN`]
/// bytes, or a number (as its text).
pub(super) fn user_id(value: &Value) -> Result<String, String> {
    let id = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("user_id must be a string or a number".into()),
    };
    if id.is_empty() || id.len() > MAX_USER_ID_LEN {
        return Err(format!("user_id must be 1-{MAX_USER_ID_LEN} bytes"));
    }
    Ok(id)
}

/// The member a presence subscription's `channel_data` names: its user id
/// and its `user_info` as JSON (empty when none).
///
/// # Errors
///
/// What is wrong with it, for the subscription error.
pub(super) fn member(channel_data: &str) -> Result<(String, Bytes), String> {
    let data: ChannelData = serde_json::from_str(channel_data)
        .map_err(|e| format!("channel_data is not {{\"user_id\", \"user_info\"}}: {e}"))?;
    let id = user_id(&data.user_id)?;
    let info = match data.user_info {
        None | Some(Value::Null) => Bytes::new(),
        Some(info) => Bytes::from(info.to_string()),
    };
    if info.len() > MAX_USER_INFO_BYTES {
        return Err(format!("user_info exceeds {MAX_USER_INFO_BYTES} bytes"));
    }
    Ok((id, info))
}

/// Whether a new connection of `user` would take the channel past `max`
/// members.
pub(super) fn over_cap(hub: &Hub, app: &AppId, channel: &ChannelName, user: &str, max: usize) -> bool {
    match hub.member_status(app, channel, user) {
        Some((true, _)) | None => false,
        Some((false, members)) => members >= max,
    }
}

/// The data of a presence subscription's `subscription_succeeded`:
/// `{"presence": {"ids", "hash", "count"}}`, the channel's members (at
/// most `max`, and always `me`).
pub(super) fn members_data(
    hub: &Hub,
    app: &AppId,
    channel: &ChannelName,
    me: &bus::PresenceEntry,
    max: usize,
) -> Value {
    let page = hub.members_page(app, channel, "", max.max(1), 512 * 1024).unwrap_or_default();
    let mut ids = Vec::with_capacity(page.members.len() + 1);
    let mut hash = Map::new();
    let info = |raw: &[u8]| serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null);
    for m in &page.members {
        ids.push(Value::String(m.client_id.clone()));
        hash.insert(m.client_id.clone(), info(&m.info));
    }
    let mut count = page.total;
    if !hash.contains_key(&me.client_id) {
        // Its own join is still on its way through the bus.
        ids.push(Value::String(me.client_id.clone()));
        hash.insert(me.client_id.clone(), info(&me.info));
        count += 1;
    }
    serde_json::json!({"presence": {"ids": ids, "hash": hash, "count": count}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_names_a_user() {
        assert_eq!(member(r#"{"user_id":"u1","user_info":{"n":1}}"#), Ok(("u1".into(), Bytes::from(r#"{"n":1}"#))));
        assert_eq!(member(r#"{"user_id":10}"#), Ok(("10".into(), Bytes::new())));
        assert!(member(r#"{"user_id":""}"#).is_err());
        assert!(member(r#"{"user_id":true}"#).is_err());
        assert!(member(r#"{"user_info":{}}"#).is_err());
        assert!(member("nope").is_err());
        let big = format!(r#"{{"user_id":"u","user_info":"{}"}}"#, "x".repeat(2000));
        assert!(member(&big).is_err());
        assert!(member(&format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129))).is_err());
    }
}
