//! A tower layer that requires a valid tokenmint bearer token on every request, for tonic servers
//! (`Server::builder().layer(...)`) and any `http` service (axum, hyper).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::claims::Claims;
use crate::error::VerifyError;
use crate::online::OnlineVerifier;
use crate::verifier::Verifier;

/// Finds the client address of a request.
type ClientIpFn = dyn Fn(&Parts) -> Option<IpAddr> + Send + Sync;

/// A [`Layer`] that lets a request through only with a valid `authorization: Bearer <token>`
/// minted by tokenmint, and puts the token's [`Claims`] into the request's extensions.
///
/// ```no_run
/// # async fn run(verifier: tokenmint_verify::Verifier) -> Result<(), Box<dyn std::error::Error>> {
/// use tokenmint_verify::RequireToken;
///
/// # let service = tonic_health::server::health_reporter().1;
/// tonic::transport::Server::builder()
///     .layer(RequireToken::new(verifier).scopes(&["wallet_view"]))
///     .add_service(service)
///     .serve("127.0.0.1:50052".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
///
/// A tonic handler reads the claims with `request.extensions().get::<tokenmint_verify::Claims>()`;
/// an axum handler with `Extension<tokenmint_verify::Claims>`.
///
/// Each request is checked with [`Verifier::verify_for`] (the required scopes, and the client
/// address against the token's IP restriction), then — if configured with
/// [`online`](Self::online) — with [`OnlineVerifier::verify`] to catch revoked, suspended and
/// deleted tokens. A refused request never reaches the inner service. The answer depends on the
/// request's `content-type`: for `application/grpc*` a gRPC status (HTTP 200 with `grpc-status`
/// and `grpc-message` headers), otherwise an HTTP status with a `www-authenticate` header
/// (RFC 6750) and an empty body:
///
/// | why | gRPC | HTTP |
/// |---|---|---|
/// | no or unreadable bearer token; invalid, expired, revoked… token | `UNAUTHENTICATED` | 401 |
/// | token lacks a required scope; client address not allowed | `PERMISSION_DENIED` | 403 |
/// | keys or VerifyToken unavailable ([`VerifyError::is_unavailable`]) | `UNAVAILABLE` | 503 |
///
/// The message says which row applies, never the precise reason (tokenmint asks not to pass
/// reasons on to token presenters); the reason is logged at `debug` level.
///
/// The client address comes from tonic's `TcpConnectInfo`/`TlsConnectInfo` (tonic servers) or a
/// [`SocketAddr`] request extension; behind a proxy, supply your own with
/// [`client_ip`](Self::client_ip). An IP-restricted token is refused when the address is unknown.
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct RequireToken {
    verifier: Verifier,
    online: Option<OnlineVerifier>,
    scopes: Arc<[String]>,
    client_ip: Arc<ClientIpFn>,
}

impl RequireToken {
    /// Requires a token that `verifier` accepts, with no particular scope.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            online: None,
            scopes: Arc::new([]),
            client_ip: Arc::new(peer_ip),
        }
    }

    /// Requires every one of `scopes` (a token with `all` has them all).
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Also asks tokenmint (through `online`'s cache) whether the token is still active.
    pub fn online(mut self, online: OnlineVerifier) -> Self {
        self.online = Some(online);
        self
    }

    /// Finds the client address with `find` instead of the connection's peer address (e.g. from
    /// a header your trusted proxy sets). `None` means unknown.
    pub fn client_ip<F>(mut self, find: F) -> Self
    where
        F: Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.client_ip = Arc::new(find);
        self
    }

    /// Verifies the bearer token of a request.
    async fn authenticate(&self, parts: &Parts) -> Result<Claims, Refusal> {
        let token = bearer_token(&parts.headers).ok_or(Refusal::NoToken)?;
        let client_ip = (self.client_ip)(parts);
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let claims = self
            .verifier
            .verify_for(token, &scopes, client_ip)
            .await
            .map_err(Refusal::Token)?;
        if let Some(online) = &self.online {
            online
                .verify(token, client_ip)
                .await
                .map_err(Refusal::Token)?;
        }
        Ok(claims)
    }
}

impl fmt::Debug for RequireToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireToken")
            .field("verifier", &self.verifier)
            .field("online", &self.online)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            config: self.clone(),
        }
    }
}

