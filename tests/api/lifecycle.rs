//! Token lifecycle: SuspendToken, ActivateToken, RevokeToken and DeleteToken — the allowed
//! transitions and the `available_actions` they leave, the refused ones (FAILED_PRECONDITION
//! INVALID_TRANSITION, token unchanged), expiry, deletion, the "at least as strong" rule for
//! activation, ownership and malformed ids.

use std::time::Duration;

use tokenmint::proto::v1 as pb;
use tokenmint::proto::v1::token_service_client::TokenServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{
    DatabaseLock, TestApp, assert_error, authed, bad_fields, error_meta, eventually,
};

type Client = TokenServiceClient<Channel>;

/// What an active token allows.
const ACTIVE_ACTIONS: pb::AvailableActions = pb::AvailableActions {
    activate: false,
    suspend: true,
    revoke: true,
    delete: true,
};
/// What a suspended token allows.
const SUSPENDED_ACTIONS: pb::AvailableActions = pb::AvailableActions {
    activate: true,
    suspend: false,
    revoke: true,
    delete: true,
};
/// What a revoked or expired token allows: deletion only.
const FINAL_ACTIONS: pb::AvailableActions = pb::AvailableActions {
    activate: false,
    suspend: false,
    revoke: false,
    delete: true,
};

/// Scopes of the strong caller in the activation tests (which is also admin).
const STRONG_SCOPES: &[&str] = &["user_manage", "wallet_view", "trade_trade"];
/// Scopes of the weak caller in the activation tests (not admin).
const WEAK_SCOPES: &[&str] = &["user_manage", "wallet_view"];

/// A status-changing lifecycle RPC.
#[derive(Debug, Clone, Copy)]
enum Action {
    Suspend,
    Activate,
    Revoke,
}

impl Action {
    /// The name the service uses in error metadata.
    fn name(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Activate => "activate",
            Self::Revoke => "revoke",
        }
    }
}

/// Any RPC that addresses one token by id.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    Get,
    Update,
    Delete,
    Transition(Action),
}

/// Every id-addressed RPC.
const EVERY_RPC: [Rpc; 6] = [
    Rpc::Get,
    Rpc::Update,
    Rpc::Delete,
    Rpc::Transition(Action::Suspend),
    Rpc::Transition(Action::Activate),
    Rpc::Transition(Action::Revoke),
];

/// Sends `action` for token `id` as `caller`; the token the RPC returns.
async fn apply(
    client: &mut Client,
    caller: &str,
    action: Action,
    id: &str,
) -> Result<pb::Token, Status> {
    let id = id.to_owned();
    let token = match action {
        Action::Suspend => {
            let request = authed(caller, pb::SuspendTokenRequest { id });
            client.suspend_token(request).await?.into_inner().token
        }
        Action::Activate => {
            let request = authed(caller, pb::ActivateTokenRequest { id });
            client.activate_token(request).await?.into_inner().token
        }
        Action::Revoke => {
            let request = authed(caller, pb::RevokeTokenRequest { id, cascade: false });
            client.revoke_token(request).await?.into_inner().token
        }
    };
    Ok(token.expect("lifecycle responses carry the token"))
}

/// Sends `rpc` for token `id` as `caller`, discarding a successful response.
async fn call(client: &mut Client, caller: &str, rpc: Rpc, id: &str) -> Result<(), Status> {
    let id = id.to_owned();
    match rpc {
        Rpc::Get => client
            .get_token(authed(caller, pb::GetTokenRequest { id }))
            .await
            .map(drop),
        Rpc::Update => {
            let request = pb::UpdateTokenRequest {
                id,
                label: "changed by someone".into(),
                ..Default::default()
            };
            client.update_token(authed(caller, request)).await.map(drop)
        }
        Rpc::Delete => client
            .delete_token(authed(caller, pb::DeleteTokenRequest { id }))
            .await
            .map(drop),
        Rpc::Transition(action) => apply(client, caller, action, &id).await.map(drop),
    }
}

/// Creates a token from `request` as `caller`.
async fn create_with(
    client: &mut Client,
    caller: &str,
    request: pb::CreateTokenRequest,
) -> pb::Token {
    client
        .create_token(authed(caller, request))
        .await
        .expect("CreateToken")
        .into_inner()
        .token
        .expect("CreateToken returns the token")
}

