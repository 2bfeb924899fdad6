//! CreateToken with `template_id`: what a token takes from its template, how a request may narrow
//! it, that every widening is refused (EXCEEDS_TEMPLATE) without minting anything, that the
//! caller's own rules still apply, unknown and foreign templates, and that updating or deleting a
//! template never changes the tokens already minted from it.

use tokenmint::proto::v1 as pb;
use tokenmint::proto::v1::template_service_client::TemplateServiceClient;
use tokenmint::proto::v1::token_service_client::TokenServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestApp, assert_error, authed, bad_fields, claims_of};

type Tokens = TokenServiceClient<Channel>;
type Templates = TemplateServiceClient<Channel>;

/// Name of the template most tests mint from.
const NAME: &str = "ci deploy";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
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

/// Limits as sorted (coin, amount) pairs and the ERC-20 cap, so that "none" and "empty" compare
/// equal.
fn limit_values(limits: &Option<pb::TokenLimits>) -> (Vec<(String, String)>, Option<String>) {
    let Some(limits) = limits else {
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

/// The template most tests mint from: `wallet_spend` + `wallet_view`, two networks, limits for
/// btc (1000) and eth (50), an ERC-20 cap of 500 and a default lifetime of two hours.
fn recipe() -> pb::CreateTemplateRequest {
    pb::CreateTemplateRequest {
        name: NAME.into(),
        description: "deploy tokens".into(),
        token_scopes: strings(&["wallet_view", "wallet_spend"]),
        allowed_ips: strings(&["10.0.0.0/8", "192.168.1.1"]),
        token_limits: limits(&[("btc", "1000"), ("eth", "50")], Some("500")),
        default_duration_seconds: 7200,
        ..Default::default()
    }
}

/// A CreateToken request naming only `template_id`.
fn from_template(template_id: &str) -> pb::CreateTokenRequest {
    pb::CreateTokenRequest {
        template_id: template_id.into(),
        ..Default::default()
    }
}

/// A server, a manager caller for "alice" and both clients.
struct Harness {
    app: TestApp,
    tokens: Tokens,
    templates: Templates,
    caller: String,
}

impl Harness {
    async fn start() -> Self {
        let app = TestApp::spawn().await;
        let caller = app.manager("alice").await;
        let tokens = app.client().await;
        let templates = app.templates().await;
        Self {
            app,
            tokens,
            templates,
            caller,
        }
    }

    /// CreateTemplate as `caller`; the template.
    async fn template_as(&self, caller: &str, request: pb::CreateTemplateRequest) -> pb::Template {
        let mut client = self.templates.clone();
        let response = client.create_template(authed(caller, request)).await;
        let response = response.expect("CreateTemplate").into_inner();
        response
            .template
            .expect("CreateTemplate returns the template")
    }

    /// CreateTemplate as the harness caller; the template.
    async fn template(&self, request: pb::CreateTemplateRequest) -> pb::Template {
        self.template_as(&self.caller, request).await
    }

    /// CreateToken as `caller`.
    async fn mint_as(
        &self,
        caller: &str,
        request: pb::CreateTokenRequest,
    ) -> Result<pb::CreateTokenResponse, Status> {
        let mut client = self.tokens.clone();
        let response = client.create_token(authed(caller, request)).await?;
        Ok(response.into_inner())
    }

    /// CreateToken as the harness caller.
    async fn mint(
        &self,
        request: pb::CreateTokenRequest,
    ) -> Result<pb::CreateTokenResponse, Status> {
        self.mint_as(&self.caller, request).await
    }

    /// CreateToken as the harness caller, which must succeed; the token and the raw JWT.
    async fn mint_ok(&self, request: pb::CreateTokenRequest) -> (pb::Token, String) {
        let response = self.mint(request).await.expect("CreateToken");
        let token = response.token.expect("CreateToken returns the token");
        (token, response.raw_token)
    }

    /// GetToken as the harness caller.
    async fn get_token(&self, id: &str) -> pb::Token {
        let mut client = self.tokens.clone();
        let request = authed(&self.caller, pb::GetTokenRequest { id: id.into() });
        let response = client
            .get_token(request)
            .await
            .expect("GetToken")
            .into_inner();
        response.token.expect("GetToken returns the token")
    }

    /// How many tokens `caller`'s user has (to prove failed calls minted nothing).
    async fn token_count(&self, caller: &str) -> usize {
        let request = pb::ListTokensRequest {
            page_size: 1000,
            ..Default::default()
        };
        let mut client = self.tokens.clone();
        let response = client.list_tokens(authed(caller, request)).await;
        response.expect("ListTokens").into_inner().tokens.len()
    }

    /// Asserts that minting `request` as `caller` fails with `code` and `reason` and mints
    /// nothing.
    async fn assert_refused_as(
        &self,
        caller: &str,
        request: pb::CreateTokenRequest,
        code: Code,
        reason: &str,
    ) -> Status {
        let before = self.token_count(caller).await;
        let status = self
            .mint_as(caller, request)
            .await
            .expect_err("CreateToken must fail");
        assert_error(&status, code, reason);
        assert_eq!(
            self.token_count(caller).await,
            before,
            "a refused mint creates nothing"
        );
        status
    }

    /// Asserts that `request` is refused as widening its template.
    async fn assert_exceeds(&self, request: pb::CreateTokenRequest) {
        self.assert_refused_as(
            &self.caller,
            request,
            Code::InvalidArgument,
            "EXCEEDS_TEMPLATE",
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// What a token takes from its template
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn minting_with_only_a_template_id_takes_everything_from_the_template() {
    let h = Harness::start().await;
    h.app.add_member("ent-1", "alice").await;
    let mut request = recipe();
    request.enterprise_id = "ent-1".into();
    let template = h.template(request).await;

    let (token, raw) = h.mint_ok(from_template(&template.id)).await;

    assert_eq!(token.user_id, "alice");
    assert_eq!(token.scopes, template.token_scopes);
    assert_eq!(token.scopes, ["wallet_spend", "wallet_view"]);
    assert_eq!(token.ip_restrict, template.allowed_ips);
    assert_eq!(token.ip_restrict, ["10.0.0.0/8", "192.168.1.1/32"]);
    assert_eq!(
        limit_values(&token.token_limits),
        limit_values(&template.token_limits)
    );
    assert_eq!(token.enterprise_id, "ent-1");
    assert_eq!(
        token.label, NAME,
        "the label defaults to the template's name"
    );
    assert_eq!(token.template_id, template.id);
    assert_eq!(token.template_version, 1);
    assert_eq!(token.template_version, template.version);
    assert!(!token.admin);
    let lifetime = token.expires_at.unwrap().seconds - token.created_at.unwrap().seconds;
    assert!((7200..=7201).contains(&lifetime), "lifetime {lifetime}");

    let claims = claims_of(&raw);
    assert_eq!(claims["tpl"], template.id.as_str());
    assert_eq!(
        claims["ips"],
        serde_json::json!(["10.0.0.0/8", "192.168.1.1/32"])
    );
    assert_eq!(claims["scope"], "wallet_spend wallet_view");
    assert_eq!(claims["ent"], "ent-1");
    assert_eq!(claims["exp"], token.expires_at.unwrap().seconds);

    let stored = h.get_token(&token.id).await;
    assert_eq!(stored.template_id, template.id);
    assert_eq!(stored.template_version, 1);
}

// ---------------------------------------------------------------------------------------------
// Narrowing is allowed
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn minting_may_narrow_the_scopes() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let mut request = from_template(&template.id);
    request.scopes = strings(&["wallet_view"]);
    let (token, raw) = h.mint_ok(request).await;
    assert_eq!(token.scopes, ["wallet_view"]);
    assert_eq!(claims_of(&raw)["scope"], "wallet_view");
    assert_eq!(token.template_id, template.id);
}

#[tokio::test]
async fn minting_may_narrow_the_ip_restriction() {
    let h = Harness::start().await;
    let mut request = recipe();
    request.allowed_ips = strings(&["10.0.0.0/8"]);
    let template = h.template(request).await;
    let mut request = from_template(&template.id);
    request.ip_restrict = strings(&["10.1.0.0/16"]);
    let (token, raw) = h.mint_ok(request).await;
    assert_eq!(token.ip_restrict, ["10.1.0.0/16"]);
    assert_eq!(claims_of(&raw)["ips"], serde_json::json!(["10.1.0.0/16"]));
}

#[tokio::test]
async fn minting_may_lower_the_limit_of_a_listed_coin() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let mut request = from_template(&template.id);
    // 999 < 1000 numerically, though not as text.
    request.token_limits = limits(&[("BTC", "999")], None);
    let (token, _) = h.mint_ok(request).await;
    let (pairs, _) = limit_values(&token.token_limits);
    let btc = pairs
        .iter()
        .find(|(coin, _)| coin == "btc")
        .expect("a btc limit");
    assert_eq!(btc.1, "999");
}

#[tokio::test]
async fn coins_a_request_does_not_mention_keep_the_templates_limits() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    // The reproduced defect: a btc-only request dropped the template's eth limit (and its
    // ERC-20 cap), minting a token that could spend any eth.
    let mut btc_only = from_template(&template.id);
    btc_only.token_limits = limits(&[("btc", "1")], None);
    let (token, _) = h.mint_ok(btc_only).await;
    assert_eq!(
        limit_values(&token.token_limits),
        (
            vec![("btc".into(), "1".into()), ("eth".into(), "50".into())],
            Some("500".into())
        )
    );
    // An empty `token_limits` message asks for nothing: every template limit stays.
    let mut empty = from_template(&template.id);
    empty.token_limits = Some(pb::TokenLimits::default());
    let (token, _) = h.mint_ok(empty).await;
    assert_eq!(
        limit_values(&token.token_limits),
        limit_values(&template.token_limits)
    );
}

#[tokio::test]
async fn a_template_whose_stored_networks_no_longer_parse_mints_nothing() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    crate::helpers::execute_in_database(
        &h.app,
        &[format!(
            "UPDATE templates SET allowed_ips = '[\"10.0.0.0/8\", \"not a network\"]' WHERE id = '{}'",
            template.id
        )],
    )
    .await;
    // Before: the unreadable list minted an unrestricted token (fail open).
    let status = h.mint(from_template(&template.id)).await.unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "UNREADABLE_RESTRICTION");
    let mut inside = from_template(&template.id);
    inside.ip_restrict = strings(&["10.1.0.0/16"]);
    let status = h.mint(inside).await.unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "UNREADABLE_RESTRICTION");
}

