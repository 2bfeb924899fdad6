//! Where the public keys come from ([`JwksSource`]), how they are fetched, and how JWKs become
//! ring public keys, each bound to the one algorithm it verifies.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
use serde::Deserialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::VerifyError;
use crate::jwks_http::{HttpsFetch, fetch_http};
use crate::proto::v1::GetJwksRequest;
use crate::proto::v1::token_service_client::TokenServiceClient;

/// How long connecting to the key source may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one whole key-set fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Length of an Ed25519 public key and of one P-256 coordinate.
const KEY_PART_LEN: usize = 32;

/// Where a [`crate::Verifier`] gets tokenmint's public keys.
///
/// The gRPC source speaks `http://`, or `https://` with
/// [`VerifierBuilder::tls`](crate::VerifierBuilder::tls). The HTTP source speaks HTTP/1.1 over
/// `http://`, or over `https://` trusting the CA given with
/// [`VerifierBuilder::jwks_ca`](crate::VerifierBuilder::jwks_ca) (no public roots are built in).
/// It presents no client certificate: for a tokenmint that requires mutual TLS, use the gRPC
/// source with a client identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Call `tokenmint.v1.TokenService/GetJwks` (needs no authentication).
    Grpc {
        /// The tokenmint server, e.g. `http://127.0.0.1:50051`.
        endpoint: String,
    },
    /// `GET` a JWKS document, e.g. `http://127.0.0.1:50051/.well-known/jwks.json` (tokenmint
    /// serves it on its gRPC port).
    Http {
        /// The document's URL: `http://`, or `https://` with
        /// [`VerifierBuilder::jwks_ca`](crate::VerifierBuilder::jwks_ca).
        url: String,
    },
}

impl JwksSource {
    /// [`JwksSource::Grpc`] for the tokenmint server at `endpoint`.
    pub fn grpc(endpoint: impl Into<String>) -> Self {
        Self::Grpc {
            endpoint: endpoint.into(),
        }
    }

    /// [`JwksSource::Http`] for the JWKS document at `url`.
    pub fn http(url: impl Into<String>) -> Self {
        Self::Http { url: url.into() }
    }
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Grpc { endpoint } => write!(f, "GetJwks at {endpoint}"),
            Self::Http { url } => write!(f, "{url}"),
        }
    }
}

/// The signature algorithms tokenmint signs with; a key verifies with exactly one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA on P-256 with SHA-256, fixed-length `r || s` signatures.
    ES256,
}

impl Algorithm {
    /// The JWS `alg` name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }
}

/// A public key and the only algorithm it verifies.
pub(crate) struct PublicKey {
    /// The algorithm bound to the key.
    pub(crate) algorithm: Algorithm,
    key: UnparsedPublicKey<Vec<u8>>,
}

impl PublicKey {
    /// Whether `other` is the same key for the same algorithm.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.key.as_ref() == other.key.as_ref()
    }
}

impl tokenmint_jwt::VerifyingKey for PublicKey {
    fn algorithm(&self) -> &str {
        self.algorithm.name()
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The keys of one fetch, by `kid`.
pub(crate) type KeySet = HashMap<String, Arc<PublicKey>>;

/// A fetched JWK Set and the key-set version it was published with.
#[derive(Debug, Default)]
pub(crate) struct FetchedKeys {
    /// The keys as published.
    pub(crate) keys: Vec<RawJwk>,
    /// tokenmint's key-set version: higher is newer within one database's history; 0 when the
    /// source reports none.
    pub(crate) version: u64,
}

/// One JWK as published by tokenmint (the members this crate reads).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RawJwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    x: String,
    #[serde(default)]
    y: String,
    #[serde(default)]
    kid: String,
    #[serde(default)]
    alg: String,
    #[serde(default, rename = "use")]
    use_: String,
}

impl From<crate::proto::v1::Jwk> for RawJwk {
    fn from(jwk: crate::proto::v1::Jwk) -> Self {
        Self {
            kty: jwk.kty,
            crv: jwk.crv,
            x: jwk.x,
            y: jwk.y,
            kid: jwk.kid,
            alg: jwk.alg,
            use_: jwk.r#use,
        }
    }
}

/// Turns JWKs into a key set. Keys this crate cannot use (other types, curves or algorithms, or
/// not for signatures) are skipped with a warning; a set with no usable key is an error.
pub(crate) fn key_set(jwks: Vec<RawJwk>) -> Result<KeySet, VerifyError> {
    let mut keys = KeySet::with_capacity(jwks.len());
    for jwk in jwks {
        match parse_jwk(&jwk) {
            Ok(key) => match keys.entry(jwk.kid) {
                Entry::Occupied(entry) => {
                    tracing::warn!(kid = %entry.key(), "duplicate kid in the key set; keeping the first key");
                }
                Entry::Vacant(entry) => {
                    entry.insert(Arc::new(key));
                }
            },
            Err(why) => tracing::warn!(kid = %jwk.kid, why, "skipping an unusable JWK"),
        }
    }
    if keys.is_empty() {
        return Err(VerifyError::KeySource(
            "the key set has no usable key".into(),
        ));
    }
    Ok(keys)
}

/// Parses one JWK: OKP/Ed25519 (`EdDSA`) or EC/P-256 (`ES256`). A missing `alg` is inferred from
/// the key type; a present one must match it.
fn parse_jwk(jwk: &RawJwk) -> Result<PublicKey, &'static str> {
    if jwk.kid.is_empty() {
        return Err("no kid");
    }
    if !jwk.use_.is_empty() && jwk.use_ != "sig" {
        return Err("not a signature key");
    }
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .filter(|bytes| bytes.len() == KEY_PART_LEN)
    };
    let (algorithm, key) = match (jwk.kty.as_str(), jwk.crv.as_str()) {
        ("OKP", "Ed25519") => {
            let x = decode(&jwk.x).ok_or("x is not a 32-byte base64url Ed25519 key")?;
            (Algorithm::EdDSA, UnparsedPublicKey::new(&ED25519, x))
        }
        ("EC", "P-256") => {
            let x = decode(&jwk.x).ok_or("x is not a 32-byte base64url coordinate")?;
            let y = decode(&jwk.y).ok_or("y is not a 32-byte base64url coordinate")?;
            // Uncompressed SEC1 point: 0x04 || x || y.
            let mut point = Vec::with_capacity(1 + 2 * KEY_PART_LEN);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (
                Algorithm::ES256,
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point),
            )
        }
        _ => return Err("unsupported key type or curve"),
    };
    if !jwk.alg.is_empty() && jwk.alg != algorithm.name() {
        return Err("alg does not match the key type");
    }
    Ok(PublicKey { algorithm, key })
}