/// Creates an ordinary `wallet_view` token as `caller`.
async fn create(client: &mut Client, caller: &str) -> pb::Token {
    let request = pb::CreateTokenRequest {
        label: "lifecycle test".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    create_with(client, caller, request).await
}

/// GetToken as `caller`.
async fn get(client: &mut Client, caller: &str, id: &str) -> Result<pb::Token, Status> {
    let response = client
        .get_token(authed(caller, pb::GetTokenRequest { id: id.to_owned() }))
        .await?;
    Ok(response
        .into_inner()
        .token
        .expect("GetToken returns the token"))
}

/// DeleteToken as `caller`.
async fn delete(client: &mut Client, caller: &str, id: &str) -> Result<(), Status> {
    client
        .delete_token(authed(caller, pb::DeleteTokenRequest { id: id.to_owned() }))
        .await
        .map(drop)
}

/// Ids of every token `caller` can list (any status).
async fn listed_ids(client: &mut Client, caller: &str) -> Vec<String> {
    let request = pb::ListTokensRequest {
        page_size: 1000,
        ..Default::default()
    };
    let page = client
        .list_tokens(authed(caller, request))
        .await
        .expect("ListTokens")
        .into_inner();
    assert!(
        page.next_page_token.is_empty(),
        "everything fits in one page"
    );
    page.tokens.into_iter().map(|t| t.id).collect()
}

/// Microseconds of a timestamp field.
fn micros(ts: Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.expect("timestamp is set");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

/// Asserts `token` reads as `status` with exactly `actions` available.
#[track_caller]
fn assert_state(token: &pb::Token, status: pb::TokenStatus, actions: pb::AvailableActions) {
    assert_eq!(token.status, status as i32, "status of token {}", token.id);
    assert_eq!(
        token.available_actions,
        Some(actions),
        "available_actions of token {}",
        token.id
    );
}

/// Asserts `action` on `id` is refused with INVALID_TRANSITION from `status`, and changes nothing.
async fn assert_refused(client: &mut Client, caller: &str, id: &str, action: Action, status: &str) {
    let before = get(client, caller, id).await.expect("GetToken before");
    let err = apply(client, caller, action, id)
        .await
        .expect_err("the transition must be refused");
    assert_error(&err, Code::FailedPrecondition, "INVALID_TRANSITION");
    assert_eq!(
        error_meta(&err, "status").as_deref(),
        Some(status),
        "status metadata"
    );
    assert_eq!(
        error_meta(&err, "action").as_deref(),
        Some(action.name()),
        "action metadata"
    );
    assert_eq!(
        error_meta(&err, "token_id").as_deref(),
        Some(id),
        "token_id metadata"
    );
    let after = get(client, caller, id).await.expect("GetToken after");
    assert_eq!(
        after,
        before,
        "a refused {} must not change the token",
        action.name()
    );
}

/// Deletes `id` and asserts it is gone for GetToken.
async fn assert_deleted(client: &mut Client, caller: &str, id: &str) {
    delete(client, caller, id).await.expect("DeleteToken");
    let err = get(client, caller, id)
        .await
        .expect_err("a deleted token is not found");
    assert_error(&err, Code::NotFound, "TOKEN_NOT_FOUND");
    assert_eq!(error_meta(&err, "token_id").as_deref(), Some(id));
}

/// A token created with a 1-second lifetime, once GetToken reads it as expired (within 5 s).
async fn expired_token(client: &mut Client, caller: &str) -> pb::Token {
    let request = pb::CreateTokenRequest {
        label: "short-lived".into(),
        scopes: vec!["wallet_view".into()],
        duration_seconds: Some(1),
        ..Default::default()
    };
    let created = create_with(client, caller, request).await;
    eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        let request = authed(
            caller,
            pb::GetTokenRequest {
                id: created.id.clone(),
            },
        );
        async move {
            let token = client.get_token(request).await.ok()?.into_inner().token?;
            (token.status == pb::TokenStatus::Expired as i32).then_some(token)
        }
    })
    .await
    .expect("a 1-second token reads as expired within 5 s")
}

/// A server with zero clock leeway, so expiry is observable right after `exp`.
async fn spawn_without_leeway() -> TestApp {
    TestApp::spawn_with(|s| s.tokens.leeway_secs = 0).await
}

