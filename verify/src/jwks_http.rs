//! Fetching a JWKS document over HTTP/1.1: plain (`http://`, with a pooled client) or over TLS
//! (`https://`, trusting only the CA certificates it is given).

use std::sync::Arc;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::Certificate;

use crate::error::VerifyError;
use crate::jwks::{CONNECT_TIMEOUT, FetchedKeys, RawJwk};

/// The largest JWKS document accepted over HTTP.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The media types a JWKS fetch accepts.
const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json";

/// A JWK Set document.
#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<RawJwk>,
    /// tokenmint's key-set version (0 when absent: another server, or an older tokenmint).
    #[serde(default)]
    tokenmint_key_set_version: u64,
}

impl From<JwksDocument> for FetchedKeys {
    fn from(document: JwksDocument) -> Self {
        Self {
            keys: document.keys,
            version: document.tokenmint_key_set_version,
        }
    }
}

/// Fetches a JWKS document over HTTP/1.1 and TLS, on a connection of its own each time: fetches
/// are minutes apart (or rate-limited), so there is nothing worth pooling.
pub(crate) struct HttpsFetch {
    tls: TlsConnector,
    server_name: ServerName<'static>,
    host: String,
    port: u16,
    pub(crate) uri: http::Uri,
}

impl HttpsFetch {
    /// Prepares fetching `uri` (`https://`), trusting the CA certificates in `ca` (PEM) only.
    pub(crate) fn new(uri: http::Uri, ca: &Certificate) -> Result<Self, String> {
        let host = uri
            .host()
            .ok_or("the URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.get_ref()) {
            let cert = cert.map_err(|e| format!("the JWKS CA is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the JWKS CA holds an unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the JWKS CA holds no certificate".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            server_name,
            host,
            port,
            uri,
        })
    }

    /// Connects, completes the handshake (the server's certificate must chain to the CA and
    /// name the URL's host), and fetches the document.
    pub(crate) async fn fetch(&self) -> Result<FetchedKeys, VerifyError> {
        let uri = &self.uri;
        let fail = |what: String| VerifyError::KeySource(format!("GET {uri}: {what}"));
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| fail(format!("connecting timed out after {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| fail(e.to_string()))?;
        let stream = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| fail(format!("TLS handshake: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let target = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let authority = uri.authority().map_or("", http::uri::Authority::as_str);
        let request = http::Request::get(target)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, JWKS_ACCEPT)
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let keys = match sender.send_request(request).await {
            Ok(response) => read_jwks(response, &fail).await,
            Err(e) => Err(fail(e.to_string())),
        };
        driver.abort();
        keys
    }
}

/// `GET uri`, then parse the JWKS document (at most [`MAX_JWKS_BYTES`]).
pub(crate) async fn fetch_http(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: &http::Uri,
) -> Result<FetchedKeys, VerifyError> {
    let fail = |what: String| VerifyError::KeySource(format!("GET {uri}: {what}"));
    let request = http::Request::get(uri.clone())
        .header(http::header::ACCEPT, JWKS_ACCEPT)
        .body(Empty::new())
        .map_err(|e| fail(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    read_jwks(response, &fail).await
}

/// Reads a JWKS response: a success status and a JWK Set of at most [`MAX_JWKS_BYTES`].
async fn read_jwks(
    response: http::Response<Incoming>,
    fail: &impl Fn(String) -> VerifyError,
) -> Result<FetchedKeys, VerifyError> {
    if !response.status().is_success() {
        return Err(fail(format!("status {}", response.status())));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    let document: JwksDocument =
        serde_json::from_slice(&body).map_err(|e| fail(format!("not a JWK set: {e}")))?;
    Ok(document.into())
}
