//! Telemetry: logs (a `tracing` subscriber writing to stderr, pretty or JSON), OpenTelemetry
//! traces exported over OTLP when a collector is configured, W3C trace-context propagation, and
//! the Prometheus metrics registry.
//!
//! stdout is reserved for command output (such as the token printed by `tokenmint bootstrap`).

pub mod filter;
pub mod metrics;
pub mod otlp;
pub mod propagation;

use std::sync::OnceLock;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, Settings};

pub use metrics::Metrics;

/// What [`init`] installed; [`Telemetry::shutdown`] flushes pending spans.
#[must_use = "call shutdown() at exit so that pending spans are exported"]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    log_writer: WorkerGuard,
}

/// Log lines the writer thread could not keep up with and dropped (for `/metrics`).
static DROPPED_LOG_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped since start because the log writer fell behind.
pub fn dropped_log_lines() -> u64 {
    DROPPED_LOG_LINES
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Lines that may wait for the writer thread before new ones are dropped.
const LOG_QUEUE_LINES: usize = 64 * 1024;

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Exports the spans still queued and stops the exporter (the SDK gives up after 5 s), then
    /// writes the log lines still queued.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the remaining spans");
        }
        drop(self.log_writer);
    }
}

/// Installs the global subscriber: the log layer, and, when `export_spans` and an OTLP endpoint is
/// configured (see [`otlp::endpoint`]), the OpenTelemetry layer. Must run inside a Tokio runtime
/// (the OTLP client needs its reactor). Installing twice keeps the first subscriber.
pub fn init(settings: &Settings, export_spans: bool) -> anyhow::Result<Telemetry> {
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.filter));
    // Lines are formatted on the calling thread and written by a writer thread, many per write:
    // one write(2) per line cost a third of the server's throughput. When the queue is full,
    // lines are dropped (and counted) rather than stalling RPCs.
    let (writer, log_writer) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("tokenmint-log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let _ = DROPPED_LOG_LINES.set(writer.error_counter());
    let tracer_provider = match otlp::endpoint(&settings.telemetry).filter(|_| export_spans) {
        Some(endpoint) => Some(otlp::tracer_provider(&endpoint, &settings.telemetry)?),
        None => None,
    };
    // One global filter (see `filter`): without export, the log filter; with it, spans by the
    // span filter and events by the log filter.
    let global_filter: Box<dyn Layer<Registry> + Send + Sync> = match &tracer_provider {
        None => Box::new(log_filter),
        Some(_) => Box::new(filter::SplitFilter::new(
            EnvFilter::new(&settings.telemetry.span_filter),
            log_filter,
        )),
    };
    let fmt_layer = match settings.log.format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };

    propagation::install();
    let trace_layer = tracer_provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(provider.tracer("tokenmint"))
    });
    let installed = tracing_subscriber::registry()
        .with(global_filter)
        .with(fmt_layer)
        .with(trace_layer)
        .try_init()
        .is_ok();
    if installed && let Some(provider) = &tracer_provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Telemetry {
        tracer_provider,
        log_writer,
    })
}