/// Two callers of user "u": a strong admin one and a weaker non-admin one.
async fn strong_and_weak_callers(app: &TestApp) -> (String, String) {
    let strong = app
        .bootstrap_with("u", STRONG_SCOPES, |r| r.admin = true)
        .await;
    let weak = app.bootstrap("u", WEAK_SCOPES).await;
    (strong, weak)
}

/// A suspended admin token carrying `scopes`, created and suspended by `strong`.
async fn suspended_admin_token(client: &mut Client, strong: &str, scopes: &[&str]) -> pb::Token {
    let request = pb::CreateTokenRequest {
        label: "admin token".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        admin: true,
        ..Default::default()
    };
    let created = create_with(client, strong, request).await;
    let suspended = apply(client, strong, Action::Suspend, &created.id)
        .await
        .expect("strong caller suspends");
    assert_state(&suspended, pb::TokenStatus::Suspended, SUSPENDED_ACTIONS);
    suspended
}

/// Asserts `rpc` by user bob on alice's token `id` is NOT_FOUND and leaves the token as it was.
async fn assert_hidden_from_other_user(rpc: Rpc, suspend_first: bool) {
    let app = TestApp::spawn().await;
    let alice = app.manager("alice").await;
    let bob = app.manager("bob").await;
    let mut client = app.client().await;
    let token = create(&mut client, &alice).await;
    if suspend_first {
        apply(&mut client, &alice, Action::Suspend, &token.id)
            .await
            .expect("alice suspends her token");
    }
    let before = get(&mut client, &alice, &token.id)
        .await
        .expect("alice reads her token");

    let err = call(&mut client, &bob, rpc, &token.id)
        .await
        .expect_err("bob must not reach alice's token");
    assert_error(&err, Code::NotFound, "TOKEN_NOT_FOUND");

    let after = get(&mut client, &alice, &token.id)
        .await
        .expect("alice still reads her token");
    assert_eq!(
        after, before,
        "{rpc:?} by another user must not change the token"
    );
}

#[tokio::test]
async fn new_token_is_active_with_suspend_revoke_and_delete_available() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;

    let created = create(&mut client, &caller).await;
    assert_state(&created, pb::TokenStatus::Active, ACTIVE_ACTIONS);
    let read = get(&mut client, &caller, &created.id)
        .await
        .expect("GetToken");
    assert_state(&read, pb::TokenStatus::Active, ACTIVE_ACTIONS);
}

#[tokio::test]
async fn suspending_active_token_returns_it_suspended_with_activate_revoke_and_delete_available() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;

    let suspended = apply(&mut client, &caller, Action::Suspend, &created.id)
        .await
        .expect("SuspendToken");
    assert_state(&suspended, pb::TokenStatus::Suspended, SUSPENDED_ACTIONS);
    assert!(
        micros(suspended.updated_at) > micros(created.updated_at),
        "updated_at advances"
    );
    assert_eq!(suspended.updated_by, "alice");
    assert_eq!(
        get(&mut client, &caller, &created.id)
            .await
            .expect("GetToken"),
        suspended
    );
}

#[tokio::test]
async fn activating_suspended_token_returns_it_active_again() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;
    apply(&mut client, &caller, Action::Suspend, &created.id)
        .await
        .expect("SuspendToken");

    let activated = apply(&mut client, &caller, Action::Activate, &created.id)
        .await
        .expect("ActivateToken");
    assert_state(&activated, pb::TokenStatus::Active, ACTIVE_ACTIONS);
    assert_eq!(
        get(&mut client, &caller, &created.id)
            .await
            .expect("GetToken"),
        activated
    );
}

#[tokio::test]
async fn revoking_active_token_leaves_only_delete_available() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;

    let revoked = apply(&mut client, &caller, Action::Revoke, &created.id)
        .await
        .expect("RevokeToken");
    assert_state(&revoked, pb::TokenStatus::Revoked, FINAL_ACTIONS);
    assert_eq!(
        get(&mut client, &caller, &created.id)
            .await
            .expect("GetToken"),
        revoked
    );
}

