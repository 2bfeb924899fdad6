//! tokenmint's access-token format, written once for every party that reads or writes it: the
//! server that mints and verifies tokens (`tokenmint`) and the services that verify them offline
//! (`tokenmint-verify`).
//!
//! A token is a compact JWS (RFC 7515) whose claims follow the JWT access-token profile
//! (RFC 9068) plus tokenmint's own (`adm`, `ent`, `tpl`, `ips`). Verification is a fixed
//! sequence of steps, each here once, that a verifier composes around its own key lookup:
//!
//! 1. [`Compact::parse`]: exactly three base64url parts and a JSON header;
//! 2. [`Compact::kid`], then the verifier finds that key (its own business: a key ring in the
//!    server, a JWKS cache with refresh in `tokenmint-verify`);
//! 3. [`Compact::verify_with`]: the header's `alg` is the key's, the signature verifies; the
//!    decoded payload comes back;
//! 4. [`Claims::from_payload`]: the claims, every required one present and each id well formed
//!    ([`ids`]);
//! 5. [`Policy::check_claims`] (`typ`, `iss`, `aud`) and [`Policy::check_time`] (`nbf`, `exp`).
//!
//! Every step fails with a [`JwtError`] that each verifier maps to its own reason type. The
//! signature itself is checked by the key ([`VerifyingKey`]), so this crate has no cryptography
//! of its own. IP restrictions ([`ip`]) are parsed and matched here too, so that a network means
//! the same thing to the server and to every offline verifier.

mod claims;
mod compact;
mod error;
pub mod ids;
pub mod ip;
#[cfg(feature = "jsonwebtoken")]
pub mod jsonwebtoken_provider;
mod policy;
pub mod status_list;

pub use claims::{Audience, Claims, StatusClaim, StatusListReference};
pub use compact::{Compact, Header, VerifyingKey};
pub use error::JwtError;
pub use policy::{ACCESS_TOKEN_TYP, Policy, is_access_token_typ};
