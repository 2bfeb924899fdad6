//! VerifyToken through the real server, as seen by an introspecting caller (`token_introspect`):
//! the active case (metadata and last-used recording), one test per InactiveReason, bad input
//! (an error, not an inactive answer) and callers without `token_introspect`.
//!
//! Every inactive answer is checked with [`assert_inactive`], which also asserts that the
//! response carries no token metadata.

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

use crate::helpers::{TestApp, assert_error, authed, bad_fields, claims_of, error_meta, eventually, header_of};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The user of the introspecting caller, and owner of every token minted through CreateToken here.
const USER: &str = "svc";

/// A server, a `token_introspect` + `user_manage` caller and a connected client.
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
        Self { app, client, caller }
    }

    /// Mints a token for [`USER`] through CreateToken.
    async fn mint(&self, scopes: &[&str], ip_restrict: &[&str]) -> pb::CreateTokenResponse {
        let request = pb::CreateTokenRequest {
            label: "verify test".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ip_restrict: ip_restrict.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        self.client.clone().create_token(authed(&self.caller, request)).await.expect("CreateToken").into_inner()
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
            required_scopes: required_scopes.iter().map(|s| s.to_string()).collect(),
        };
        self.client.clone().verify_token(authed(&self.caller, request)).await.map(|r| r.into_inner())
    }

    /// VerifyToken without client address or required scopes; the call itself must succeed.
    async fn verify(&self, token: &str) -> pb::VerifyTokenResponse {
        self.try_verify(token, "", &[]).await.expect("VerifyToken")
    }

    /// Lifecycle calls on [`USER`]'s own token `id`.
    async fn revoke(&self, id: &str) {
        let request = pb::RevokeTokenRequest { id: id.into() };
        self.client.clone().revoke_token(authed(&self.caller, request)).await.expect("RevokeToken");
    }

    async fn suspend(&self, id: &str) {
        let request = pb::SuspendTokenRequest { id: id.into() };
        self.client.clone().suspend_token(authed(&self.caller, request)).await.expect("SuspendToken");
    }

    async fn delete(&self, id: &str) {
        let request = pb::DeleteTokenRequest { id: id.into() };
        self.client.clone().delete_token(authed(&self.caller, request)).await.expect("DeleteToken");
    }

    /// The `kid` of the server's current signing key (from a real token's header).
    fn server_kid(&self) -> String {
        header_of(&self.caller)["kid"].as_str().expect("kid in a minted token's header").to_owned()
    }

    /// The JWKS entry for `kid`.
    async fn jwk(&self, kid: &str) -> pb::Jwk {
        let keys = self.client.clone().get_jwks(pb::GetJwksRequest {}).await.expect("GetJwks").into_inner().keys;
        keys.into_iter().find(|k| k.kid == kid).unwrap_or_else(|| panic!("no JWK with kid {kid}"))
    }

    /// Standard claims for [`USER`] with a fresh (never stored) token id.
    fn claims(&self) -> Value {
        self.app.claims(USER, "wallet_view")
    }
}

/// Seconds since the epoch.
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The name of an InactiveReason number, for messages.
fn reason_name(reason: i32) -> String {
    pb::InactiveReason::try_from(reason)
        .map(|r| r.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("unknown reason {reason}"))
}

/// The `id` of a CreateToken response.
fn id_of(minted: &pb::CreateTokenResponse) -> String {
    minted.token.as_ref().expect("token metadata").id.clone()
}

/// A compact JWS of `header` and `claims` with the signature `sign` computes over the signing input.
fn sign_with(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Asserts an active answer with metadata; returns the metadata.
#[track_caller]
fn assert_active<'a>(response: &'a pb::VerifyTokenResponse, what: &str) -> &'a pb::Token {
    assert!(response.active, "{what}: expected active, got inactive ({})", reason_name(response.reason));
    assert_eq!(
        response.reason,
        pb::InactiveReason::Unspecified as i32,
        "{what}: an active token has reason UNSPECIFIED, got {}",
        reason_name(response.reason)
    );
    response.token.as_ref().unwrap_or_else(|| panic!("{what}: an active response carries the token's metadata"))
}

