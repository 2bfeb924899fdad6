//! VerifyToken through the real server, as seen by an introspecting caller (`token_introspect`):
//! the active case (metadata, last-used recording), one test per InactiveReason, bad input (an
//! error, not an inactive answer) and a caller without `token_introspect`.
//!
//! Every inactive answer is checked with [`assert_inactive`], which also asserts that it carries
//! no token metadata.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use serde_json::{Value, json};
use tokenmint::proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{
    TestApp, assert_error, authed, bad_fields, claims_of, error_meta, eventually, header_of,
};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The introspecting caller's user, who owns every token minted through CreateToken here.
const USER: &str = "svc";

/// A server, a `token_introspect` + `user_manage` caller for [`USER`] and a connected client.
struct Harness {
    app: TestApp,
    client: Client,
    caller: String,
}

impl Harness {
    async fn start() -> Self {
        let app = TestApp::spawn().await;
        let caller = app.manager(USER).await;
        let client = app.client().await;
        Self {
            app,
            client,
            caller,
        }
    }

    /// Mints a token for [`USER`] through CreateToken.
    async fn mint(&self, scopes: &[&str], ip_restrict: &[&str]) -> pb::CreateTokenResponse {
        let request = pb::CreateTokenRequest {
            label: "verify test".into(),
            scopes: strings(scopes),
            ip_restrict: strings(ip_restrict),
            ..Default::default()
        };
        let mut client = self.client.clone();
        let response = client.create_token(authed(&self.caller, request)).await;
        response.expect("CreateToken").into_inner()
    }

    /// VerifyToken with every field given.
    async fn try_verify(
        &self,
        token: &str,
        client_ip: &str,
        required_scopes: &[&str],
    ) -> Result<pb::VerifyTokenResponse, Status> {
        let request = pb::VerifyTokenRequest {
            token: token.into(),
            client_ip: client_ip.into(),
            required_scopes: strings(required_scopes),
        };
        let mut client = self.client.clone();
        let response = client.verify_token(authed(&self.caller, request)).await;
        response.map(|r| r.into_inner())
    }

    /// VerifyToken without client address or required scopes; the call itself must succeed.
    async fn verify(&self, token: &str) -> pb::VerifyTokenResponse {
        self.verify_from(token, "").await
    }

    /// VerifyToken from `client_ip`; the call itself must succeed.
    async fn verify_from(&self, token: &str, client_ip: &str) -> pb::VerifyTokenResponse {
        let response = self.try_verify(token, client_ip, &[]).await;
        response.expect("VerifyToken")
    }

    /// VerifyToken requiring `scopes`; the call itself must succeed.
    async fn verify_requiring(&self, token: &str, scopes: &[&str]) -> pb::VerifyTokenResponse {
        let response = self.try_verify(token, "", scopes).await;
        response.expect("VerifyToken")
    }

    /// RevokeToken on [`USER`]'s token `id`.
    async fn revoke(&self, id: &str) {
        let request = pb::RevokeTokenRequest {
            id: id.into(),
            cascade: false,
        };
        let mut client = self.client.clone();
        let response = client.revoke_token(authed(&self.caller, request)).await;
        response.expect("RevokeToken");
    }

    /// SuspendToken on [`USER`]'s token `id`.
    async fn suspend(&self, id: &str) {
        let request = pb::SuspendTokenRequest { id: id.into() };
        let mut client = self.client.clone();
        let response = client.suspend_token(authed(&self.caller, request)).await;
        response.expect("SuspendToken");
    }

    /// DeleteToken on [`USER`]'s token `id`.
    async fn delete(&self, id: &str) {
        let request = pb::DeleteTokenRequest { id: id.into() };
        let mut client = self.client.clone();
        let response = client.delete_token(authed(&self.caller, request)).await;
        response.expect("DeleteToken");
    }

    /// The `kid` of the server's signing key, from the header of a token it minted.
    fn server_kid(&self) -> String {
        let header = header_of(&self.caller);
        header["kid"].as_str().expect("kid header").to_owned()
    }

    /// The JWKS entry with `kid`.
    async fn jwk(&self, kid: &str) -> pb::Jwk {
        let mut client = self.client.clone();
        let response = client.get_jwks(pb::GetJwksRequest {}).await;
        let keys = response.expect("GetJwks").into_inner().keys;
        let key = keys.into_iter().find(|k| k.kid == kid);
        key.unwrap_or_else(|| panic!("no JWK with kid {kid}"))
    }

