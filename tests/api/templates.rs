//! TemplateService: creating templates (normalisation, validation, permissions, production rules
//! and per-user name uniqueness, also under concurrency), reading, listing with pagination and
//! filters, updating with a field mask and optimistic versions, and deleting.
//!
//! A caller only ever sees its own templates: another user's template is NOT_FOUND everywhere.

use std::collections::HashSet;
use std::sync::Arc;

use prost_types::FieldMask;
use tokenmint::proto::v1 as pb;
use tokenmint::proto::v1::template_service_client::TemplateServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestApp, assert_error, authed, bad_fields, error_meta};

type Client = TemplateServiceClient<Channel>;

/// One day in seconds.
const DAY: i64 = 86_400;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A CreateTemplate request with `name` and `scopes` and nothing else.
fn create_request(name: &str, scopes: &[&str]) -> pb::CreateTemplateRequest {
    pb::CreateTemplateRequest {
        name: name.into(),
        token_scopes: strings(scopes),
        ..Default::default()
    }
}

/// Spending limits from (coin, amount) pairs and an optional ERC-20 cap.
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

/// A field mask of `paths`.
fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: strings(paths),
    })
}

/// Microseconds of a timestamp field.
fn micros(ts: Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.expect("timestamp is set");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

/// A server, a manager caller for "alice" and a TemplateService client.
async fn setup() -> (TestApp, Client, String) {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let client = app.templates().await;
    (app, client, caller)
}

/// CreateTemplate as `caller`; the template it returns.
async fn create(
    client: &mut Client,
    caller: &str,
    request: pb::CreateTemplateRequest,
) -> Result<pb::Template, Status> {
    let response = client
        .create_template(authed(caller, request))
        .await?
        .into_inner();
    Ok(response
        .template
        .expect("CreateTemplate returns the template"))
}

/// Creates a `wallet_view` template named `name` as `caller`; the template.
async fn create_named(client: &mut Client, caller: &str, name: &str) -> pb::Template {
    create(client, caller, create_request(name, &["wallet_view"]))
        .await
        .expect("CreateTemplate")
}

/// GetTemplate as `caller`.
async fn get(client: &mut Client, caller: &str, id: &str) -> Result<pb::Template, Status> {
    let request = pb::GetTemplateRequest { id: id.into() };
    let response = client
        .get_template(authed(caller, request))
        .await?
        .into_inner();
    Ok(response.template.expect("GetTemplate returns the template"))
}

/// ListTemplates as `caller`.
async fn list(
    client: &mut Client,
    caller: &str,
    request: pb::ListTemplatesRequest,
) -> Result<pb::ListTemplatesResponse, Status> {
    Ok(client
        .list_templates(authed(caller, request))
        .await?
        .into_inner())
}

/// Every template of `caller` (one page of up to 1000).
async fn list_all(client: &mut Client, caller: &str) -> Vec<pb::Template> {
    let request = pb::ListTemplatesRequest {
        page_size: 1000,
        ..Default::default()
    };
    let page = list(client, caller, request).await.expect("ListTemplates");
    assert!(
        page.next_page_token.is_empty(),
        "everything fits in one page"
    );
    page.templates
}

/// How many templates `caller` has (to prove failed calls created nothing).
async fn template_count(client: &mut Client, caller: &str) -> usize {
    list_all(client, caller).await.len()
}

/// UpdateTemplate as `caller` with `template` and `update_mask`.
async fn update(
    client: &mut Client,
    caller: &str,
    template: pb::Template,
    update_mask: Option<FieldMask>,
) -> Result<pb::Template, Status> {
    let request = pb::UpdateTemplateRequest {
        template: Some(template),
        update_mask,
    };
    let response = client
        .update_template(authed(caller, request))
        .await?
        .into_inner();
    Ok(response
        .template
        .expect("UpdateTemplate returns the template"))
}

/// DeleteTemplate as `caller`.
async fn delete(client: &mut Client, caller: &str, id: &str) -> Result<(), Status> {
    let request = pb::DeleteTemplateRequest { id: id.into() };
    client.delete_template(authed(caller, request)).await?;
    Ok(())
}

/// Asserts that `request` fails with `code` and `reason` and that no template was created; returns
/// the status.
async fn assert_create_fails(
    client: &mut Client,
    caller: &str,
    request: pb::CreateTemplateRequest,
    code: Code,
    reason: &str,
) -> Status {
    let before = template_count(client, caller).await;
    let status = create(client, caller, request)
        .await
        .expect_err("CreateTemplate must fail");
    assert_error(&status, code, reason);
    assert_eq!(
        template_count(client, caller).await,
        before,
        "a failed create changes nothing"
    );
    status
}

/// Asserts that the first BadRequest field of `status` starts with `prefix`.
#[track_caller]
fn assert_field_starts_with(status: &Status, prefix: &str) {
    let fields = bad_fields(status);
    assert!(
        fields.first().is_some_and(|f| f.starts_with(prefix)),
        "BadRequest must name a field under {prefix:?}, got {fields:?}"
    );
}

/// A template of alice's with every field set (description "original").
async fn full_template(client: &mut Client, caller: &str) -> pb::Template {
    let request = pb::CreateTemplateRequest {
        name: "full".into(),
        description: "original".into(),
        token_scopes: strings(&["wallet_view", "wallet_spend"]),
        allowed_ips: strings(&["10.0.0.1"]),
        token_limits: limits(&[("btc", "1000")], Some("50")),
        default_duration_seconds: 7200,
        ..Default::default()
    };
    create(client, caller, request)
        .await
        .expect("CreateTemplate")
}

// ---------------------------------------------------------------------------------------------
// CreateTemplate: success
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_returns_the_normalised_template_at_version_one() {
    let (_app, mut client, caller) = setup().await;
    let request = pb::CreateTemplateRequest {
        name: "  ci deploy  ".into(),
        description: "deploy tokens".into(),
        token_scopes: strings(&["wallet_view", "trade_view", "wallet_view"]),
        allowed_ips: strings(&["10.0.0.1", "10.1.2.3/16"]),
        token_limits: limits(&[("BTC", "0100")], Some("007")),
        default_duration_seconds: 7200,
        ..Default::default()
    };
    let template = create(&mut client, &caller, request).await.expect("create");

    assert!(
        uuid::Uuid::try_parse(&template.id).is_ok(),
        "id {:?} is a UUID",
        template.id
    );
    assert_eq!(template.name, "ci deploy", "names are trimmed");
    assert_eq!(template.user_id, "alice");
    assert_eq!(template.enterprise_id, "");
    assert_eq!(template.description, "deploy tokens");
    assert_eq!(
        template.token_scopes,
        ["trade_view", "wallet_view"],
        "scopes are de-duplicated and sorted"
    );
    assert_eq!(template.allowed_ips, ["10.0.0.1/32", "10.1.0.0/16"]);
    let limits = template.token_limits.clone().expect("limits");
    assert_eq!(limits.spending_limits.len(), 1);
    assert_eq!(limits.spending_limits[0].coin, "btc");
    assert_eq!(limits.spending_limits[0].tx_value_limit, "100");
    assert_eq!(
        limits
            .all_erc20_tokens_limit
            .expect("erc20 limit")
            .tx_value_limit,
        "7"
    );
    assert_eq!(template.default_duration_seconds, 7200);
    assert_eq!(template.version, 1);
    assert_eq!(template.created_by, "alice");
    assert_eq!(template.updated_by, "alice");
    let created = micros(template.created_at);
    let now = chrono::Utc::now().timestamp_micros();
    assert!(
        (now - 60_000_000..=now).contains(&created),
        "created_at {created} is about now ({now})"
    );

    let fetched = get(&mut client, &caller, &template.id).await.expect("get");
    assert_eq!(fetched, template, "GetTemplate returns what was stored");
}

#[tokio::test]
async fn create_accepts_a_100_character_name_and_a_1000_character_description() {
    let (_app, mut client, caller) = setup().await;
    let mut request = create_request(&"n".repeat(100), &["wallet_view"]);
    request.description = "d".repeat(1000);
    let template = create(&mut client, &caller, request).await.expect("create");
    assert_eq!(template.name, "n".repeat(100));
    assert_eq!(template.description, "d".repeat(1000));
}

#[tokio::test]
async fn create_accepts_a_zero_default_duration_and_one_of_exactly_366_days() {
    let (_app, mut client, caller) = setup().await;
    for (name, duration) in [("zero", 0), ("longest", 366 * DAY)] {
        let mut request = create_request(name, &["wallet_view"]);
        request.default_duration_seconds = duration;
        let template = create(&mut client, &caller, request)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(template.default_duration_seconds, duration);
    }
}

#[tokio::test]
async fn create_accepts_deprecated_scopes_and_announces_them_in_a_header() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap("alice", &["user_manage", "portfolio_view", "wallet_view"])
        .await;
    let mut client = app.templates().await;
    let request = create_request("legacy", &["portfolio_view", "wallet_view"]);
    let response = client
        .create_template(authed(&caller, request))
        .await
        .expect("a deprecated scope is accepted");
    let header = response
        .metadata()
        .get("x-deprecated-scopes")
        .expect("deprecation header");
    assert_eq!(header.to_str().unwrap(), "portfolio_view");
    let template = response.into_inner().template.expect("template");
    assert_eq!(template.token_scopes, ["portfolio_view", "wallet_view"]);

    let plain = client
        .create_template(authed(&caller, create_request("plain", &["wallet_view"])))
        .await
        .expect("create");
    assert!(plain.metadata().get("x-deprecated-scopes").is_none());
}

