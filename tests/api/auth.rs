//! Caller authentication and authorization: the `authorization: Bearer` metadata, the scope a
//! token-management RPC needs, callers whose token was revoked, suspended or deleted, IP-restricted
//! callers, the unauthenticated GetJwks, ListScopes, and request ids.

use std::collections::HashSet;

use tokenmint::proto::v1 as pb;
use tokenmint::proto::v1::token_service_client::TokenServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::helpers::{TestApp, assert_error, authed, claims_of, error_meta, header_of};

type Client = TokenServiceClient<Channel>;

/// Scopes of a caller that holds everything except `user_manage`.
const NOT_A_MANAGER: &[&str] = &[
    "token_introspect",
    "wallet_view",
    "wallet_spend",
    "trade_view",
];

/// The response metadata key carrying the request id.
const REQUEST_ID: &str = "x-request-id";

/// A request whose `authorization` metadata is exactly `value`.
fn with_authorization<T>(value: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", value.parse().expect("ascii metadata"));
    request
}

/// `request` with `x-request-id: id`.
fn with_request_id<T>(mut request: Request<T>, id: &str) -> Request<T> {
    request
        .metadata_mut()
        .insert(REQUEST_ID, id.parse().expect("ascii metadata"));
    request
}

/// ListTokens as the bearer of `caller`.
async fn list_tokens(client: &mut Client, caller: &str) -> Result<pb::ListTokensResponse, Status> {
    Ok(client
        .list_tokens(authed(caller, pb::ListTokensRequest::default()))
        .await?
        .into_inner())
}

/// The id of a raw (caller) token.
fn token_id(raw: &str) -> String {
    claims_of(raw)["jti"]
        .as_str()
        .expect("jti claim")
        .to_owned()
}

/// Asserts `status` is UNAUTHENTICATED INVALID_CREDENTIALS because the token is `inactive_reason`.
#[track_caller]
fn assert_invalid_credentials(status: &Status, inactive_reason: &str) {
    assert_error(status, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_eq!(
        error_meta(status, "inactive_reason").as_deref(),
        Some(inactive_reason)
    );
}

/// The `x-request-id` of response or status metadata.
fn request_id_of(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn call_without_authorization_is_credentials_missing() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;

    let err = client
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .expect_err("no credentials");
    assert_error(&err, Code::Unauthenticated, "CREDENTIALS_MISSING");
}

#[tokio::test]
async fn non_bearer_authorization_is_credentials_missing() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;

    let request = with_authorization("Basic xyz", pb::ListTokensRequest::default());
    let err = client
        .list_tokens(request)
        .await
        .expect_err("Basic is not a bearer token");
    assert_error(&err, Code::Unauthenticated, "CREDENTIALS_MISSING");
}

#[tokio::test]
async fn garbage_bearer_token_is_invalid_credentials_malformed() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;

    let err = list_tokens(&mut client, "garbage")
        .await
        .expect_err("not a JWT");
    assert_invalid_credentials(&err, "MALFORMED");
}

#[tokio::test]
async fn create_token_without_user_manage_is_missing_scope() {
    let app = TestApp::spawn().await;
    let caller = app.bootstrap("alice", NOT_A_MANAGER).await;
    let mut client = app.client().await;

    let request = pb::CreateTokenRequest {
        label: "not allowed".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let err = client
        .create_token(authed(&caller, request))
        .await
        .expect_err("needs user_manage");
    assert_error(&err, Code::PermissionDenied, "MISSING_SCOPE");
    assert_eq!(
        error_meta(&err, "required_scope").as_deref(),
        Some("user_manage")
    );
}

#[tokio::test]
async fn get_token_without_user_manage_is_missing_scope() {
    let app = TestApp::spawn().await;
    let caller = app.bootstrap("alice", NOT_A_MANAGER).await;
    let mut client = app.client().await;

    let request = pb::GetTokenRequest {
        id: token_id(&caller),
    };
    let err = client
        .get_token(authed(&caller, request))
        .await
        .expect_err("needs user_manage");
    assert_error(&err, Code::PermissionDenied, "MISSING_SCOPE");
    assert_eq!(
        error_meta(&err, "required_scope").as_deref(),
        Some("user_manage")
    );
}

#[tokio::test]
async fn list_tokens_without_user_manage_is_missing_scope() {
    let app = TestApp::spawn().await;
    let caller = app.bootstrap("alice", NOT_A_MANAGER).await;
    let mut client = app.client().await;

    let err = list_tokens(&mut client, &caller)
        .await
        .expect_err("needs user_manage");
    assert_error(&err, Code::PermissionDenied, "MISSING_SCOPE");
    assert_eq!(
        error_meta(&err, "required_scope").as_deref(),
        Some("user_manage")
    );
}

#[tokio::test]
async fn revoked_caller_is_invalid_credentials_revoked() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let other = app.manager("alice").await;
    let mut client = app.client().await;
    list_tokens(&mut client, &caller)
        .await
        .expect("the caller works before revocation");

    let revoke = pb::RevokeTokenRequest {
        id: token_id(&caller),
        cascade: false,
    };
    client
        .revoke_token(authed(&other, revoke))
        .await
        .expect("RevokeToken");

    let err = list_tokens(&mut client, &caller)
        .await
        .expect_err("a revoked caller is refused");
    assert_invalid_credentials(&err, "REVOKED");
}

