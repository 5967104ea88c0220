//! What the edge's operations and lifecycle tests share: a config against
//! a test JWKS authority, an edge on the in-process bus, the wall clock.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::{TestAuthority, TestEdge};

/// Capabilities for every operation on every channel.
pub const ALL: &str = r#"{"*": ["subscribe", "publish", "presence", "history"]}"#;

/// The default config, trusting `auth`'s keys.
pub fn config(auth: &TestAuthority) -> EdgeConfig {
    EdgeConfig { jwks_url: auth.jwks_url(), ..EdgeConfig::default() }
}

/// An edge on a fresh in-process bus, and another handle on that bus.
pub async fn local_edge(config: EdgeConfig) -> (TestEdge, Bus) {
    let bus = LocalBus::new();
    let edge = TestEdge::start(config, Bus::local(&bus)).await;
    (edge, Bus::local(&bus))
}

/// Unix time in seconds.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// The app a Pusher test connects to, and its secret.
pub const PUSHER_APP: &str = "papp";
/// The secret of [`PUSHER_APP`].
pub const PUSHER_SECRET: &str = "pusher-secret";

/// An edge on a fresh in-process bus whose control plane stand-in serves
/// [`PUSHER_APP`] with `settings`; also another handle on the bus and the
/// stand-in (to change the settings).
pub async fn pusher_edge(
    config: EdgeConfig,
    settings: herald_proto::bus::PusherApp,
) -> (TestEdge, Bus, std::sync::Arc<herald_edge::testing::TestApps>) {
    let bus = LocalBus::new();
    let apps = herald_edge::testing::TestApps::with(PUSHER_APP, settings);
    let other = Bus::local(&bus);
    other.serve_namespaces(apps.clone()).await.expect("serve namespaces");
    let edge = TestEdge::start(config, Bus::local(&bus)).await;
    (edge, other, apps)
}

/// A channel `auth` for `socket_id` signed with [`PUSHER_SECRET`].
pub fn pusher_auth(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let channel = herald_proto::pusher::PusherChannel::new(channel).expect("pusher channel");
    herald_proto::pusher::sign_channel(PUSHER_APP, PUSHER_SECRET, socket_id, &channel, channel_data)
}
