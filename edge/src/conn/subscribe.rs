//! Subscribe, unsubscribe and token refresh: the requests that change what
//! a connection receives.

use std::sync::Arc;

use bytes::Bytes;
use herald_proto::client::{self, reply_ok};
use herald_proto::{ChannelName, ErrorCode, Operation, bus};

use crate::auth::AuthError;
use crate::hub::{SubscribeOptions, Wire};
use herald_bus::namespaces::keeps_history;

use super::recovery::Recovery;
use super::reply::{Close, bus_err, reply_err, reply_ok};
use super::session::{Session, expiry_instant};
use super::shared::Shared;

pub(super) async fn subscribe(
    shared: &Arc<Shared>,
    session: &mut Session,
    rid: u64,
    s: client::Subscribe,
) -> Option<Bytes> {
    let channel = match ChannelName::new(&s.channel) {
        Ok(c) => c,
        Err(e) => return Some(reply_err(rid, ErrorCode::InvalidChannel, e.to_string())),
    };
    if !session.claims.caps.allows(channel.as_str(), Operation::Subscribe) {
        let reason = "token does not allow subscribe on this channel";
        let (tap, app) = (shared.hub.tap(), session.entry.app.as_str());
        crate::tap::refused(tap, app, &session.connection_id, ErrorCode::Forbidden, reason, channel.as_str());
        return Some(reply_err(rid, ErrorCode::Forbidden, reason));
    }
    if session.subscriptions.contains_key(&channel) {
        let result = client::SubscribeResult { history: false, recovered: false, position: None };
        return Some(reply_ok(rid, Some(reply_ok::Value::Subscribed(result))));
    }
    if session.subscriptions.len() >= shared.config.max_subscriptions as usize {
        return Some(reply_err(
            rid,
            ErrorCode::LimitExceeded,
            format!("at most {} subscriptions per connection", shared.config.max_subscriptions),
        ));
    }
    let hub = &shared.hub;
    let app = &session.entry.app;
    let options = match hub.namespace_options(app, &channel).await {
        Ok(o) => o,
        Err(e) => return Some(bus_err(rid, "namespace lookup", &e)),
    };
    let history = keeps_history(&options);
    // Recovery needs the `history` capability; without it the subscribe
    // still succeeds, live only, with `recovered: false`.
    let recover =
        s.recover_from.filter(|_| history && session.claims.caps.allows(channel.as_str(), Operation::History));
    let presence = (options.presence && session.claims.caps.allows(channel.as_str(), Operation::Presence)).then(|| {
        Arc::new(bus::PresenceEntry {
            channel: channel.as_str().to_owned(),
            connection_id: session.connection_id.to_string(),
            client_id: session.claims.sub.as_str().to_owned(),
            info: session
                .claims
                .info
                .as_ref()
                .map(|i| Bytes::from(serde_json::to_vec(i).unwrap_or_default()))
                .unwrap_or_default(),
        })
    });
    let history_size = options.history_size as usize;
    let how = SubscribeOptions { options, hold: history, presence: presence.clone(), wire: Wire::Herald, count: false };
    if let Err(e) = hub.subscribe(app, &channel, session.entry.id, &session.entry.outbox, how).await {
        return Some(bus_err(rid, "subscribe", &e));
    }
    session.subscriptions.insert(channel.clone(), presence.clone());
    crate::tap::subscribed(hub.tap(), app.as_str(), &session.connection_id, channel.as_str(), true);
    if let Some(entry) = presence {
        hub.report_join(app, &channel, &entry).await;
    }
    if !history {
        let result = client::SubscribeResult { history: false, recovered: false, position: None };
        return Some(reply_ok(rid, Some(reply_ok::Value::Subscribed(result))));
    }
    let recovery = Recovery {
        hub,
        app,
        channel: &channel,
        conn_id: session.entry.id,
        outbox: &session.entry.outbox,
        from: recover,
        history_size,
    };
    recovery.run(rid).await
}

pub(super) async fn unsubscribe(shared: &Arc<Shared>, session: &mut Session, rid: u64, channel: &str) -> Bytes {
    let Ok(channel) = ChannelName::new(channel) else {
        return reply_err(rid, ErrorCode::InvalidChannel, "invalid channel name");
    };
    let Some(presence) = session.subscriptions.remove(&channel) else {
        return reply_err(rid, ErrorCode::NotSubscribed, "not subscribed to this channel");
    };
    shared.hub.unsubscribe(&session.entry.app, &channel, session.entry.id);
    let (tap, app) = (shared.hub.tap(), session.entry.app.as_str());
    crate::tap::subscribed(tap, app, &session.connection_id, channel.as_str(), false);
    if let Some(entry) = presence {
        shared.hub.report_leave(&session.entry.app, entry).await;
    }
    reply_ok(rid, None)
}

/// Replaces the connection's token with a newer one for the same app and
/// client: a new deadline and key, and the end of the subscriptions the
/// new token no longer allows.
pub(super) async fn refresh(shared: &Arc<Shared>, session: &mut Session, rid: u64, token: &str) -> Bytes {
    let claims = match shared.verifier.verify(token).await {
        Ok(claims) => claims,
        Err(AuthError::Expired) => return reply_err(rid, ErrorCode::TokenExpired, "the new token is expired"),
        Err(e) => return reply_err(rid, ErrorCode::Unauthorized, e.to_string()),
    };
    if claims.app != session.entry.app || claims.sub != session.claims.sub {
        return reply_err(rid, ErrorCode::Forbidden, "the new token must name the same app and client id");
    }
    let expires_at = expiry_instant(claims.exp, shared.config.token_leeway.0);
    session.entry.deadlines.token(shared.hub.clock_ms(expires_at));
    *session.entry.key.lock().unwrap_or_else(|e| e.into_inner()) = Some(claims.key.clone());
    // The new key's revocation may have been announced (and matched against
    // the old key) while the token was checked.
    if let Err(e) = shared.hub.revocations().check(&claims) {
        let message = e.to_string();
        let Close(code, reason) = Close::refused(e);
        session.entry.outbox.close(code, &reason);
        return reply_err(rid, ErrorCode::Unauthorized, message);
    }
    let exp_ms = claims.exp.saturating_mul(1000);
    // Subscriptions the new token no longer allows end now.
    let dropped: Vec<ChannelName> = session
        .subscriptions
        .keys()
        .filter(|c| !claims.caps.allows(c.as_str(), Operation::Subscribe))
        .cloned()
        .collect();
    for channel in dropped {
        if let Some(Some(entry)) = session.subscriptions.remove(&channel) {
            shared.hub.report_leave(&session.entry.app, entry).await;
        }
        shared.hub.unsubscribe(&session.entry.app, &channel, session.entry.id);
    }
    session.claims = super::session::kept(claims);
    reply_ok(rid, Some(reply_ok::Value::Refreshed(client::RefreshResult { token_expires_at_ms: exp_ms })))
}
