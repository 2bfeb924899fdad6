//! CreateToken: what a minted token holds, and every validation and permission error.

use tokenmint::proto::v1 as pb;
use tonic::Code;

use crate::helpers::{TestApp, assert_error, authed, bad_fields, claims_of, error_meta, header_of};

fn request(label: &str, scopes: &[&str]) -> pb::CreateTokenRequest {
    pb::CreateTokenRequest {
        label: label.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn limits(pairs: &[(&str, &str)]) -> Option<pb::TokenLimits> {
    Some(pb::TokenLimits {
        spending_limits: pairs
            .iter()
            .map(|(c, v)| pb::SpendingLimit {
                coin: c.to_string(),
                tx_value_limit: v.to_string(),
            })
            .collect(),
        all_erc20_tokens_limit: None,
    })
}

/// How many tokens `caller` can list (to prove failed calls created nothing).
async fn token_count(app: &TestApp, caller: &str) -> usize {
    let request = pb::ListTokensRequest {
        page_size: 1000,
        ..Default::default()
    };
    app.client()
        .await
        .list_tokens(authed(caller, request))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .len()
}

#[tokio::test]
async fn create_returns_metadata_and_a_signed_jwt_once() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut req = request(
        "  ci deploy  ",
        &["wallet_view", "wallet_spend", "wallet_view"],
    );
    req.description = "deploys".into();
    req.ip_restrict = vec!["10.0.0.1".into(), "192.168.0.0/16".into()];
    req.token_limits = Some(pb::TokenLimits {
        spending_limits: vec![pb::SpendingLimit {
            coin: "BTC".into(),
            tx_value_limit: "0100".into(),
        }],
        all_erc20_tokens_limit: Some(pb::AllErc20TokensLimit {
            tx_value_limit: "5".into(),
        }),
    });
    req.duration_seconds = Some(3600);
    let response = app
        .client()
        .await
        .create_token(authed(&caller, req))
        .await
        .unwrap()
        .into_inner();
    let token = response.token.expect("token metadata");
    let raw = response.raw_token;

    assert_eq!(token.user_id, "alice");
    assert_eq!(token.label, "ci deploy", "labels are trimmed");
    assert_eq!(token.description, "deploys");
    assert_eq!(
        token.scopes,
        vec!["wallet_spend", "wallet_view"],
        "scopes are de-duplicated"
    );
    assert_eq!(token.ip_restrict, vec!["10.0.0.1/32", "192.168.0.0/16"]);
    let limits = token.token_limits.expect("limits");
    assert_eq!(limits.spending_limits[0].coin, "btc");
    assert_eq!(limits.spending_limits[0].tx_value_limit, "100");
    assert_eq!(limits.all_erc20_tokens_limit.unwrap().tx_value_limit, "5");
    assert_eq!(token.status, pb::TokenStatus::Active as i32);
    assert_eq!(
        token.checksum,
        raw[raw.len() - 6..],
        "checksum is the last 6 characters"
    );
    assert_eq!(token.created_by, "alice");
    let actions = token.available_actions.unwrap();
    assert!(actions.suspend && actions.revoke && actions.delete && !actions.activate);
    let lifetime = token.expires_at.unwrap().seconds - token.created_at.unwrap().seconds;
    assert!((3600..=3601).contains(&lifetime), "lifetime {lifetime}");

    let header = header_of(&raw);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], token.key_id);
    let claims = claims_of(&raw);
    assert_eq!(claims["iss"], "tokenmint");
    assert_eq!(claims["aud"], "tokenmint");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["jti"], token.id);
    assert_eq!(claims["client_id"], token.id);
    assert_eq!(claims["scope"], "wallet_spend wallet_view");
    assert_eq!(
        claims["ips"],
        serde_json::json!(["10.0.0.1/32", "192.168.0.0/16"])
    );
    assert_eq!(claims["exp"], token.expires_at.unwrap().seconds);

    // The raw token is never returned again.
    let fetched = app
        .client()
        .await
        .get_token(authed(
            &caller,
            pb::GetTokenRequest {
                id: token.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    assert_eq!(fetched.checksum, token.checksum);
    assert!(!format!("{fetched:?}").contains(&raw));
}

#[tokio::test]
async fn the_raw_token_is_not_stored_in_the_database() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let raw = app
        .client()
        .await
        .create_token(authed(&caller, request("x", &["wallet_view"])))
        .await
        .unwrap();
    let raw = raw.into_inner().raw_token;
    let signature = raw.rsplit('.').next().unwrap().to_owned();
    if app.db.pg_url.is_none() {
        let bytes = std::fs::read(app.db.dir.path().join("tokenmint.db")).unwrap();
        let wal = std::fs::read(app.db.dir.path().join("tokenmint.db-wal")).unwrap_or_default();
        for haystack in [bytes, wal] {
            assert!(
                !haystack
                    .windows(signature.len())
                    .any(|w| w == signature.as_bytes()),
                "signature found on disk"
            );
        }
    }
}

#[tokio::test]
async fn default_lifetime_is_thirty_days() {
    let app = TestApp::spawn().await;
    // A caller that outlives the default (a child's default is cut to its minter's expiry: lineage.rs).
    let caller = app
        .bootstrap_with("alice", &["user_manage", "wallet_view"], |r| {
            r.ttl = Some(std::time::Duration::from_secs(60 * 86_400))
        })
        .await;
    let token = app
        .client()
        .await
        .create_token(authed(&caller, request("x", &["wallet_view"])))
        .await
        .unwrap();
    let token = token.into_inner().token.unwrap();
    let lifetime = token.expires_at.unwrap().seconds - token.created_at.unwrap().seconds;
    assert!(
        (30 * 86_400..=30 * 86_400 + 1).contains(&lifetime),
        "lifetime {lifetime}"
    );
}

#[tokio::test]
async fn expires_at_sets_the_expiry() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let at = chrono::Utc::now().timestamp() + 7200;
    let mut req = request("x", &["wallet_view"]);
    req.expires_at = Some(prost_types::Timestamp {
        seconds: at,
        nanos: 0,
    });
    let token = app
        .client()
        .await
        .create_token(authed(&caller, req))
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    assert_eq!(token.expires_at.unwrap().seconds, at);
}