#[tokio::test]
async fn revoking_suspended_token_leaves_only_delete_available() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;
    apply(&mut client, &caller, Action::Suspend, &created.id)
        .await
        .expect("SuspendToken");

    let revoked = apply(&mut client, &caller, Action::Revoke, &created.id)
        .await
        .expect("RevokeToken");
    assert_state(&revoked, pb::TokenStatus::Revoked, FINAL_ACTIONS);
    assert_eq!(
        get(&mut client, &caller, &created.id)
            .await
            .expect("GetToken"),
        revoked
    );
}

/// Puts a fresh token through `setup`, then checks that `refused` is refused while it is `status`.
async fn assert_forbidden_after(setup: &[Action], refused: Action, status: &str) {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;
    for action in setup {
        apply(&mut client, &caller, *action, &created.id)
            .await
            .unwrap_or_else(|e| panic!("{action:?} during setup: {e:?}"));
    }
    assert_refused(&mut client, &caller, &created.id, refused, status).await;
}

#[tokio::test]
async fn activating_active_token_is_invalid_transition() {
    assert_forbidden_after(&[], Action::Activate, "active").await;
}

#[tokio::test]
async fn suspending_suspended_token_is_invalid_transition() {
    assert_forbidden_after(&[Action::Suspend], Action::Suspend, "suspended").await;
}

#[tokio::test]
async fn suspending_revoked_token_is_invalid_transition() {
    assert_forbidden_after(&[Action::Revoke], Action::Suspend, "revoked").await;
}

#[tokio::test]
async fn activating_revoked_token_is_invalid_transition() {
    assert_forbidden_after(&[Action::Revoke], Action::Activate, "revoked").await;
}

#[tokio::test]
async fn revoking_revoked_token_is_invalid_transition() {
    assert_forbidden_after(&[Action::Revoke], Action::Revoke, "revoked").await;
}

#[tokio::test]
async fn deleting_active_token_makes_it_not_found() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;

    assert_deleted(&mut client, &caller, &created.id).await;
}

#[tokio::test]
async fn deleting_suspended_token_makes_it_not_found() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;
    apply(&mut client, &caller, Action::Suspend, &created.id)
        .await
        .expect("SuspendToken");

    assert_deleted(&mut client, &caller, &created.id).await;
}

#[tokio::test]
async fn deleting_revoked_token_makes_it_not_found() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;
    apply(&mut client, &caller, Action::Revoke, &created.id)
        .await
        .expect("RevokeToken");

    assert_deleted(&mut client, &caller, &created.id).await;
}

#[tokio::test]
async fn deleted_token_is_absent_from_list_tokens() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let kept = create(&mut client, &caller).await;
    let deleted = create(&mut client, &caller).await;
    assert!(
        listed_ids(&mut client, &caller).await.contains(&deleted.id),
        "listed before deletion"
    );

    delete(&mut client, &caller, &deleted.id)
        .await
        .expect("DeleteToken");

    let ids = listed_ids(&mut client, &caller).await;
    assert!(
        !ids.contains(&deleted.id),
        "a deleted token must not be listed: {ids:?}"
    );
    assert!(ids.contains(&kept.id), "other tokens stay listed: {ids:?}");
}

#[tokio::test]
async fn deleting_deleted_token_is_not_found() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;
    delete(&mut client, &caller, &created.id)
        .await
        .expect("first DeleteToken");

    let err = delete(&mut client, &caller, &created.id)
        .await
        .expect_err("a second delete must fail");
    assert_error(&err, Code::NotFound, "TOKEN_NOT_FOUND");
}

#[tokio::test]
async fn every_rpc_on_deleted_token_is_not_found() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create(&mut client, &caller).await;
    delete(&mut client, &caller, &created.id)
        .await
        .expect("DeleteToken");

    for rpc in EVERY_RPC {
        let err = call(&mut client, &caller, rpc, &created.id)
            .await
            .expect_err("a deleted token is gone");
        assert_eq!(err.code(), Code::NotFound, "{rpc:?}: {}", err.message());
        assert_error(&err, Code::NotFound, "TOKEN_NOT_FOUND");
    }
}

#[tokio::test]
async fn token_past_its_expiry_reads_as_expired_with_only_delete_available() {
    let app = spawn_without_leeway().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;

    let expired = expired_token(&mut client, &caller).await;
    assert_state(&expired, pb::TokenStatus::Expired, FINAL_ACTIONS);
}

#[tokio::test]
async fn revoking_expired_token_is_invalid_transition() {
    let app = spawn_without_leeway().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let expired = expired_token(&mut client, &caller).await;

    assert_refused(&mut client, &caller, &expired.id, Action::Revoke, "expired").await;
}