/// Asserts an inactive answer for `expected`, without token metadata.
#[track_caller]
fn assert_inactive(response: &pb::VerifyTokenResponse, expected: pb::InactiveReason, what: &str) {
    assert!(!response.active, "{what}: expected inactive ({}), got active", expected.as_str_name());
    assert_eq!(
        response.reason,
        expected as i32,
        "{what}: expected {}, got {}",
        expected.as_str_name(),
        reason_name(response.reason)
    );
    assert!(response.token.is_none(), "{what}: an inactive response must not carry token metadata");
}

// ---------------------------------------------------------------------------------------------
// Active
// ---------------------------------------------------------------------------------------------

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
    assert_eq!(claims_of(&minted.raw_token)["jti"], token.id, "metadata is that of the token presented");
}

#[tokio::test]
async fn successful_verification_becomes_visible_as_last_used() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    let id = id_of(&minted);
    assert!(minted.token.as_ref().unwrap().last_used_at.is_none(), "a new token was never used");

    let response = h.try_verify(&minted.raw_token, "203.0.113.7", &[]).await.expect("VerifyToken");
    assert_active(&response, "token verified from 203.0.113.7");

    let (client, caller, id) = (&h.client, h.caller.as_str(), id.as_str());
    let token = eventually(Duration::from_secs(3), move || async move {
        let request = pb::GetTokenRequest { id: id.into() };
        let token = client.clone().get_token(authed(caller, request)).await.ok()?.into_inner().token?;
        token.last_used_at.is_some().then_some(token)
    })
    .await
    .expect("last_used_at becomes visible through GetToken within 3 s");
    assert_eq!(token.last_used_ip, "203.0.113.7");
    let used = token.last_used_at.expect("last_used_at").seconds;
    let created = token.created_at.expect("created_at").seconds;
    assert!(used >= created, "last used ({used}) is not before creation ({created})");
    assert!(used <= now() + 1, "last used ({used}) is not in the future");
}

// ---------------------------------------------------------------------------------------------
// MALFORMED
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tokens_that_are_not_well_formed_jwts_are_malformed() {
    let h = Harness::start().await;
    let real = h.mint(&["wallet_view"], &[]).await.raw_token;
    let parts: Vec<&str> = real.split('.').collect();
    assert_eq!(parts.len(), 3);
    let two_parts = format!("{}.{}", parts[0], parts[1]);
    let four_parts = format!("{real}.{}", parts[2]);
    let non_json_header = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), parts[1], parts[2]);

    for (what, token) in [
        ("one part", "not-a-jwt"),
        ("junk base64", "a.b.c"),
        ("two parts", two_parts.as_str()),
        ("four parts", four_parts.as_str()),
        ("header is not JSON", non_json_header.as_str()),
    ] {
        let response = h.verify(token).await;
        assert_inactive(&response, pb::InactiveReason::Malformed, what);
    }
}

#[tokio::test]
async fn correctly_signed_token_missing_required_claims_is_malformed() {
    let h = Harness::start().await;
    let mut claims = h.claims();
    claims.as_object_mut().unwrap().remove("jti");

    let token = h.app.forge(json!({"typ": "at+jwt"}), claims).await;

    assert_inactive(&h.verify(&token).await, pb::InactiveReason::Malformed, "no jti claim");
}

// ---------------------------------------------------------------------------------------------
// BAD_SIGNATURE
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_signed_by_a_foreign_key_with_our_kid_is_bad_signature() {
    let h = Harness::start().await;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate Ed25519 key");
    let foreign = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse Ed25519 key");
    let header = json!({"alg": "EdDSA", "kid": h.server_kid(), "typ": "at+jwt"});
    let claims = h.claims();

    let token = sign_with(&header, &claims, |input| foreign.sign(input).as_ref().to_vec());
    assert_inactive(&h.verify(&token).await, pb::InactiveReason::BadSignature, "foreign Ed25519 key");

    // Control: the same header and claims signed by the server's key pass the signature check
    // (and then fail only because the token id was never stored).
    let genuine = h.app.forge(header, claims).await;
    assert_inactive(&h.verify(&genuine).await, pb::InactiveReason::UnknownToken, "same token, server's key");
}

