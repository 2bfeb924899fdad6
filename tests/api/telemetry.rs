//! Tracing across calls, logs and secrets, with the real binary: an in-process OTLP collector (a
//! tonic server implementing the collector's TraceService) receives the server span of a
//! CreateToken made with a W3C `traceparent`, as a child of the caller's span, with the RPC
//! attributes and child spans; spans still queued are flushed at SIGTERM; every RPC writes one
//! log line; and no raw token or key shows up in any span or log line.

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokenmint::proto::v1 as pb;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::helpers::{Ca, TestDatabase, authed, eventually};
use crate::process::{command, free_port, wait_until_serving};

/// The caller's trace and span, as its `traceparent` names them.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN_ID: &str = "b7ad6b7169203331";

/// A received span with the attributes of the resource that sent it.
type ReceivedSpan = (Vec<KeyValue>, Span);

/// Everything the collector received.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push((resource.clone(), span));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Starts the collector on a free port; returns its endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        format!("http://{addr}")
    }

    /// Starts the collector over TLS with a certificate from `ca`; returns its endpoint.
    async fn start_tls(&self, ca: &Ca) -> String {
        let (cert, key) = ca.server_leaf();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        let server = tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(TraceServiceServer::new(self.clone()))
            .serve_with_incoming(TcpIncoming::from(listener));
        tokio::spawn(server);
        format!("https://{addr}")
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

/// Serves with OTLP export to `endpoint` and JSON logs at debug into `log_file`.
async fn serve_traced(
    db: &TestDatabase,
    endpoint: &str,
    log_file: &std::path::Path,
) -> (Child, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(log_file).unwrap();
    let child = command(db, &["serve", "--listen", &listen, "--log-format", "json"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_SERVICE_NAME", "tokenmint-under-test")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
        // Export only at shutdown: what the test receives proves the flush on SIGTERM.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env("RUST_LOG", "debug,tokenmint=trace")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn tokenmint serve");
    wait_until_serving(port).await;
    (child, port)
}

fn bootstrap(db: &TestDatabase) -> String {
    let output = command(
        db,
        &[
            "bootstrap",
            "--user",
            "alice",
            "--scopes",
            "user_manage,token_introspect,wallet_view",
        ],
    )
    .output()
    .expect("bootstrap");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn terminate(child: &mut Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = child.wait().unwrap();
    assert!(exited.success(), "graceful shutdown exits 0: {exited:?}");
}

// Multi-threaded: the collector must keep answering while the test waits for the server to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_continue_the_callers_trace_and_carry_no_secrets() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let db = TestDatabase::create().await;
    let caller = bootstrap(&db);
    let log_file = db.dir.path().join("serve.log");
    let (mut server, port) = serve_traced(&db, &endpoint, &log_file).await;
    let mut client =
        pb::token_service_client::TokenServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();

    let mut request = authed(
        &caller,
        pb::CreateTokenRequest {
            label: "traced".into(),
            scopes: vec!["wallet_view".into()],
            ..Default::default()
        },
    );
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-request-id", "otel-test-create".parse().unwrap());
    let created = client.create_token(request).await.unwrap().into_inner();
    let minted = created.raw_token.clone();
    let token_id = created.token.unwrap().id;

    // More calls that carry raw tokens: verification (active, then revoked) and a refused caller.
    let verify = |token: String| {
        authed(
            &caller,
            pb::VerifyTokenRequest {
                token,
                ..Default::default()
            },
        )
    };
    assert!(
        client
            .verify_token(verify(minted.clone()))
            .await
            .unwrap()
            .into_inner()
            .active
    );
    client
        .revoke_token(authed(
            &caller,
            pb::RevokeTokenRequest {
                id: token_id.clone(),
                cascade: false,
            },
        ))
        .await
        .unwrap();
    assert!(
        !client
            .verify_token(verify(minted.clone()))
            .await
            .unwrap()
            .into_inner()
            .active
    );
    let refused = client
        .list_tokens(authed(&minted, pb::ListTokensRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    terminate(&mut server);
    let spans = eventually(Duration::from_secs(10), || async {
        let spans = collector.spans();
        spans
            .iter()
            .any(|(_, s)| s.name == "tokenmint.v1.TokenService/ListTokens")
            .then_some(spans)
    })
    .await
    .unwrap_or_else(|| {
        let logs = std::fs::read_to_string(&log_file).unwrap_or_default();
        let tail: Vec<&str> = logs.lines().rev().take(15).collect();
        panic!(
            "the spans of every RPC reach the collector by the end of shutdown; got {:?}; log tail: {tail:#?}",
            collector.spans().iter().map(|(_, s)| s.name.clone()).collect::<Vec<_>>()
        )
    });

    // The CreateToken server span is a child of the caller's span, in the caller's trace.
    let (resource, create) = spans
        .iter()
        .find(|(_, s)| s.name == "tokenmint.v1.TokenService/CreateToken")
        .expect("a CreateToken span");
    assert_eq!(hex::encode(&create.trace_id), TRACE_ID);
    assert_eq!(hex::encode(&create.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(create.kind, SpanKind::Server as i32);
    let attributes = &create.attributes;
    let expected = [
        ("rpc.system", "grpc"),
        ("rpc.service", "tokenmint.v1.TokenService"),
        ("rpc.method", "CreateToken"),
        ("request_id", "otel-test-create"),
        ("tokenmint.user_id", "alice"),
        ("tokenmint.token_id", token_id.as_str()),
    ];
    for (key, value) in expected {
        assert_eq!(
            string_attribute(attributes, key).as_deref(),
            Some(value),
            "attribute {key} in {attributes:?}"
        );
    }
    assert_eq!(
        attribute(attributes, "rpc.grpc.status_code"),
        Some(&any_value::Value::IntValue(0))
    );
    assert_eq!(
        string_attribute(resource, "service.name").as_deref(),
        Some("tokenmint-under-test")
    );
    assert_eq!(
        string_attribute(resource, "deployment.environment").as_deref(),
        Some("ci")
    );

    // Signing and the database write are child spans of the RPC (directly or through the core).
    let by_id: HashMap<Vec<u8>, &Span> =
        spans.iter().map(|(_, s)| (s.span_id.clone(), s)).collect();
    let descends_from_create = |span: &Span| {
        let mut parent = span.parent_span_id.clone();
        while let Some(p) = by_id.get(&parent) {
            if p.span_id == create.span_id {
                return true;
            }
            parent = p.parent_span_id.clone();
        }
        false
    };
    for child in ["sign_token", "db.insert_token"] {
        let span = spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == child && s.trace_id == create.trace_id)
            .unwrap_or_else(|| panic!("a {child} span in the caller's trace"));
        assert!(descends_from_create(span), "{child} is inside CreateToken");
    }

    // The refused call is recorded with its status code.
    let list = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "tokenmint.v1.TokenService/ListTokens")
        .unwrap();
    assert_eq!(
        attribute(&list.attributes, "rpc.grpc.status_code"),
        Some(&any_value::Value::IntValue(
            tonic::Code::Unauthenticated as i64
        ))
    );

    // One info line per RPC, with method, code, latency and request id.
    let logs = std::fs::read_to_string(&log_file).unwrap();
    let rpc_lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "tokenmint::rpc")
        .collect();
    let create_lines: Vec<&serde_json::Value> = rpc_lines
        .iter()
        .filter(|l| l["method"] == "CreateToken")
        .collect();
    assert_eq!(create_lines.len(), 1, "{create_lines:?}");
    let line = create_lines[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["code"], "OK");
    assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    assert_eq!(line["span"]["request_id"], "otel-test-create");
    let refused_line = rpc_lines
        .iter()
        .find(|l| l["method"] == "ListTokens")
        .expect("a line for the refused call");
    assert_eq!(refused_line["level"], "WARN");
    assert_eq!(refused_line["code"], "UNAUTHENTICATED");
    assert!(
        refused_line["span"]["tokenmint.error_reason"].is_string(),
        "the stable error reason is on the line: {refused_line}"
    );
    assert_eq!(rpc_lines.len(), 5, "one line per RPC: {rpc_lines:#?}");

    // No raw token, signature or key anywhere in the spans or the logs.
    let exported = format!("{spans:?}");
    let master_key = std::fs::read_to_string(db.dir.path().join("master.key")).unwrap();
    let mut secrets = vec![
        ("the caller's token", caller.clone()),
        ("the minted token", minted.clone()),
        ("the master key", master_key.trim().to_owned()),
    ];
    for (name, token) in [("caller", &caller), ("minted", &minted)] {
        let signature = token.rsplit('.').next().unwrap().to_owned();
        secrets.push((
            if name == "caller" {
                "the caller's signature"
            } else {
                "the minted signature"
            },
            signature,
        ));
    }
    for (what, secret) in &secrets {
        assert!(
            secret.len() >= 32,
            "{what} looks too short to be a real secret"
        );
        assert!(
            !exported.contains(secret.as_str()),
            "{what} appears in an exported span"
        );
        assert!(
            !logs.contains(secret.as_str()),
            "{what} appears in the logs"
        );
    }
    assert!(logs.len() > 1000, "the debug log was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_fails_no_rpc_and_its_losses_are_counted() {
    let db = TestDatabase::create().await;
    let caller = bootstrap(&db);
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = command(&db, &["serve", "--listen", &listen])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_serving(port).await;
    let mut client =
        pb::token_service_client::TokenServiceClient::connect(format!("http://{listen}"))
            .await
            .unwrap();
    for label in ["a", "b", "c"] {
        let request = pb::CreateTokenRequest {
            label: label.into(),
            scopes: vec!["wallet_view".into()],
            ..Default::default()
        };
        client
            .create_token(authed(&caller, request))
            .await
            .expect("RPCs succeed with the collector down");
    }
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let failed = eventually(Duration::from_secs(10), || async move {
        let (_, _, metrics) = crate::helpers::http_get(addr, "/metrics").await;
        let value = |series: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        };
        let ended = value(r#"tokenmint_trace_spans{result="ended"}"#)?;
        let failed = value(r#"tokenmint_trace_spans{result="failed"}"#)?;
        (ended >= 3.0 && failed >= 1.0).then_some((ended, failed))
    })
    .await;
    assert!(failed.is_some(), "failed exports are counted");
    terminate(&mut server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_tls_collector_that_the_configured_ca_vouches_for() {
    let ca = Ca::new("collector CA");
    let collector = Collector::default();
    let endpoint = collector.start_tls(&ca).await;
    let db = TestDatabase::create().await;
    let ca_file = db.dir.path().join("collector-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let caller = bootstrap(&db);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = |with_ca: bool| {
        let mut command = command(&db, &["serve", "--listen", &listen]);
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(Stdio::null());
        if with_ca {
            command.env("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca_file);
        }
        command
    };

    let refused = serve(false).stderr(Stdio::piped()).output().unwrap();
    assert!(
        !refused.status.success(),
        "an https collector without a CA is a start-up error"
    );
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "{message}"
    );

    let log_file = db.dir.path().join("serve.log");
    let log = std::fs::File::create(&log_file).unwrap();
    let mut server = serve(true).stderr(Stdio::from(log)).spawn().unwrap();
    wait_until_serving(port).await;
    let mut client =
        pb::token_service_client::TokenServiceClient::connect(format!("http://{listen}"))
            .await
            .unwrap();
    client
        .list_tokens(authed(&caller, pb::ListTokensRequest::default()))
        .await
        .unwrap();
    let received = eventually(Duration::from_secs(10), || async {
        collector
            .spans()
            .iter()
            .any(|(_, s)| s.name == "tokenmint.v1.TokenService/ListTokens")
            .then_some(())
    })
    .await;
    terminate(&mut server);
    let logs = std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        received.is_some(),
        "the span arrived over TLS; server log:\n{logs}"
    );
}