    /// Standard claims for [`USER`], valid now, with a fresh token id that was never stored.
    fn claims(&self) -> Value {
        self.app.claims(USER, "wallet_view")
    }

    /// [`claims`](Self::claims) with `iat`, `nbf` and `exp` at these offsets from now, in seconds.
    fn claims_at(&self, iat: i64, nbf: i64, exp: i64) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = self.claims();
        claims["iat"] = json!(now + iat);
        claims["nbf"] = json!(now + nbf);
        claims["exp"] = json!(now + exp);
        claims
    }
}

/// The header of an access token, for [`TestApp::forge`] to complete with `kid` and `alg`.
fn at_jwt() -> Value {
    json!({"typ": "at+jwt"})
}

/// `items` as owned strings.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The name of an InactiveReason number, for messages.
fn reason_name(reason: i32) -> String {
    match pb::InactiveReason::try_from(reason) {
        Ok(known) => known.as_str_name().to_owned(),
        Err(_) => format!("unknown reason {reason}"),
    }
}

/// The id of a CreateToken response.
fn id_of(minted: &pb::CreateTokenResponse) -> String {
    minted.token.as_ref().expect("token metadata").id.clone()
}

/// base64url (without padding) of `value`'s JSON text.
fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The JWS signing input: `base64url(header).base64url(claims)`.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64_json(header), b64_json(claims))
}

/// The compact JWS made of a signing input and a signature.
fn with_signature(input: &str, signature: &[u8]) -> String {
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Asserts an active answer carrying metadata; returns the metadata.
#[track_caller]
fn assert_active<'a>(response: &'a pb::VerifyTokenResponse, what: &str) -> &'a pb::Token {
    let reason = reason_name(response.reason);
    let unspecified = pb::InactiveReason::Unspecified as i32;
    assert!(response.active, "{what}: expected active, got {reason}");
    assert_eq!(response.reason, unspecified, "{what}: got {reason}");
    match &response.token {
        Some(token) => token,
        None => panic!("{what}: an active answer carries the token's metadata"),
    }
}

/// Asserts an inactive answer for `expected`, which never carries token metadata.
#[track_caller]
fn assert_inactive(response: &pb::VerifyTokenResponse, expected: pb::InactiveReason, what: &str) {
    let (want, got) = (expected.as_str_name(), reason_name(response.reason));
    assert!(!response.active, "{what}: expected {want}, got active");
    assert_eq!(
        response.reason, expected as i32,
        "{what}: expected {want}, got {got}"
    );
    assert!(
        response.token.is_none(),
        "{what}: an inactive answer must not carry token metadata"
    );
}

// Active

#[tokio::test]
async fn active_token_verifies_with_its_metadata() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view", "trade_view"], &[]).await;
    let created = minted.token.as_ref().expect("token metadata");

    let response = h.verify(&minted.raw_token).await;

    let token = assert_active(&response, "fresh token");
    assert_eq!(token.id, created.id);
    assert_eq!(token.user_id, USER);
    assert_eq!(token.scopes, created.scopes);
    let mut scopes = token.scopes.clone();
    scopes.sort();
    assert_eq!(scopes, vec!["trade_view", "wallet_view"]);
    assert_eq!(token.status, pb::TokenStatus::Active as i32);
    assert_eq!(token.key_id, h.server_kid());
    assert_eq!(claims_of(&minted.raw_token)["jti"], token.id);
}

#[tokio::test]
async fn successful_verification_becomes_visible_as_last_used() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    let created = minted.token.clone().expect("token metadata");
    assert!(created.last_used_at.is_none(), "never used yet");

    let response = h.verify_from(&minted.raw_token, "203.0.113.7").await;
    assert_active(&response, "from 203.0.113.7");

    let (client, caller, id) = (&h.client, h.caller.as_str(), created.id.as_str());
    let token = eventually(Duration::from_secs(3), move || async move {
        let request = pb::GetTokenRequest { id: id.into() };
        let response = client.clone().get_token(authed(caller, request)).await;
        let token = response.ok()?.into_inner().token?;
        token.last_used_at.is_some().then_some(token)
    })
    .await
    .expect("last_used_at is visible through GetToken within 3 s");
    assert_eq!(token.last_used_ip, "203.0.113.7");
    let used = token.last_used_at.expect("last_used_at").seconds;
    assert!(used >= created.created_at.expect("created_at").seconds);
    assert!(used <= chrono::Utc::now().timestamp() + 1);
}

// MALFORMED

