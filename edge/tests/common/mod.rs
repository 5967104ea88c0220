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