/// Fetches JWKs from a [`JwksSource`], reusing its connection.
pub(crate) enum Fetcher {
    /// `GetJwks` over a lazily (re)connecting channel.
    Grpc(TokenServiceClient<Channel>),
    /// `GET url` with a pooled HTTP/1.1 client.
    Http {
        /// The client (boxed: it is much larger than the gRPC variant).
        client: Box<Client<HttpConnector, Empty<Bytes>>>,
        /// The document's URL.
        uri: http::Uri,
    },
    /// `GET url` over TLS (boxed, like the plain client).
    Https(Box<HttpsFetch>),
}

impl Fetcher {
    /// Prepares fetching from `source` (no I/O yet): `tls` for an `https://` gRPC source,
    /// `jwks_ca` for an `https://` HTTP one. Must run inside a Tokio runtime.
    pub(crate) fn new(
        source: &JwksSource,
        tls: Option<&ClientTlsConfig>,
        jwks_ca: Option<&Certificate>,
    ) -> Result<Self, VerifyError> {
        match source {
            JwksSource::Grpc { endpoint } => {
                let endpoint = grpc_endpoint(endpoint, tls).map_err(VerifyError::KeySource)?;
                let channel = endpoint
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(FETCH_TIMEOUT)
                    .connect_lazy();
                Ok(Self::Grpc(TokenServiceClient::new(channel)))
            }
            JwksSource::Http { url } => {
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| VerifyError::KeySource(format!("bad URL {url:?}: {e}")))?;
                match (uri.scheme_str(), jwks_ca) {
                    (Some("http"), None) => {
                        let mut connector = HttpConnector::new();
                        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
                        let client =
                            Box::new(Client::builder(TokioExecutor::new()).build(connector));
                        Ok(Self::Http { client, uri })
                    }
                    (Some("https"), Some(ca)) => HttpsFetch::new(uri, ca)
                        .map(|fetch| Self::Https(Box::new(fetch)))
                        .map_err(|e| VerifyError::KeySource(format!("{url:?}: {e}"))),
                    (Some("https"), None) => Err(VerifyError::KeySource(format!(
                        "{url:?} uses TLS: give the verifier the CA of its certificate with \
                         .jwks_ca(…) (no public roots are built in)"
                    ))),
                    (Some("http"), Some(_)) => Err(VerifyError::KeySource(format!(
                        "{url:?}: a JWKS CA was given, so the URL must be https://"
                    ))),
                    _ => Err(VerifyError::KeySource(format!(
                        "{url:?}: the HTTP JWKS source speaks http:// or https://"
                    ))),
                }
            }
        }
    }

    /// Fetches the current JWKs and their key-set version.
    pub(crate) async fn fetch(&self) -> Result<FetchedKeys, VerifyError> {
        match self {
            Self::Grpc(client) => {
                let response =
                    client
                        .clone()
                        .get_jwks(GetJwksRequest {})
                        .await
                        .map_err(|status| {
                            VerifyError::KeySource(format!(
                                "GetJwks failed: {:?}: {}",
                                status.code(),
                                status.message()
                            ))
                        })?;
                let response = response.into_inner();
                Ok(FetchedKeys {
                    keys: response.keys.into_iter().map(RawJwk::from).collect(),
                    version: response.key_set_version,
                })
            }
            Self::Http { client, uri } => {
                tokio::time::timeout(FETCH_TIMEOUT, fetch_http(client, uri))
                    .await
                    .map_err(|_| {
                        VerifyError::KeySource(format!(
                            "GET {uri} timed out after {FETCH_TIMEOUT:?}"
                        ))
                    })?
            }
            Self::Https(fetch) => tokio::time::timeout(FETCH_TIMEOUT, fetch.fetch())
                .await
                .map_err(|_| {
                    VerifyError::KeySource(format!(
                        "GET {} timed out after {FETCH_TIMEOUT:?}",
                        fetch.uri
                    ))
                })?,
        }
    }
}

