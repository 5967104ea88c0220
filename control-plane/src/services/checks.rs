//! The checks every service shares: who may call (the admin token, a key of
//! the app, a key's capability on a channel) and what identifiers and texts
//! are valid. Each failure is the [`ApiError`] both APIs answer with.

use herald_proto::caps::Operation;
use herald_proto::{AppId, ChannelName, ErrorCode, KeyId, NamespaceName};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::ApiKey;

/// Longest app or key name, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// Refuses anything but the admin token.
///
/// # Errors
///
/// `forbidden` for an API key.
pub fn require_admin(who: &Principal) -> Result<(), ApiError> {
    match who {
        Principal::Admin => Ok(()),
        Principal::Key(_) => Err(ApiError::forbidden("this operation needs the admin token; API keys cannot call it")),
    }
}

/// Refuses a key of another app. Returns the key, `None` for the admin.
///
/// # Errors
///
/// `forbidden` for a key of another app.
pub fn require_app<'a>(who: &'a Principal, app: &AppId) -> Result<Option<&'a ApiKey>, ApiError> {
    match who {
        Principal::Admin => Ok(None),
        Principal::Key(key) if &key.app_id == app => Ok(Some(key)),
        Principal::Key(_) => Err(ApiError::forbidden("this API key belongs to another app")),
    }
}

/// The app and channel of a channel-scoped read, with the key's capability
/// `op` on the channel checked.
///
/// # Errors
///
/// `not_found` (app id), `forbidden`, `invalid_channel`.
pub fn channel_reader(
    who: &Principal,
    app: &str,
    channel: &str,
    op: Operation,
) -> Result<(AppId, ChannelName), ApiError> {
    let app = parse_app_id(app)?;
    let key = require_app(who, &app)?;
    let channel = parse_channel(channel)?;
    if let Some(key) = key
        && !key.capabilities.allows(channel.as_str(), op)
    {
        return Err(ApiError::forbidden(format!(
            "the API key does not allow `{}` on {:?}",
            op.as_str(),
            channel.as_str()
        )));
    }
    Ok((app, channel))
}

/// Validates a channel name, answering `invalid_channel`.
///
/// # Errors
///
/// `invalid_channel` naming the broken rule.
pub fn parse_channel(name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::new(name).map_err(|e| ApiError::new(ErrorCode::InvalidChannel, e.to_string()))
}

/// Validates an app id from a path or request.
///
/// # Errors
///
/// `not_found`: an id that cannot exist names no app.
pub fn parse_app_id(id: &str) -> Result<AppId, ApiError> {
    AppId::new(id).map_err(|_| ApiError::not_found("no such app"))
}

/// Validates a key id from a path or request.
///
/// # Errors
///
/// `not_found`: an id that cannot exist names no key.
pub fn parse_key_id(id: &str) -> Result<KeyId, ApiError> {
    KeyId::new(id).map_err(|_| ApiError::not_found("no such key"))
}

/// Validates a namespace name from a path or request.
///
/// # Errors
///
/// `bad_request` naming the rule.
pub fn parse_namespace(name: &str) -> Result<NamespaceName, ApiError> {
    NamespaceName::new(name).map_err(|e| ApiError::bad_request(format!("namespace name: {e}")))
}

/// A display name, trimmed.
///
/// # Errors
///
/// `bad_request` when empty, too long or with control characters.
pub fn check_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be 1-{MAX_NAME_BYTES} bytes of text without control characters"
        )));
    }
    Ok(name.to_owned())
}

/// A short text field (event name, idempotency id).
///
/// # Errors
///
/// `bad_request` when empty, longer than `max` or with control characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be 1-{max} bytes of text without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use herald_proto::claims::MAX_MESSAGE_ID_LEN;

    use super::*;

    #[test]
    fn names_and_texts() {
        assert!(check_name("name", "  ").is_err());
        assert!(check_name("name", "a\nb").is_err());
        assert_eq!(check_name("name", " Chat ").expect("ok"), "Chat");
        assert!(check_text("id", &"x".repeat(129), MAX_MESSAGE_ID_LEN).is_err());
        assert!(check_text("id", "", MAX_MESSAGE_ID_LEN).is_err());
        check_text("id", "retry-1", MAX_MESSAGE_ID_LEN).expect("ok");
    }
}
