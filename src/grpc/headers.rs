//! Response metadata shared by handlers.

use tonic::Response;

/// Response header listing the deprecated scopes a new or changed token or template carries.
pub const DEPRECATED_SCOPES: &str = "x-deprecated-scopes";

/// Adds `x-deprecated-scopes: a,b` to `response` when `scopes` is not empty.
pub fn announce_deprecated_scopes<T>(response: &mut Response<T>, scopes: &[String]) {
    if !scopes.is_empty()
        && let Ok(value) = scopes.join(",").parse()
    {
        response.metadata_mut().insert(DEPRECATED_SCOPES, value);
    }
}