#[tokio::test]
async fn suspended_caller_is_invalid_credentials_suspended() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let other = app.manager("alice").await;
    let mut client = app.client().await;

    let suspend = pb::SuspendTokenRequest {
        id: token_id(&caller),
    };
    client
        .suspend_token(authed(&other, suspend))
        .await
        .expect("SuspendToken");

    let err = list_tokens(&mut client, &caller)
        .await
        .expect_err("a suspended caller is refused");
    assert_invalid_credentials(&err, "SUSPENDED");
}

#[tokio::test]
async fn suspended_caller_works_again_after_activation() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let other = app.manager("alice").await;
    let mut client = app.client().await;
    let suspend = pb::SuspendTokenRequest {
        id: token_id(&caller),
    };
    client
        .suspend_token(authed(&other, suspend))
        .await
        .expect("SuspendToken");
    list_tokens(&mut client, &caller)
        .await
        .expect_err("refused while suspended");

    let activate = pb::ActivateTokenRequest {
        id: token_id(&caller),
    };
    client
        .activate_token(authed(&other, activate))
        .await
        .expect("ActivateToken");

    list_tokens(&mut client, &caller)
        .await
        .expect("the caller works again after activation");
}

#[tokio::test]
async fn deleted_caller_is_invalid_credentials_unknown_token() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let other = app.manager("alice").await;
    let mut client = app.client().await;

    let delete = pb::DeleteTokenRequest {
        id: token_id(&caller),
    };
    client
        .delete_token(authed(&other, delete))
        .await
        .expect("DeleteToken");

    let err = list_tokens(&mut client, &caller)
        .await
        .expect_err("a deleted caller is refused");
    assert_invalid_credentials(&err, "UNKNOWN_TOKEN");
}