#[tokio::test]
async fn invalid_fields_are_all_reported_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let before = token_count(&app, &caller).await;
    let mut req = request("", &["wallet_view", "bogus_scope"]);
    req.ip_restrict = vec!["10.0.0.1".into(), "999.1.1.1".into()];
    let status = app
        .client()
        .await
        .create_token(authed(&caller, req))
        .await
        .unwrap_err();
    assert_error(&status, Code::InvalidArgument, "LABEL_REQUIRED");
    assert_eq!(
        bad_fields(&status),
        vec!["label", "scopes[1]", "ip_restrict[1]"]
    );
    assert_eq!(error_meta(&status, "scope").as_deref(), Some("bogus_scope"));
    assert_eq!(token_count(&app, &caller).await, before);
}

#[tokio::test]
async fn each_validation_error_has_its_reason() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let cases: Vec<(&str, pb::CreateTokenRequest, &str)> = vec![
        (
            "label too long",
            request(&"x".repeat(101), &["wallet_view"]),
            "INVALID_LABEL",
        ),
        (
            "control character in label",
            request("a\u{1}b", &["wallet_view"]),
            "INVALID_LABEL",
        ),
        ("unknown scope", request("x", &["nope"]), "INVALID_SCOPE"),
        ("no scope", request("x", &[]), "INVALID_SCOPE"),
        (
            "bad ip",
            {
                let mut r = request("x", &["wallet_view"]);
                r.ip_restrict = vec!["10.0.0.0/33".into()];
                r
            },
            "INVALID_IP_ADDRESS",
        ),
        (
            "negative limit",
            {
                let mut r = request("x", &["wallet_view"]);
                r.token_limits = limits(&[("btc", "-1")]);
                r
            },
            "INVALID_LIMIT",
        ),
        (
            "decimal limit",
            {
                let mut r = request("x", &["wallet_view"]);
                r.token_limits = limits(&[("btc", "1.5")]);
                r
            },
            "INVALID_LIMIT",
        ),
        (
            "79-digit limit",
            {
                let mut r = request("x", &["wallet_view"]);
                r.token_limits = limits(&[("btc", &"9".repeat(79))]);
                r
            },
            "INVALID_LIMIT",
        ),
        (
            "duplicate coin",
            {
                let mut r = request("x", &["wallet_view"]);
                r.token_limits = limits(&[("eth", "1"), ("ETH", "2")]);
                r
            },
            "DUPLICATE_COIN",
        ),
        (
            "bad coin",
            {
                let mut r = request("x", &["wallet_view"]);
                r.token_limits = limits(&[("b t c", "1")]);
                r
            },
            "INVALID_COIN",
        ),
        (
            "both lifetimes",
            {
                let mut r = request("x", &["wallet_view"]);
                r.duration_seconds = Some(60);
                r.expires_at = Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() + 60,
                    nanos: 0,
                });
                r
            },
            "CONFLICTING_LIFETIME",
        ),
        (
            "too long",
            {
                let mut r = request("x", &["wallet_view"]);
                r.duration_seconds = Some(367 * 86_400);
                r
            },
            "LIFETIME_TOO_LONG",
        ),
        (
            "zero duration",
            {
                let mut r = request("x", &["wallet_view"]);
                r.duration_seconds = Some(0);
                r
            },
            "INVALID_LIFETIME",
        ),
        (
            "expiry in the past",
            {
                let mut r = request("x", &["wallet_view"]);
                r.expires_at = Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                });
                r
            },
            "INVALID_LIFETIME",
        ),
        (
            "bad enterprise id",
            {
                let mut r = request("x", &["wallet_view"]);
                r.enterprise_id = "has space".into();
                r
            },
            "INVALID_ENTERPRISE_ID",
        ),
    ];
    let before = token_count(&app, &caller).await;
    for (case, req, reason) in cases {
        let status = app
            .client()
            .await
            .create_token(authed(&caller, req))
            .await
            .expect_err(case);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{case}: {}",
            status.message()
        );
        assert_error(&status, Code::InvalidArgument, reason);
        assert!(
            !bad_fields(&status).is_empty(),
            "{case}: BadRequest names the field"
        );
    }
    assert_eq!(
        token_count(&app, &caller).await,
        before,
        "failed creates change nothing"
    );
}

