//! The process's logs and, when an `otlp_endpoint` is configured, its
//! traces: the `tracing` subscriber (format and filter from
//! `--log-format` and `HERALD_LOG`) with an OpenTelemetry layer exporting
//! spans over OTLP/gRPC in batches, sampled by `otlp_sample_ratio` unless
//! a caller's sampled `traceparent` decides.
//!
//! The exporter runs on the server's tokio runtime ([`Logging::install`]
//! must be called inside it); [`Logging::shutdown`] sends what is still
//! queued before the process exits.

use std::time::Duration;

use anyhow::{Context as _, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry};

/// Longest wait for the collector on one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how much to trace.
#[derive(Debug, Clone)]
pub struct Otlp {
    /// The collector's OTLP/gRPC URL.
    pub endpoint: String,
    /// Share of the traces started here that are exported.
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service: &'static str,
}

impl Otlp {
    /// The settings, when `endpoint` is set.
    pub fn new(endpoint: &str, sample_ratio: f64, service: &'static str) -> Option<Self> {
        (!endpoint.is_empty()).then(|| Self { endpoint: endpoint.to_owned(), sample_ratio, service })
    }
}

/// The installed logging, and the trace exporter when there is one.
#[must_use = "shut it down to send the spans still queued"]
pub struct Logging {
    provider: Option<SdkTracerProvider>,
}

impl Logging {
    /// Installs the global subscriber: logs to stderr (coloured only on a
    /// terminal; JSON for `format == "json"`), and traces to `otlp`.
    ///
    /// # Errors
    ///
    /// When the exporter cannot be built (a malformed endpoint).
    pub fn install(format: &str, otlp: Option<&Otlp>) -> Result<Self> {
        let provider = otlp.map(provider).transpose()?;
        let otel =
            provider.as_ref().map(|p| tracing_opentelemetry::layer::<Registry>().with_tracer(p.tracer("herald")));
        let filter = EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
        let registry = tracing_subscriber::registry().with(otel).with(filter);
        if format == "json" {
            registry.with(fmt.json()).init();
        } else {
            registry.with(fmt).init();
        }
        if let Some(otlp) = otlp {
            herald_bus::trace::enable();
            tracing::info!(endpoint = %otlp.endpoint, sample_ratio = otlp.sample_ratio, "exporting traces over OTLP");
        }
        Ok(Self { provider })
    }

    /// Sends the spans still queued (bounded by the export timeout) and
    /// stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "traces not all sent at shutdown");
        }
    }
}

fn provider(otlp: &Otlp) -> Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&otlp.endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("building the OTLP exporter for {}", otlp.endpoint))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(otlp.sample_ratio)));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(otlp.service)
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_sampler(sampler).with_resource(resource).build())
}
