//! TLS and mutual TLS on the server port, with certificates made in the test (rcgen): clients
//! trusting the CA are served, plaintext and foreign clients are not, a client CA turns on mutual
//! TLS, renewed certificate files are picked up without a restart, unusable files fail start-up,
//! and production refuses plaintext unless told otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokenmint::config::{Secret, Settings, TlsSettings};
use tokenmint::domain::Environment;
use tokenmint::proto::v1 as pb;
use tokio::process::Command;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Ca, TestApp, TestDatabase, authed, eventually, http_get};

/// Writes `contents` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Server TLS files in `dir`: a certificate from `ca`, and the client CA if `client_ca` is given.
fn server_tls(dir: &Path, ca: &Ca, client_ca: Option<&Ca>) -> TlsSettings {
    let (cert, key) = ca.server_leaf();
    TlsSettings {
        cert_file: write(dir, "server.crt", &cert),
        key_file: write(dir, "server.key", &key),
        client_ca_file: client_ca.map(|c| write(dir, "client-ca.crt", &c.pem())),
        reload_interval_secs: std::num::NonZeroU64::new(1).expect("nonzero"),
        handshake_timeout_secs: std::num::NonZeroU64::new(5).expect("nonzero"),
        max_handshakes_per_peer: 64,
    }
}

/// Connects over TLS trusting `ca` (and presenting `identity`), then asks gRPC health: the
/// error, if any, as text. With TLS 1.3 a refused client certificate may only show on the
/// first request, so both steps count.
async fn health_over_tls(
    app: &TestApp,
    ca: &Ca,
    identity: Option<&(String, String)>,
) -> Result<(), String> {
    let channel = tls_channel(app, ca, identity).await?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("health check: {e}"))
}