#[tokio::test]
async fn a_caller_with_all_may_put_any_scope_in_a_template() {
    let app = TestApp::spawn().await;
    let caller = app.bootstrap("alice", &["all"]).await;
    let mut client = app.templates().await;
    let request = create_request("powerful", &["trade_trade", "scim"]);
    let template = create(&mut client, &caller, request).await.expect("create");
    assert_eq!(template.token_scopes, ["scim", "trade_trade"]);
}

// ---------------------------------------------------------------------------------------------
// CreateTemplate: validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_with_an_empty_or_blank_name_is_template_name_required() {
    let (_app, mut client, caller) = setup().await;
    for name in ["", "   "] {
        let request = create_request(name, &["wallet_view"]);
        let status = assert_create_fails(
            &mut client,
            &caller,
            request,
            Code::InvalidArgument,
            "TEMPLATE_NAME_REQUIRED",
        )
        .await;
        assert_eq!(bad_fields(&status), ["name"], "name {name:?}");
    }
}

#[tokio::test]
async fn create_with_a_101_character_name_is_invalid_template_name() {
    let (_app, mut client, caller) = setup().await;
    let request = create_request(&"n".repeat(101), &["wallet_view"]);
    let status = assert_create_fails(
        &mut client,
        &caller,
        request,
        Code::InvalidArgument,
        "INVALID_TEMPLATE_NAME",
    )
    .await;
    assert_eq!(bad_fields(&status), ["name"]);
}

