//! User sign-in (`pusher:signin`) and the user's server-to-user channel.
//!
//! `pusher:signin` carries `user_data` (JSON with a non-empty `id`) and
//! `auth`, `<app id>:<HMAC-SHA256>` over `<socket_id>::user::<user_data>`
//! with one of the app's Pusher secrets. Once it checks out the edge
//! answers `pusher:signin_success` with the `user_data`, and the connection
//! is that user's: it receives the user's events (`UserEvent`, as events on
//! `#server-to-user-<id>`) and closes with 4009 when the app terminates the
//! user's connections. A sign-in that does not check out is answered with
//! `pusher:error` 4009 and the close 4009, as Pusher does. pusher-js then
//! subscribes to `#server-to-user-<id>`; that subscription succeeds for
//! the signed-in user's own channel only (the events come to the
//! connection anyway).

use std::sync::Arc;

use herald_proto::CloseCode;
use herald_proto::pusher::verify_user;
use serde_json::Value;

use crate::conn::Shared;

use super::frames::{SigninData, signin_success, subscription_error, subscription_succeeded};
use super::presence::user_id;
use super::session::Session;

/// The user a sign-in names, once its signature checks out; why not
/// otherwise.
fn check(session: &Session, settings: &herald_proto::bus::PusherApp, data: &SigninData) -> Result<String, String> {
    let mut error = "the app has no Pusher secret".to_owned();
    let signed = settings.secrets.iter().any(|secret| {
        match verify_user(session.app.as_str(), &secret.secret, &session.socket_id, &data.user_data, &data.auth) {
            Ok(()) => true,
            Err(e) => {
                error = e.to_string();
                false
            }
        }
    });
    if !signed {
        return Err(error);
    }
    let user: Value = serde_json::from_str(&data.user_data).map_err(|e| format!("user_data is not JSON: {e}"))?;
    user_id(user.get("id").unwrap_or(&Value::Null)).map_err(|e| format!("user_data's id: {e}"))
}

/// Signs the connection in; a close when the sign-in fails.
pub(super) async fn signin(
    shared: &Arc<Shared>,
    session: &mut Session,
    data: SigninData,
) -> Option<(CloseCode, String)> {
    let settings = match shared.hub.pusher_app(&session.app).await {
        Ok(Some(s)) => s,
        Ok(None) => return Some((CloseCode::AppUnavailable, "Pusher mode is off for this app".into())),
        Err(_) => return Some((CloseCode::BusUnavailable, "app settings unavailable; retry".into())),
    };
    match check(session, &settings, &data) {
        Ok(id) => {
            let id: Arc<str> = id.into();
            *session.entry.user.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
            session.user = Some(id);
            metrics::counter!("herald_pusher_signins_total").increment(1);
            session.send(signin_success(&data.user_data));
            None
        }
        Err(e) => {
            metrics::counter!("herald_pusher_signin_failures_total").increment(1);
            Some((CloseCode::InvalidToken, format!("sign-in refused: {e}")))
        }
    }
}

/// Answers pusher-js's subscription to `#server-to-user-<user_id>`.
pub(super) fn subscribe_user_channel(session: &Session, channel: &str, user_id: &str) {
    if session.user.as_deref() == Some(user_id) {
        session.send(subscription_succeeded(channel, &Value::Object(Default::default())));
    } else {
        session.send(subscription_error(channel, "AuthError", "sign in as this user first", 401));
    }
}
