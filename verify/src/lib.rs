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
//! # Offline or online? And revocations
//!
//! A signature stays valid until the token expires: on its own, **offline verification cannot
//! see that a token was revoked, suspended or deleted** — it keeps accepting the token until
//! `exp` (tokenmint's default lifetime is 30 days). Two ways to see those changes:
//!
//! * [`VerifierBuilder::watch_revocations`] keeps verification offline and adds a view of
//!   revocations: tokenmint's change stream (`WatchTokenChanges`, scope `token_introspect`)
//!   pushes every suspend, activate, revoke and delete as it commits, and each token's entry in
//!   its Token Status List (IETF draft-ietf-oauth-status-list) covers what happened before the
//!   stream started. A revoke is refused here one stream round trip after tokenmint commits it
//!   (measured end to end in BENCHMARKS.md); while the stream is down, the lists alone see
//!   changes up to their `ttl` late (60 s by default) while they can be fetched, and up to
//!   their `exp` (600 s) when they cannot, and
//!   [`Verifier::revocation_health`] says so. Tokens minted before tokenmint published status
//!   lists have only the stream: one revoked before the verifier started is accepted (use
//!   [`OnlineVerifier`] while such tokens live). A token issued in the very second the stream started (or
//!   before), and newer than its list copy, is answered [`VerifyError::RevocationSource`]
//!   ("not known yet", retryable) until a newer list tells: it may have been revoked before the
//!   stream could report it.
//! * [`OnlineVerifier`] asks tokenmint (`TokenService/VerifyToken`) and caches each answer for a
//!   short `ttl`, at the cost of one RPC per distinct token (and client address) per `ttl`, and
//!   of depending on tokenmint being reachable; it also sees what a token cannot carry, such as
//!   its owner losing access. [`RequireToken::online`] verifies offline first (forged and
//!   expired tokens never cost an RPC), then online.
//!
//! A [`Verifier`] caches the tokens that verified (by their full text, [`VerifierBuilder::cache_capacity`]):
//! a repeated token costs a hash and a lookup; its time and revocation checks run every time.
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

mod change_watch;
mod claims;
mod error;
mod jwks;
mod jwks_http;
mod layer;
mod online;
mod proto;
mod revocation;
mod verifier;

pub use claims::{ALL_SCOPES, Claims, StatusListEntry};
pub use error::VerifyError;
pub use jwks::JwksSource;
pub use layer::{RequireToken, RequireTokenService, ResponseFuture};
pub use online::{OnlineVerifier, OnlineVerifierBuilder};
pub use revocation::RevocationHealth;
/// TLS settings for `https://` sources and endpoints (tonic's, re-exported).
pub use tonic::transport::{Certificate, ClientTlsConfig, Identity};
pub use verifier::{Verifier, VerifierBuilder};