#[tokio::test]
async fn suspending_expired_token_is_invalid_transition() {
    let app = spawn_without_leeway().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let expired = expired_token(&mut client, &caller).await;

    assert_refused(
        &mut client,
        &caller,
        &expired.id,
        Action::Suspend,
        "expired",
    )
    .await;
}

#[tokio::test]
async fn deleting_expired_token_makes_it_not_found() {
    let app = spawn_without_leeway().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let expired = expired_token(&mut client, &caller).await;

    assert_deleted(&mut client, &caller, &expired.id).await;
}

#[tokio::test]
async fn weaker_caller_can_suspend_revoke_and_delete_a_stronger_token() {
    let app = TestApp::spawn().await;
    let (strong, weak) = strong_and_weak_callers(&app).await;
    let mut client = app.client().await;
    let request = pb::CreateTokenRequest {
        label: "trader".into(),
        scopes: vec!["trade_trade".into()],
        admin: true,
        ..Default::default()
    };
    let token = create_with(&mut client, &strong, request).await;

    let suspended = apply(&mut client, &weak, Action::Suspend, &token.id)
        .await
        .expect("weak caller suspends");
    assert_state(&suspended, pb::TokenStatus::Suspended, SUSPENDED_ACTIONS);
    let revoked = apply(&mut client, &weak, Action::Revoke, &token.id)
        .await
        .expect("weak caller revokes");
    assert_state(&revoked, pb::TokenStatus::Revoked, FINAL_ACTIONS);
    assert_deleted(&mut client, &weak, &token.id).await;
}

#[tokio::test]
async fn weaker_caller_cannot_activate_token_with_scopes_it_does_not_hold() {
    let app = TestApp::spawn().await;
    let (strong, weak) = strong_and_weak_callers(&app).await;
    let mut client = app.client().await;
    let token = suspended_admin_token(&mut client, &strong, &["trade_trade"]).await;

    let err = apply(&mut client, &weak, Action::Activate, &token.id)
        .await
        .expect_err("weak caller lacks a scope");
    assert_error(&err, Code::PermissionDenied, "SCOPE_NOT_HELD");
    assert_eq!(
        error_meta(&err, "missing_scopes").as_deref(),
        Some("trade_trade")
    );
    assert_eq!(
        get(&mut client, &weak, &token.id).await.expect("GetToken"),
        token,
        "the token stays suspended"
    );
}

#[tokio::test]
async fn weaker_caller_cannot_activate_admin_token_holding_only_its_own_scopes() {
    let app = TestApp::spawn().await;
    let (strong, weak) = strong_and_weak_callers(&app).await;
    let mut client = app.client().await;
    let token = suspended_admin_token(&mut client, &strong, WEAK_SCOPES).await;

    let err = apply(&mut client, &weak, Action::Activate, &token.id)
        .await
        .expect_err("weak caller is not admin");
    assert_error(&err, Code::PermissionDenied, "ADMIN_REQUIRED");
    assert_eq!(
        get(&mut client, &weak, &token.id).await.expect("GetToken"),
        token,
        "the token stays suspended"
    );
}

#[tokio::test]
async fn stronger_caller_can_activate_tokens_the_weaker_caller_cannot() {
    let app = TestApp::spawn().await;
    let (strong, weak) = strong_and_weak_callers(&app).await;
    let mut client = app.client().await;
    let scoped = suspended_admin_token(&mut client, &strong, &["trade_trade"]).await;
    let admin_only = suspended_admin_token(&mut client, &strong, WEAK_SCOPES).await;

    for token in [&scoped, &admin_only] {
        apply(&mut client, &weak, Action::Activate, &token.id)
            .await
            .expect_err("weak caller is refused");
        let activated = apply(&mut client, &strong, Action::Activate, &token.id)
            .await
            .expect("strong activates");
        assert_state(&activated, pb::TokenStatus::Active, ACTIVE_ACTIONS);
    }
}

#[tokio::test]
async fn other_users_token_is_not_found_by_get_token() {
    assert_hidden_from_other_user(Rpc::Get, false).await;
}

#[tokio::test]
async fn other_users_token_is_not_found_by_update_token() {
    assert_hidden_from_other_user(Rpc::Update, false).await;
}

