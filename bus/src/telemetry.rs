//! The process's metrics page, shared by every Herald component in a
//! process: the process-wide recorder ([`process_recorder`]), the
//! standard `process_*` metrics and `herald_build_info`
//! ([`process_text`]), and HELP text for every metric ([`describe`]).
//!
//! The bus's own metrics. Each is recorded under its `herald_bus_*` name
//! and, until a later release drops them, under the `herald_backplane_*`
//! name dashboards used before the bus was named (documented as
//! deprecated in the README's metrics table).

/// Whether the NATS connection is up (`herald_bus_connected`).
pub(crate) fn connected(up: bool) {
    let v = if up { 1.0 } else { 0.0 };
    metrics::gauge!("herald_bus_connected").set(v);
    metrics::gauge!("herald_backplane_connected").set(v);
}

/// The NATS connection was lost; the client reconnects on its own
/// (`herald_bus_reconnects_total`).
pub(crate) fn disconnected() {
    metrics::counter!("herald_bus_reconnects_total").increment(1);
    metrics::counter!("herald_backplane_reconnects_total").increment(1);
}

/// The NATS client dropped messages of a subscription that fell behind
/// (`herald_bus_slow_consumer_total`).
pub(crate) fn slow_consumer() {
    metrics::counter!("herald_bus_slow_consumer_total").increment(1);
    metrics::counter!("herald_backplane_slow_consumer_total").increment(1);
}

/// A message from the bus could not be decoded
/// (`herald_bus_decode_errors_total`).
///
/// ```
/// use herald_bus::telemetry::{decode_error, process_recorder};
/// let metrics = process_recorder();
/// decode_error();
/// assert!(metrics.render().contains("herald_bus_decode_errors_total 1"));
/// ```
pub fn decode_error() {
    metrics::counter!("herald_bus_decode_errors_total").increment(1);
    metrics::counter!("herald_backplane_decode_errors_total").increment(1);
}

use std::fmt::Write as _;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();
static BUILD: OnceLock<(String, String)> = OnceLock::new();

/// Latency buckets, in seconds, for every histogram of the process-wide
/// recorder.
const BUCKETS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The HELP text of the bus's metrics.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    ("herald_bus_connected", "Whether the NATS connection is up (1) or not (0)."),
    ("herald_bus_reconnects_total", "Times the NATS connection was lost (the client reconnects on its own)."),
    ("herald_bus_slow_consumer_total", "Times the NATS client dropped messages of a subscription that fell behind."),
    ("herald_bus_decode_errors_total", "Messages from the bus that could not be decoded."),
    (
        "herald_bus_channel_buckets",
        "NATS subscriptions for channels with local subscribers: one per bucket of an app's channels (one per channel with nats_channel_routing = channel).",
    ),
    (
        "herald_bus_unrouted_messages_total",
        "Channel messages received in a followed bucket for a channel without local subscribers (dropped).",
    ),
    ("herald_bus_webhook_events_busy_total", "Webhook event reports answered busy by the control plane."),
    ("herald_bus_usage_reports_busy_total", "Usage reports answered busy by the control plane."),
    ("herald_usage_report_failures_total", "Usage reports that failed (sent again with the next one)."),
    (
        "herald_usage_dropped_apps_total",
        "App entries of unacknowledged usage reports dropped past usage_max_pending_apps.",
    ),
    ("herald_debug_events_sent_total", "Debug events of watched apps sent on the bus."),
    (
        "herald_debug_events_dropped_total",
        "Debug events dropped by the per-app rate or because too many sends were waiting.",
    ),
    ("herald_backplane_connected", "Deprecated name of herald_bus_connected."),
    ("herald_backplane_reconnects_total", "Deprecated name of herald_bus_reconnects_total."),
    ("herald_backplane_slow_consumer_total", "Deprecated name of herald_bus_slow_consumer_total."),
    ("herald_backplane_decode_errors_total", "Deprecated name of herald_bus_decode_errors_total."),
];

/// The process-wide Prometheus recorder's handle (metrics recorded with
/// the `metrics` macros: the bus's and the edge's); installs the recorder
/// on first call, with the bus's metrics described. When another recorder
/// was installed first, metrics go there and this handle renders nothing.
///
/// ```
/// let metrics = herald_bus::telemetry::process_recorder();
/// metrics::counter!("herald_bus_decode_errors_total").increment(2);
/// let page = metrics.render();
/// assert!(page.contains("herald_bus_decode_errors_total 2"));
/// ```
pub fn process_recorder() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        let builder = PrometheusBuilder::new().set_buckets(BUCKETS).unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; process metrics will be missing from /metrics");
        }
        describe(DESCRIPTIONS);
        handle
    })
}

