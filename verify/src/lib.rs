//! Verifies access tokens minted by tokenmint (the token service of this workspace) in the
//! services that consume them.
//!
//! tokenmint signs RFC 9068 access tokens (JWTs, Ed25519 by default, ES256 optionally) and
//! publishes its public keys as a JWK Set, both over gRPC (`TokenService/GetJwks`) and over HTTP
//! (`GET /.well-known/jwks.json` on the same port). This crate offers three ways to check them:
//!
//! * [`Verifier`] — **offline**: fetches the keys once (then every `refresh_interval`, and again
//!   when a token names an unknown `kid`, at most once per `min_refresh_interval`) and verifies
//!   each token locally: form, key, algorithm (the key's own; never `none`, never HMAC),
//!   signature, `typ`, `iss`, `aud`, `nbf`/`exp`. No network call per token. These steps and the
//!   meaning of every claim (IP networks included) come from `tokenmint-jwt`, the code the
//!   server itself verifies with, so the two cannot disagree about a token's form.
//! * [`OnlineVerifier`] — **online**: asks tokenmint (`TokenService/VerifyToken`, with a caller
//!   token holding `token_introspect`) and caches each answer for a short `ttl`.
//! * [`RequireToken`] — a tower [`Layer`](tower::Layer) for tonic servers and any `http`
//!   service: refuses requests without a valid bearer token and hands the [`Claims`] to the
//!   handler in the request extensions.
//!
//! # Offline or online?
//!
//! A signature stays valid until the token expires: **offline verification cannot see that a
//! token was revoked, suspended or deleted**, nor that its owner lost access — it keeps accepting
//! the token until `exp` (tokenmint's default lifetime is 30 days). Online verification sees
//! those changes within its cache `ttl`, at the cost of one `VerifyToken` RPC per distinct token
//! (and client address) per `ttl`, and of depending on tokenmint being reachable. A common
//! middle ground is both: [`RequireToken::online`] verifies offline first (forged and expired
//! tokens never cost an RPC), then online.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use tokenmint_verify::{JwksSource, Verifier, VerifyError};
//!
//! # async fn run(token: &str) -> Result<(), VerifyError> {
//! let verifier = Verifier::builder(JwksSource::grpc("http://127.0.0.1:50051"))
//!     .issuer("tokenmint")
//!     .audience("tokenmint")
//!     .leeway(Duration::from_secs(5))
//!     .refresh_interval(Duration::from_secs(300))
//!     .build()
//!     .await?;
//!
//! let client_ip = "10.1.2.3".parse().ok();
//! match verifier.verify_for(token, &["wallet_view"], client_ip).await {
//!     Ok(claims) => println!("token {} acts for {}", claims.jti, claims.sub),
//!     Err(error) => println!("refused: {}", error.as_str()),
//! }
//! # Ok(()) }
//! ```
//!
//! In a tonic server, put [`RequireToken`] in front of the services and read the claims in a
//! handler with `request.extensions().get::<tokenmint_verify::Claims>()`.
//!
//! # Transport
//!
//! The gRPC key source and the online verifier speak `http://` (h2c) or, given a
//! [`ClientTlsConfig`] with `.tls(…)`, `https://` — with a client certificate for a tokenmint that
//! requires mutual TLS, as production ones do. The HTTP JWKS source speaks HTTP/1.1 over `http://`,
//! or over `https://` trusting the CA given with [`VerifierBuilder::jwks_ca`] (it presents no
//! client certificate).

#![warn(missing_docs)]

mod claims;
mod error;
mod jwks;
mod jwks_http;
mod layer;
mod online;
mod proto;
mod verifier;

pub use claims::{ALL_SCOPES, Claims};
pub use error::VerifyError;
pub use jwks::JwksSource;
pub use layer::{RequireToken, RequireTokenService, ResponseFuture};
pub use online::{OnlineVerifier, OnlineVerifierBuilder};
/// TLS settings for `https://` sources and endpoints (tonic's, re-exported).
pub use tonic::transport::{Certificate, ClientTlsConfig, Identity};
pub use verifier::{Verifier, VerifierBuilder};
