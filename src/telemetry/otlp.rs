//! OTLP (gRPC) trace export. On only when an endpoint is configured: with none, nothing is
//! exported and no exporter runs (an exporter without a collector logs an error every batch).
//!
//! Spans leave through the SDK's batch processor: a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`,
//! default 2048) drained by its own thread, so a slow or unreachable collector never delays an RPC;
//! when the queue is full, spans are dropped. [`SPANS`] counts what was ended, exported and lost,
//! for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};

use crate::config::TelemetrySettings;

/// Span counters since start, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct SpanCounters {
    /// Spans ended (handed to the batch queue, or dropped if it was full).
    pub ended: AtomicU64,
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans in batches the collector refused or never received.
    pub failed: AtomicU64,
}

/// Process-wide span counters (the tracer provider is process-wide too).
pub static SPANS: SpanCounters = SpanCounters {
    ended: AtomicU64::new(0),
    exported: AtomicU64::new(0),
    failed: AtomicU64::new(0),
};

/// The standard variables that name an OTLP endpoint, most specific first.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Where spans go, if anywhere: the standard `OTEL_*` endpoint variables win over
/// `telemetry.otlp_endpoint`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off.
pub fn endpoint(settings: &TelemetrySettings) -> Option<String> {
    endpoint_from(settings, |name| std::env::var(name).ok())
}

fn endpoint_from(
    settings: &TelemetrySettings,
    var: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return None;
    }
    ENDPOINT_VARS.iter().find_map(|name| set(name)).or_else(|| {
        settings
            .otlp_endpoint
            .clone()
            .filter(|e| !e.trim().is_empty())
    })
}

/// Builds the tracer provider exporting to `endpoint` in batches. The sampler comes from
/// `OTEL_TRACES_SAMPLER`/`_ARG` (default: parent-based, always on), the resource from
/// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (service name default `tokenmint`).
pub fn tracer_provider(
    endpoint: &str,
    settings: &TelemetrySettings,
) -> anyhow::Result<SdkTracerProvider> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint);
    // Set in code, a timeout would override the standard OTEL_EXPORTER_OTLP_TIMEOUT variables.
    if let Some(ms) = settings.export_timeout_ms {
        builder = builder.with_timeout(Duration::from_millis(ms));
    }
    let exporter = builder
        .build()
        .with_context(|| format!("cannot set up OTLP export to {endpoint}"))?;
    let processor = BatchSpanProcessor::builder(CountingExporter(exporter)).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(CountingProcessor(processor))
        .with_resource(resource())
        .build())
}

fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named {
        builder.build()
    } else {
        builder.with_service_name("tokenmint").build()
    }
}

/// Counts spans as they end.
#[derive(Debug)]
struct CountingProcessor<P>(P);

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        SPANS.ended.fetch_add(1, Ordering::Relaxed);
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Counts exported and failed spans.
#[derive(Debug)]
struct CountingExporter<E>(E);

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let size = batch.len() as u64;
        let result = self.0.export(batch).await;
        let counter = if result.is_ok() {
            &SPANS.exported
        } else {
            &SPANS.failed
        };
        counter.fetch_add(size, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint_with(config: Option<&str>, vars: &[(&str, &str)]) -> Option<String> {
        let settings = TelemetrySettings {
            otlp_endpoint: config.map(str::to_owned),
            ..TelemetrySettings::default()
        };
        endpoint_from(&settings, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn nothing_configured_means_no_export() {
        assert_eq!(endpoint_with(None, &[]), None);
        assert_eq!(
            endpoint_with(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            None
        );
    }

    #[test]
    fn standard_variables_win_over_the_config_file() {
        assert_eq!(
            endpoint_with(Some("http://config:4317"), &[]).as_deref(),
            Some("http://config:4317")
        );
        assert_eq!(
            endpoint_with(
                Some("http://config:4317"),
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317")]
            )
            .as_deref(),
            Some("http://env:4317")
        );
        assert_eq!(
            endpoint_with(
                None,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317")
                ]
            )
            .as_deref(),
            Some("http://traces:4317")
        );
    }

    #[test]
    fn the_sdk_switches_turn_export_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317");
        assert_eq!(
            endpoint_with(None, &[endpoint, ("OTEL_SDK_DISABLED", "true")]),
            None
        );
        assert_eq!(
            endpoint_with(None, &[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            None
        );
    }
}