#[tokio::test]
async fn alg_none_token_with_our_kid_is_bad_signature() {
    let h = Harness::start().await;
    let header = json!({"alg": "none", "kid": h.server_kid(), "typ": "at+jwt"});

    let token = sign_with(&header, &h.claims(), |_| Vec::new());

    assert!(token.ends_with('.'), "an unsecured JWS has an empty signature");
    assert_inactive(&h.verify(&token).await, pb::InactiveReason::BadSignature, "alg none");
}

#[tokio::test]
async fn hs256_token_keyed_with_our_public_key_is_bad_signature() {
    let h = Harness::start().await;
    let kid = h.server_kid();
    let jwk = h.jwk(&kid).await;
    let public_key = URL_SAFE_NO_PAD.decode(&jwk.x).expect("base64url x");
    assert_eq!(public_key.len(), 32, "Ed25519 public key");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &public_key);
    let header = json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"});

    let token = sign_with(&header, &h.claims(), |input| hmac::sign(&key, input).as_ref().to_vec());

    assert_inactive(&h.verify(&token).await, pb::InactiveReason::BadSignature, "HS256 with the public key as secret");
}

#[tokio::test]
async fn real_token_with_tampered_payload_is_bad_signature() {
    let h = Harness::start().await;
    let real = h.mint(&["wallet_view"], &[]).await.raw_token;
    assert_active(&h.verify(&real).await, "untampered token");
    let parts: Vec<&str> = real.split('.').collect();
    let mut claims = claims_of(&real);
    claims["scope"] = json!("all");

    let tampered = format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2]);

    assert_ne!(tampered, real);
    assert_inactive(&h.verify(&tampered).await, pb::InactiveReason::BadSignature, "scope changed to all");
}

#[tokio::test]
async fn es256_header_on_an_ed25519_kid_is_bad_signature() {
    let h = Harness::start().await;

    // Genuinely signed by the server's Ed25519 key, but claiming another algorithm.
    let token = h.app.forge(json!({"alg": "ES256", "typ": "at+jwt"}), h.claims()).await;

    assert_eq!(header_of(&token)["kid"], h.server_kid());
    assert_inactive(&h.verify(&token).await, pb::InactiveReason::BadSignature, "alg ES256 on an EdDSA key");
}

// ---------------------------------------------------------------------------------------------
// UNKNOWN_KEY
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_naming_an_unknown_kid_is_unknown_key() {
    let h = Harness::start().await;

    let token = h.app.forge(json!({"kid": "no-such-kid", "typ": "at+jwt", "alg": "EdDSA"}), h.claims()).await;

    assert_eq!(header_of(&token)["kid"], "no-such-kid");
    assert_inactive(&h.verify(&token).await, pb::InactiveReason::UnknownKey, "kid no-such-kid");
}

#[tokio::test]
async fn token_without_kid_is_unknown_key() {
    let h = Harness::start().await;
    let header = json!({"alg": "EdDSA", "typ": "at+jwt"});

    let token = sign_with(&header, &h.claims(), |_| vec![0; 64]);

    assert!(header_of(&token).get("kid").is_none());
    assert_inactive(&h.verify(&token).await, pb::InactiveReason::UnknownKey, "no kid");
}

// ---------------------------------------------------------------------------------------------
// EXPIRED / NOT_YET_VALID
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_past_its_expiry_is_expired() {
    let h = Harness::start().await;
    let now = now();
    let mut claims = h.claims();
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);

    let token = h.app.forge(json!({"typ": "at+jwt"}), claims).await;

    assert_inactive(&h.verify(&token).await, pb::InactiveReason::Expired, "expired an hour ago");
}

