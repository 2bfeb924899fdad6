//! A production tokenmint speaks mutual TLS: the offline verifier (gRPC JWKS) and the online
//! verifier reach it with the CA of its certificate and a client certificate, and fail without.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokenmint::config::TlsSettings;
use tokenmint_verify::{
    Certificate, ClientTlsConfig, Identity, JwksSource, OnlineVerifier, Verifier,
};

use crate::helpers::{MANAGER_SCOPES, TestApp};

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
        reload_interval_secs: 10,
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
