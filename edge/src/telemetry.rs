//! Prometheus metrics: one process-wide recorder, installed on first use,
//! shared by every Herald component in the process (an edge, the control
//! plane, or both in the embedded mode).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets, in seconds, for every histogram.
const BUCKETS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The process's Prometheus handle; installs the recorder on first call.
/// When another recorder was installed first, metrics go there and this
/// handle renders an empty page.
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new().set_buckets(BUCKETS).unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// The metrics page in the Prometheus text format, with the process's
/// resident memory refreshed.
#[must_use]
pub fn render() -> String {
    let handle = prometheus();
    if let Some(bytes) = resident_memory() {
        metrics::gauge!("herald_process_resident_memory_bytes").set(bytes as f64);
    }
    handle.render()
}

/// The process's resident set size, from `/proc/self/status` (Linux).
#[must_use]
pub fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}