#[tokio::test]
async fn other_users_token_is_not_found_by_suspend_token() {
    assert_hidden_from_other_user(Rpc::Transition(Action::Suspend), false).await;
}

#[tokio::test]
async fn other_users_suspended_token_is_not_found_by_activate_token() {
    assert_hidden_from_other_user(Rpc::Transition(Action::Activate), true).await;
}

#[tokio::test]
async fn other_users_token_is_not_found_by_revoke_token() {
    assert_hidden_from_other_user(Rpc::Transition(Action::Revoke), false).await;
}

#[tokio::test]
async fn other_users_token_is_not_found_by_delete_token() {
    assert_hidden_from_other_user(Rpc::Delete, false).await;
}

#[tokio::test]
async fn malformed_id_is_invalid_id_for_every_rpc() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;

    for rpc in EVERY_RPC {
        let err = call(&mut client, &caller, rpc, "nope")
            .await
            .expect_err("a malformed id must be refused");
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{rpc:?}: {}",
            err.message()
        );
        assert_error(&err, Code::InvalidArgument, "INVALID_ID");
        assert_eq!(bad_fields(&err), ["id"], "{rpc:?}");
        assert_eq!(error_meta(&err, "id").as_deref(), Some("nope"), "{rpc:?}");
    }
}

#[tokio::test]
async fn empty_id_is_invalid_id_for_every_rpc() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;

    for rpc in EVERY_RPC {
        let err = call(&mut client, &caller, rpc, "")
            .await
            .expect_err("an empty id must be refused");
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{rpc:?}: {}",
            err.message()
        );
        assert_error(&err, Code::InvalidArgument, "INVALID_ID");
        assert_eq!(bad_fields(&err), ["id"], "{rpc:?}");
    }
}

/// VerifyToken of `raw` as `caller` (who holds `token_introspect`): whether it is active.
async fn verifies(client: &mut Client, caller: &str, raw: &str) -> bool {
    let request = pb::VerifyTokenRequest {
        token: raw.into(),
        ..Default::default()
    };
    let response = client.verify_token(authed(caller, request)).await;
    response.expect("VerifyToken").into_inner().active
}

#[tokio::test]
async fn a_revoke_whose_caller_gave_up_still_stops_verification_once_committed() {
    // The change feed would bring the deny list up to date within one poll; with an hour between
    // polls, only the revoke's own path can make this server stop verifying the token.
    let app = TestApp::spawn_with(|s| {
        s.background.change_poll_interval_ms =
            std::num::NonZeroU64::new(3_600_000).expect("nonzero")
    })
    .await;
    let caller = app
        .bootstrap("alice", &["user_manage", "wallet_view", "token_introspect"])
        .await;
    let mut client = app.client().await;
    let request = pb::CreateTokenRequest {
        label: "abandoned revoke".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let minted = client
        .create_token(authed(&caller, request))
        .await
        .expect("CreateToken")
        .into_inner();
    let (id, raw) = (minted.token.expect("the token").id, minted.raw_token);
    assert!(
        verifies(&mut client, &caller, &raw).await,
        "verifies at first"
    );

    // The revoke reaches the database, which makes it wait; its caller gives up meanwhile.
    let lock = DatabaseLock::take(&app).await;
    let mut request = authed(
        &caller,
        pb::RevokeTokenRequest {
            id: id.clone(),
            cascade: false,
        },
    );
    request.set_timeout(Duration::from_millis(300));
    let status = client.revoke_token(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    lock.release().await;

    let committed = eventually(Duration::from_secs(10), || {
        let (mut client, caller, id) = (client.clone(), caller.clone(), id.clone());
        async move {
            let token = get(&mut client, &caller, &id).await.expect("GetToken");
            (token.status == pb::TokenStatus::Revoked as i32).then_some(())
        }
    })
    .await;
    assert!(
        committed.is_some(),
        "the revoke, already handed to the database, is committed"
    );
    let refused = eventually(Duration::from_secs(2), || {
        let (mut client, caller, raw) = (client.clone(), caller.clone(), raw.clone());
        async move { (!verifies(&mut client, &caller, &raw).await).then_some(()) }
    })
    .await;
    assert!(
        refused.is_some(),
        "once committed, the revoke applies to this server's deny list even though its RPC was cancelled"
    );
}