#[tokio::test]
async fn create_with_a_control_character_in_the_name_is_invalid_template_name() {
    let (_app, mut client, caller) = setup().await;
    let request = create_request("a\u{1}b", &["wallet_view"]);
    let status = assert_create_fails(
        &mut client,
        &caller,
        request,
        Code::InvalidArgument,
        "INVALID_TEMPLATE_NAME",
    )
    .await;
    assert_eq!(bad_fields(&status), ["name"]);
}

#[tokio::test]
async fn create_with_an_unknown_scope_is_invalid_scope_naming_the_entry() {
    let (_app, mut client, caller) = setup().await;
    let request = create_request("x", &["wallet_view", "bogus_scope"]);
    let status = assert_create_fails(
        &mut client,
        &caller,
        request,
        Code::InvalidArgument,
        "INVALID_SCOPE",
    )
    .await;
    assert_eq!(bad_fields(&status), ["token_scopes[1]"]);
    assert_eq!(error_meta(&status, "scope").as_deref(), Some("bogus_scope"));
}

#[tokio::test]
async fn create_without_scopes_is_invalid_scope() {
    let (_app, mut client, caller) = setup().await;
    let request = create_request("x", &[]);
    let status = assert_create_fails(
        &mut client,
        &caller,
        request,
        Code::InvalidArgument,
        "INVALID_SCOPE",
    )
    .await;
    assert_field_starts_with(&status, "token_scopes");
}

#[tokio::test]
async fn create_with_a_bad_ip_is_invalid_ip_address_naming_the_entry() {
    let (_app, mut client, caller) = setup().await;
    for bad in ["999.1.1.1", "10.0.0.0/33", "not an ip"] {
        let mut request = create_request("x", &["wallet_view"]);
        request.allowed_ips = strings(&["10.0.0.1", bad]);
        let status = assert_create_fails(
            &mut client,
            &caller,
            request,
            Code::InvalidArgument,
            "INVALID_IP_ADDRESS",
        )
        .await;
        assert_eq!(bad_fields(&status), ["allowed_ips[1]"], "ip {bad:?}");
    }
}

#[tokio::test]
async fn create_with_a_duplicate_coin_is_duplicate_coin() {
    let (_app, mut client, caller) = setup().await;
    let mut request = create_request("x", &["wallet_view"]);
    request.token_limits = limits(&[("eth", "1"), ("ETH", "2")], None);
    let status = assert_create_fails(
        &mut client,
        &caller,
        request,
        Code::InvalidArgument,
        "DUPLICATE_COIN",
    )
    .await;
    assert_field_starts_with(&status, "token_limits");
}

