//! ListTokens: keyset pagination (page sizes, page tokens, newest first, no gaps or duplicates),
//! status filters and isolation between users.
//!
//! The calling token is itself one of its user's tokens (minted by the bootstrap path), so it is
//! always listed too: it is the user's oldest token and active.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokenmint::proto::v1 as pb;
use tokenmint::proto::v1::token_service_client::TokenServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestApp, assert_error, authed, bad_fields, claims_of, eventually};

type Client = TokenServiceClient<Channel>;

/// Creates a `wallet_view` token labelled `label` as `caller`; its id.
async fn create(client: &mut Client, caller: &str, label: &str) -> String {
    let request = pb::CreateTokenRequest {
        label: label.into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let response = client
        .create_token(authed(caller, request))
        .await
        .expect("CreateToken")
        .into_inner();
    response.token.expect("CreateToken returns the token").id
}

/// Creates `n` tokens as `caller`, oldest first; their ids.
async fn create_many(client: &mut Client, caller: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(create(client, caller, &format!("token {i}")).await);
    }
    ids
}

/// ListTokens as `caller`.
async fn list(
    client: &mut Client,
    caller: &str,
    request: pb::ListTokensRequest,
) -> Result<pb::ListTokensResponse, Status> {
    Ok(client
        .list_tokens(authed(caller, request))
        .await?
        .into_inner())
}

/// One page of at most 1000 tokens in `status` (which must hold everything).
async fn list_all(client: &mut Client, caller: &str, status: pb::TokenStatus) -> Vec<pb::Token> {
    let request = pb::ListTokensRequest {
        page_size: 1000,
        status: status as i32,
        ..Default::default()
    };
    let page = list(client, caller, request).await.expect("ListTokens");
    assert!(
        page.next_page_token.is_empty(),
        "everything fits in one page"
    );
    page.tokens
}

/// Suspends token `id` as `caller`.
async fn suspend(client: &mut Client, caller: &str, id: &str) {
    client
        .suspend_token(authed(
            caller,
            pb::SuspendTokenRequest { id: id.to_owned() },
        ))
        .await
        .expect("SuspendToken");
}

/// Revokes token `id` as `caller`.
async fn revoke(client: &mut Client, caller: &str, id: &str) {
    client
        .revoke_token(authed(
            caller,
            pb::RevokeTokenRequest {
                id: id.to_owned(),
                cascade: false,
            },
        ))
        .await
        .expect("RevokeToken");
}

/// The id of a raw (caller) token.
fn token_id(raw: &str) -> String {
    claims_of(raw)["jti"]
        .as_str()
        .expect("jti claim")
        .to_owned()
}

/// The ids of `tokens`, in order.
fn ids(tokens: &[pb::Token]) -> Vec<String> {
    tokens.iter().map(|t| t.id.clone()).collect()
}

/// Microseconds of a timestamp field.
fn micros(ts: Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.expect("timestamp is set");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

/// The ids a user holding the caller token `caller` and the tokens `created` (oldest first) should
/// see, newest first.
fn newest_first(caller: &str, created: &[String]) -> Vec<String> {
    created
        .iter()
        .rev()
        .cloned()
        .chain([token_id(caller)])
        .collect()
}

/// Brings the caller's user to seven tokens: the caller's own plus six created ones. Returns the
/// six created ids, oldest first.
async fn seven_tokens(client: &mut Client, caller: &str) -> Vec<String> {
    create_many(client, caller, 6).await
}

/// Tokens in each status, for the filter tests.
struct Mixed {
    app: TestApp,
    client: Client,
    caller: String,
    active: Vec<String>,
    suspended: Vec<String>,
    revoked: Vec<String>,
}

/// Five tokens besides the caller's: two suspended, one revoked, two left active. Each list holds
/// newest first; `active` includes the caller's own token (the oldest).
async fn mixed() -> Mixed {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = create_many(&mut client, &caller, 5).await;
    suspend(&mut client, &caller, &created[0]).await;
    suspend(&mut client, &caller, &created[2]).await;
    revoke(&mut client, &caller, &created[3]).await;
    Mixed {
        active: vec![created[4].clone(), created[1].clone(), token_id(&caller)],
        suspended: vec![created[2].clone(), created[0].clone()],
        revoked: vec![created[3].clone()],
        app,
        client,
        caller,
    }
}

#[tokio::test]
async fn pages_of_three_return_every_token_once_newest_first() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = seven_tokens(&mut client, &caller).await;

    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListTokensRequest {
            page_size: 3,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = list(&mut client, &caller, request)
            .await
            .expect("ListTokens");
        pages.push(page.tokens);
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(pages.len() < 10, "pagination must end");
        page_token = page.next_page_token;
    }

    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 1], "page sizes");
    let listed: Vec<pb::Token> = pages.into_iter().flatten().collect();
    let unique: HashSet<&str> = listed.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(unique.len(), listed.len(), "no token is listed twice");
    let times: Vec<i64> = listed.iter().map(|t| micros(t.created_at)).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "created_at descends: {times:?}"
    );
    assert_eq!(
        ids(&listed),
        newest_first(&caller, &created),
        "every token, newest first"
    );
}