#[tokio::test]
async fn tokens_that_are_not_well_formed_jwts_are_malformed() {
    let h = Harness::start().await;
    let real = h.mint(&["wallet_view"], &[]).await.raw_token;
    let parts: Vec<&str> = real.split('.').collect();
    assert_eq!(parts.len(), 3);
    let two_parts = format!("{}.{}", parts[0], parts[1]);
    let four_parts = format!("{real}.{}", parts[2]);
    let not_json = URL_SAFE_NO_PAD.encode("not json");
    let non_json_header = format!("{not_json}.{}.{}", parts[1], parts[2]);
    let cases = [
        ("one part", "not-a-jwt"),
        ("junk base64", "a.b.c"),
        ("two parts", two_parts.as_str()),
        ("four parts", four_parts.as_str()),
        ("header is not JSON", non_json_header.as_str()),
    ];

    for (what, token) in cases {
        let response = h.verify(token).await;
        assert_inactive(&response, pb::InactiveReason::Malformed, what);
    }
}

#[tokio::test]
async fn correctly_signed_token_missing_a_required_claim_is_malformed() {
    let h = Harness::start().await;
    let mut claims = h.claims();
    claims.as_object_mut().unwrap().remove("jti");

    let token = h.app.forge(at_jwt(), claims).await;

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::Malformed, "no jti");
}

// BAD_SIGNATURE

#[tokio::test]
async fn token_signed_by_a_foreign_key_with_our_kid_is_bad_signature() {
    let h = Harness::start().await;
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("pkcs8");
    let foreign = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let header = json!({"alg": "EdDSA", "kid": h.server_kid(), "typ": "at+jwt"});
    let claims = h.claims();

    let input = signing_input(&header, &claims);
    let token = with_signature(&input, foreign.sign(input.as_bytes()).as_ref());

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::BadSignature, "foreign key");

    // Control: the same header and claims signed by the server's key get past the signature
    // check, and fail only because the token id was never stored.
    let genuine = h.app.forge(header, claims).await;
    let response = h.verify(&genuine).await;
    assert_inactive(&response, pb::InactiveReason::UnknownToken, "server key");
}

#[tokio::test]
async fn alg_none_token_with_our_kid_is_bad_signature() {
    let h = Harness::start().await;
    let header = json!({"alg": "none", "kid": h.server_kid(), "typ": "at+jwt"});

    let token = with_signature(&signing_input(&header, &h.claims()), &[]);

    assert!(token.ends_with('.'), "empty signature");
    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::BadSignature, "alg none");
}

#[tokio::test]
async fn hs256_token_keyed_with_our_public_key_is_bad_signature() {
    let h = Harness::start().await;
    let kid = h.server_kid();
    let jwk = h.jwk(&kid).await;
    let public_key = URL_SAFE_NO_PAD.decode(&jwk.x).expect("base64url x");
    assert_eq!(public_key.len(), 32, "an Ed25519 public key");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &public_key);
    let header = json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"});

    let input = signing_input(&header, &h.claims());
    let token = with_signature(&input, hmac::sign(&key, input.as_bytes()).as_ref());

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::BadSignature, "HS256");
}

#[tokio::test]
async fn real_token_with_a_tampered_payload_is_bad_signature() {
    let h = Harness::start().await;
    let real = h.mint(&["wallet_view"], &[]).await.raw_token;
    assert_active(&h.verify(&real).await, "untampered token");
    let parts: Vec<&str> = real.split('.').collect();
    let mut claims = claims_of(&real);
    claims["scope"] = json!("all");

    let tampered = format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2]);

    assert_ne!(tampered, real);
    let response = h.verify(&tampered).await;
    assert_inactive(&response, pb::InactiveReason::BadSignature, "tampered");
}

#[tokio::test]
async fn es256_header_on_an_ed25519_kid_is_bad_signature() {
    let h = Harness::start().await;
    let header = json!({"alg": "ES256", "typ": "at+jwt"});

    // Genuinely signed by the server's Ed25519 key, but naming another algorithm.
    let token = h.app.forge(header, h.claims()).await;

    assert_eq!(header_of(&token)["kid"], h.server_kid());
    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::BadSignature, "alg ES256");
}

// UNKNOWN_KEY

#[tokio::test]
async fn token_naming_an_unknown_kid_is_unknown_key() {
    let h = Harness::start().await;
    let header = json!({"kid": "no-such-kid", "typ": "at+jwt", "alg": "EdDSA"});

    let token = h.app.forge(header, h.claims()).await;

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::UnknownKey, "unknown kid");
}