#[tokio::test]
async fn a_token_cannot_get_scopes_its_creator_does_not_hold() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap("alice", &["user_manage", "wallet_view"])
        .await;
    let status = app
        .client()
        .await
        .create_token(authed(
            &caller,
            request("x", &["wallet_view", "wallet_spend"]),
        ))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "SCOPE_NOT_HELD");
    assert_eq!(
        error_meta(&status, "missing_scopes").as_deref(),
        Some("wallet_spend")
    );
    let ok = app
        .client()
        .await
        .create_token(authed(&caller, request("x", &["wallet_view"])))
        .await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn a_caller_with_all_may_grant_any_scope() {
    let app = TestApp::spawn().await;
    let caller = app.bootstrap("alice", &["all"]).await;
    let ok = app
        .client()
        .await
        .create_token(authed(&caller, request("x", &["trade_trade", "scim"])))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn admin_tokens_need_an_admin_caller() {
    let app = TestApp::spawn().await;
    let plain = app.manager("alice").await;
    let mut req = request("x", &["wallet_view"]);
    req.admin = true;
    let status = app
        .client()
        .await
        .create_token(authed(&plain, req.clone()))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "ADMIN_REQUIRED");
    let admin = app
        .bootstrap_with("alice", &["user_manage", "wallet_view"], |r| r.admin = true)
        .await;
    let token = app
        .client()
        .await
        .create_token(authed(&admin, req))
        .await
        .unwrap()
        .into_inner();
    assert!(token.token.unwrap().admin);
    assert_eq!(claims_of(&token.raw_token)["adm"], true);
}

#[tokio::test]
async fn enterprise_tokens_need_membership() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut req = request("x", &["wallet_view"]);
    req.enterprise_id = "ent-1".into();
    let status = app
        .client()
        .await
        .create_token(authed(&caller, req.clone()))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "NOT_ENTERPRISE_MEMBER");
    assert_eq!(
        error_meta(&status, "enterprise_id").as_deref(),
        Some("ent-1")
    );
    app.add_member("ent-1", "alice").await;
    let token = app
        .client()
        .await
        .create_token(authed(&caller, req))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(token.token.unwrap().enterprise_id, "ent-1");
    assert_eq!(claims_of(&token.raw_token)["ent"], "ent-1");
}