#[tokio::test]
async fn page_size_zero_returns_the_default_page() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = seven_tokens(&mut client, &caller).await;

    let page = list(&mut client, &caller, pb::ListTokensRequest::default())
        .await
        .expect("ListTokens");
    assert_eq!(ids(&page.tokens), newest_first(&caller, &created));
    assert!(
        page.next_page_token.is_empty(),
        "seven tokens fit in the default page"
    );
}

#[tokio::test]
async fn page_size_above_the_maximum_is_clamped_not_refused() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let created = seven_tokens(&mut client, &caller).await;

    let request = pb::ListTokensRequest {
        page_size: 5000,
        ..Default::default()
    };
    let page = list(&mut client, &caller, request)
        .await
        .expect("an oversized page_size is accepted");
    assert_eq!(ids(&page.tokens), newest_first(&caller, &created));
    assert!(page.next_page_token.is_empty());
}

#[tokio::test]
async fn negative_page_size_is_invalid_page_size() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;

    let request = pb::ListTokensRequest {
        page_size: -1,
        ..Default::default()
    };
    let err = list(&mut client, &caller, request)
        .await
        .expect_err("negative page_size");
    assert_error(&err, Code::InvalidArgument, "INVALID_PAGE_SIZE");
    assert_eq!(bad_fields(&err), ["page_size"]);
}

#[tokio::test]
async fn page_token_not_issued_by_the_service_is_invalid_page_token() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let forged_cursor = URL_SAFE_NO_PAD.encode(format!("v1|any|not-a-time|{}", token_id(&caller)));

    for garbage in ["garbage!", "bm90IGEgY3Vyc29y", forged_cursor.as_str()] {
        let request = pb::ListTokensRequest {
            page_size: 3,
            page_token: garbage.into(),
            ..Default::default()
        };
        let err = list(&mut client, &caller, request)
            .await
            .expect_err("a garbage page_token must be refused");
        assert_error(&err, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
        assert_eq!(bad_fields(&err), ["page_token"], "page_token {garbage:?}");
    }
}

#[tokio::test]
async fn page_token_used_with_another_status_filter_is_invalid_page_token() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    create_many(&mut client, &caller, 2).await;
    let first = pb::ListTokensRequest {
        page_size: 1,
        ..Default::default()
    };
    let page_token = list(&mut client, &caller, first)
        .await
        .expect("first page")
        .next_page_token;
    assert!(
        !page_token.is_empty(),
        "three tokens need more than one page of one"
    );

    let request = pb::ListTokensRequest {
        page_size: 1,
        page_token,
        status: pb::TokenStatus::Active as i32,
        parent_id: String::new(),
    };
    let err = list(&mut client, &caller, request)
        .await
        .expect_err("the page token belongs to another query");
    assert_error(&err, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    assert_eq!(bad_fields(&err), ["page_token"]);
}

#[tokio::test]
async fn active_filter_lists_exactly_the_active_tokens() {
    let Mixed {
        app: _app,
        mut client,
        caller,
        active,
        ..
    } = mixed().await;

    let listed = list_all(&mut client, &caller, pb::TokenStatus::Active).await;
    assert_eq!(
        ids(&listed),
        active,
        "active tokens, the caller's own included"
    );
    assert!(
        listed
            .iter()
            .all(|t| t.status == pb::TokenStatus::Active as i32)
    );
}

