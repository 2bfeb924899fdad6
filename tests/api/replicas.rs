//! Two servers on one database (replicas): a token minted on one verifies on the other, and
//! lifecycle changes, caller revocations and key rotations made elsewhere reach every server
//! through the change feed within 2 s (the poll interval in tests is 100 ms).

use std::time::Duration;

use tokenmint::proto::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{TestApp, assert_error, authed, claims_of, error_meta, eventually, header_of};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The user of the caller token, and owner of every token minted here.
const USER: &str = "svc";

/// How long a change made on one server may take to reach the other.
const PROPAGATION: Duration = Duration::from_secs(2);

/// Two servers on one database, a client for each and a `user_manage` + `token_introspect` caller.
struct Replicas {
    a: TestApp,
    b: TestApp,
    client_a: Client,
    client_b: Client,
    caller: String,
}

impl Replicas {
    async fn start() -> Self {
        let a = TestApp::spawn().await;
        let b = TestApp::spawn_on(a.db.clone(), |_| {}).await;
        let caller = a.manager(USER).await;
        let client_a = a.client().await;
        let client_b = b.client().await;
        Self { a, b, client_a, client_b, caller }
    }
}

/// Mints a `wallet_view` token through CreateToken.
async fn mint(client: &Client, caller: &str) -> pb::CreateTokenResponse {
    let request = pb::CreateTokenRequest {
        label: "replica test".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    client.clone().create_token(authed(caller, request)).await.expect("CreateToken").into_inner()
}

/// VerifyToken without client address or required scopes.
async fn verify(client: &Client, caller: &str, token: &str) -> pb::VerifyTokenResponse {
    let request = pb::VerifyTokenRequest { token: token.into(), ..Default::default() };
    client.clone().verify_token(authed(caller, request)).await.expect("VerifyToken").into_inner()
}

/// Polls VerifyToken on `client` until it answers with `reason` (UNSPECIFIED: active), for at most
/// [`PROPAGATION`].
async fn verify_until(
    client: &Client,
    caller: &str,
    token: &str,
    reason: pb::InactiveReason,
) -> Option<pb::VerifyTokenResponse> {
    eventually(PROPAGATION, move || async move {
        let response = verify(client, caller, token).await;
        (response.reason == reason as i32).then_some(response)
    })
    .await
}

/// The id of a CreateToken response.
fn id_of(minted: &pb::CreateTokenResponse) -> String {
    minted.token.as_ref().expect("token metadata").id.clone()
}

/// The `kid` header of a JWT.
fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("kid header").to_owned()
}

#[tokio::test]
async fn token_minted_on_one_replica_verifies_on_the_other() {
    let r = Replicas::start().await;
    assert_ne!(r.a.addr, r.b.addr, "two separate servers");
    let minted = mint(&r.client_a, &r.caller).await;

    let response = verify(&r.client_b, &r.caller, &minted.raw_token).await;

    assert!(response.active, "B verifies A's token, reason {}", response.reason);
    let token = response.token.expect("token metadata");
    assert_eq!(token.id, id_of(&minted));
    assert_eq!(token.user_id, USER);
}

#[tokio::test]
async fn revocation_on_one_replica_reaches_the_other() {
    let r = Replicas::start().await;
    let minted = mint(&r.client_a, &r.caller).await;
    assert!(verify(&r.client_a, &r.caller, &minted.raw_token).await.active, "active on A before");
    assert!(verify(&r.client_b, &r.caller, &minted.raw_token).await.active, "active on B before");

    let request = pb::RevokeTokenRequest { id: id_of(&minted) };
    r.client_b.clone().revoke_token(authed(&r.caller, request)).await.expect("RevokeToken on B");

    let seen = verify_until(&r.client_a, &r.caller, &minted.raw_token, pb::InactiveReason::Revoked).await;
    let response = seen.expect("A reports REVOKED within 2 s of the revocation on B");
    assert!(!response.active);
    assert!(response.token.is_none());
}

