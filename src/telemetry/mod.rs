//! Telemetry: logs (a `tracing` subscriber writing to stderr, pretty or JSON), OpenTelemetry
//! traces exported over OTLP when a collector is configured, W3C trace-context propagation, and
//! the Prometheus metrics registry.
//!
//! stdout is reserved for command output (such as the token printed by `tokenmint bootstrap`).

pub mod metrics;
pub mod otlp;
pub mod propagation;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings};

pub use metrics::Metrics;

/// What [`init`] installed; [`Telemetry::shutdown`] flushes pending spans.
#[must_use = "call shutdown() at exit so that pending spans are exported"]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Exports the spans still queued and stops the exporter (the SDK gives up after 5 s).
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the remaining spans");
        }
    }
}

/// Installs the global subscriber: the log layer, and, when `export_spans` and an OTLP endpoint is
/// configured (see [`otlp::endpoint`]), the OpenTelemetry layer. Must run inside a Tokio runtime
/// (the OTLP client needs its reactor). Installing twice keeps the first subscriber.
pub fn init(settings: &Settings, export_spans: bool) -> anyhow::Result<Telemetry> {
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.filter));
    let log_layer = match settings.log.format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(log_filter);

    let tracer_provider = match otlp::endpoint(&settings.telemetry).filter(|_| export_spans) {
        Some(endpoint) => Some(otlp::tracer_provider(&endpoint, &settings.telemetry)?),
        None => None,
    };
    let trace_layer = tracer_provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tokenmint"))
            .with_filter(EnvFilter::new(&settings.telemetry.span_filter))
    });
    propagation::install();
    let installed = tracing_subscriber::registry()
        .with(log_layer)
        .with(trace_layer)
        .try_init()
        .is_ok();
    if installed && let Some(provider) = &tracer_provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Telemetry { tracer_provider })
}
