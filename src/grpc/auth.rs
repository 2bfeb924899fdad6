//! Caller authentication for RPCs: the `authorization: Bearer <token>` metadata, checked by the
//! core (cached signature, expiry, deny list, the token's IP restriction against the peer
//! address, and its stored row through the metadata cache).

use crate::error::{Error, ErrorCode, Result, reason};
use crate::issuance::{Authenticator, Caller};

/// Authenticates the caller of `request` and checks it holds `scope` (or `all`).
pub async fn caller_with_scope<T>(
    authenticator: &Authenticator,
    request: &tonic::Request<T>,
    scope: &str,
) -> Result<Caller> {
    let caller = caller(authenticator, request).await?;
    caller.require_scope(scope)?;
    Ok(caller)
}

/// Authenticates the caller of `request`.
pub async fn caller<T>(
    authenticator: &Authenticator,
    request: &tonic::Request<T>,
) -> Result<Caller> {
    let header = request.metadata().get("authorization").ok_or_else(|| {
        Error::new(
            ErrorCode::Unauthenticated,
            reason::CREDENTIALS_MISSING,
            "missing `authorization: Bearer <token>` metadata",
        )
    })?;
    let value = header.to_str().ok().unwrap_or_default();
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    let token = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
        .map(|_| value[7..].trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorCode::Unauthenticated,
                reason::CREDENTIALS_MISSING,
                "the authorization metadata must be `Bearer <token>`",
            )
        })?;
    let peer = request
        .remote_addr()
        .map(|a| crate::domain::ip::canonical(a.ip()));
    let caller = authenticator.authenticate(token, peer).await?;
    crate::grpc::observe::record_user(&caller.user_id);
    Ok(caller)
}
