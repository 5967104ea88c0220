//! `pusher:subscribe` and `pusher:unsubscribe`.
//!
//! A subscription names a Pusher channel ([`PusherChannel`]): a bad name is
//! refused with `pusher:subscription_error` (status 400). Private,
//! private-encrypted and presence channels need an `auth` string
//! `<app id>:<HMAC-SHA256>` signed with one of the app's Pusher secrets
//! over `<socket_id>:<channel>` (and `:<channel_data>` whenever the
//! subscription carries it: always on presence channels, and on private
//! ones when the app's auth endpoint gave it); a bad one is refused with status 401 and nothing of the
//! channel is sent. Encrypted channels' payloads pass through untouched.
//!
//! The subscriber is added to the hub *held* (see
//! [`Hub::release`](crate::hub::Hub::release)): what
//! is published meanwhile waits until `pusher_internal:subscription_succeeded`
//! is queued, so that it comes first. A cache channel's subscriber then
//! gets the channel's kept event, or `pusher:cache_miss` when there is none
//! (a message published while it is read may come twice: kept, and live).

use std::sync::Arc;

use herald_proto::pusher::{PusherChannel, PusherChannelKind, verify_channel};
use herald_proto::webhook::EventKind;
use herald_proto::{AppId, bus};
use serde_json::Value;

use crate::conn::Shared;
use crate::hub::pusher::{self as pusher_frames, USER_CHANNEL_PREFIX};
use crate::hub::{SubscribeOptions, Wire};
use crate::webhooks::Seen;

use super::frames::{SubscribeData, subscription_error, subscription_succeeded};
use super::presence;
use super::session::Session;
use super::user;

/// Why a subscription was refused: `(type, error, status)` of its
/// `pusher:subscription_error`.
type Refusal = (&'static str, String, u16);

/// Checks `auth` for `channel` against each of the app's secrets.
fn authorize(
    app: &AppId,
    settings: &bus::PusherApp,
    socket_id: &str,
    channel: &PusherChannel,
    data: &SubscribeData,
) -> Result<(), Refusal> {
    let Some(auth) = data.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Err(("AuthError", "this channel needs an auth signature".into(), 401));
    };
    // Signed whenever it is sent: Pusher's server libraries sign (and
    // pusher-js sends) `channel_data` for private channels too when the
    // app's auth endpoint gives one.
    let channel_data = data.channel_data.as_deref();
    let mut error = "the app has no Pusher secret".to_owned();
    for secret in &settings.secrets {
        match verify_channel(app.as_str(), &secret.secret, socket_id, channel, channel_data, auth) {
            Ok(()) => return Ok(()),
            Err(e) => error = e.to_string(),
        }
    }
    Err(("AuthError", error, 401))
}

/// The most members of a presence channel of this app.
fn max_members(shared: &Shared, settings: &bus::PusherApp) -> usize {
    match settings.presence_max_members {
        0 => shared.config.pusher_presence_max_members as usize,
        n => n as usize,
    }
}

pub(super) async fn subscribe(shared: &Arc<Shared>, session: &mut Session, data: SubscribeData) {
    if let Some(user_id) = data.channel.strip_prefix(USER_CHANNEL_PREFIX) {
        return user::subscribe_user_channel(session, &data.channel, user_id);
    }
    let channel = match PusherChannel::new(&data.channel) {
        Ok(c) => c,
        Err(e) => {
            session.send(subscription_error(&data.channel, "InvalidChannel", &e.to_string(), 400));
            return;
        }
    };
    if let Err((kind, error, status)) = Box::pin(add(shared, session, &channel, &data)).await {
        let (tap, app) = (shared.hub.tap(), session.app.as_str());
        crate::tap::refused_as(tap, app, &session.socket_id, kind, u32::from(status), &error, channel.as_str());
        session.send(subscription_error(channel.as_str(), kind, &error, status));
    }
}

