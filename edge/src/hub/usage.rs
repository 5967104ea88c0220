//! What this edge reports with its usage: the usage counters of the apps
//! it serves, and each app's current connections and channels here (the
//! control plane sums the latest figures of every edge).

use std::collections::HashMap;
use std::sync::Arc;

use herald_bus::usage::UsageRegistry;
use herald_proto::{AppId, bus};

use super::{Hub, lock};

impl Hub {
    /// The usage counters of the apps served here.
    #[must_use]
    pub fn usage(&self) -> &Arc<UsageRegistry> {
        &self.usage
    }

    /// Each app's current connections and channels with a subscriber on
    /// this edge.
    #[must_use]
    pub fn usage_gauges(&self) -> Vec<bus::AppGauge> {
        let mut gauges: HashMap<AppId, bus::AppGauge> = HashMap::new();
        for (app, connections) in self.app_connections() {
            gauges.entry(app.clone()).or_insert_with(|| gauge(&app)).connections = connections;
        }
        for shard in &self.shards {
            for (app, _) in lock(shard).keys() {
                let g = gauges.entry(app.clone()).or_insert_with(|| gauge(app));
                g.channels = g.channels.saturating_add(1);
            }
        }
        gauges.into_values().collect()
    }
}

fn gauge(app: &AppId) -> bus::AppGauge {
    bus::AppGauge { app_id: app.as_str().to_owned(), connections: 0, channels: 0 }
}
