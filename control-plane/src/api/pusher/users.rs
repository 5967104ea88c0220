//! Pusher's user termination: `POST /apps/{app_id}/users/{user_id}/
//! terminate_connections` closes every connection of the user on every
//! edge (`UserTerminated`), answering `{}`. pusher-http-python sends it
//! without the `/apps/{app_id}` prefix; the same handler serves that path,
//! the app being the `auth_key`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value};

use super::{PusherError, Signed};
use crate::core::Core;

/// `POST /apps/{app_id}/users/{user_id}/terminate_connections`.
pub(super) async fn terminate(State(core): State<Arc<Core>>, signed: Signed) -> Result<Json<Value>, PusherError> {
    let user = signed.path_param("user_id").unwrap_or_default();
    core.terminate_user(&signed.caller.who, signed.app(), user).await?;
    Ok(Json(Value::Object(Map::new())))
}