/// The service made by [`RequireToken`]: checks the bearer token, then calls the inner service
/// with the [`Claims`] in the request's extensions.
#[derive(Clone)]
pub struct RequireTokenService<S> {
    inner: S,
    config: RequireToken,
}

impl<S: fmt::Debug> fmt::Debug for RequireTokenService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireTokenService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// The future of [`RequireTokenService`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireTokenService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request; a fresh clone waits for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let config = self.config.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match config.authenticate(&parts).await {
                Ok(claims) => {
                    parts.extensions.insert(claims);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(refusal) => {
                    if let Refusal::Token(error) = &refusal {
                        tracing::debug!(reason = error.as_str(), "bearer token refused");
                    } else {
                        tracing::debug!("no bearer token");
                    }
                    Ok(refusal.into_response(is_grpc(&parts.headers), &config.scopes))
                }
            }
        })
    }
}

/// Why a request is refused.
enum Refusal {
    /// No usable `authorization: Bearer` header.
    NoToken,
    /// The token was refused, or could not be checked.
    Token(VerifyError),
}

impl Refusal {
    /// The response for a gRPC (`grpc`) or plain HTTP request.
    fn into_response<B: Default>(self, grpc: bool, scopes: &[String]) -> Response<B> {
        let (code, status, message, challenge) = match &self {
            Self::NoToken => (
                tonic::Code::Unauthenticated,
                StatusCode::UNAUTHORIZED,
                "missing bearer token",
                "Bearer".to_owned(),
            ),
            Self::Token(error) if error.is_unavailable() => (
                tonic::Code::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot verify the bearer token right now",
                String::new(),
            ),
            Self::Token(VerifyError::InsufficientScope) => (
                tonic::Code::PermissionDenied,
                StatusCode::FORBIDDEN,
                "the bearer token lacks a required scope",
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                    scopes.join(" ")
                ),
            ),
            Self::Token(VerifyError::IpNotAllowed) => (
                tonic::Code::PermissionDenied,
                StatusCode::FORBIDDEN,
                "the bearer token may not be used from this address",
                "Bearer error=\"insufficient_scope\"".to_owned(),
            ),
            Self::Token(_) => (
                tonic::Code::Unauthenticated,
                StatusCode::UNAUTHORIZED,
                "invalid bearer token",
                "Bearer error=\"invalid_token\"".to_owned(),
            ),
        };
        if grpc {
            return tonic::Status::new(code, message).into_http();
        }
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        if let Ok(value) = HeaderValue::from_str(&challenge)
            && !challenge.is_empty()
        {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The token of `authorization: Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether the request is gRPC (`application/grpc`, `application/grpc+proto`, …).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The peer address: tonic's `TcpConnectInfo` (plaintext) or `TlsConnectInfo` (TLS), else a
/// plain [`SocketAddr`] extension.
fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    let extensions = &parts.extensions;
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|tls| tls.get_ref().remote_addr())
        })
        .or_else(|| extensions.get::<SocketAddr>().copied())
        .map(|addr| addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn reads_bearer_tokens() {
        let token = |v| bearer_token(&headers(&[("authorization", v)])).map(str::to_owned);
        assert_eq!(token("Bearer abc"), Some("abc".into()));
        assert_eq!(token("bearer  abc "), Some("abc".into()));
        assert_eq!(token("BEARER abc"), Some("abc".into()));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn grpc_refusals_are_trailers_only_statuses() {
        let response: Response<String> =
            Refusal::Token(VerifyError::Expired).into_response(true, &[]);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(
            response.headers()["grpc-message"],
            "invalid%20bearer%20token"
        );
    }

    #[test]
    fn http_refusals_carry_a_challenge() {
        let scopes = ["wallet_view".to_owned()];
        let response: Response<String> =
            Refusal::Token(VerifyError::InsufficientScope).into_response(false, &scopes);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"insufficient_scope\", scope=\"wallet_view\""
        );
        let response: Response<String> = Refusal::NoToken.into_response(false, &scopes);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let response: Response<String> =
            Refusal::Token(VerifyError::KeySource("down".into())).into_response(false, &scopes);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get("www-authenticate").is_none());
    }
}