#[tokio::test]
async fn token_expired_within_the_leeway_is_not_expired() {
    let h = Harness::start().await;
    let now = now();
    let mut claims = h.claims();
    claims["iat"] = json!(now - 60);
    claims["nbf"] = json!(now - 60);
    claims["exp"] = json!(now - 2);

    let token = h.app.forge(json!({"typ": "at+jwt"}), claims).await;
    let response = h.verify(&token).await;

    // The default leeway is 5 s, so the time checks pass; the forged id was never stored.
    assert_ne!(response.reason, pb::InactiveReason::Expired as i32, "2 s past exp is within the 5 s leeway");
    assert_inactive(&response, pb::InactiveReason::UnknownToken, "expired 2 s ago, unknown id");
}

#[tokio::test]
async fn token_before_its_not_before_time_is_not_yet_valid() {
    let h = Harness::start().await;
    let now = now();
    let mut claims = h.claims();
    claims["iat"] = json!(now);
    claims["nbf"] = json!(now + 3600);
    claims["exp"] = json!(now + 7200);

    let token = h.app.forge(json!({"typ": "at+jwt"}), claims).await;

    assert_inactive(&h.verify(&token).await, pb::InactiveReason::NotYetValid, "nbf an hour ahead");
}

// ---------------------------------------------------------------------------------------------
// INVALID_CLAIMS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_from_another_issuer_is_invalid_claims() {
    let h = Harness::start().await;
    let mut claims = h.claims();
    claims["iss"] = json!("someone-else");

    let token = h.app.forge(json!({"typ": "at+jwt"}), claims).await;

    assert_inactive(&h.verify(&token).await, pb::InactiveReason::InvalidClaims, "wrong iss");
}

#[tokio::test]
async fn token_for_another_audience_is_invalid_claims() {
    let h = Harness::start().await;
    let mut claims = h.claims();
    claims["aud"] = json!("another-service");

    let token = h.app.forge(json!({"typ": "at+jwt"}), claims).await;

    assert_inactive(&h.verify(&token).await, pb::InactiveReason::InvalidClaims, "wrong aud");
}

#[tokio::test]
async fn token_with_typ_jwt_is_invalid_claims() {
    let h = Harness::start().await;

    let token = h.app.forge(json!({"typ": "JWT"}), h.claims()).await;

    assert_inactive(&h.verify(&token).await, pb::InactiveReason::InvalidClaims, "typ JWT");
}

#[tokio::test]
async fn token_without_typ_is_invalid_claims() {
    let h = Harness::start().await;

    let token = h.app.forge(json!({}), h.claims()).await;

    assert!(header_of(&token).get("typ").is_none());
    assert_inactive(&h.verify(&token).await, pb::InactiveReason::InvalidClaims, "no typ");
}

// ---------------------------------------------------------------------------------------------
// UNKNOWN_TOKEN / REVOKED / SUSPENDED
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn valid_token_with_an_id_never_stored_is_unknown_token() {
    let h = Harness::start().await;

    let token = h.app.forge(json!({"typ": "at+jwt"}), h.claims()).await;

    assert_inactive(&h.verify(&token).await, pb::InactiveReason::UnknownToken, "random jti");
}

#[tokio::test]
async fn deleted_token_is_unknown_token() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    assert_active(&h.verify(&minted.raw_token).await, "before DeleteToken");

    h.delete(&id_of(&minted)).await;

    assert_inactive(&h.verify(&minted.raw_token).await, pb::InactiveReason::UnknownToken, "after DeleteToken");
}

#[tokio::test]
async fn revoked_token_is_revoked() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    assert_active(&h.verify(&minted.raw_token).await, "before RevokeToken");

    h.revoke(&id_of(&minted)).await;

    assert_inactive(&h.verify(&minted.raw_token).await, pb::InactiveReason::Revoked, "after RevokeToken");
}

