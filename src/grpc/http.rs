//! Plain HTTP routes on the gRPC port: `GET /.well-known/jwks.json` for ordinary JWT libraries,
//! and a fallback that answers unknown gRPC methods with `grpc-status: 12` (UNIMPLEMENTED).

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::issuance::keys::KeyManager;

/// The HTTP router sharing the gRPC port.
pub fn router(keys: Arc<KeyManager>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(move || jwks(keys.clone())))
        .fallback(fallback)
}

async fn jwks(keys: Arc<KeyManager>) -> Response {
    let ring = keys.ring();
    let document = serde_json::json!({ "keys": ring.verifying_keys().map(|k| k.to_jwk()).collect::<Vec<_>>() });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            ),
        ],
        document.to_string(),
    )
        .into_response()
}

async fn fallback(headers: HeaderMap) -> Response {
    let is_grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                ),
                (
                    header::HeaderName::from_static("grpc-status"),
                    HeaderValue::from_static("12"),
                ),
                (
                    header::HeaderName::from_static("grpc-message"),
                    HeaderValue::from_static("unknown%20method"),
                ),
            ],
        )
            .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
