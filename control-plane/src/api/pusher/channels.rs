//! Pusher's channel queries: `GET /apps/{app_id}/channels` (the occupied
//! channels, by `filter_by_prefix`), `GET /apps/{app_id}/channels/{channel}`
//! (`occupied`, and `user_count` / `subscription_count` by `info`) and
//! `GET /apps/{app_id}/channels/{channel}/users` (a presence channel's user
//! ids).
//!
//! They answer from what edges report, applied as it arrives: an
//! unsubscribe or a closed connection shows as soon as its edge reported
//! it. `user_count` is for presence channels only: on one channel it
//! answers 400 for another kind, and in the list it needs
//! `filter_by_prefix=presence-…`, as Pusher requires. Only channels whose
//! names Pusher allows are listed (Herald-only names like `chat:room`
//! cannot be addressed with Pusher). A key sees the channels its
//! capabilities name.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herald_proto::ChannelName;
use herald_proto::pusher::{PusherChannel, PusherChannelKind};
use serde_json::{Map, Value, json};

use super::{Info, PusherError, Signed};
use crate::core::Core;

/// What Pusher's presence channels start with.
const PRESENCE_PREFIX: &str = "presence-";

/// The `{channel}` of the path, as a Pusher channel.
fn path_channel(signed: &Signed) -> Result<PusherChannel, PusherError> {
    let name = signed.path_param("channel").unwrap_or_default();
    PusherChannel::new(name).map_err(|e| PusherError::bad_request(e.to_string()))
}

/// `GET /apps/{app_id}/channels`.
pub(super) async fn list(State(core): State<Arc<Core>>, signed: Signed) -> Result<Json<Value>, PusherError> {
    let prefix = signed.param("filter_by_prefix").filter(|p| !p.is_empty());
    let info = Info::parse(signed.param("info"))?;
    if info.user_count && !prefix.is_some_and(|p| p.starts_with(PRESENCE_PREFIX)) {
        return Err(PusherError::bad_request(
            "info=user_count is only allowed with filter_by_prefix=presence- (it counts the users of presence channels)",
        ));
    }
    let occupied = core.occupied_channels(&signed.caller.who, signed.app(), prefix).await?;
    let names: Vec<ChannelName> = occupied
        .channels
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| PusherChannel::from_channel_name(name).is_some())
        .collect();
    let states = if info.any() { core.channel_states(&signed.caller.app.id, &names).await? } else { Vec::new() };
    let mut channels = Map::new();
    for (i, name) in names.iter().enumerate() {
        let attributes = states.get(i).map(|s| info.attributes(s)).unwrap_or_default();
        channels.insert(name.to_string(), Value::Object(attributes));
    }
    Ok(Json(json!({ "channels": channels })))
}

/// `GET /apps/{app_id}/channels/{channel}`.
pub(super) async fn channel(State(core): State<Arc<Core>>, signed: Signed) -> Result<Json<Value>, PusherError> {
    let channel = path_channel(&signed)?;
    let info = Info::parse(signed.param("info"))?;
    if info.user_count && channel.kind() != PusherChannelKind::Presence {
        return Err(PusherError::bad_request(format!(
            "info=user_count is only available for presence channels; {:?} is not one",
            channel.as_str()
        )));
    }
    let state = core.channel_state(&signed.caller.who, signed.app(), channel.as_str()).await?;
    let mut out = info.attributes(&state);
    out.insert("occupied".into(), state.occupied().into());
    Ok(Json(Value::Object(out)))
}

/// `GET /apps/{app_id}/channels/{channel}/users`.
pub(super) async fn users(State(core): State<Arc<Core>>, signed: Signed) -> Result<Json<Value>, PusherError> {
    let channel = path_channel(&signed)?;
    if channel.kind() != PusherChannelKind::Presence {
        return Err(PusherError::bad_request(format!(
            "users can only be listed for presence channels; {:?} is not one",
            channel.as_str()
        )));
    }
    let ids = core.member_ids(&signed.caller.who, signed.app(), channel.as_str()).await?;
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(Json(json!({ "users": users })))
}