#[tokio::test]
async fn token_without_kid_is_unknown_key() {
    let h = Harness::start().await;
    let header = json!({"alg": "EdDSA", "typ": "at+jwt"});

    let token = with_signature(&signing_input(&header, &h.claims()), &[0; 64]);

    assert!(header_of(&token).get("kid").is_none());
    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::UnknownKey, "no kid");
}

// EXPIRED, NOT_YET_VALID

#[tokio::test]
async fn token_past_its_expiry_is_expired() {
    let h = Harness::start().await;
    let claims = h.claims_at(-7200, -7200, -3600);

    let token = h.app.forge(at_jwt(), claims).await;

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::Expired, "an hour ago");
}

#[tokio::test]
async fn token_expired_within_the_leeway_is_not_expired() {
    let h = Harness::start().await;
    let claims = h.claims_at(-60, -60, -2);

    let token = h.app.forge(at_jwt(), claims).await;

    // The default leeway is 5 s: the time checks pass, and the forged id was never stored.
    let response = h.verify(&token).await;
    let expired = pb::InactiveReason::Expired as i32;
    assert_ne!(response.reason, expired, "within the leeway");
    assert_inactive(&response, pb::InactiveReason::UnknownToken, "unknown id");
}

#[tokio::test]
async fn token_before_its_not_before_time_is_not_yet_valid() {
    let h = Harness::start().await;
    let claims = h.claims_at(0, 3600, 7200);

    let token = h.app.forge(at_jwt(), claims).await;

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::NotYetValid, "nbf ahead");
}

// INVALID_CLAIMS

#[tokio::test]
async fn token_from_another_issuer_is_invalid_claims() {
    let h = Harness::start().await;
    let mut claims = h.claims();
    claims["iss"] = json!("someone-else");

    let token = h.app.forge(at_jwt(), claims).await;

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::InvalidClaims, "wrong iss");
}

#[tokio::test]
async fn token_for_another_audience_is_invalid_claims() {
    let h = Harness::start().await;
    let mut claims = h.claims();
    claims["aud"] = json!("another-service");

    let token = h.app.forge(at_jwt(), claims).await;

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::InvalidClaims, "wrong aud");
}

#[tokio::test]
async fn token_with_typ_jwt_is_invalid_claims() {
    let h = Harness::start().await;

    let token = h.app.forge(json!({"typ": "JWT"}), h.claims()).await;

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::InvalidClaims, "typ JWT");
}

#[tokio::test]
async fn token_without_typ_is_invalid_claims() {
    let h = Harness::start().await;

    let token = h.app.forge(json!({}), h.claims()).await;

    assert!(header_of(&token).get("typ").is_none());
    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::InvalidClaims, "no typ");
}

// UNKNOWN_TOKEN, REVOKED, SUSPENDED

#[tokio::test]
async fn valid_token_with_an_id_never_stored_is_unknown_token() {
    let h = Harness::start().await;

    let token = h.app.forge(at_jwt(), h.claims()).await;

    let response = h.verify(&token).await;
    assert_inactive(&response, pb::InactiveReason::UnknownToken, "random jti");
}

#[tokio::test]
async fn deleted_token_is_unknown_token() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    assert_active(&h.verify(&minted.raw_token).await, "before delete");

    h.delete(&id_of(&minted)).await;

    let response = h.verify(&minted.raw_token).await;
    assert_inactive(&response, pb::InactiveReason::UnknownToken, "deleted");
}

#[tokio::test]
async fn revoked_token_is_revoked() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    assert_active(&h.verify(&minted.raw_token).await, "before revoke");

    h.revoke(&id_of(&minted)).await;

    let response = h.verify(&minted.raw_token).await;
    assert_inactive(&response, pb::InactiveReason::Revoked, "revoked");
}

#[tokio::test]
async fn suspended_token_is_suspended() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    assert_active(&h.verify(&minted.raw_token).await, "before suspend");

    h.suspend(&id_of(&minted)).await;

    let response = h.verify(&minted.raw_token).await;
    assert_inactive(&response, pb::InactiveReason::Suspended, "suspended");
}

// IP_NOT_ALLOWED

#[tokio::test]
async fn ip_restricted_token_from_outside_its_networks_is_ip_not_allowed() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &["10.0.0.0/8"]).await;

    let response = h.verify_from(&minted.raw_token, "192.168.1.1").await;

    assert_inactive(&response, pb::InactiveReason::IpNotAllowed, "192.168.1.1");
}

