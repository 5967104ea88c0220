//! Per-app usage and quotas on the control plane: the state (this
//! replica's counters and quota verdicts, read on the publish path) and
//! UTC calendar arithmetic. The tasks that fill it are in
//! [`usage_engine`](crate::usage_engine).
//!
//! - Counting: this replica counts what it sees itself (publishes through
//!   REST, gRPC and Pusher's HTTP API, webhook deliveries, refusals of
//!   those) in a [`UsageRegistry`], like an edge does, and stores its
//!   counts every `usage_report_interval` (`flush`).
//! - Reports: edges' usage reports arrive over the bus (one replica of the
//!   queue group answers each) and are stored with
//!   [`Store::store_usage`](crate::store::Store::store_usage).
//! - Quotas: every interval each replica works out, from the
//!   durable usage, which apps are over a quota; its publishes check that
//!   table, and it announces the apps over one to edges (`QuotaState`).
//! - Retention: old rows deleted per unit, and batch ids and
//!   stale node figures forgotten.

mod calendar;

pub use calendar::{format_utc_minute, month_start, parse_utc_minute};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_bus::usage::{AppCounters, UsageRegistry};
use herald_proto::AppId;

use crate::config::Config;

/// Why an app is over a quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaVerdict {
    /// Publishes are refused.
    pub messages_over: bool,
    /// New connections are refused.
    pub connections_over: bool,
    /// Which quota, in words.
    pub reason: String,
}

/// This replica's usage counters and the quota verdicts it works out.
#[derive(Debug, Default)]
pub struct Usage {
    registry: Arc<UsageRegistry>,
    verdicts: RwLock<HashMap<AppId, QuotaVerdict>>,
}

impl Usage {
    /// The counters of `app` on this replica.
    #[must_use]
    pub fn counters(&self, app: &AppId) -> Arc<AppCounters> {
        self.registry.app(app)
    }

    /// Every app's counts since the last drain.
    #[must_use]
    pub fn drain(&self) -> Vec<herald_proto::bus::AppUsage> {
        self.registry.drain()
    }

    /// The app's quota verdict, when it is over a quota.
    #[must_use]
    pub fn verdict(&self, app: &AppId) -> Option<QuotaVerdict> {
        self.verdicts.read().unwrap_or_else(|e| e.into_inner()).get(app).cloned()
    }

    /// Replaces the verdicts; returns the apps that were over a quota and
    /// are no longer.
    pub fn replace_verdicts(&self, verdicts: HashMap<AppId, QuotaVerdict>) -> Vec<AppId> {
        let mut current = self.verdicts.write().unwrap_or_else(|e| e.into_inner());
        let ended = current.keys().filter(|a| !verdicts.contains_key(*a)).cloned().collect();
        *current = verdicts;
        ended
    }
}

/// How long usage figures of a node stay counted: three report intervals.
#[must_use]
pub fn gauge_ttl(config: &Config) -> Duration {
    config.usage_report_interval.0 * 3
}