#[tokio::test]
async fn minting_may_set_its_own_label() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let mut request = from_template(&template.id);
    request.label = "  nightly build  ".into();
    let (token, _) = h.mint_ok(request).await;
    assert_eq!(token.label, "nightly build");
    assert_eq!(token.template_id, template.id);
}

#[tokio::test]
async fn minting_may_set_its_own_duration() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let mut request = from_template(&template.id);
    request.duration_seconds = Some(600);
    let (token, _) = h.mint_ok(request).await;
    let lifetime = token.expires_at.unwrap().seconds - token.created_at.unwrap().seconds;
    assert!((600..=601).contains(&lifetime), "lifetime {lifetime}");
}

// ---------------------------------------------------------------------------------------------
// Widening is refused
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn minting_a_scope_outside_the_template_exceeds_it() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    // The caller holds trade_view; the template does not list it.
    let mut request = from_template(&template.id);
    request.scopes = strings(&["wallet_view", "trade_view"]);
    h.assert_exceeds(request).await;
}

#[tokio::test]
async fn minting_an_address_outside_the_allowed_ips_exceeds_the_template() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let cases: [&[&str]; 4] = [
        &["172.16.0.1"],
        &["192.168.0.1"],
        &["10.0.0.0/7"],
        &["10.1.0.0/16", "172.16.0.0/12"],
    ];
    for ips in cases {
        let mut request = from_template(&template.id);
        request.ip_restrict = strings(ips);
        h.assert_exceeds(request).await;
    }
}