/// A gRPC endpoint for tokenmint at `url`: `http://` in plaintext, `https://` with `tls` (which
/// an `https://` URL requires).
pub(crate) fn grpc_endpoint(url: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, String> {
    let endpoint =
        Endpoint::from_shared(url.to_owned()).map_err(|e| format!("bad endpoint {url:?}: {e}"))?;
    match (url.starts_with("https://"), tls) {
        (true, Some(tls)) => endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS settings for {url:?}: {e}")),
        (false, None) if url.starts_with("http://") => Ok(endpoint),
        (true, None) => Err(format!(
            "{url:?} uses TLS: give the verifier a ClientTlsConfig with .tls(…) (the CA of \
             tokenmint's certificate, and a client certificate if it requires mutual TLS)"
        )),
        (false, Some(_)) => Err(format!(
            "{url:?}: TLS settings were given, so the endpoint must be https://"
        )),
        (false, None) => Err(format!("{url:?}: the endpoint must be http:// or https://")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn okp(kid: &str, x: &[u8]) -> RawJwk {
        RawJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(x),
            kid: kid.into(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
            ..RawJwk::default()
        }
    }

    #[test]
    fn parses_okp_and_ec_keys_with_their_algorithms() {
        let ec = RawJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode([1u8; 32]),
            y: URL_SAFE_NO_PAD.encode([2u8; 32]),
            kid: "ec".into(),
            alg: String::new(),
            ..RawJwk::default()
        };
        let keys = key_set(vec![okp("ed", &[7; 32]), ec]).unwrap();
        assert_eq!(keys["ed"].algorithm, Algorithm::EdDSA);
        assert_eq!(keys["ec"].algorithm, Algorithm::ES256);
    }

    #[test]
    fn skips_unusable_keys_and_refuses_an_empty_set() {
        let short = okp("short", &[7; 31]);
        let mut wrong_alg = okp("hs", &[7; 32]);
        wrong_alg.alg = "HS256".into();
        let mut enc = okp("enc", &[7; 32]);
        enc.use_ = "enc".into();
        let rsa = RawJwk {
            kty: "RSA".into(),
            kid: "rsa".into(),
            ..RawJwk::default()
        };
        let keys = key_set(vec![short, wrong_alg, enc, rsa, okp("good", &[7; 32])]).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["good"]);
        assert!(matches!(
            key_set(vec![okp("short", &[7; 31])]),
            Err(VerifyError::KeySource(_))
        ));
    }

    #[tokio::test]
    async fn tls_urls_need_tls_settings_and_https_jwks_needs_a_ca() {
        let grpc = JwksSource::grpc("https://tokenmint:50051");
        let Err(VerifyError::KeySource(message)) = Fetcher::new(&grpc, None, None) else {
            panic!("https:// without TLS settings must be refused");
        };
        assert!(message.contains(".tls("), "{message}");
        let tls = ClientTlsConfig::new().domain_name("tokenmint");
        assert!(Fetcher::new(&grpc, Some(&tls), None).is_ok());
        let plain = JwksSource::grpc("http://tokenmint:50051");
        let Err(VerifyError::KeySource(message)) = Fetcher::new(&plain, Some(&tls), None) else {
            panic!("TLS settings with an http:// endpoint must be refused");
        };
        assert!(message.contains("must be https://"), "{message}");
        let https = JwksSource::http("https://tokenmint/.well-known/jwks.json");
        let Err(VerifyError::KeySource(message)) = Fetcher::new(&https, None, None) else {
            panic!("https:// without a CA must be refused");
        };
        assert!(message.contains(".jwks_ca("), "{message}");
        let not_pem = Certificate::from_pem("not a certificate");
        let Err(VerifyError::KeySource(message)) = Fetcher::new(&https, None, Some(&not_pem))
        else {
            panic!("a CA without a certificate must be refused");
        };
        assert!(message.contains("no certificate"), "{message}");
        let http = JwksSource::http("http://tokenmint/.well-known/jwks.json");
        let Err(VerifyError::KeySource(message)) = Fetcher::new(&http, None, Some(&not_pem)) else {
            panic!("a JWKS CA with an http:// URL must be refused");
        };
        assert!(message.contains("must be https://"), "{message}");
        assert!(Fetcher::new(&http, None, None).is_ok());
    }
}