#[tokio::test]
async fn suspended_filter_lists_exactly_the_suspended_tokens() {
    let Mixed {
        app: _app,
        mut client,
        caller,
        suspended,
        ..
    } = mixed().await;

    let listed = list_all(&mut client, &caller, pb::TokenStatus::Suspended).await;
    assert_eq!(ids(&listed), suspended);
    assert!(
        listed
            .iter()
            .all(|t| t.status == pb::TokenStatus::Suspended as i32)
    );
}

#[tokio::test]
async fn revoked_filter_lists_exactly_the_revoked_tokens() {
    let Mixed {
        app: _app,
        mut client,
        caller,
        revoked,
        ..
    } = mixed().await;

    let listed = list_all(&mut client, &caller, pb::TokenStatus::Revoked).await;
    assert_eq!(ids(&listed), revoked);
    assert!(
        listed
            .iter()
            .all(|t| t.status == pb::TokenStatus::Revoked as i32)
    );
}

#[tokio::test]
async fn unspecified_status_lists_tokens_in_every_status() {
    let Mixed {
        app: _app,
        mut client,
        caller,
        active,
        suspended,
        revoked,
    } = mixed().await;

    let listed = list_all(&mut client, &caller, pb::TokenStatus::Unspecified).await;
    let listed: HashSet<String> = ids(&listed).into_iter().collect();
    let expected: HashSet<String> = active.into_iter().chain(suspended).chain(revoked).collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn expired_filter_lists_tokens_past_their_expiry_and_active_filter_does_not() {
    let app = TestApp::spawn_with(|s| s.tokens.leeway_secs = 0).await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let request = pb::CreateTokenRequest {
        label: "short-lived".into(),
        scopes: vec!["wallet_view".into()],
        duration_seconds: Some(1),
        ..Default::default()
    };
    let short = client
        .create_token(authed(&caller, request))
        .await
        .expect("CreateToken")
        .into_inner();
    let short = short.token.expect("CreateToken returns the token");

    let expired = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        let request = pb::ListTokensRequest {
            status: pb::TokenStatus::Expired as i32,
            ..Default::default()
        };
        let request = authed(&caller, request);
        async move {
            let page = client.list_tokens(request).await.ok()?.into_inner();
            (!page.tokens.is_empty()).then_some(page.tokens)
        }
    })
    .await
    .expect("the token is listed as expired within 5 s");

    assert_eq!(ids(&expired), std::slice::from_ref(&short.id));
    assert_eq!(expired[0].status, pb::TokenStatus::Expired as i32);
    let active = list_all(&mut client, &caller, pb::TokenStatus::Active).await;
    assert_eq!(
        ids(&active),
        [token_id(&caller)],
        "an expired token is not active"
    );
}

#[tokio::test]
async fn unknown_status_value_is_invalid_filter() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;

    let request = pb::ListTokensRequest {
        status: 99,
        ..Default::default()
    };
    let err = list(&mut client, &caller, request)
        .await
        .expect_err("status 99 is not a TokenStatus");
    assert_error(&err, Code::InvalidArgument, "INVALID_FILTER");
    assert_eq!(bad_fields(&err), ["status"]);
}

#[tokio::test]
async fn other_users_tokens_never_appear() {
    let app = TestApp::spawn().await;
    let alice = app.manager("alice").await;
    let bob = app.manager("bob").await;
    let mut client = app.client().await;
    let alices = create_many(&mut client, &alice, 3).await;
    let bobs = create_many(&mut client, &bob, 1).await;

    let seen_by_bob = list_all(&mut client, &bob, pb::TokenStatus::Unspecified).await;
    assert_eq!(ids(&seen_by_bob), newest_first(&bob, &bobs));
    assert!(seen_by_bob.iter().all(|t| t.user_id == "bob"));
    let seen_by_alice = list_all(&mut client, &alice, pb::TokenStatus::Unspecified).await;
    assert_eq!(ids(&seen_by_alice), newest_first(&alice, &alices));
    assert!(seen_by_alice.iter().all(|t| t.user_id == "alice"));
}
