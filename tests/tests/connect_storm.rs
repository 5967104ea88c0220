//! End to end: a connect storm through the real binary — `herald bench
//! --connect-storm` against `herald dev` — gets every client in.

use anyhow::{Context, Result};
use herald_tests::cli;
use herald_tests::dev::Dev;

/// The number after `label` on its line of the report.
fn figure(report: &str, label: &str) -> Result<u64> {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.trim().parse().ok())
        .with_context(|| format!("no `{label}` line in the report:\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_500_connects_gets_every_client_in() -> Result<()> {
    let dev = Dev::start(&[]).await?;
    let env = dev.client_env();
    let report = tokio::task::spawn_blocking(move || {
        let token = cli(&["token"], &env)?;
        cli(&["bench", "--connect-storm", "500", "--storm-timeout", "60", "--token", &token], &env)
    })
    .await??;
    assert_eq!(figure(&report, "clients:")?, 500, "{report}");
    assert_eq!(figure(&report, "failed:")?, 0, "{report}");
    assert_eq!(figure(&report, "connected:")?, 500, "{report}");
    assert!(report.contains("handshake latency:"), "{report}");
    Ok(())
}