#[tokio::test]
async fn create_with_a_non_numeric_or_79_digit_limit_is_invalid_limit() {
    let (_app, mut client, caller) = setup().await;
    let too_long = "9".repeat(79);
    for amount in ["ten", "1.5", "-1", too_long.as_str()] {
        let mut request = create_request("x", &["wallet_view"]);
        request.token_limits = limits(&[("btc", amount)], None);
        let status = assert_create_fails(
            &mut client,
            &caller,
            request,
            Code::InvalidArgument,
            "INVALID_LIMIT",
        )
        .await;
        assert_field_starts_with(&status, "token_limits");

        let mut request = create_request("x", &["wallet_view"]);
        request.token_limits = limits(&[], Some(amount));
        let status = assert_create_fails(
            &mut client,
            &caller,
            request,
            Code::InvalidArgument,
            "INVALID_LIMIT",
        )
        .await;
        assert_field_starts_with(&status, "token_limits");
    }
}

#[tokio::test]
async fn create_with_a_negative_default_duration_is_invalid_lifetime() {
    let (_app, mut client, caller) = setup().await;
    let mut request = create_request("x", &["wallet_view"]);
    request.default_duration_seconds = -1;
    let status = assert_create_fails(
        &mut client,
        &caller,
        request,
        Code::InvalidArgument,
        "INVALID_LIFETIME",
    )
    .await;
    assert_eq!(bad_fields(&status), ["default_duration_seconds"]);
}

#[tokio::test]
async fn create_with_a_default_duration_above_366_days_is_lifetime_too_long() {
    let (_app, mut client, caller) = setup().await;
    for duration in [366 * DAY + 1, 367 * DAY] {
        let mut request = create_request("x", &["wallet_view"]);
        request.default_duration_seconds = duration;
        let status = assert_create_fails(
            &mut client,
            &caller,
            request,
            Code::InvalidArgument,
            "LIFETIME_TOO_LONG",
        )
        .await;
        assert_eq!(bad_fields(&status), ["default_duration_seconds"]);
    }
}

#[tokio::test]
async fn create_with_a_1001_character_description_is_invalid_description() {
    let (_app, mut client, caller) = setup().await;
    let mut request = create_request("x", &["wallet_view"]);
    request.description = "d".repeat(1001);
    let status = assert_create_fails(
        &mut client,
        &caller,
        request,
        Code::InvalidArgument,
        "INVALID_DESCRIPTION",
    )
    .await;
    assert_eq!(bad_fields(&status), ["description"]);
}

// ---------------------------------------------------------------------------------------------
// CreateTemplate: permissions and environment
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_with_a_scope_the_caller_does_not_hold_is_scope_not_held() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap("alice", &["user_manage", "wallet_view"])
        .await;
    let mut client = app.templates().await;
    let request = create_request("x", &["wallet_view", "wallet_spend"]);
    assert_create_fails(
        &mut client,
        &caller,
        request,
        Code::PermissionDenied,
        "SCOPE_NOT_HELD",
    )
    .await;
    let held = create(&mut client, &caller, create_request("x", &["wallet_view"])).await;
    assert!(held.is_ok(), "{held:?}");
}

#[tokio::test]
async fn create_for_an_enterprise_needs_membership() {
    let (app, mut client, caller) = setup().await;
    let mut request = create_request("enterprise", &["wallet_view"]);
    request.enterprise_id = "ent-1".into();
    assert_create_fails(
        &mut client,
        &caller,
        request.clone(),
        Code::PermissionDenied,
        "NOT_ENTERPRISE_MEMBER",
    )
    .await;

    app.add_member("ent-1", "alice").await;
    let template = create(&mut client, &caller, request).await.expect("create");
    assert_eq!(template.enterprise_id, "ent-1");
}

#[tokio::test]
async fn create_in_production_needs_allowed_ips() {
    let app = TestApp::spawn_with(|s| {
        s.environment = tokenmint::domain::Environment::Production;
        s.server.allow_plaintext = true;
        s.keys.master_key = Some(tokenmint::config::Secret::new("11".repeat(32)));
        s.status_list.base_uri = Some("https://tokens.example/statuslists".into());
    })
    .await;
    let caller = app
        .bootstrap_with("alice", &["user_manage", "wallet_view"], |r| {
            r.ips = vec!["127.0.0.1".into()]
        })
        .await;
    let mut client = app.templates().await;
    assert_create_fails(
        &mut client,
        &caller,
        create_request("prod", &["wallet_view"]),
        Code::InvalidArgument,
        "IP_RESTRICTION_REQUIRED",
    )
    .await;

    let mut request = create_request("prod", &["wallet_view"]);
    request.allowed_ips = strings(&["10.0.0.1"]);
    let template = create(&mut client, &caller, request).await.expect("create");
    assert_eq!(template.allowed_ips, ["10.0.0.1/32"]);
}