#[tokio::test]
async fn minting_a_higher_limit_than_the_template_exceeds_it() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    for amount in ["1001", "10000"] {
        let mut request = from_template(&template.id);
        request.token_limits = limits(&[("btc", amount)], None);
        h.assert_exceeds(request).await;
    }
}

#[tokio::test]
async fn minting_a_limit_for_a_coin_the_template_does_not_list_exceeds_it() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let mut request = from_template(&template.id);
    request.token_limits = limits(&[("btc", "1"), ("sol", "1")], None);
    h.assert_exceeds(request).await;
}

#[tokio::test]
async fn minting_an_erc20_limit_from_a_template_without_one_exceeds_it() {
    let h = Harness::start().await;
    let mut request = recipe();
    request.token_limits = limits(&[("btc", "1000")], None);
    let template = h.template(request).await;
    let mut request = from_template(&template.id);
    request.token_limits = limits(&[], Some("1"));
    h.assert_exceeds(request).await;
}

#[tokio::test]
async fn minting_a_higher_erc20_limit_than_the_template_exceeds_it() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let mut request = from_template(&template.id);
    request.token_limits = limits(&[], Some("501"));
    h.assert_exceeds(request).await;
}

#[tokio::test]
async fn minting_for_another_enterprise_than_the_templates_exceeds_it() {
    let h = Harness::start().await;
    h.app.add_member("ent-1", "alice").await;
    h.app.add_member("ent-2", "alice").await;
    let mut request = recipe();
    request.enterprise_id = "ent-1".into();
    let template = h.template(request).await;
    let mut request = from_template(&template.id);
    request.enterprise_id = "ent-2".into();
    h.assert_exceeds(request).await;
}