#[tokio::test]
async fn ip_restricted_token_without_client_ip_is_ip_not_allowed() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &["10.0.0.0/8"]).await;

    let response = h.verify_from(&minted.raw_token, "").await;

    assert_inactive(&response, pb::InactiveReason::IpNotAllowed, "empty");
}

#[tokio::test]
async fn ip_restricted_token_from_inside_its_networks_is_active() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &["10.0.0.0/8"]).await;

    let response = h.verify_from(&minted.raw_token, "10.1.2.3").await;

    let token = assert_active(&response, "10.1.2.3");
    assert_eq!(token.ip_restrict, vec!["10.0.0.0/8"]);
}

// INSUFFICIENT_SCOPE

#[tokio::test]
async fn token_lacking_a_required_scope_is_insufficient_scope() {
    let h = Harness::start().await;
    let raw = h.mint(&["wallet_view"], &[]).await.raw_token;
    let held = h.verify_requiring(&raw, &["wallet_view"]).await;
    assert_active(&held, "wallet_view required");

    let response = h.verify_requiring(&raw, &["trade_trade"]).await;

    assert_inactive(
        &response,
        pb::InactiveReason::InsufficientScope,
        "trade_trade",
    );
}

#[tokio::test]
async fn token_with_scope_all_satisfies_any_required_scope() {
    let h = Harness::start().await;
    let all = h.app.bootstrap(USER, &["all"]).await;
    let required = ["trade_trade", "wallet_spend"];

    let response = h.verify_requiring(&all, &required).await;

    let token = assert_active(&response, "scope all");
    assert_eq!(token.scopes, vec!["all"]);
}

// Bad input and permissions: errors, not inactive answers

#[tokio::test]
async fn garbage_client_ip_is_invalid_argument() {
    let h = Harness::start().await;
    let raw = h.mint(&["wallet_view"], &[]).await.raw_token;

    let response = h.try_verify(&raw, "garbage", &[]).await;

    let status = response.expect_err("a bad client_ip is an error");
    assert_error(&status, Code::InvalidArgument, "INVALID_IP_ADDRESS");
    assert_eq!(bad_fields(&status), vec!["client_ip"]);
}

#[tokio::test]
async fn unknown_required_scope_is_invalid_argument() {
    let h = Harness::start().await;
    let raw = h.mint(&["wallet_view"], &[]).await.raw_token;

    let response = h.try_verify(&raw, "", &["bogus"]).await;

    let status = response.expect_err("an unknown scope is an error");
    assert_error(&status, Code::InvalidArgument, "INVALID_SCOPE");
    assert_eq!(bad_fields(&status), vec!["required_scopes[0]"]);
    assert_eq!(error_meta(&status, "scope").as_deref(), Some("bogus"));
}

#[tokio::test]
async fn caller_without_token_introspect_is_permission_denied() {
    let h = Harness::start().await;
    let raw = h.mint(&["wallet_view"], &[]).await.raw_token;
    let weak = h.app.bootstrap("weak", &["user_manage"]).await;
    let request = pb::VerifyTokenRequest {
        token: raw,
        ..Default::default()
    };

    let mut client = h.client.clone();
    let response = client.verify_token(authed(&weak, request)).await;

    let status = response.expect_err("VerifyToken needs token_introspect");
    assert_error(&status, Code::PermissionDenied, "MISSING_SCOPE");
    let required = error_meta(&status, "required_scope");
    assert_eq!(required.as_deref(), Some("token_introspect"));
}

#[tokio::test]
async fn an_ipv4_mapped_network_admits_the_ipv4_clients_it_maps() {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut request = pb::CreateTokenRequest {
        label: "mapped".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    request.ip_restrict = vec!["::ffff:10.0.0.0/104".into()];
    let created = app
        .client()
        .await
        .create_token(authed(&caller, request))
        .await
        .unwrap()
        .into_inner();
    // The same meaning as tokenmint-verify gives it: the IPv4 network 10.0.0.0/8.
    assert_eq!(created.token.unwrap().ip_restrict, vec!["10.0.0.0/8"]);
    for (client_ip, active) in [
        ("10.1.2.3", true),
        ("::ffff:10.1.2.3", true),
        ("11.0.0.1", false),
    ] {
        let response = app
            .client()
            .await
            .verify_token(authed(
                &caller,
                pb::VerifyTokenRequest {
                    token: created.raw_token.clone(),
                    client_ip: client_ip.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.active, active, "{client_ip}");
    }
}