// ---------------------------------------------------------------------------------------------
// CreateTemplate: name uniqueness
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_second_template_with_the_same_name_is_template_name_taken() {
    let (_app, mut client, caller) = setup().await;
    let first = create_named(&mut client, &caller, "deploy").await;
    for name in ["deploy", "  deploy  "] {
        let status = assert_create_fails(
            &mut client,
            &caller,
            create_request(name, &["wallet_view", "trade_view"]),
            Code::AlreadyExists,
            "TEMPLATE_NAME_TAKEN",
        )
        .await;
        assert_eq!(
            error_meta(&status, "template_id").as_deref(),
            Some(first.id.as_str()),
            "name {name:?}: the metadata names the existing template"
        );
    }
    let unchanged = get(&mut client, &caller, &first.id).await.expect("get");
    assert_eq!(unchanged, first, "the existing template is untouched");
}

#[tokio::test]
async fn template_names_are_case_sensitive() {
    let (_app, mut client, caller) = setup().await;
    let upper = create_named(&mut client, &caller, "Deploy").await;
    let lower = create_named(&mut client, &caller, "deploy").await;
    assert_ne!(upper.id, lower.id);
    assert_eq!(template_count(&mut client, &caller).await, 2);
}

#[tokio::test]
async fn different_users_may_use_the_same_name() {
    let (app, mut client, alice) = setup().await;
    let bob = app.manager("bob").await;
    let alices = create_named(&mut client, &alice, "deploy").await;
    let bobs = create_named(&mut client, &bob, "deploy").await;
    assert_ne!(alices.id, bobs.id);
    assert_eq!(alices.user_id, "alice");
    assert_eq!(bobs.user_id, "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_let_exactly_one_win() {
    const CALLS: usize = 50;
    let (app, mut client, caller) = setup().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
    let mut handles = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let mut client = app.templates().await;
        let (caller, barrier) = (caller.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            create(
                &mut client,
                &caller,
                create_request("race", &["wallet_view"]),
            )
            .await
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for handle in handles {
        match handle.await.expect("task") {
            Ok(template) => winners.push(template),
            Err(status) => losers.push(status),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    assert_eq!(losers.len(), CALLS - 1);
    let winner = &winners[0];
    for status in &losers {
        assert_error(status, Code::AlreadyExists, "TEMPLATE_NAME_TAKEN");
        assert_eq!(
            error_meta(status, "template_id").as_deref(),
            Some(winner.id.as_str())
        );
    }
    let all = list_all(&mut client, &caller).await;
    assert_eq!(all.len(), 1, "exactly one template exists");
    assert_eq!(all[0].id, winner.id);
}

// ---------------------------------------------------------------------------------------------
// GetTemplate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_returns_the_callers_template() {
    let (_app, mut client, caller) = setup().await;
    let created = full_template(&mut client, &caller).await;
    let fetched = get(&mut client, &caller, &created.id).await.expect("get");
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn get_of_another_users_template_is_template_not_found() {
    let (app, mut client, alice) = setup().await;
    let bob = app.manager("bob").await;
    let template = create_named(&mut client, &alice, "alice's").await;
    let status = get(&mut client, &bob, &template.id)
        .await
        .expect_err("bob must not see alice's template");
    assert_error(&status, Code::NotFound, "TEMPLATE_NOT_FOUND");
}

#[tokio::test]
async fn get_of_an_unknown_id_is_template_not_found() {
    let (_app, mut client, caller) = setup().await;
    let id = uuid::Uuid::now_v7().to_string();
    let status = get(&mut client, &caller, &id)
        .await
        .expect_err("no such template");
    assert_error(&status, Code::NotFound, "TEMPLATE_NOT_FOUND");
}

#[tokio::test]
async fn get_of_a_malformed_id_is_invalid_id() {
    let (_app, mut client, caller) = setup().await;
    let status = get(&mut client, &caller, "nope")
        .await
        .expect_err("a malformed id must be refused");
    assert_error(&status, Code::InvalidArgument, "INVALID_ID");
    assert_eq!(bad_fields(&status), ["id"]);
}

// ---------------------------------------------------------------------------------------------
// ListTemplates
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_pages_newest_first_without_gaps_or_duplicates() {
    let (_app, mut client, caller) = setup().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            create_named(&mut client, &caller, &format!("template {i}"))
                .await
                .id,
        );
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListTemplatesRequest {
            page_size: 3,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = list(&mut client, &caller, request)
            .await
            .expect("ListTemplates");
        sizes.push(page.templates.len());
        seen.extend(page.templates.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        assert!(sizes.len() < 10, "pagination must end");
    }
    assert_eq!(sizes, [3, 3, 1]);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no template is listed twice");
    assert_eq!(seen, newest_first, "every template, newest first");
}

#[tokio::test]
async fn list_filters_by_enterprise() {
    let (app, mut client, caller) = setup().await;
    app.add_member("ent-1", "alice").await;
    app.add_member("ent-2", "alice").await;
    let mut ids = Vec::new();
    for (name, enterprise) in [("a", "ent-1"), ("b", ""), ("c", "ent-1"), ("d", "ent-2")] {
        let mut request = create_request(name, &["wallet_view"]);
        request.enterprise_id = enterprise.into();
        ids.push(
            create(&mut client, &caller, request)
                .await
                .expect("create")
                .id,
        );
    }

    let request = pb::ListTemplatesRequest {
        enterprise_id: "ent-1".into(),
        ..Default::default()
    };
    let page = list(&mut client, &caller, request)
        .await
        .expect("ListTemplates");
    let listed: Vec<&str> = page.templates.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[0].as_str()]);
    assert!(page.templates.iter().all(|t| t.enterprise_id == "ent-1"));
    assert_eq!(
        list_all(&mut client, &caller).await.len(),
        4,
        "no filter lists all"
    );
}

#[tokio::test]
async fn list_never_shows_another_users_templates() {
    let (app, mut client, alice) = setup().await;
    let bob = app.manager("bob").await;
    let alices = create_named(&mut client, &alice, "alice's").await;
    let bobs = create_named(&mut client, &bob, "bob's").await;
    create_named(&mut client, &bob, "deploy").await;

    let listed = list_all(&mut client, &alice).await;
    let ids: Vec<&str> = listed.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [alices.id.as_str()]);
    let listed = list_all(&mut client, &bob).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| t.user_id == "bob"));
    assert!(listed.iter().any(|t| t.id == bobs.id));
}