#[tokio::test]
async fn minting_for_an_enterprise_from_a_template_without_one_exceeds_it() {
    let h = Harness::start().await;
    h.app.add_member("ent-1", "alice").await;
    let template = h.template(recipe()).await;
    assert_eq!(template.enterprise_id, "");
    let mut request = from_template(&template.id);
    request.enterprise_id = "ent-1".into();
    h.assert_exceeds(request).await;
}

// ---------------------------------------------------------------------------------------------
// The caller's own rules still apply
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn minting_every_template_scope_needs_a_caller_holding_them() {
    let h = Harness::start().await;
    let strong = h
        .app
        .bootstrap("alice", &["user_manage", "wallet_view", "trade_trade"])
        .await;
    let mut request = recipe();
    request.token_scopes = strings(&["wallet_view", "trade_trade"]);
    let template = h.template_as(&strong, request).await;

    // h.caller is alice too, but does not hold trade_trade.
    h.assert_refused_as(
        &h.caller,
        from_template(&template.id),
        Code::PermissionDenied,
        "SCOPE_NOT_HELD",
    )
    .await;
}

#[tokio::test]
async fn a_weaker_caller_may_mint_the_template_scopes_it_holds() {
    let h = Harness::start().await;
    let strong = h
        .app
        .bootstrap("alice", &["user_manage", "wallet_view", "trade_trade"])
        .await;
    let mut request = recipe();
    request.token_scopes = strings(&["wallet_view", "trade_trade"]);
    let template = h.template_as(&strong, request).await;

    let mut request = from_template(&template.id);
    request.scopes = strings(&["wallet_view"]);
    let (token, _) = h.mint_ok(request).await;
    assert_eq!(token.scopes, ["wallet_view"]);
    assert_eq!(token.template_id, template.id);
}

#[tokio::test]
async fn minting_an_admin_token_from_a_template_needs_an_admin_caller() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let mut request = from_template(&template.id);
    request.admin = true;
    h.assert_refused_as(&h.caller, request, Code::PermissionDenied, "ADMIN_REQUIRED")
        .await;
}