#[tokio::test]
async fn caller_restricted_to_other_addresses_is_ip_not_allowed() {
    let app = TestApp::spawn().await;
    let manager_scopes = ["user_manage", "token_introspect"];
    let caller = app
        .bootstrap_with("alice", &manager_scopes, |r| {
            r.ips = vec!["10.0.0.0/8".into()]
        })
        .await;
    let mut client = app.client().await;

    let err = list_tokens(&mut client, &caller)
        .await
        .expect_err("127.0.0.1 is outside 10.0.0.0/8");
    assert_error(&err, Code::PermissionDenied, "IP_NOT_ALLOWED");
    assert_eq!(error_meta(&err, "peer_ip").as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn caller_restricted_to_its_own_address_is_allowed() {
    let app = TestApp::spawn().await;
    let manager_scopes = ["user_manage", "token_introspect"];
    let caller = app
        .bootstrap_with("alice", &manager_scopes, |r| {
            r.ips = vec!["127.0.0.1".into()]
        })
        .await;
    let mut client = app.client().await;

    let page = list_tokens(&mut client, &caller)
        .await
        .expect("127.0.0.1 is allowed");
    assert_eq!(page.tokens.len(), 1, "the caller sees its own token");
    assert_eq!(page.tokens[0].ip_restrict, ["127.0.0.1/32"]);
}

#[tokio::test]
async fn get_jwks_needs_no_authorization_and_lists_the_signing_key() {
    let app = TestApp::spawn().await;
    let signed = app.manager("alice").await;
    let mut client = app.client().await;

    let jwks = client
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("GetJwks without credentials")
        .into_inner();
    assert!(
        !jwks.keys.is_empty(),
        "at least the signing key is published"
    );
    for key in &jwks.keys {
        assert!(
            !key.kid.is_empty() && !key.x.is_empty(),
            "key {key:?} is complete"
        );
        assert_eq!(key.r#use, "sig");
    }
    let kid = header_of(&signed)["kid"]
        .as_str()
        .expect("kid header")
        .to_owned();
    assert!(
        jwks.keys.iter().any(|k| k.kid == kid),
        "the key that signed tokens ({kid}) is published"
    );
}

#[tokio::test]
async fn list_scopes_with_any_valid_token_returns_the_catalog() {
    let app = TestApp::spawn().await;
    let caller = app.bootstrap("alice", &["wallet_view"]).await;
    let mut client = app.client().await;

    let response = client
        .list_scopes(authed(&caller, pb::ListScopesRequest {}))
        .await
        .expect("ListScopes");
    let scopes = response.into_inner().scopes;
    let names: HashSet<&str> = scopes.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), scopes.len(), "scope names are unique");
    let deprecated = |name: &str| scopes.iter().find(|s| s.name == name).map(|s| s.deprecated);
    assert_eq!(deprecated("user_manage"), Some(false));
    assert_eq!(deprecated("token_introspect"), Some(false));
    assert_eq!(deprecated("portfolio_view"), Some(true));
    assert!(
        scopes.iter().all(|s| !s.description.is_empty()),
        "every scope is described"
    );
}

#[tokio::test]
async fn list_scopes_without_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;

    let err = client
        .list_scopes(pb::ListScopesRequest {})
        .await
        .expect_err("ListScopes needs a token");
    assert_error(&err, Code::Unauthenticated, "CREDENTIALS_MISSING");
}

#[tokio::test]
async fn caller_request_id_is_echoed_in_response_metadata() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;

    let request = with_request_id(
        authed(&caller, pb::ListTokensRequest::default()),
        "req-echo-1",
    );
    let response = client.list_tokens(request).await.expect("ListTokens");
    assert_eq!(
        request_id_of(response.metadata()).as_deref(),
        Some("req-echo-1")
    );
}

#[tokio::test]
async fn caller_request_id_is_echoed_in_error_request_info() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;

    let request = with_request_id(Request::new(pb::ListTokensRequest::default()), "req-echo-2");
    let err = client
        .list_tokens(request)
        .await
        .expect_err("no credentials");
    assert_error(&err, Code::Unauthenticated, "CREDENTIALS_MISSING");
    let details = err.get_error_details();
    let info = details.request_info().expect("RequestInfo detail");
    assert_eq!(info.request_id, "req-echo-2");
    assert_eq!(
        request_id_of(err.metadata()).as_deref(),
        Some("req-echo-2"),
        "also in the response metadata"
    );
}

#[tokio::test]
async fn generated_request_id_is_returned_when_none_is_sent() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;

    let first = client
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("GetJwks");
    let second = client
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("GetJwks");
    let first = request_id_of(first.metadata()).expect("a generated x-request-id");
    let second = request_id_of(second.metadata()).expect("a generated x-request-id");
    assert!(!first.is_empty());
    assert_ne!(first, second, "each request gets its own id");
}

#[tokio::test]
async fn generated_request_id_of_an_error_matches_its_request_info() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;

    let err = client
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .expect_err("no credentials");
    let header = request_id_of(err.metadata()).expect("a generated x-request-id");
    let details = err.get_error_details();
    let info = details.request_info().expect("RequestInfo detail");
    assert!(!header.is_empty());
    assert_eq!(info.request_id, header);
}

#[tokio::test]
async fn unacceptable_request_id_is_replaced_by_a_generated_one() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;
    let too_long = "x".repeat(129);

    let request = with_request_id(Request::new(pb::GetJwksRequest {}), &too_long);
    let response = client.get_jwks(request).await.expect("GetJwks");
    let returned = request_id_of(response.metadata()).expect("an x-request-id");
    assert!(!returned.is_empty());
    assert_ne!(returned, too_long, "ids over 128 characters are not echoed");
}
