//! Connect storms: many clients connecting at the same moment, each doing
//! what an idle connection does (the WebSocket upgrade, then the
//! `herald.v1` connect with its token), and a report of how long until
//! every one is in, which failed and why, and the handshake latency.
//!
//! Every client is spawned first and held at a gate; the gate opens once,
//! so the connects reach the edge's listen queue together. A client that
//! does not finish within the timeout counts as a failure (`timed out`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::wire::{Conn, WireError};
use crate::{BenchError, Histogram};

/// Result of [`connect_storm`].
#[derive(Debug, Clone)]
pub struct StormReport {
    /// Clients started.
    pub clients: usize,
    /// Clients connected and authenticated.
    pub connected: usize,
    /// From the gate opening until the last client connected or failed.
    pub elapsed: Duration,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Gate opening → connected (upgrade and connect done), of the clients
    /// that connected.
    pub handshake: Histogram,
}

impl StormReport {
    /// Clients that failed.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

impl std::fmt::Display for StormReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(f, "clients:              {}", self.clients)?;
        writeln!(f, "connected:            {}", self.connected)?;
        writeln!(f, "failed:               {}", self.failed())?;
        for (reason, n) in &self.failures {
            writeln!(f, "  {n:>8}  {reason}")?;
        }
        writeln!(f, "all done after:       {:.3} s", self.elapsed.as_secs_f64())?;
        write!(
            f,
            "handshake latency:    p50 {:.1}  p99 {:.1}  max {:.1} ms",
            ms(self.handshake.quantile(0.50)),
            ms(self.handshake.quantile(0.99)),
            ms(self.handshake.max())
        )
    }
}

/// The reason a client failed, as counted in the report.
fn reason(e: &WireError) -> String {
    match e {
        WireError::Io(io) => format!("i/o: {}", io.kind()),
        WireError::Upgrade(status) => format!("upgrade refused: {}", status.lines().next().unwrap_or_default()),
        WireError::ClosedWith(Some(code)) => format!("closed by the edge with code {code}"),
        other => other.to_string(),
    }
}

/// Starts `clients` connections to `edge` at once (token `token`), waits
/// until each has connected or failed (at most `timeout` each), and
/// reports. The connections stay open until every client is done.
///
/// # Errors
///
/// [`BenchError::Config`] when `clients` is 0 or a client task panicked.
pub async fn connect_storm(
    edge: SocketAddr,
    token: &str,
    clients: usize,
    timeout: Duration,
) -> Result<StormReport, BenchError> {
    if clients == 0 {
        return Err(BenchError::Config("a connect storm needs at least one client".into()));
    }
    let token: Arc<str> = token.into();
    let (open_tx, open_rx) = watch::channel(None::<Instant>);
    let mut joins = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (token, mut open) = (token.clone(), open_rx.clone());
        joins.push(tokio::spawn(async move {
            let Ok(opened) = open.wait_for(Option::is_some).await.map(|t| t.unwrap_or_else(Instant::now)) else {
                return (Err("the gate closed".to_owned()), Instant::now());
            };
            let result = match tokio::time::timeout(timeout, Conn::connect(edge, &token)).await {
                Ok(Ok(conn)) => Ok((conn, opened.elapsed())),
                Ok(Err(e)) => Err(reason(&e)),
                Err(_) => Err("timed out".to_owned()),
            };
            (result, Instant::now())
        }));
    }
    // Open the gate: every client's latency counts from here.
    let opened = Instant::now();
    let _ = open_tx.send(Some(opened));
    let mut report = StormReport {
        clients,
        connected: 0,
        elapsed: Duration::ZERO,
        failures: BTreeMap::new(),
        handshake: Histogram::default(),
    };
    let mut conns = Vec::with_capacity(clients);
    let mut last = opened;
    for join in joins {
        let (result, done) = join.await.map_err(|e| BenchError::Config(e.to_string()))?;
        last = last.max(done);
        match result {
            Ok((conn, latency)) => {
                report.connected += 1;
                report.handshake.record(latency);
                conns.push(conn);
            }
            Err(reason) => *report.failures.entry(reason).or_default() += 1,
        }
    }
    report.elapsed = last.saturating_duration_since(opened);
    report.handshake.sort();
    drop(conns);
    Ok(report)
}
