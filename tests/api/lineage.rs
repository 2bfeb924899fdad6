//! Authority only flows downward: a token never grants more than the token that minted it, in any
//! dimension (lifetime, networks, spending limits, enterprise, scopes, admin); lineage is recorded;
//! a cascading revoke takes a whole tree down and a plain one leaves the children alone.

use std::time::Duration;

use tokenmint::proto::v1 as pb;
use tonic::Code;

use crate::helpers::{TestApp, assert_error, authed, claims_of, error_meta};

/// What every caller in this module holds.
const MANAGER: &[&str] = &[
    "user_manage",
    "token_introspect",
    "wallet_view",
    "wallet_spend",
];

fn request(scopes: &[&str]) -> pb::CreateTokenRequest {
    pb::CreateTokenRequest {
        label: "child".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn limits(pairs: &[(&str, &str)], erc20: Option<&str>) -> Option<pb::TokenLimits> {
    Some(pb::TokenLimits {
        spending_limits: pairs
            .iter()
            .map(|(coin, value)| pb::SpendingLimit {
                coin: coin.to_string(),
                tx_value_limit: value.to_string(),
            })
            .collect(),
        all_erc20_tokens_limit: erc20.map(|v| pb::AllErc20TokensLimit {
            tx_value_limit: v.into(),
        }),
    })
}

fn limit_pairs(token: &pb::Token) -> (Vec<(String, String)>, Option<String>) {
    let Some(limits) = &token.token_limits else {
        return (Vec::new(), None);
    };
    let mut pairs: Vec<(String, String)> = limits
        .spending_limits
        .iter()
        .map(|l| (l.coin.clone(), l.tx_value_limit.clone()))
        .collect();
    pairs.sort();
    let erc20 = limits
        .all_erc20_tokens_limit
        .as_ref()
        .map(|l| l.tx_value_limit.clone());
    (pairs, erc20)
}

/// Mints `req` as `caller`: the token and its raw JWT.
async fn mint(app: &TestApp, caller: &str, req: pb::CreateTokenRequest) -> (pb::Token, String) {
    let response = app
        .client()
        .await
        .create_token(authed(caller, req))
        .await
        .expect("CreateToken")
        .into_inner();
    (response.token.expect("token"), response.raw_token)
}

/// CreateToken's refusal of `req` by `caller`.
async fn refused(app: &TestApp, caller: &str, req: pb::CreateTokenRequest) -> tonic::Status {
    app.client()
        .await
        .create_token(authed(caller, req))
        .await
        .expect_err("CreateToken must be refused")
}

/// Asserts `status` is PERMISSION_DENIED EXCEEDS_CALLER about `field`.
#[track_caller]
fn assert_exceeds_caller(status: &tonic::Status, field: &str) {
    assert_error(status, Code::PermissionDenied, "EXCEEDS_CALLER");
    assert_eq!(error_meta(status, "field").as_deref(), Some(field));
}

/// Whether VerifyToken (asked by `introspector`) finds `token` active, and why not.
async fn verify(app: &TestApp, introspector: &str, token: &str) -> (bool, pb::InactiveReason) {
    let response = app
        .client()
        .await
        .verify_token(authed(
            introspector,
            pb::VerifyTokenRequest {
                token: token.into(),
                client_ip: "127.0.0.1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("VerifyToken")
        .into_inner();
    (response.active, response.reason())
}

#[tokio::test]
async fn a_child_never_outlives_its_minter() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap_with("alice", MANAGER, |r| {
            r.ttl = Some(Duration::from_secs(3600))
        })
        .await;
    let caller_exp = claims_of(&caller)["exp"].as_i64().unwrap();

    // The reproduced defect: a one-hour caller asked for a 366-day token and got it.
    let mut long = request(&["wallet_view"]);
    long.duration_seconds = Some(366 * 86_400);
    assert_exceeds_caller(&refused(&app, &caller, long).await, "duration_seconds");
    let mut late = request(&["wallet_view"]);
    late.expires_at = Some(prost_types::Timestamp {
        seconds: caller_exp + 60,
        nanos: 0,
    });
    assert_exceeds_caller(&refused(&app, &caller, late).await, "expires_at");

    // No lifetime asked: the 30-day default is cut to the caller's expiry.
    let (child, raw) = mint(&app, &caller, request(&["wallet_view"])).await;
    assert_eq!(child.expires_at.unwrap().seconds, caller_exp);
    assert_eq!(claims_of(&raw)["exp"].as_i64().unwrap(), caller_exp);

    // Shorter is fine.
    let mut short = request(&["wallet_view"]);
    short.duration_seconds = Some(600);
    let (child, _) = mint(&app, &caller, short).await;
    assert!(child.expires_at.unwrap().seconds < caller_exp);

    // The configured maximum is still checked first.
    let mut too_long = request(&["wallet_view"]);
    too_long.duration_seconds = Some(400 * 86_400);
    assert_error(
        &refused(&app, &caller, too_long).await,
        Code::InvalidArgument,
        "LIFETIME_TOO_LONG",
    );
}

#[tokio::test]
async fn an_ip_restricted_minter_mints_only_inside_its_networks() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap_with("alice", MANAGER, |r| r.ips = vec!["127.0.0.0/8".into()])
        .await;

    let (inherited, raw) = mint(&app, &caller, request(&["wallet_view"])).await;
    assert_eq!(inherited.ip_restrict, vec!["127.0.0.0/8"]);
    assert_eq!(claims_of(&raw)["ips"], serde_json::json!(["127.0.0.0/8"]));

    let mut inside = request(&["wallet_view"]);
    inside.ip_restrict = vec!["127.0.0.5".into()];
    assert_eq!(
        mint(&app, &caller, inside).await.0.ip_restrict,
        vec!["127.0.0.5/32"]
    );

    for outside in [
        vec!["10.0.0.1"],
        vec!["127.0.0.1", "10.0.0.0/8"],
        vec!["0.0.0.0/0"],
    ] {
        let mut req = request(&["wallet_view"]);
        req.ip_restrict = outside.iter().map(|s| s.to_string()).collect();
        assert_exceeds_caller(&refused(&app, &caller, req).await, "ip_restrict");
    }
}

#[tokio::test]
async fn a_minter_with_limits_grants_only_its_coins_each_at_most_its_limit() {
    let app = TestApp::spawn().await;
    let root = app.bootstrap("alice", MANAGER).await;
    let mut with_limits = request(MANAGER);
    with_limits.token_limits = limits(&[("btc", "1000"), ("eth", "50")], None);
    let (_, caller) = mint(&app, &root, with_limits).await;

    let (all_inherited, _) = mint(&app, &caller, request(&["wallet_spend"])).await;
    assert_eq!(
        limit_pairs(&all_inherited),
        (
            vec![("btc".into(), "1000".into()), ("eth".into(), "50".into())],
            None
        )
    );

    let mut lower = request(&["wallet_spend"]);
    lower.token_limits = limits(&[("btc", "10")], None);
    let (lowered, _) = mint(&app, &caller, lower).await;
    assert_eq!(
        limit_pairs(&lowered),
        (
            vec![("btc".into(), "10".into()), ("eth".into(), "50".into())],
            None
        ),
        "the coin the request omits keeps the caller's limit"
    );

    let mut unlisted = request(&["wallet_spend"]);
    unlisted.token_limits = limits(&[("sol", "1")], None);
    assert_exceeds_caller(
        &refused(&app, &caller, unlisted).await,
        "token_limits.spending_limits[0].coin",
    );
    let mut higher = request(&["wallet_spend"]);
    higher.token_limits = limits(&[("eth", "51")], None);
    assert_exceeds_caller(
        &refused(&app, &caller, higher).await,
        "token_limits.spending_limits[0].tx_value_limit",
    );
    let mut erc20 = request(&["wallet_spend"]);
    erc20.token_limits = limits(&[], Some("1"));
    assert_exceeds_caller(
        &refused(&app, &caller, erc20).await,
        "token_limits.all_erc20_tokens_limit",
    );
}

#[tokio::test]
async fn an_enterprise_bound_minter_mints_for_its_enterprise_only() {
    let app = TestApp::spawn().await;
    app.add_member("ent-1", "alice").await;
    app.add_member("ent-2", "alice").await;
    let caller = app
        .bootstrap_with("alice", MANAGER, |r| r.enterprise = Some("ent-1".into()))
        .await;

    let (child, raw) = mint(&app, &caller, request(&["wallet_view"])).await;
    assert_eq!(child.enterprise_id, "ent-1");
    assert_eq!(claims_of(&raw)["ent"], "ent-1");

    let mut other = request(&["wallet_view"]);
    other.enterprise_id = "ent-2".into();
    assert_exceeds_caller(&refused(&app, &caller, other).await, "enterprise_id");
}

#[tokio::test]
async fn scopes_and_admin_stay_bounded_by_the_minter() {
    let app = TestApp::spawn().await;
    let caller = app.bootstrap("alice", MANAGER).await;
    let status = refused(&app, &caller, request(&["trade_view"])).await;
    assert_error(&status, Code::PermissionDenied, "SCOPE_NOT_HELD");
    let mut admin = request(&["wallet_view"]);
    admin.admin = true;
    assert_error(
        &refused(&app, &caller, admin).await,
        Code::PermissionDenied,
        "ADMIN_REQUIRED",
    );
}

#[tokio::test]
async fn activation_needs_a_caller_that_could_mint_the_token_today() {
    let app = TestApp::spawn().await;
    let unrestricted = app.bootstrap("alice", MANAGER).await;
    let (token, _) = mint(&app, &unrestricted, request(&["wallet_view"])).await;
    app.client()
        .await
        .suspend_token(authed(
            &unrestricted,
            pb::SuspendTokenRequest {
                id: token.id.clone(),
            },
        ))
        .await
        .unwrap();
    let activate = |caller: String| {
        let id = token.id.clone();
        let app = &app;
        async move {
            app.client()
                .await
                .activate_token(authed(&caller, pb::ActivateTokenRequest { id }))
                .await
        }
    };

    let fenced = app
        .bootstrap_with("alice", MANAGER, |r| r.ips = vec!["127.0.0.0/8".into()])
        .await;
    assert_exceeds_caller(&activate(fenced).await.unwrap_err(), "ip_restrict");
    let short_lived = app
        .bootstrap_with("alice", MANAGER, |r| {
            r.ttl = Some(Duration::from_secs(3600))
        })
        .await;
    assert_exceeds_caller(&activate(short_lived).await.unwrap_err(), "expires_at");
    let weaker = app.bootstrap("alice", &["user_manage"]).await;
    assert_error(
        &activate(weaker).await.unwrap_err(),
        Code::PermissionDenied,
        "SCOPE_NOT_HELD",
    );

    let active = activate(unrestricted).await.unwrap().into_inner();
    assert_eq!(active.token.unwrap().status(), pb::TokenStatus::Active);
}

#[tokio::test]
async fn lineage_is_recorded_and_listed_by_parent() {
    let app = TestApp::spawn().await;
    let root = app.bootstrap("alice", MANAGER).await;
    let root_id = claims_of(&root)["jti"].as_str().unwrap().to_owned();
    let (child, child_raw) = mint(&app, &root, request(MANAGER)).await;
    let (grandchild, _) = mint(&app, &child_raw, request(&["wallet_view"])).await;
    let (sibling, _) = mint(&app, &root, request(&["wallet_view"])).await;
    assert_eq!(child.parent_id, root_id);
    assert_eq!(sibling.parent_id, root_id);
    assert_eq!(grandchild.parent_id, child.id);

    let root_token = app
        .client()
        .await
        .get_token(authed(
            &root,
            pb::GetTokenRequest {
                id: root_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    assert_eq!(root_token.parent_id, "", "tokens made by the CLI are roots");

    let list = |parent: &str| {
        let request = pb::ListTokensRequest {
            parent_id: parent.into(),
            ..Default::default()
        };
        let root = root.clone();
        let app = &app;
        async move { app.client().await.list_tokens(authed(&root, request)).await }
    };
    let ids = |r: pb::ListTokensResponse| {
        let mut ids: Vec<String> = r.tokens.into_iter().map(|t| t.id).collect();
        ids.sort();
        ids
    };
    let mut expected = vec![child.id.clone(), sibling.id.clone()];
    expected.sort();
    assert_eq!(ids(list(&root_id).await.unwrap().into_inner()), expected);
    assert_eq!(
        ids(list(&child.id).await.unwrap().into_inner()),
        vec![grandchild.id.clone()]
    );
    assert_eq!(list("").await.unwrap().into_inner().tokens.len(), 4);
    let status = list("not-an-id").await.unwrap_err();
    assert_error(&status, Code::InvalidArgument, "INVALID_ID");
}

#[tokio::test]
async fn a_plain_revoke_leaves_children_and_a_cascading_one_takes_the_tree() {
    let app = TestApp::spawn().await;
    let root = app.bootstrap("alice", MANAGER).await;
    let (parent, parent_raw) = mint(&app, &root, request(MANAGER)).await;
    let (child, child_raw) = mint(&app, &parent_raw, request(MANAGER)).await;
    let (_, grandchild_raw) = mint(&app, &child_raw, request(&["wallet_view"])).await;
    let (_, second_child_raw) = mint(&app, &parent_raw, request(&["wallet_view"])).await;
    let (_, unrelated_raw) = mint(&app, &root, request(&["wallet_view"])).await;
    let revoke = |id: String, cascade: bool| {
        let root = root.clone();
        let app = &app;
        async move {
            app.client()
                .await
                .revoke_token(authed(&root, pb::RevokeTokenRequest { id, cascade }))
                .await
                .expect("RevokeToken")
                .into_inner()
        }
    };

    // Revoking `child` alone: its own child keeps working, by design.
    let plain = revoke(child.id.clone(), false).await;
    assert_eq!(plain.descendants_revoked, 0);
    assert_eq!(
        verify(&app, &root, &child_raw).await,
        (false, pb::InactiveReason::Revoked)
    );
    assert!(verify(&app, &root, &grandchild_raw).await.0);

    // Cascading from `parent` walks through the revoked `child` to its child.
    let cascade = revoke(parent.id.clone(), true).await;
    assert_eq!(cascade.token.unwrap().status(), pb::TokenStatus::Revoked);
    assert_eq!(
        cascade.descendants_revoked, 2,
        "grandchild and second child"
    );
    for raw in [&parent_raw, &grandchild_raw, &second_child_raw] {
        assert_eq!(
            verify(&app, &root, raw).await,
            (false, pb::InactiveReason::Revoked)
        );
    }
    assert!(verify(&app, &root, &unrelated_raw).await.0);

    // Repeating the cascade on the revoked token finds nothing left to revoke.
    assert_eq!(revoke(parent.id.clone(), true).await.descendants_revoked, 0);
}

#[tokio::test]
async fn a_cascade_revokes_more_children_than_fit_in_one_page() {
    let app = TestApp::spawn().await;
    let root = app.bootstrap("alice", MANAGER).await;
    let (parent, parent_raw) = mint(&app, &root, request(MANAGER)).await;
    let children = 520;
    let mut raws = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let client = app.client().await;
    for _ in 0..children {
        let (mut client, caller) = (client.clone(), parent_raw.clone());
        tasks.spawn(async move {
            client
                .create_token(authed(&caller, request(&["wallet_view"])))
                .await
                .expect("CreateToken")
                .into_inner()
                .raw_token
        });
    }
    while let Some(raw) = tasks.join_next().await {
        raws.push(raw.unwrap());
    }
    let response = app
        .client()
        .await
        .revoke_token(authed(
            &root,
            pb::RevokeTokenRequest {
                id: parent.id,
                cascade: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.descendants_revoked, children);
    for raw in [raws.first().unwrap(), raws.last().unwrap()] {
        assert_eq!(
            verify(&app, &root, raw).await,
            (false, pb::InactiveReason::Revoked)
        );
    }
}

#[tokio::test]
async fn a_caller_whose_row_is_gone_stops_authenticating() {
    let app = TestApp::spawn_with(|s| s.cache.metadata_ttl_secs = 1).await;
    let caller = app.bootstrap("alice", MANAGER).await;
    let introspector = app.bootstrap("bob", &["token_introspect"]).await;
    let id = claims_of(&caller)["jti"].as_str().unwrap().to_owned();
    let (subject, subject_raw) = mint(&app, &caller, request(&["wallet_view"])).await;
    assert!(verify(&app, &introspector, &subject_raw).await.0);
    // A restore or a failover to a lagging replica: the rows are simply not there.
    crate::helpers::execute_in_database(
        &app,
        &[format!(
            "DELETE FROM tokens WHERE id IN ('{id}', '{}')",
            subject.id
        )],
    )
    .await;
    let refused = crate::helpers::eventually(Duration::from_secs(5), || async {
        app.client()
            .await
            .create_token(authed(&caller, request(&["wallet_view"])))
            .await
            .err()
    })
    .await
    .expect("the caller stops authenticating once its cached metadata is stale");
    assert_error(&refused, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_eq!(
        error_meta(&refused, "inactive_reason").as_deref(),
        Some("UNKNOWN_TOKEN")
    );
    // Each token's cached record lives its own share of the TTL.
    let inactive = crate::helpers::eventually(Duration::from_secs(5), || async {
        let answer = verify(&app, &introspector, &subject_raw).await;
        (!answer.0).then_some(answer.1)
    })
    .await;
    assert_eq!(inactive, Some(pb::InactiveReason::UnknownToken));
}

#[tokio::test]
async fn a_caller_whose_row_says_stopped_is_refused_even_before_the_deny_list_hears_of_it() {
    let app = TestApp::spawn_with(|s| s.cache.metadata_ttl_secs = 1).await;
    let revoked = app.bootstrap("alice", MANAGER).await;
    let suspended = app.bootstrap("carol", MANAGER).await;
    // A replica whose change feed lags (or gave up on a gap): the row has changed, no change
    // event tells this server so.
    let id = |raw: &str| claims_of(raw)["jti"].as_str().unwrap().to_owned();
    crate::helpers::execute_in_database(
        &app,
        &[
            format!(
                "UPDATE tokens SET status = 'revoked' WHERE id = '{}'",
                id(&revoked)
            ),
            format!(
                "UPDATE tokens SET status = 'suspended' WHERE id = '{}'",
                id(&suspended)
            ),
        ],
    )
    .await;
    for (caller, why) in [(&revoked, "REVOKED"), (&suspended, "SUSPENDED")] {
        let refused = crate::helpers::eventually(Duration::from_secs(5), || async {
            app.client()
                .await
                .create_token(authed(caller, request(&["wallet_view"])))
                .await
                .err()
        })
        .await
        .expect("the caller stops authenticating once its cached metadata is stale");
        assert_error(&refused, Code::Unauthenticated, "INVALID_CREDENTIALS");
        assert_eq!(
            error_meta(&refused, "inactive_reason").as_deref(),
            Some(why)
        );
    }
}

#[tokio::test]
async fn the_signed_claims_bound_a_caller_whatever_its_row_says_now() {
    // Every call reads the row, so the edit below is seen at once.
    let app = TestApp::spawn_with(|s| s.cache.metadata_ttl_secs = 0).await;
    let caller = app
        .bootstrap_with("alice", MANAGER, |r| {
            r.ttl = Some(Duration::from_secs(3600));
            r.ips = vec!["127.0.0.0/8".into()];
        })
        .await;
    let id = claims_of(&caller)["jti"].as_str().unwrap().to_owned();
    let far = chrono::Utc::now().timestamp_micros() + 400 * 86_400 * 1_000_000;
    // A database writer lengthens and unfences the caller's row.
    crate::helpers::execute_in_database(
        &app,
        &[format!(
            "UPDATE tokens SET expires_at = {far}, ip_restrict = '[]' WHERE id = '{id}'"
        )],
    )
    .await;
    let mut long = request(&["wallet_view"]);
    long.duration_seconds = Some(2 * 3600);
    assert_exceeds_caller(&refused(&app, &caller, long).await, "duration_seconds");
    let (child, _) = mint(&app, &caller, request(&["wallet_view"])).await;
    assert_eq!(child.ip_restrict, vec!["127.0.0.0/8"]);
    assert_eq!(
        child.expires_at.unwrap().seconds,
        claims_of(&caller)["exp"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn activation_meets_the_rules_of_minting_membership_included() {
    let app = TestApp::spawn().await;
    app.add_member("ent-1", "alice").await;
    let caller = app.bootstrap("alice", MANAGER).await;
    let mut bound = request(&["wallet_view"]);
    bound.enterprise_id = "ent-1".into();
    let (token, _) = mint(&app, &caller, bound).await;
    let mut client = app.client().await;
    client
        .suspend_token(authed(
            &caller,
            pb::SuspendTokenRequest {
                id: token.id.clone(),
            },
        ))
        .await
        .unwrap();
    crate::helpers::execute_in_database(
        &app,
        &["DELETE FROM enterprise_members WHERE user_id = 'alice'".to_owned()],
    )
    .await;
    let status = client
        .activate_token(authed(&caller, pb::ActivateTokenRequest { id: token.id }))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "NOT_ENTERPRISE_MEMBER");
}

#[tokio::test]
async fn a_caller_in_its_leeway_past_expiry_mints_nothing() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap_with("alice", MANAGER, |r| r.ttl = Some(Duration::from_secs(1)))
        .await;
    let exp = claims_of(&caller)["exp"].as_i64().unwrap();
    // Past `exp`, but within the 5-s leeway the caller still authenticates.
    while chrono::Utc::now().timestamp() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_exceeds_caller(
        &refused(&app, &caller, request(&["wallet_view"])).await,
        "expires_at",
    );
}

#[tokio::test]
async fn a_templates_limits_are_not_widened_by_the_callers() {
    let app = TestApp::spawn().await;
    let root = app.bootstrap("alice", MANAGER).await;
    let mut rich = request(MANAGER);
    rich.token_limits = limits(&[("btc", "2000"), ("eth", "50")], Some("5"));
    let (_, caller) = mint(&app, &root, rich).await;
    let template = app
        .templates()
        .await
        .create_template(authed(
            &caller,
            pb::CreateTemplateRequest {
                name: "btc only".into(),
                token_scopes: vec!["wallet_spend".into()],
                token_limits: limits(&[("btc", "1000")], None),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let from_template = pb::CreateTokenRequest {
        template_id: template.id,
        ..Default::default()
    };
    // Before: the template's complete list took the caller's eth limit and ERC-20 cap as if
    // they were unset, minting a token that could spend eth the template never allowed.
    let (token, _) = mint(&app, &caller, from_template).await;
    assert_eq!(
        limit_pairs(&token),
        (vec![("btc".into(), "1000".into())], None)
    );
}
