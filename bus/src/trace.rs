//! Distributed traces across the bus: the W3C `traceparent` a published
//! message carries (`ChannelMessage.traceparent`), taken from the span
//! that publishes it, and the span an edge opens under it for the
//! delivery.
//!
//! The process that exports traces (the `herald` binary, when
//! `otlp_endpoint` is set) installs the OpenTelemetry layer and calls
//! [`enable`]; until then [`traceparent`] answers empty at the cost of one
//! atomic load, so a process without tracing pays nothing per message.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Says that this process exports traces: spans carry OpenTelemetry
/// contexts from now on.
///
/// ```
/// use herald_bus::trace;
/// // After installing the OpenTelemetry layer of `tracing_opentelemetry`:
/// trace::enable();
/// assert!(trace::enabled());
/// ```
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether this process exports traces.
///
/// ```
/// use herald_bus::trace;
/// // Work for traces only when they are exported (off until `enable`).
/// let traceparent = if trace::enabled() { trace::traceparent() } else { String::new() };
/// assert!(traceparent.is_empty() || traceparent.starts_with("00-"));
/// ```
#[must_use]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The `traceparent` of the current span, when traces are exported and it
/// is sampled; empty otherwise.
///
/// ```
/// // Without an exporter, nothing is traced.
/// assert_eq!(herald_bus::trace::traceparent(), "");
/// ```
#[must_use]
pub fn traceparent() -> String {
    if !enabled() {
        return String::new();
    }
    format_traceparent(tracing::Span::current().context().span().span_context())
}

/// `00-<trace id>-<span id>-01` of a valid, sampled span context; empty
/// otherwise.
fn format_traceparent(context: &SpanContext) -> String {
    if !context.is_valid() || !context.is_sampled() {
        return String::new();
    }
    format!("00-{}-{}-01", context.trace_id(), context.span_id())
}

/// Reads a W3C `traceparent` (version 00, or a later version read as 00):
/// `None` for anything malformed, an all-zero id, or an unsampled one.
///
/// ```
/// use herald_bus::trace::parse_traceparent;
/// assert!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
/// assert!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// assert!(parse_traceparent("not a traceparent").is_none());
/// ```
#[must_use]
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    let context = SpanContext::new(trace, span, flags, true, TraceState::default());
    (context.is_valid() && context.is_sampled()).then_some(context)
}

/// Makes `span` a child of the remote span `traceparent` names (a caller's
/// header, a message's field); nothing when traces are not exported or the
/// value is not a valid, sampled `traceparent`.
///
/// ```
/// use herald_bus::trace;
/// // The delivery of a message published under a caller's trace.
/// let span = tracing::info_span!("deliver");
/// trace::follow(&span, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// // Without an exporter (or with a malformed value) nothing changes.
/// trace::follow(&span, "garbage");
/// let _entered = span.enter();
/// assert_eq!(trace::traceparent(), "", "nothing is exported here");
/// ```
pub fn follow(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    if let Some(remote) = parse_traceparent(traceparent) {
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
}

/// Checks the OTLP settings of a component's configuration: the
/// endpoint empty or an `http(s)://` URL, the ratio within 0 to 1.
///
/// # Errors
///
/// The key at fault and why.
///
/// ```
/// use herald_bus::trace::check_otlp;
/// assert!(check_otlp("", 1.0).is_ok());
/// assert!(check_otlp("http://otel-collector:4317", 0.1).is_ok());
/// assert_eq!(check_otlp("otel:4317", 1.0).unwrap_err().0, "otlp_endpoint");
/// assert_eq!(check_otlp("", 1.5).unwrap_err().0, "otlp_sample_ratio");
/// ```
pub fn check_otlp(endpoint: &str, ratio: f64) -> Result<(), (&'static str, &'static str)> {
    let scheme_ok = endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://"));
    if !endpoint.is_empty() && scheme_ok.is_none_or(|rest| rest.is_empty() || rest.contains(char::is_whitespace)) {
        return Err((
            "otlp_endpoint",
            "must be empty (no traces) or an http:// or https:// URL of an OTLP/gRPC collector",
        ));
    }
    if !(0.0..=1.0).contains(&ratio) {
        return Err(("otlp_sample_ratio", "must be between 0 and 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_bad_ones_are_refused() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(good).expect("parsed");
        assert_eq!(format_traceparent(&context), good);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future").is_some());
        assert_eq!(traceparent(), "", "nothing without an exporter");
    }
}