async fn tls_channel(
    app: &TestApp,
    ca: &Ca,
    identity: Option<&(String, String)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{}", app.addr))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| format!("TLS config: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_nobody_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tokenmint test CA");
    let tls = server_tls(dir.path(), &ca, None);
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;

    health_over_tls(&app, &ca, None)
        .await
        .expect("a client trusting the CA is served");
    let caller = app.bootstrap("alice", &["user_manage"]).await;
    let channel = tls_channel(&app, &ca, None).await.unwrap();
    let scopes = pb::token_service_client::TokenServiceClient::new(channel)
        .list_scopes(authed(&caller, pb::ListScopesRequest {}))
        .await
        .expect("RPCs work over TLS")
        .into_inner()
        .scopes;
    assert!(!scopes.is_empty());

    let stranger = Ca::new("some other CA");
    let refused = health_over_tls(&app, &stranger, None).await;
    assert!(
        refused.is_err(),
        "a client that does not trust the server's CA must not get through"
    );

    let plaintext = async {
        let channel = Endpoint::from_shared(app.url())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(|e| e.to_string())
    };
    assert!(
        plaintext.await.is_err(),
        "plaintext HTTP/2 must not be served on a TLS port"
    );
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let tls = server_tls(dir.path(), &server_ca, Some(&client_ca));
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;

    let good = client_ca.client_leaf("billing-service");
    health_over_tls(&app, &server_ca, Some(&good))
        .await
        .expect("a client certificate from the client CA is accepted");

    let without = health_over_tls(&app, &server_ca, None).await;
    assert!(without.is_err(), "no client certificate: refused");

    let foreign = Ca::new("foreign CA").client_leaf("intruder");
    let with_foreign = health_over_tls(&app, &server_ca, Some(&foreign)).await;
    assert!(
        with_foreign.is_err(),
        "a client certificate from another CA: refused"
    );

    // A certificate the server CA issued is not a client credential either.
    let server_issued = server_ca.client_leaf("not-a-client");
    assert!(
        health_over_tls(&app, &server_ca, Some(&server_issued))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn renewed_certificate_files_are_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let tls = server_tls(dir.path(), &old_ca, None);
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;
    health_over_tls(&app, &old_ca, None).await.unwrap();

    // Renew: a certificate from a new CA replaces the files in place.
    let new_ca = Ca::new("new CA");
    let (cert, key) = new_ca.server_leaf();
    write(dir.path(), "server.key", &key);
    write(dir.path(), "server.crt", &cert);

    let renewed = eventually(Duration::from_secs(10), || async {
        health_over_tls(&app, &new_ca, None).await.ok()
    })
    .await;
    assert!(
        renewed.is_some(),
        "new connections get the renewed certificate"
    );
    assert!(
        health_over_tls(&app, &old_ca, None).await.is_err(),
        "the old certificate is no longer served"
    );
}

#[tokio::test]
async fn a_half_written_renewal_keeps_the_previous_certificate_in_service() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let tls = server_tls(dir.path(), &ca, None);
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;
    write(
        dir.path(),
        "server.crt",
        "-----BEGIN CERTIFICATE-----\ntrunc",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    health_over_tls(&app, &ca, None)
        .await
        .expect("the last good certificate stays in service");
    // The renewal completes: the next check loads it.
    let new_ca = Ca::new("new CA");
    let (cert, key) = new_ca.server_leaf();
    write(dir.path(), "server.key", &key);
    write(dir.path(), "server.crt", &cert);
    let renewed = eventually(Duration::from_secs(10), || async {
        health_over_tls(&app, &new_ca, None).await.ok()
    })
    .await;
    assert!(renewed.is_some(), "a completed renewal is picked up");
}

#[tokio::test]
async fn ip_restricted_callers_are_checked_against_the_tls_peer_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let tls = server_tls(dir.path(), &ca, None);
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;
    let scopes = ["user_manage"];
    let local = app
        .bootstrap_with("alice", &scopes, |r| r.ips = vec!["127.0.0.1".into()])
        .await;
    let elsewhere = app
        .bootstrap_with("alice", &scopes, |r| r.ips = vec!["10.0.0.0/8".into()])
        .await;
    let channel = tls_channel(&app, &ca, None).await.unwrap();
    let mut client = pb::token_service_client::TokenServiceClient::new(channel);
    client
        .list_tokens(authed(&local, pb::ListTokensRequest::default()))
        .await
        .expect("a token allowed from 127.0.0.1 works from 127.0.0.1 over TLS");
    let status = client
        .list_tokens(authed(&elsewhere, pb::ListTokensRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn unusable_certificate_files_fail_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let db = TestDatabase::create().await;

    let mut missing = db.settings();
    missing.server.tls = Some(TlsSettings {
        cert_file: dir.path().join("nope.crt"),
        ..server_tls(dir.path(), &ca, None)
    });
    let error = start_error(missing).await;
    assert!(error.contains("server.tls.cert_file"), "{error}");

    let mut mismatched = db.settings();
    let mut tls = server_tls(dir.path(), &ca, None);
    let (_, other_key) = ca.server_leaf();
    tls.key_file = write(dir.path(), "other.key", &other_key);
    mismatched.server.tls = Some(tls);
    let error = start_error(mismatched).await;
    assert!(error.contains("do not form a usable pair"), "{error}");
}

async fn start_error(settings: Settings) -> String {
    match tokenmint::startup::start(settings).await {
        Ok(server) => {
            server.stop().await.ok();
            panic!("the server started")
        }
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn production_refuses_plaintext_unless_explicitly_allowed() {
    let db = TestDatabase::create().await;
    let production = |s: &mut Settings| {
        s.environment = Environment::Production;
        s.keys.master_key = Some(Secret::new("22".repeat(32)));
        s.status_list.base_uri = Some("https://tokens.example/statuslists".into());
    };
    let mut settings = db.settings();
    production(&mut settings);
    let error = start_error(settings).await;
    assert!(error.contains("production requires TLS"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let tls = server_tls(dir.path(), &ca, None);
    let with_tls = TestApp::spawn_on(db.clone(), |s| {
        production(s);
        s.server.tls = Some(tls);
    })
    .await;
    health_over_tls(&with_tls, &ca, None).await.unwrap();

    let allowed = TestApp::spawn_on(db, |s| {
        production(s);
        s.server.allow_plaintext = true;
    })
    .await;
    let channel = Endpoint::from_shared(allowed.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("allow_plaintext lets production listen without TLS");
}

#[tokio::test]
async fn the_health_probe_speaks_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let tls = server_tls(dir.path(), &server_ca, Some(&client_ca));
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;
    let (cert, key) = client_ca.client_leaf("kubelet-probe");
    let ca_file = write(dir.path(), "probe-ca.crt", &server_ca.pem());
    let cert_file = write(dir.path(), "probe.crt", &cert);
    let key_file = write(dir.path(), "probe.key", &key);
    let addr = format!("https://{}", app.addr);
    // tokio's Command: the server runs on this test's runtime and must keep answering.
    let probe = async |with_identity: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenmint"));
        command.args(["health", "--addr", &addr, "--server-name", "localhost"]);
        command.arg("--ca-file").arg(&ca_file);
        if with_identity {
            command
                .arg("--cert-file")
                .arg(&cert_file)
                .arg("--key-file")
                .arg(&key_file);
        }
        command.output().await.unwrap()
    };
    let ok = probe(true).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        !probe(false).await.status.success(),
        "without a client certificate the probe must fail"
    );
}

#[tokio::test]
async fn a_separate_plaintext_listener_serves_metrics_to_scrapers_without_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let tls = server_tls(dir.path(), &server_ca, Some(&client_ca));
    let app = TestApp::spawn_with(|s| {
        s.server.tls = Some(tls);
        s.server.metrics_listen = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await;
    let good = client_ca.client_leaf("billing-service");
    health_over_tls(&app, &server_ca, Some(&good))
        .await
        .unwrap();

    let metrics_addr = app.metrics_addr.expect("a metrics listener");
    let (status, head, body) = http_get(metrics_addr, "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let health_ok = r#"tokenmint_rpc_requests_total{service="grpc.health.v1.Health",method="Check",code="OK"} 1"#;
    assert!(body.lines().any(|l| l == health_ok), "{body}");
    // Only metrics: the listener serves nothing else.
    let (status, _, _) = http_get(metrics_addr, "/.well-known/jwks.json").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

#[tokio::test]
async fn connections_that_never_send_a_client_hello_do_not_keep_a_real_client_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tokenmint test CA");
    // Idle handshakes may last a minute: the client must not need any of them to end.
    let tls = TlsSettings {
        handshake_timeout_secs: std::num::NonZeroU64::new(60).expect("nonzero"),
        ..server_tls(dir.path(), &ca, None)
    };
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;
    let caller = app.bootstrap("alice", &["user_manage"]).await;

    let mut idle = Vec::new();
    for _ in 0..300 {
        let connected = tokio::net::TcpStream::connect(app.addr).await;
        idle.push(connected.expect("an idle TCP connection"));
    }
    // The real client comes from another loopback address: handshakes in progress are bounded
    // per peer address, and every idle connection comes from 127.0.0.1.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", app.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("a real client connects while 300 connections sit in their handshake");
    let scopes = pb::token_service_client::TokenServiceClient::new(channel)
        .list_scopes(authed(&caller, pb::ListScopesRequest {}))
        .await;
    assert!(scopes.is_ok(), "and is served: {scopes:?}");

    // It did not have to wait for idle handshakes to time out: the first idle connection is
    // still open (reading it would block; a connection the server closed reads 0 bytes).
    let first = idle.remove(0).into_std().unwrap();
    first.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut &first, &mut byte);
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the real client got in only after idle handshakes had timed out: {read:?}"
    );
    drop(idle);
}