/// Gives the process-wide recorder the HELP text of `metrics` (name,
/// text).
///
/// ```
/// use herald_bus::telemetry::{describe, process_recorder};
/// let metrics = process_recorder();
/// describe(&[("herald_doc_widgets_total", "Widgets made.")]);
/// metrics::counter!("herald_doc_widgets_total").increment(1);
/// assert!(metrics.render().contains("# HELP herald_doc_widgets_total Widgets made."));
/// ```
pub fn describe(metrics: &[(&'static str, &'static str)]) {
    for (name, help) in metrics {
        // The kind does not matter to the exporter: one description per
        // name, written as the HELP line.
        metrics::describe_counter!(*name, *help);
    }
}

/// Sets what `herald_build_info` says: the version and the commit built.
/// The first call wins.
///
/// ```
/// use herald_bus::telemetry::{process_text, set_build_info};
/// set_build_info("1.2.3", "abc1234");
/// set_build_info("9.9.9", "ignored");
/// assert!(process_text().contains(r#"herald_build_info{version="1.2.3",commit="abc1234"} 1"#));
/// ```
pub fn set_build_info(version: &str, commit: &str) {
    let _ = BUILD.set((version.to_owned(), commit.to_owned()));
}

/// The standard `process_*` metrics of this process (Linux `/proc`; left
/// out where unreadable) and `herald_build_info`, in the Prometheus text
/// format, with their HELP and TYPE lines.
///
/// ```
/// let page = herald_bus::telemetry::process_text();
/// assert!(page.contains("# TYPE herald_build_info gauge"));
/// if cfg!(target_os = "linux") {
///     assert!(page.contains("process_resident_memory_bytes"));
/// }
/// ```
#[must_use]
pub fn process_text() -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    let stat = process_stat();
    if let Some(s) = &stat {
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            s.cpu_seconds,
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            s.start_time,
        );
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", s.virtual_bytes);
        metric("process_threads", "gauge", "Number of OS threads in the process.", s.threads);
    }
    if let Some(rss) = resident_memory() {
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss as f64);
        metric(
            "herald_process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes (as process_resident_memory_bytes).",
            rss as f64,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric("process_open_fds", "gauge", "Number of open file descriptors.", fds.count() as f64);
    }
    if let Some(max) = max_open_files() {
        metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
    }
    let (version, commit) = BUILD.get().map_or(("unknown", "unknown"), |(v, c)| (v.as_str(), c.as_str()));
    let _ = write!(
        out,
        "# HELP herald_build_info The version and commit of this Herald build (always 1).\n\
         # TYPE herald_build_info gauge\nherald_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
        label_value(version),
        label_value(commit)
    );
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The process's resident set size, from `/proc/self/status` (Linux).
///
/// ```
/// match herald_bus::telemetry::resident_memory() {
///     Some(bytes) => assert!(bytes > 0),
///     None => assert!(!cfg!(target_os = "linux"), "only Linux has /proc/self/status"),
/// }
/// ```
#[must_use]
pub fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// What `/proc/self/stat` says of the process.
struct ProcessStat {
    cpu_seconds: f64,
    start_time: f64,
    virtual_bytes: f64,
    threads: f64,
}

/// Reads `/proc/self/stat` (fields after the command name, which may hold
/// spaces, so counted from its closing parenthesis).
fn process_stat() -> Option<ProcessStat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field numbers of proc(5), less the 3 before `rest`.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let ticks = clock_ticks()?;
    let boot = boot_time()?;
    Some(ProcessStat {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time: boot + field(22)? / ticks,
        virtual_bytes: field(23)?,
        threads: field(20)?,
    })
}

/// Clock ticks per second of `/proc/self/stat`'s times: 100 on every
/// Linux Herald runs on (USER_HZ).
fn clock_ticks() -> Option<f64> {
    Some(100.0)
}

/// The system's boot time, Unix seconds (`/proc/stat`'s `btime`).
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

/// The soft limit on open files (`/proc/self/limits`).
fn max_open_files() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read_and_described() {
        set_build_info("1.2.3", "abc\"def");
        let text = process_text();
        for name in
            ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_threads"]
        {
            assert!(text.contains(&format!("# HELP {name} ")), "{name} in\n{text}");
            let value = text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).expect(name);
            let value: f64 = value.parse().expect("a number");
            // A test may start under a clock tick of CPU time.
            assert!(value > 0.0 || name == "process_cpu_seconds_total", "{name} = {value}");
        }
        assert!(text.contains("herald_build_info{version=\"1.2.3\",commit=\"abc\\\"def\"} 1"), "{text}");
    }
}
