//! Test harness: edges on port 0 with the in-process bus, tokens from
//! a test authority, a TCP proxy that can kill, refuse and freeze the
//! connections between a client and an edge, and a control plane
//! (`control_plane`).

#![allow(dead_code)]

pub mod control_plane;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::{TestAuthority, TestEdge};
use herald_sdk::{ConnectionState, StateEvents};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const ALL: &str = r#"{"*": ["subscribe", "publish", "presence", "history"]}"#;

/// Logs for a failing test: `RUST_LOG=herald_sdk=debug cargo test`.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An edge config trusting `auth`, without a publish rate limit.
pub fn edge_config(auth: &TestAuthority) -> EdgeConfig {
    EdgeConfig { jwks_url: auth.jwks_url(), publish_rate: 0, ..EdgeConfig::default() }
}

/// An edge on `bus`.
pub async fn edge_on(bus: &LocalBus, config: EdgeConfig) -> TestEdge {
    TestEdge::start(config, Bus::local(bus)).await
}

/// A token provider minting hour-long tokens for `client`, counting calls.
pub fn provider(
    auth: &Arc<TestAuthority>,
    client: &str,
    calls: &Arc<AtomicUsize>,
) -> impl Fn() -> std::future::Ready<Result<String, std::io::Error>> + Send + Sync + 'static {
    let (auth, client, calls) = (auth.clone(), client.to_owned(), calls.clone());
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(auth.token("app1", &client, ALL)))
    }
}

/// Waits for the first state matching `want`, failing after `limit`.
pub async fn wait_for(
    events: &mut StateEvents,
    limit: Duration,
    what: &str,
    want: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    let found = tokio::time::timeout(limit, async {
        while let Some(state) = events.next().await {
            if want(&state) {
                return Some(state);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(state)) => state,
        Ok(None) => panic!("client gone while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

#[derive(Default)]
struct ProxyState {
    target: Option<SocketAddr>,
}

/// A TCP proxy in front of an edge. `kill` drops every connection through
/// it (as a crashed edge process would: the client sees the socket end)
/// and refuses new ones until `set_target`; `freeze` stops forwarding on
/// the open connections without closing them (a dead network path), while
/// new connections work.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    cut: watch::Sender<u64>,
    frozen: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(ProxyState { target: Some(target) }));
        let (cut, cut_rx) = watch::channel(0u64);
        let (frozen, frozen_rx) = watch::channel(0u64);
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = shared.lock().expect("proxy state").target;
                let Some(target) = target else {
                    drop(inbound);
                    continue;
                };
                let mut cut_rx = cut_rx.clone();
                let mut frozen_rx = frozen_rx.clone();
                cut_rx.mark_unchanged();
                frozen_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                        _ = frozen_rx.changed() => {
                            // Hold both sockets open, forwarding nothing,
                            // until the connections are cut.
                            let _ = cut_rx.changed().await;
                        }
                    }
                });
            }
        });
        Self { addr, state, cut, frozen, task }
    }

    /// `ws://…` through the proxy.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn kill(&self) {
        self.state.lock().expect("proxy state").target = None;
        self.cut.send_modify(|n| *n += 1);
    }

    /// Forwards new connections to `target`.
    pub fn set_target(&self, target: SocketAddr) {
        self.state.lock().expect("proxy state").target = Some(target);
    }

    /// Stops forwarding on the open connections, keeping them open.
    pub fn freeze(&self) {
        self.frozen.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut.send_modify(|n| *n += 1);
        self.task.abort();
    }
}