#[tokio::test]
async fn production_requires_ip_restriction_and_refuses_all() {
    let app = TestApp::spawn_with(|s| {
        s.environment = tokenmint::domain::Environment::Production;
        s.server.allow_plaintext = true;
        s.keys.master_key = Some(tokenmint::config::Secret::new("11".repeat(32)));
        s.status_list.base_uri = Some("https://tokens.example/statuslists".into());
    })
    .await;
    // The operator's root tokens need a restriction, and not one that lets in everybody.
    for ips in [
        vec![],
        vec!["0.0.0.0/0"],
        vec!["::/0"],
        vec!["::ffff:0:0/96"],
    ] {
        let request = tokenmint::cli::BootstrapRequest {
            user: "alice".into(),
            scopes: vec!["user_manage".into(), "wallet_view".into()],
            admin: false,
            ttl: None,
            ips: ips.iter().map(|s| s.to_string()).collect(),
            label: "root".into(),
            enterprise: None,
        };
        let error = tokenmint::cli::bootstrap(&app.settings, request)
            .await
            .expect_err("an unrestricted production root");
        assert!(
            error.to_string().contains("IP_RESTRICTION_REQUIRED"),
            "{ips:?}: {error}"
        );
    }
    let caller = app
        .bootstrap_with("alice", &["user_manage", "wallet_view"], |r| {
            r.ips = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()]
        })
        .await;
    // Without ip_restrict a child inherits its minter's networks, which meets the requirement.
    let inherited = app
        .client()
        .await
        .create_token(authed(&caller, request("x", &["wallet_view"])))
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    assert_eq!(inherited.ip_restrict, vec!["127.0.0.0/8", "10.0.0.0/8"]);
    // Nobody holds `all` in production: not a root, so no child either.
    let root_with_all = tokenmint::cli::BootstrapRequest {
        user: "alice".into(),
        scopes: vec!["all".into()],
        admin: false,
        ttl: None,
        ips: vec!["10.0.0.1".into()],
        label: "root".into(),
        enterprise: None,
    };
    let error = tokenmint::cli::bootstrap(&app.settings, root_with_all)
        .await
        .expect_err("scope all in production");
    assert!(error.to_string().contains("SCOPE_NOT_ALLOWED"), "{error}");
    let mut all = request("x", &["all"]);
    all.ip_restrict = vec!["10.0.0.1".into()];
    let status = app
        .client()
        .await
        .create_token(authed(&caller, all))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "SCOPE_NOT_HELD");
    let mut ok = request("x", &["wallet_view"]);
    ok.ip_restrict = vec!["10.0.0.1".into()];
    assert!(
        app.client()
            .await
            .create_token(authed(&caller, ok))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn deprecated_scopes_are_accepted_and_announced() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap("alice", &["user_manage", "portfolio_view", "wallet_view"])
        .await;
    let response = app
        .client()
        .await
        .create_token(authed(
            &caller,
            request("x", &["portfolio_view", "wallet_view"]),
        ))
        .await
        .unwrap();
    let header = response
        .metadata()
        .get("x-deprecated-scopes")
        .expect("deprecation header");
    assert_eq!(header.to_str().unwrap(), "portfolio_view");
    let plain = app
        .client()
        .await
        .create_token(authed(&caller, request("x", &["wallet_view"])))
        .await
        .unwrap();
    assert!(plain.metadata().get("x-deprecated-scopes").is_none());
}

#[tokio::test]
async fn minting_from_an_unknown_template_is_not_found() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut req = request("x", &["wallet_view"]);
    req.template_id = uuid::Uuid::now_v7().to_string();
    let status = app
        .client()
        .await
        .create_token(authed(&caller, req))
        .await
        .unwrap_err();
    assert_error(&status, Code::NotFound, "TEMPLATE_NOT_FOUND");
}

/// Group commit under load: 150 concurrent creates (batches of several INSERT statements) all
/// succeed with distinct ids, and every token the server confirmed survives a restart with its own
/// metadata.
#[tokio::test]
async fn concurrent_creates_are_all_durable_and_distinct() {
    let mut app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let client = app.client().await;
    let mut handles = Vec::new();
    for i in 0..150 {
        let (mut client, caller) = (client.clone(), caller.clone());
        handles.push(tokio::spawn(async move {
            let token = client
                .create_token(authed(&caller, request(&format!("t{i}"), &["wallet_view"])))
                .await
                .unwrap()
                .into_inner()
                .token
                .unwrap();
            (i, token.id)
        }));
    }
    let mut created = Vec::new();
    for handle in handles {
        created.push(handle.await.unwrap());
    }
    let ids: std::collections::HashSet<_> = created.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), 150);
    app.restart().await;
    assert_eq!(
        token_count(&app, &caller).await,
        151,
        "150 minted + the caller's own token survive a restart"
    );
    let mut client = app.client().await;
    for (i, id) in created {
        let token = client
            .get_token(authed(&caller, pb::GetTokenRequest { id }))
            .await
            .unwrap()
            .into_inner()
            .token
            .unwrap();
        assert_eq!(token.label, format!("t{i}"));
    }
}