#[tokio::test]
async fn list_with_a_negative_page_size_is_invalid_page_size() {
    let (_app, mut client, caller) = setup().await;
    let request = pb::ListTemplatesRequest {
        page_size: -1,
        ..Default::default()
    };
    let status = list(&mut client, &caller, request)
        .await
        .expect_err("a negative page size must be refused");
    assert_error(&status, Code::InvalidArgument, "INVALID_PAGE_SIZE");
    assert_eq!(bad_fields(&status), ["page_size"]);
}

#[tokio::test]
async fn list_with_a_garbage_page_token_is_invalid_page_token() {
    let (_app, mut client, caller) = setup().await;
    create_named(&mut client, &caller, "x").await;
    for garbage in ["garbage!", "bm90IGEgY3Vyc29y"] {
        let request = pb::ListTemplatesRequest {
            page_token: garbage.into(),
            ..Default::default()
        };
        let status = list(&mut client, &caller, request)
            .await
            .expect_err("a garbage page token must be refused");
        assert_error(&status, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
        assert_eq!(
            bad_fields(&status),
            ["page_token"],
            "page_token {garbage:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// UpdateTemplate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn update_changes_only_the_masked_fields() {
    let (_app, mut client, caller) = setup().await;
    let before = full_template(&mut client, &caller).await;
    let change = pb::Template {
        id: before.id.clone(),
        name: "renamed".into(),
        description: "new description".into(),
        token_scopes: strings(&["trade_view"]),
        allowed_ips: strings(&["192.168.0.1"]),
        default_duration_seconds: 60,
        ..Default::default()
    };
    let after = update(&mut client, &caller, change, mask(&["description"]))
        .await
        .expect("update");

    let expected = pb::Template {
        description: "new description".into(),
        version: 2,
        updated_at: after.updated_at,
        updated_by: "alice".into(),
        ..before.clone()
    };
    assert_eq!(
        after, expected,
        "only the description (and bookkeeping) changes"
    );
    assert_eq!(after.name, "full");
    let stored = get(&mut client, &caller, &before.id).await.expect("get");
    assert_eq!(stored, after, "the change is stored");
}

#[tokio::test]
async fn each_update_increments_the_version_and_advances_updated_at() {
    let (_app, mut client, caller) = setup().await;
    let v1 = full_template(&mut client, &caller).await;
    assert_eq!(v1.version, 1);

    let change = |description: &str| pb::Template {
        id: v1.id.clone(),
        description: description.into(),
        ..Default::default()
    };
    let v2 = update(
        &mut client,
        &caller,
        change("second"),
        mask(&["description"]),
    )
    .await
    .expect("first update");
    assert_eq!(v2.version, 2);
    assert!(
        micros(v2.updated_at) > micros(v1.updated_at),
        "updated_at advances"
    );

    let v3 = update(
        &mut client,
        &caller,
        change("third"),
        mask(&["description"]),
    )
    .await
    .expect("second update");
    assert_eq!(v3.version, 3);
    assert!(
        micros(v3.updated_at) > micros(v2.updated_at),
        "updated_at advances"
    );
    assert_eq!(v3.created_at, v1.created_at, "created_at never changes");
    assert_eq!(v3.created_by, "alice");
    assert_eq!(v3.updated_by, "alice");
}

#[tokio::test]
async fn update_with_a_masked_empty_allowed_ips_clears_them() {
    let (_app, mut client, caller) = setup().await;
    let before = full_template(&mut client, &caller).await;
    assert_eq!(before.allowed_ips, ["10.0.0.1/32"]);
    let change = pb::Template {
        id: before.id.clone(),
        ..Default::default()
    };
    let after = update(&mut client, &caller, change, mask(&["allowed_ips"]))
        .await
        .expect("update");
    assert!(after.allowed_ips.is_empty(), "{:?}", after.allowed_ips);
    assert_eq!(after.version, 2);
    assert_eq!(
        after.token_scopes, before.token_scopes,
        "unmasked fields stay"
    );
    assert_eq!(
        after.description, before.description,
        "unmasked fields stay"
    );
    let stored = get(&mut client, &caller, &before.id).await.expect("get");
    assert!(stored.allowed_ips.is_empty());
}

#[tokio::test]
async fn update_without_a_mask_changes_the_non_empty_fields() {
    let (_app, mut client, caller) = setup().await;
    let before = full_template(&mut client, &caller).await;
    let change = pb::Template {
        id: before.id.clone(),
        description: "new description".into(),
        ..Default::default()
    };
    let after = update(&mut client, &caller, change, None)
        .await
        .expect("update");
    assert_eq!(after.description, "new description");
    assert_eq!(after.name, before.name, "an empty name is left alone");
    assert_eq!(after.token_scopes, before.token_scopes);
    assert_eq!(after.allowed_ips, before.allowed_ips);
    assert_eq!(after.token_limits, before.token_limits);
    assert_eq!(
        after.default_duration_seconds,
        before.default_duration_seconds
    );
    assert_eq!(after.version, 2);
}

#[tokio::test]
async fn update_with_an_unknown_mask_path_is_invalid_update_mask_and_changes_nothing() {
    let (_app, mut client, caller) = setup().await;
    let before = full_template(&mut client, &caller).await;
    for path in ["user_id", "nope"] {
        let change = pb::Template {
            id: before.id.clone(),
            user_id: "mallory".into(),
            description: "changed".into(),
            ..Default::default()
        };
        let status = update(&mut client, &caller, change, mask(&[path]))
            .await
            .expect_err("an unknown mask path must be refused");
        assert_error(&status, Code::InvalidArgument, "INVALID_UPDATE_MASK");
        assert_eq!(
            bad_fields(&status),
            ["update_mask.paths[0]"],
            "path {path:?}"
        );
        let stored = get(&mut client, &caller, &before.id).await.expect("get");
        assert_eq!(stored, before, "path {path:?}: nothing changes");
        assert_eq!(stored.version, 1);
    }
}

#[tokio::test]
async fn renaming_to_another_of_the_callers_names_is_template_name_taken() {
    let (_app, mut client, caller) = setup().await;
    let first = create_named(&mut client, &caller, "first").await;
    let second = create_named(&mut client, &caller, "second").await;
    let change = pb::Template {
        id: second.id.clone(),
        name: "first".into(),
        ..Default::default()
    };
    let status = update(&mut client, &caller, change, mask(&["name"]))
        .await
        .expect_err("the name is taken");
    assert_error(&status, Code::AlreadyExists, "TEMPLATE_NAME_TAKEN");
    let stored = get(&mut client, &caller, &second.id).await.expect("get");
    assert_eq!(stored, second, "the renamed template is unchanged");
    let stored = get(&mut client, &caller, &first.id).await.expect("get");
    assert_eq!(stored, first, "the other template is unchanged");
}

#[tokio::test]
async fn update_with_a_stale_version_is_template_version_mismatch() {
    let (_app, mut client, caller) = setup().await;
    let v1 = full_template(&mut client, &caller).await;
    let change = |description: &str, version: i64| pb::Template {
        id: v1.id.clone(),
        description: description.into(),
        version,
        ..Default::default()
    };
    let v2 = update(
        &mut client,
        &caller,
        change("second", 1),
        mask(&["description"]),
    )
    .await
    .expect("the current version is accepted");
    assert_eq!(v2.version, 2);

    let status = update(
        &mut client,
        &caller,
        change("stale", 1),
        mask(&["description"]),
    )
    .await
    .expect_err("a stale version must be refused");
    assert_error(
        &status,
        Code::FailedPrecondition,
        "TEMPLATE_VERSION_MISMATCH",
    );
    let stored = get(&mut client, &caller, &v1.id).await.expect("get");
    assert_eq!(stored, v2, "a refused update changes nothing");
}

#[tokio::test]
async fn update_with_version_zero_skips_the_version_check() {
    let (_app, mut client, caller) = setup().await;
    let v1 = full_template(&mut client, &caller).await;
    let change = |description: &str| pb::Template {
        id: v1.id.clone(),
        description: description.into(),
        version: 0,
        ..Default::default()
    };
    let v2 = update(
        &mut client,
        &caller,
        change("second"),
        mask(&["description"]),
    )
    .await
    .expect("update");
    let v3 = update(
        &mut client,
        &caller,
        change("third"),
        mask(&["description"]),
    )
    .await
    .expect("version 0 never mismatches");
    assert_eq!((v2.version, v3.version), (2, 3));
    assert_eq!(v3.description, "third");
}

#[tokio::test]
async fn updating_scopes_to_one_the_caller_does_not_hold_is_scope_not_held() {
    let (_app, mut client, caller) = setup().await;
    let before = full_template(&mut client, &caller).await;
    let change = pb::Template {
        id: before.id.clone(),
        token_scopes: strings(&["wallet_view", "trade_trade"]),
        ..Default::default()
    };
    let status = update(&mut client, &caller, change, mask(&["token_scopes"]))
        .await
        .expect_err("trade_trade is not held by the caller");
    assert_error(&status, Code::PermissionDenied, "SCOPE_NOT_HELD");
    let stored = get(&mut client, &caller, &before.id).await.expect("get");
    assert_eq!(stored, before, "a refused update changes nothing");
}

#[tokio::test]
async fn update_of_another_users_template_is_template_not_found() {
    let (app, mut client, alice) = setup().await;
    let bob = app.manager("bob").await;
    let before = full_template(&mut client, &alice).await;
    let change = pb::Template {
        id: before.id.clone(),
        description: "bob was here".into(),
        ..Default::default()
    };
    let status = update(&mut client, &bob, change, mask(&["description"]))
        .await
        .expect_err("bob must not change alice's template");
    assert_error(&status, Code::NotFound, "TEMPLATE_NOT_FOUND");
    let stored = get(&mut client, &alice, &before.id).await.expect("get");
    assert_eq!(stored, before);
}

#[tokio::test]
async fn update_without_a_template_is_invalid_argument() {
    let (_app, mut client, caller) = setup().await;
    let request = pb::UpdateTemplateRequest {
        template: None,
        update_mask: mask(&["name"]),
    };
    let status = client
        .update_template(authed(&caller, request))
        .await
        .expect_err("a template message is required");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        !bad_fields(&status).is_empty(),
        "BadRequest names the missing field"
    );
}

// ---------------------------------------------------------------------------------------------
// DeleteTemplate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_deleted_template_is_template_not_found() {
    let (_app, mut client, caller) = setup().await;
    let template = create_named(&mut client, &caller, "doomed").await;
    delete(&mut client, &caller, &template.id)
        .await
        .expect("delete");
    let status = get(&mut client, &caller, &template.id)
        .await
        .expect_err("deleted");
    assert_error(&status, Code::NotFound, "TEMPLATE_NOT_FOUND");
    assert!(list_all(&mut client, &caller).await.is_empty());
}

#[tokio::test]
async fn deleting_a_template_twice_is_template_not_found() {
    let (_app, mut client, caller) = setup().await;
    let template = create_named(&mut client, &caller, "doomed").await;
    delete(&mut client, &caller, &template.id)
        .await
        .expect("delete");
    let status = delete(&mut client, &caller, &template.id)
        .await
        .expect_err("already deleted");
    assert_error(&status, Code::NotFound, "TEMPLATE_NOT_FOUND");
}

#[tokio::test]
async fn deleting_another_users_template_is_template_not_found_and_keeps_it() {
    let (app, mut client, alice) = setup().await;
    let bob = app.manager("bob").await;
    let template = create_named(&mut client, &alice, "alice's").await;
    let status = delete(&mut client, &bob, &template.id)
        .await
        .expect_err("bob must not delete alice's template");
    assert_error(&status, Code::NotFound, "TEMPLATE_NOT_FOUND");
    let stored = get(&mut client, &alice, &template.id)
        .await
        .expect("the template still exists");
    assert_eq!(stored, template);
}

#[tokio::test]
async fn a_deleted_templates_name_can_be_reused() {
    let (_app, mut client, caller) = setup().await;
    let old = create_named(&mut client, &caller, "deploy").await;
    delete(&mut client, &caller, &old.id).await.expect("delete");
    let new = create_named(&mut client, &caller, "deploy").await;
    assert_ne!(new.id, old.id);
    assert_eq!(new.name, "deploy");
    assert_eq!(new.version, 1);
    let listed = list_all(&mut client, &caller).await;
    let ids: Vec<&str> = listed.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [new.id.as_str()]);
}