/// Adds the subscription and answers it; the refusal otherwise.
async fn add(
    shared: &Arc<Shared>,
    session: &mut Session,
    channel: &PusherChannel,
    data: &SubscribeData,
) -> Result<(), Refusal> {
    let hub = &shared.hub;
    let name = channel.channel_name();
    let settings = match hub.pusher_app(&session.app).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(("AppDisabled", "Pusher mode is off for this app".into(), 403)),
        Err(_) => return Err(("ServerError", "app settings unavailable; retry".into(), 503)),
    };
    if channel.kind().needs_auth() {
        authorize(&session.app, &settings, &session.socket_id, channel, data)?;
    }
    let max_members = max_members(shared, &settings);
    let member = if channel.kind() == PusherChannelKind::Presence {
        let channel_data = data.channel_data.as_deref().unwrap_or_default();
        let (user, info) = presence::member(channel_data).map_err(|e| ("InvalidChannelData", e, 400))?;
        if presence::over_cap(hub, &session.app, &name, &user, max_members) {
            let error = format!("the channel has its limit of {max_members} members");
            return Err(("LimitReached", error, 403));
        }
        Some((user, info))
    } else {
        None
    };
    if let Some(existing) = session.subscriptions.get(channel) {
        // Subscribed already: answered again, as it is now.
        let answer = match existing {
            Some(me) => presence::members_data(hub, &session.app, &name, me, max_members),
            None => Value::Object(Default::default()),
        };
        session.send(subscription_succeeded(channel.as_str(), &answer));
        return Ok(());
    }
    let max_subscriptions = shared.config.max_subscriptions as usize;
    if session.subscriptions.len() >= max_subscriptions {
        return Err(("LimitReached", format!("at most {max_subscriptions} subscriptions per connection"), 403));
    }
    let options = hub
        .namespace_options(&session.app, &name)
        .await
        .map_err(|_| ("ServerError", "channel options unavailable; retry".to_owned(), 503))?;
    let entry = member.filter(|_| options.presence).map(|(user, info)| {
        Arc::new(bus::PresenceEntry {
            channel: name.as_str().to_owned(),
            connection_id: session.socket_id.to_string(),
            client_id: user,
            info,
        })
    });
    let how = SubscribeOptions {
        options,
        hold: true,
        presence: entry.clone(),
        wire: Wire::Pusher,
        count: settings.subscription_count,
    };
    if let Err(e) = hub.subscribe(&session.app, &name, session.id, &session.entry.outbox, how).await {
        tracing::warn!(app = %session.app, channel = %name, error = %e, "pusher subscribe failed on the bus");
        return Err(("ServerError", "bus unavailable; retry".into(), 503));
    }
    session.subscriptions.insert(channel.clone(), entry.clone());
    metrics::gauge!("herald_pusher_subscriptions").increment(1.0);
    crate::tap::subscribed(hub.tap(), session.app.as_str(), &session.socket_id, channel.as_str(), true);
    let answer = match &entry {
        Some(me) => {
            hub.report_join(&session.app, &name, me).await;
            presence::members_data(hub, &session.app, &name, me, max_members)
        }
        None => Value::Object(Default::default()),
    };
    session.send(subscription_succeeded(channel.as_str(), &answer));
    if channel.is_cache() {
        send_cached(shared, session, channel).await;
    }
    hub.release(&session.app, &name, session.id, |_, _| false).await;
    Ok(())
}

/// Sends a cache channel's kept event, or `pusher:cache_miss` (reported for
/// the app's `cache_miss` webhooks when it has some; also when the kept
/// event could not be read: the client was told of a miss either way).
async fn send_cached(shared: &Arc<Shared>, session: &Session, channel: &PusherChannel) {
    use prost::Message as _;
    let name = channel.channel_name();
    let kept = match shared.hub.bus().cached_message(&session.app, &name).await {
        Ok(kept) => kept.and_then(|payload| bus::ChannelMessage::decode(payload).ok()),
        Err(e) => {
            tracing::warn!(app = %session.app, channel = %name, error = %e, "cache channel's event not read");
            None
        }
    };
    match kept {
        Some(msg) => {
            session.send(pusher_frames::channel_message_frame(channel.as_str(), &msg));
        }
        None => {
            metrics::counter!("herald_pusher_cache_misses_total").increment(1);
            session.send(pusher_frames::cache_miss_frame(channel.as_str()));
            let seen = Seen {
                kind: EventKind::CacheMiss,
                channel: &name,
                event: "",
                data: bytes::Bytes::new(),
                connection_id: &session.socket_id,
                user_id: "",
            };
            shared.webhooks.report(&session.app, seen).await;
        }
    }
}

pub(super) async fn unsubscribe(shared: &Arc<Shared>, session: &mut Session, channel: &str) {
    let Ok(channel) = PusherChannel::new(channel) else { return };
    let Some(presence) = session.subscriptions.remove(&channel) else { return };
    shared.hub.unsubscribe(&session.app, &channel.channel_name(), session.id);
    metrics::gauge!("herald_pusher_subscriptions").decrement(1.0);
    crate::tap::subscribed(shared.hub.tap(), session.app.as_str(), &session.socket_id, channel.as_str(), false);
    if let Some(entry) = presence {
        shared.hub.report_leave(&session.app, entry).await;
    }
}
