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
    if let Some(tls) = collector_tls(endpoint, settings, |name| std::env::var(name).ok())? {
        use opentelemetry_otlp::WithTonicConfig;
        builder = builder.with_tls_config(tls);
    }
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

/// TLS for an `https://` collector: its CA (required: tokenmint embeds no public roots) and, for
/// mutual TLS, a client certificate and key, from the standard variables or the config file.
fn collector_tls(
    endpoint: &str,
    settings: &TelemetrySettings,
    var: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    if !endpoint
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("https://")
    {
        return Ok(None);
    }
    // A standard variable (traces-specific first), else the configured file.
    let file = |suffix: &str, configured: &Option<std::path::PathBuf>| {
        [
            format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}"),
            format!("OTEL_EXPORTER_OTLP_{suffix}"),
        ]
        .iter()
        .find_map(|name| var(name).filter(|v| !v.trim().is_empty()))
        .map(std::path::PathBuf::from)
        .or_else(|| configured.clone())
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let ca = file("CERTIFICATE", &settings.otlp_ca_file).ok_or_else(|| {
        anyhow::anyhow!(
            "the collector {endpoint} uses TLS: set OTEL_EXPORTER_OTLP_CERTIFICATE (or \
             telemetry.otlp_ca_file) to the CA that issued its certificate"
        )
    })?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&ca)?));
    let cert = file("CLIENT_CERTIFICATE", &settings.otlp_client_cert_file);
    let key = file("CLIENT_KEY", &settings.otlp_client_key_file);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read(&cert)?, read(&key)?));
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "a collector client certificate needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and \
             OTEL_EXPORTER_OTLP_CLIENT_KEY (or telemetry.otlp_client_cert_file and _key_file)"
        ),
    }
    Ok(Some(tls))
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
    fn an_https_collector_needs_a_ca_and_plaintext_needs_nothing() {
        let settings = TelemetrySettings::default();
        let none = |_: &str| None;
        assert!(
            collector_tls("http://collector:4317", &settings, none)
                .unwrap()
                .is_none()
        );
        let error = collector_tls("https://collector:4317", &settings, none).unwrap_err();
        assert!(
            error.to_string().contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let ca_var = ca.to_string_lossy().into_owned();
        let with_ca =
            |name: &str| (name == "OTEL_EXPORTER_OTLP_CERTIFICATE").then(|| ca_var.clone());
        assert!(
            collector_tls("https://collector:4317", &settings, with_ca)
                .unwrap()
                .is_some()
        );
        let half = |name: &str| match name {
            "OTEL_EXPORTER_OTLP_CERTIFICATE" | "OTEL_EXPORTER_OTLP_CLIENT_KEY" => {
                Some(ca_var.clone())
            }
            _ => None,
        };
        let error = collector_tls("https://collector:4317", &settings, half).unwrap_err();
        assert!(error.to_string().contains("needs both"), "{error}");
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
