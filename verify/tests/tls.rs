//! A production tokenmint speaks mutual TLS: the offline verifier (gRPC JWKS) and the online
//! verifier reach it with the CA of its certificate and a client certificate, and fail without.
//! The HTTP JWKS source fetches `https://` trusting a configured CA. And `RequireToken` in front
//! of a TLS tonic server sees the client's address.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokenmint::config::TlsSettings;
use tokenmint_verify::{
    Certificate, ClientTlsConfig, Identity, JwksSource, OnlineVerifier, RequireToken, Verifier,
};
use tonic::transport::{Channel, Server, ServerTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{MANAGER_SCOPES, TestApp, authed};

/// A CA made for the test.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `name` from `ca`, and its key (PEM).
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    purpose: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn both_verifiers_reach_a_mutual_tls_tokenmint_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let (cert, key) = leaf(&server_ca, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let write = |name: &str, contents: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let tls = TlsSettings {
        cert_file: write("server.crt", &cert),
        key_file: write("server.key", &key),
        client_ca_file: Some(write("client-ca.crt", &client_ca.pem())),
        reload_interval_secs: std::num::NonZeroU64::new(10).expect("nonzero"),
        handshake_timeout_secs: std::num::NonZeroU64::new(5).expect("nonzero"),
        max_handshakes_per_peer: 64,
    };
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;
    let caller = app.bootstrap("alice", MANAGER_SCOPES).await;
    let url = format!("https://{}", app.addr);
    let trust = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca.pem()))
        .domain_name("localhost");
    let (client_cert, client_key) = leaf(
        &client_ca,
        "billing-service",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let with_identity = trust
        .clone()
        .identity(Identity::from_pem(client_cert, client_key));

    let offline = Verifier::builder(JwksSource::grpc(&url))
        .tls(with_identity.clone())
        .build()
        .await
        .expect("keys fetched over mutual TLS");
    let claims = offline.verify(&caller).await.expect("verifies offline");
    assert_eq!(claims.sub, "alice");

    let online = OnlineVerifier::builder(&url, &caller)
        .tls(with_identity)
        .connect()
        .await
        .expect("connects over mutual TLS");
    let answer = online.verify(&caller, None).await.expect("active online");
    assert_eq!(answer, claims);

    let refused = Verifier::builder(JwksSource::grpc(&url))
        .tls(trust)
        .build()
        .await;
    assert!(
        refused.is_err(),
        "without a client certificate the server refuses"
    );
}

/// The HTTP JWKS source fetches `https://` with the CA it is given (and only with it): from a
/// tokenmint serving TLS with a certificate of a test CA, it gets the keys that verify tokens.
#[tokio::test]
async fn the_http_jwks_source_fetches_over_https_trusting_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let (cert, key) = leaf(&server_ca, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let write = |name: &str, contents: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let tls = TlsSettings {
        cert_file: write("server.crt", &cert),
        key_file: write("server.key", &key),
        client_ca_file: None,
        reload_interval_secs: std::num::NonZeroU64::new(10).expect("nonzero"),
        handshake_timeout_secs: std::num::NonZeroU64::new(5).expect("nonzero"),
        max_handshakes_per_peer: 64,
    };
    let app = TestApp::spawn_with(|s| s.server.tls = Some(tls)).await;
    let caller = app.bootstrap("alice", MANAGER_SCOPES).await;
    let url = format!(
        "https://localhost:{}/.well-known/jwks.json",
        app.addr.port()
    );

    let verifier = Verifier::builder(JwksSource::http(&url))
        .jwks_ca(Certificate::from_pem(server_ca.pem()))
        .build()
        .await
        .expect("keys fetched over https");
    let claims = verifier.verify(&caller).await.expect("verifies offline");
    assert_eq!(claims.sub, "alice");

    let other_ca = ca("another CA");
    let Err(error) = Verifier::builder(JwksSource::http(&url))
        .jwks_ca(Certificate::from_pem(other_ca.pem()))
        .build()
        .await
    else {
        panic!("a certificate from another CA must not be trusted");
    };
    assert!(error.to_string().contains("TLS handshake"), "{error}");
    let Err(error) = Verifier::builder(JwksSource::http(&url)).build().await else {
        panic!("https:// without a CA must be refused");
    };
    assert!(error.to_string().contains(".jwks_ca("), "{error}");
}

#[tokio::test]
async fn the_layer_checks_ip_restrictions_against_the_address_of_a_tls_client() {
    let app = TestApp::spawn().await;
    let local = app
        .bootstrap_with("alice", &["wallet_view"], |r| {
            r.ips = vec!["127.0.0.1".into()]
        })
        .await;
    let elsewhere = app
        .bootstrap_with("alice", &["wallet_view"], |r| {
            r.ips = vec!["10.0.0.0/8".into()]
        })
        .await;

    // A tonic service over TLS, behind RequireToken.
    let ca = ca("service CA");
    let (cert, key) = leaf(&ca, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        Server::builder()
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .unwrap()
            .layer(RequireToken::new(app.verifier().await))
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca.pem()))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    client
        .check(authed(&local, HealthCheckRequest::default()))
        .await
        .expect("a token allowed from 127.0.0.1 passes over TLS");
    let refused = client
        .check(authed(&elsewhere, HealthCheckRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
}