// ---------------------------------------------------------------------------------------------
// Unknown, foreign and malformed templates
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn minting_from_another_users_template_is_template_not_found() {
    let h = Harness::start().await;
    let bob = h.app.manager("bob").await;
    let bobs = h.template_as(&bob, recipe()).await;
    h.assert_refused_as(
        &h.caller,
        from_template(&bobs.id),
        Code::NotFound,
        "TEMPLATE_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn minting_from_an_unknown_template_id_is_template_not_found() {
    let h = Harness::start().await;
    let id = uuid::Uuid::now_v7().to_string();
    h.assert_refused_as(
        &h.caller,
        from_template(&id),
        Code::NotFound,
        "TEMPLATE_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn minting_from_a_malformed_template_id_is_invalid_id() {
    let h = Harness::start().await;
    // Label and scopes are valid, so the template id is the only bad field.
    let request = pb::CreateTokenRequest {
        label: "x".into(),
        scopes: strings(&["wallet_view"]),
        template_id: "not-a-template-id".into(),
        ..Default::default()
    };
    let status = h
        .assert_refused_as(&h.caller, request, Code::InvalidArgument, "INVALID_ID")
        .await;
    assert_eq!(bad_fields(&status), ["template_id"]);
}

// ---------------------------------------------------------------------------------------------
// Updating or deleting a template never changes minted tokens
// ---------------------------------------------------------------------------------------------

/// Replaces the scopes of template `id` with `wallet_view` + `trade_view`; the new template.
async fn rescope(h: &Harness, id: &str) -> pb::Template {
    let request = pb::UpdateTemplateRequest {
        template: Some(pb::Template {
            id: id.into(),
            token_scopes: strings(&["wallet_view", "trade_view"]),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: strings(&["token_scopes"]),
        }),
    };
    let mut client = h.templates.clone();
    let response = client.update_template(authed(&h.caller, request)).await;
    let response = response.expect("UpdateTemplate").into_inner();
    response
        .template
        .expect("UpdateTemplate returns the template")
}

#[tokio::test]
async fn updating_a_template_does_not_change_tokens_minted_from_it() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let (minted, _) = h.mint_ok(from_template(&template.id)).await;

    let updated = rescope(&h, &template.id).await;
    assert_eq!(updated.version, 2);

    let stored = h.get_token(&minted.id).await;
    assert_eq!(
        stored.scopes,
        ["wallet_spend", "wallet_view"],
        "old scopes kept"
    );
    assert_eq!(stored.template_id, template.id);
    assert_eq!(stored.template_version, 1);
    assert_eq!(stored.ip_restrict, minted.ip_restrict);
    assert_eq!(
        limit_values(&stored.token_limits),
        limit_values(&minted.token_limits)
    );
    assert_eq!(stored.expires_at, minted.expires_at);
}

#[tokio::test]
async fn tokens_minted_after_an_update_get_the_new_version_and_scopes() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let (before, _) = h.mint_ok(from_template(&template.id)).await;
    assert_eq!(before.template_version, 1);

    rescope(&h, &template.id).await;
    let (after, raw) = h.mint_ok(from_template(&template.id)).await;
    assert_eq!(after.template_version, 2);
    assert_eq!(after.scopes, ["trade_view", "wallet_view"]);
    assert_eq!(after.template_id, template.id);
    assert_eq!(claims_of(&raw)["scope"], "trade_view wallet_view");
}

#[tokio::test]
async fn deleting_a_template_leaves_its_tokens_intact() {
    let h = Harness::start().await;
    let mut request = recipe();
    // No address restriction, so the token verifies without a client address.
    request.allowed_ips = vec![];
    let template = h.template(request).await;
    let (minted, raw) = h.mint_ok(from_template(&template.id)).await;

    let mut templates = h.templates.clone();
    let request = pb::DeleteTemplateRequest {
        id: template.id.clone(),
    };
    templates
        .delete_template(authed(&h.caller, request))
        .await
        .expect("DeleteTemplate");

    let stored = h.get_token(&minted.id).await;
    assert_eq!(stored.template_id, template.id, "template_id is kept");
    assert_eq!(stored.template_version, 1);
    assert_eq!(stored.scopes, minted.scopes);
    assert_eq!(stored.status, pb::TokenStatus::Active as i32);

    let request = pb::VerifyTokenRequest {
        token: raw,
        ..Default::default()
    };
    let mut tokens = h.tokens.clone();
    let verified = tokens
        .verify_token(authed(&h.caller, request))
        .await
        .expect("VerifyToken")
        .into_inner();
    assert!(verified.active, "reason {}", verified.reason);
    let token = verified.token.expect("an active answer carries the token");
    assert_eq!(token.template_id, template.id);
}

#[tokio::test]
async fn minting_from_a_deleted_template_is_template_not_found() {
    let h = Harness::start().await;
    let template = h.template(recipe()).await;
    let mut templates = h.templates.clone();
    let request = pb::DeleteTemplateRequest {
        id: template.id.clone(),
    };
    templates
        .delete_template(authed(&h.caller, request))
        .await
        .expect("DeleteTemplate");
    h.assert_refused_as(
        &h.caller,
        from_template(&template.id),
        Code::NotFound,
        "TEMPLATE_NOT_FOUND",
    )
    .await;
}