#[tokio::test]
async fn suspension_and_activation_on_one_replica_reach_the_other() {
    let r = Replicas::start().await;
    let minted = mint(&r.client_a, &r.caller).await;
    let id = id_of(&minted);
    assert!(verify(&r.client_a, &r.caller, &minted.raw_token).await.active, "active on A before");

    let request = pb::SuspendTokenRequest { id: id.clone() };
    r.client_b.clone().suspend_token(authed(&r.caller, request)).await.expect("SuspendToken on B");
    let suspended = verify_until(&r.client_a, &r.caller, &minted.raw_token, pb::InactiveReason::Suspended).await;
    assert!(suspended.is_some(), "A reports SUSPENDED within 2 s of the suspension on B");

    let request = pb::ActivateTokenRequest { id };
    r.client_b.clone().activate_token(authed(&r.caller, request)).await.expect("ActivateToken on B");
    let active = verify_until(&r.client_a, &r.caller, &minted.raw_token, pb::InactiveReason::Unspecified).await;
    let response = active.expect("A reports the token active again within 2 s of the activation on B");
    assert!(response.active);
    assert_eq!(response.token.expect("token metadata").status, pb::TokenStatus::Active as i32);
}

#[tokio::test]
async fn deletion_on_one_replica_reaches_the_other() {
    let r = Replicas::start().await;
    let minted = mint(&r.client_a, &r.caller).await;
    assert!(verify(&r.client_a, &r.caller, &minted.raw_token).await.active, "active on A before");

    let request = pb::DeleteTokenRequest { id: id_of(&minted) };
    r.client_b.clone().delete_token(authed(&r.caller, request)).await.expect("DeleteToken on B");

    let seen = verify_until(&r.client_a, &r.caller, &minted.raw_token, pb::InactiveReason::UnknownToken).await;
    assert!(seen.is_some(), "A reports UNKNOWN_TOKEN within 2 s of the deletion on B");
}

#[tokio::test]
async fn caller_token_revoked_on_one_replica_is_refused_by_the_other() {
    let r = Replicas::start().await;
    let own_id = claims_of(&r.caller)["jti"].as_str().expect("jti").to_owned();
    let request = pb::ListTokensRequest::default();
    r.client_a.clone().list_tokens(authed(&r.caller, request)).await.expect("A accepts the caller before");

    let request = pb::RevokeTokenRequest { id: own_id };
    r.client_b.clone().revoke_token(authed(&r.caller, request)).await.expect("the caller revokes itself on B");

    let (client, caller) = (&r.client_a, r.caller.as_str());
    let status = eventually(PROPAGATION, move || async move {
        let request = pb::ListTokensRequest::default();
        client.clone().list_tokens(authed(caller, request)).await.err().filter(|s| s.code() == Code::Unauthenticated)
    })
    .await
    .expect("A refuses the revoked caller within 2 s");
    assert_error(&status, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_eq!(error_meta(&status, "inactive_reason").as_deref(), Some("REVOKED"));
}

#[tokio::test]
async fn key_rotation_through_the_cli_reaches_every_replica() {
    let r = Replicas::start().await;
    let old_kid = kid_of(&r.caller);

    let new_kid = tokenmint::cli::rotate_keys(&r.a.settings).await.expect("rotate keys");
    assert_ne!(new_kid, old_kid);

    let caller = r.caller.as_str();
    for (name, client) in [("A", &r.client_a), ("B", &r.client_b)] {
        let kid = new_kid.as_str();
        let minted = eventually(PROPAGATION, move || async move {
            let minted = mint(client, caller).await;
            (kid_of(&minted.raw_token) == kid).then_some(minted)
        })
        .await;
        assert!(minted.is_some(), "{name} signs with the new kid {new_kid} within 2 s of the rotation");
    }
    // Tokens of the retired key keep verifying on both.
    let signed_before_rotation = caller;
    for (name, client) in [("A", &r.client_a), ("B", &r.client_b)] {
        let response = verify(client, caller, signed_before_rotation).await;
        assert!(response.active, "{name} still verifies a token of the retired key, reason {}", response.reason);
    }
}
