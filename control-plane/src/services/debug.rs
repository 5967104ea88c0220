//! Watching an app's debug events: who may, and which app.

use std::sync::Arc;

use futures_util::stream::BoxStream;

use crate::auth::Principal;
use crate::core::Core;
use crate::debug_tap::{DebugFilter, DebugItem};
use crate::error::ApiError;
use crate::services::checks::{parse_app_id, require_app};

impl Core {
    /// Starts watching the debug events of `app` (admin token, or an API
    /// key of the app): see [`Watchers::watch`](crate::debug_tap::Watchers::watch).
    /// The stream a REST watcher, the console and `herald apps debug` read.
    ///
    /// # Errors
    ///
    /// `not_found` (no such app), `forbidden` (a key of another app),
    /// `rate_limited` past `debug_tap_max_watchers`, `unavailable` when
    /// the bus cannot be subscribed.
    pub async fn watch_debug(
        self: &Arc<Self>,
        who: &Principal,
        app: &str,
        filter: DebugFilter,
    ) -> Result<BoxStream<'static, DebugItem>, ApiError> {
        let app = parse_app_id(app)?;
        require_app(who, &app)?;
        if self.store.get_app(&app).await?.is_none() {
            return Err(ApiError::not_found(format!("no app {:?}", app.as_str())));
        }
        self.debug_watchers.watch(self.publisher.bus(), &app, filter).await
    }
}