#[tokio::test]
async fn suspended_token_is_suspended() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    assert_active(&h.verify(&minted.raw_token).await, "before SuspendToken");

    h.suspend(&id_of(&minted)).await;

    assert_inactive(&h.verify(&minted.raw_token).await, pb::InactiveReason::Suspended, "after SuspendToken");
}

// ---------------------------------------------------------------------------------------------
// IP_NOT_ALLOWED
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ip_restricted_token_from_outside_its_networks_is_ip_not_allowed() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &["10.0.0.0/8"]).await;

    let response = h.try_verify(&minted.raw_token, "192.168.1.1", &[]).await.expect("VerifyToken");

    assert_inactive(&response, pb::InactiveReason::IpNotAllowed, "client 192.168.1.1");
}

#[tokio::test]
async fn ip_restricted_token_without_client_ip_is_ip_not_allowed() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &["10.0.0.0/8"]).await;

    let response = h.try_verify(&minted.raw_token, "", &[]).await.expect("VerifyToken");

    assert_inactive(&response, pb::InactiveReason::IpNotAllowed, "empty client_ip");
}

#[tokio::test]
async fn ip_restricted_token_from_inside_its_networks_is_active() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &["10.0.0.0/8"]).await;

    let response = h.try_verify(&minted.raw_token, "10.1.2.3", &[]).await.expect("VerifyToken");

    let token = assert_active(&response, "client 10.1.2.3");
    assert_eq!(token.ip_restrict, vec!["10.0.0.0/8"]);
}

// ---------------------------------------------------------------------------------------------
// INSUFFICIENT_SCOPE
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_lacking_a_required_scope_is_insufficient_scope() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    let held = h.try_verify(&minted.raw_token, "", &["wallet_view"]).await.expect("VerifyToken");
    assert_active(&held, "required scope held");

    let response = h.try_verify(&minted.raw_token, "", &["trade_trade"]).await.expect("VerifyToken");

    assert_inactive(&response, pb::InactiveReason::InsufficientScope, "trade_trade required, wallet_view held");
}

#[tokio::test]
async fn token_with_scope_all_satisfies_any_required_scope() {
    let h = Harness::start().await;
    let all = h.app.bootstrap(USER, &["all"]).await;

    let response = h.try_verify(&all, "", &["trade_trade", "wallet_spend"]).await.expect("VerifyToken");

    let token = assert_active(&response, "scope all");
    assert_eq!(token.scopes, vec!["all"]);
}

// ---------------------------------------------------------------------------------------------
// Bad input and permissions: errors, not inactive answers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn garbage_client_ip_is_invalid_argument() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;

    let status = h.try_verify(&minted.raw_token, "garbage", &[]).await.expect_err("a bad client_ip is an error");

    assert_error(&status, Code::InvalidArgument, "INVALID_IP_ADDRESS");
    assert_eq!(bad_fields(&status), vec!["client_ip"]);
}

#[tokio::test]
async fn unknown_required_scope_is_invalid_argument() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;

    let status = h.try_verify(&minted.raw_token, "", &["bogus"]).await.expect_err("an unknown scope is an error");

    assert_error(&status, Code::InvalidArgument, "INVALID_SCOPE");
    assert_eq!(bad_fields(&status), vec!["required_scopes[0]"]);
    assert_eq!(error_meta(&status, "scope").as_deref(), Some("bogus"));
}

#[tokio::test]
async fn caller_without_token_introspect_is_permission_denied() {
    let h = Harness::start().await;
    let minted = h.mint(&["wallet_view"], &[]).await;
    let weak = h.app.bootstrap("weak", &["user_manage"]).await;
    let request = pb::VerifyTokenRequest { token: minted.raw_token, ..Default::default() };

    let status = h.client.clone().verify_token(authed(&weak, request)).await.expect_err("needs token_introspect");

    assert_error(&status, Code::PermissionDenied, "MISSING_SCOPE");
    assert_eq!(error_meta(&status, "required_scope").as_deref(), Some("token_introspect"));
}
