//! An app's limits: the overrides an operator may set (checked against the
//! server's ceilings) and the limits in force, server defaults filled in.

use serde::Serialize;

use crate::core::Core;
use crate::error::ApiError;
use crate::store::{App, LimitOverrides};

/// An app's limits with the server defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EffectiveLimits {
    /// Most concurrent connections across edges.
    pub max_connections: u32,
    /// Largest message payload, in bytes.
    pub max_message_bytes: u32,
    /// API publishes per second (per control-plane replica).
    pub publish_rate_per_sec: u32,
    /// Quota of messages published per UTC day; 0: none.
    #[serde(default)]
    pub quota_messages_per_day: u64,
    /// Quota of messages published per UTC calendar month; 0: none.
    #[serde(default)]
    pub quota_messages_per_month: u64,
    /// Quota of concurrent connections across edges; 0: none.
    #[serde(default)]
    pub quota_connections: u32,
}

impl Core {
    /// The app's limits with defaults filled in.
    #[must_use]
    pub fn effective_limits(&self, app: &App) -> EffectiveLimits {
        let c = &self.config;
        EffectiveLimits {
            max_connections: app.limits.max_connections.unwrap_or(c.default_max_connections),
            max_message_bytes: app
                .limits
                .max_message_bytes
                .unwrap_or(u32::try_from(c.default_max_message_size.0).unwrap_or(u32::MAX)),
            publish_rate_per_sec: app.limits.publish_rate_per_sec.unwrap_or(c.default_publish_rate_per_sec),
            quota_messages_per_day: app.limits.quota_messages_per_day.unwrap_or(0),
            quota_messages_per_month: app.limits.quota_messages_per_month.unwrap_or(0),
            quota_connections: app.limits.quota_connections.unwrap_or(0),
        }
    }

    /// Overrides as stored: 0 means the default (stored as none), and no
    /// limit above the server's ceiling.
    pub(crate) fn check_limits(&self, limits: &LimitOverrides) -> Result<LimitOverrides, ApiError> {
        let zero_is_default = |v: Option<u32>| v.filter(|v| *v != 0);
        let out = LimitOverrides {
            max_connections: zero_is_default(limits.max_connections),
            max_message_bytes: zero_is_default(limits.max_message_bytes),
            publish_rate_per_sec: zero_is_default(limits.publish_rate_per_sec),
            quota_messages_per_day: limits.quota_messages_per_day.filter(|v| *v != 0),
            quota_messages_per_month: limits.quota_messages_per_month.filter(|v| *v != 0),
            quota_connections: zero_is_default(limits.quota_connections),
        };
        if let (Some(day), Some(month)) = (out.quota_messages_per_day, out.quota_messages_per_month)
            && day > month
        {
            return Err(ApiError::bad_request(format!(
                "`limits.quota_messages_per_day` ({day}) is above `limits.quota_messages_per_month` ({month})"
            )));
        }
        if let Some(v) = out.max_message_bytes
            && u64::from(v) > self.config.max_message_size_ceiling.0
        {
            return Err(ApiError::bad_request(format!(
                "`limits.max_message_bytes` is {v}; the server allows at most {}",
                self.config.max_message_size_ceiling.0
            )));
        }
        Ok(out)
    }
}
