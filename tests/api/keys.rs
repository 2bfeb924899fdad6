//! Signing keys: rotation through the operator CLI while the server runs, keys and token states
//! across restarts, the JWKS document (GetJwks and `GET /.well-known/jwks.json`), ES256 servers,
//! and verifying minted tokens offline with jsonwebtoken and the published keys.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokenmint::config::Settings;
use tokenmint::domain;
use tokenmint::proto::v1 as pb;
use tonic::transport::Channel;

use crate::helpers::{DatabaseLock, TestApp, authed, claims_of, eventually, header_of, http_get};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The user of every caller token here.
const USER: &str = "svc";

/// How long a rotation may take to reach the server (it polls the change log every 100 ms).
const PROPAGATION: Duration = Duration::from_secs(2);

/// Makes a server generate ES256 (P-256) keys.
fn es256(settings: &mut Settings) {
    settings.keys.algorithm = domain::KeyAlgorithm::ES256;
}

/// Mints a `wallet_view` token for the caller through CreateToken.
async fn mint(client: &Client, caller: &str) -> pb::CreateTokenResponse {
    let request = pb::CreateTokenRequest {
        label: "keys test".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let response = client.clone().create_token(authed(caller, request)).await;
    response.expect("CreateToken").into_inner()
}

/// VerifyToken without client address or required scopes.
async fn verify(client: &Client, caller: &str, token: &str) -> pb::VerifyTokenResponse {
    let request = pb::VerifyTokenRequest {
        token: token.into(),
        ..Default::default()
    };
    let response = client.clone().verify_token(authed(caller, request)).await;
    response.expect("VerifyToken").into_inner()
}

/// The keys GetJwks returns.
async fn jwks(client: &Client) -> Vec<pb::Jwk> {
    let response = client.clone().get_jwks(pb::GetJwksRequest {}).await;
    response.expect("GetJwks").into_inner().keys
}

/// The kids GetJwks returns, sorted.
async fn jwks_kids(client: &Client) -> Vec<String> {
    let mut kids: Vec<String> = jwks(client).await.into_iter().map(|k| k.kid).collect();
    kids.sort();
    kids
}

/// The `kid` header of a JWT.
fn kid_of(token: &str) -> String {
    let header = header_of(token);
    header["kid"].as_str().expect("kid header").to_owned()
}

/// The id of a CreateToken response.
fn id_of(minted: &pb::CreateTokenResponse) -> String {
    minted.token.as_ref().expect("token metadata").id.clone()
}

/// Rotates the signing key through the operator CLI; returns the new kid.
async fn rotate(app: &TestApp) -> String {
    let kid = tokenmint::cli::rotate_keys(&app.settings).await;
    kid.expect("rotate keys")
}

/// Rotates the signing key and waits until the server signs new tokens with it; returns its kid.
async fn rotate_and_wait(app: &TestApp, client: &Client, caller: &str) -> String {
    let new_kid = rotate(app).await;
    let kid = new_kid.as_str();
    let switched = eventually(PROPAGATION, move || async move {
        let raw = mint(client, caller).await.raw_token;
        (kid_of(&raw) == kid).then_some(())
    })
    .await;
    assert!(switched.is_some(), "signs with {new_kid} within 2 s");
    new_kid
}

/// The key that signed `token`, read by jsonwebtoken's own JWK types from the HTTP JWKS document
/// (`/.well-known/jwks.json`): an independent reader's view of what tokenmint publishes.
async fn jsonwebtoken_key_for(app: &TestApp, token: &str) -> (Jwk, DecodingKey) {
    let (status_line, _, body) = http_get(app.addr, "/.well-known/jwks.json").await;
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    let set: JwkSet = serde_json::from_str(&body).expect("jsonwebtoken reads the JWKS document");
    let jwk = set
        .find(&kid_of(token))
        .expect("the signing key is published");
    assert_eq!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Signature),
        "use: sig"
    );
    let decoding = DecodingKey::from_jwk(jwk).expect("jsonwebtoken accepts the published JWK");
    (jwk.clone(), decoding)
}

/// Third-party validation of tokenmint's tokens with jsonwebtoken.
fn offline_validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&["tokenmint"]);
    validation.set_issuer(&["tokenmint"]);
    validation
}

// Rotation while the server runs

#[tokio::test]
async fn rotation_switches_new_tokens_to_the_new_kid() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let old_kid = kid_of(&mint(&client, &caller).await.raw_token);

    let new_kid = rotate(&app).await;

    assert_ne!(new_kid, old_kid, "rotation makes a new key");
    let (client, caller, kid) = (&client, caller.as_str(), new_kid.as_str());
    let minted = eventually(PROPAGATION, move || async move {
        let minted = mint(client, caller).await;
        (kid_of(&minted.raw_token) == kid).then_some(minted)
    })
    .await
    .expect("a token minted within 2 s of the rotation carries the new kid");
    let token = minted.token.expect("token metadata");
    assert_eq!(token.key_id, new_kid, "key_id names the signing key");
}

#[tokio::test]
async fn tokens_signed_before_rotation_still_verify() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let before = mint(&client, &caller).await;

    let new_kid = rotate_and_wait(&app, &client, &caller).await;

    let old_kid = kid_of(&before.raw_token);
    assert_ne!(new_kid, old_kid);
    let response = verify(&client, &caller, &before.raw_token).await;
    assert!(response.active, "reason {}", response.reason);
    let token = response.token.expect("token metadata");
    assert_eq!(token.key_id, old_kid);
}

#[tokio::test]
async fn grpc_jwks_lists_the_old_and_new_keys_after_rotation() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let old_kid = kid_of(&caller);
    assert_eq!(jwks_kids(&client).await, vec![old_kid.clone()]);

    let new_kid = rotate_and_wait(&app, &client, &caller).await;

    let mut expected = vec![old_kid, new_kid];
    expected.sort();
    assert_eq!(jwks_kids(&client).await, expected);
}

#[tokio::test]
async fn http_jwks_document_lists_both_keys_as_ed25519_jwks() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let old_kid = kid_of(&caller);
    let new_kid = rotate_and_wait(&app, &client, &caller).await;

    let (status_line, head, body) = http_get(app.addr, "/.well-known/jwks.json").await;

    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    let content_type = "content-type: application/jwk-set+json";
    assert!(head.contains(content_type), "{head}");
    let document: Value = serde_json::from_str(&body).expect("a JSON document");
    let keys = document["keys"].as_array().expect("a keys array");
    let mut kids: Vec<&str> = keys.iter().filter_map(|k| k["kid"].as_str()).collect();
    kids.sort();
    let mut expected = vec![old_kid.as_str(), new_kid.as_str()];
    expected.sort();
    assert_eq!(kids, expected);
    for key in keys {
        assert_eq!(key["kty"], "OKP", "{key}");
        assert_eq!(key["crv"], "Ed25519", "{key}");
        assert_eq!(key["alg"], "EdDSA", "{key}");
        assert_eq!(key["use"], "sig", "{key}");
        assert!(key.get("y").is_none(), "an OKP key has no y: {key}");
        let x = key["x"].as_str().expect("x");
        assert_eq!(URL_SAFE_NO_PAD.decode(x).expect("base64url x").len(), 32);
    }
}

// Restart

#[tokio::test]
async fn keys_and_active_tokens_survive_a_restart() {
    let mut app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;
    let kids_before = jwks_kids(&client).await;
    drop(client);

    app.restart().await;

    let client = app.client().await;
    assert_eq!(jwks_kids(&client).await, kids_before, "same keys");
    let response = verify(&client, &caller, &minted.raw_token).await;
    assert!(response.active, "reason {}", response.reason);
    let token = response.token.expect("token metadata");
    assert_eq!(token.id, id_of(&minted));
    let after = mint(&client, &caller).await;
    assert_eq!(kid_of(&after.raw_token), kids_before[0], "same key");
}

#[tokio::test]
async fn revoked_token_stays_revoked_after_restart() {
    let mut app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let mut client = app.client().await;
    let minted = mint(&client, &caller).await;
    let id = id_of(&minted);
    let request = pb::RevokeTokenRequest { id, cascade: false };
    let outcome = client.revoke_token(authed(&caller, request)).await;
    outcome.expect("RevokeToken");
    drop(client);

    app.restart().await;

    let client = app.client().await;
    let response = verify(&client, &caller, &minted.raw_token).await;
    let revoked = pb::InactiveReason::Revoked as i32;
    assert!(!response.active);
    assert_eq!(response.reason, revoked, "reason {}", response.reason);
    assert!(response.token.is_none());
}

#[tokio::test]
async fn deleted_token_stays_unknown_after_restart() {
    let mut app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let mut client = app.client().await;
    let minted = mint(&client, &caller).await;
    let id = id_of(&minted);
    let request = pb::DeleteTokenRequest { id };
    let outcome = client.delete_token(authed(&caller, request)).await;
    outcome.expect("DeleteToken");
    drop(client);

    app.restart().await;

    let client = app.client().await;
    let response = verify(&client, &caller, &minted.raw_token).await;
    let unknown = pb::InactiveReason::UnknownToken as i32;
    assert!(!response.active);
    assert_eq!(response.reason, unknown, "reason {}", response.reason);
    assert!(response.token.is_none());
}

// ES256

#[tokio::test]
async fn es256_server_signs_es256_and_publishes_a_p256_key() {
    let app = TestApp::spawn_with(es256).await;
    let caller = app.manager(USER).await;
    let client = app.client().await;

    let minted = mint(&client, &caller).await;

    let header = header_of(&minted.raw_token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    let keys = jwks(&client).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert_eq!(header["kid"], key.kid);
    assert_eq!(key.kty, "EC");
    assert_eq!(key.crv, "P-256");
    assert_eq!(key.alg, "ES256");
    assert_eq!(key.r#use, "sig");
    let x = URL_SAFE_NO_PAD.decode(&key.x).expect("base64url x");
    let y = URL_SAFE_NO_PAD.decode(&key.y).expect("base64url y");
    assert_eq!((x.len(), y.len()), (32, 32), "P-256 coordinates");
}

#[tokio::test]
async fn es256_token_verifies_through_the_server() {
    let app = TestApp::spawn_with(es256).await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;

    let response = verify(&client, &caller, &minted.raw_token).await;

    assert!(response.active, "reason {}", response.reason);
    let token = response.token.expect("token metadata");
    assert_eq!(token.id, id_of(&minted));
}

#[tokio::test]
async fn es256_token_verifies_offline_with_jsonwebtokens_reading_of_the_jwks() {
    tokenmint_jwt::jsonwebtoken_provider::install();
    let app = TestApp::spawn_with(es256).await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;
    let (jwk, decoding) = jsonwebtoken_key_for(&app, &minted.raw_token).await;

    assert_eq!(jwk.common.key_algorithm, Some(KeyAlgorithm::ES256));
    let validation = offline_validation(Algorithm::ES256);
    let data = jsonwebtoken::decode::<Value>(&minted.raw_token, &decoding, &validation);

    let data = data.expect("the token verifies offline");
    assert_eq!(data.header.alg, Algorithm::ES256);
    assert_eq!(data.claims, claims_of(&minted.raw_token));
    assert_eq!(data.claims["jti"], id_of(&minted));
    assert_eq!(data.claims["sub"], USER);
}

// EdDSA offline

#[tokio::test]
async fn eddsa_token_verifies_offline_with_jsonwebtokens_reading_of_the_jwks() {
    tokenmint_jwt::jsonwebtoken_provider::install();
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;
    let (jwk, decoding) = jsonwebtoken_key_for(&app, &minted.raw_token).await;

    assert_eq!(jwk.common.key_algorithm, Some(KeyAlgorithm::EdDSA));
    let validation = offline_validation(Algorithm::EdDSA);
    let data = jsonwebtoken::decode::<Value>(&minted.raw_token, &decoding, &validation);

    let data = data.expect("the token verifies offline");
    assert_eq!(data.header.alg, Algorithm::EdDSA);
    assert_eq!(data.claims, claims_of(&minted.raw_token));
    assert_eq!(data.claims["jti"], id_of(&minted));
    assert_eq!(data.claims["sub"], USER);

    // Control: the published key refuses the same token with a changed payload.
    let parts: Vec<&str> = minted.raw_token.split('.').collect();
    let mut claims = data.claims.clone();
    claims["scope"] = "all".into();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    let refused = jsonwebtoken::decode::<Value>(&tampered, &decoding, &validation);
    assert!(refused.is_err(), "a tampered token is refused");
}

#[tokio::test]
async fn retiring_a_key_needs_a_rotation_first_and_force_while_tokens_depend_on_it() {
    let app = TestApp::spawn().await;
    let scopes = ["user_manage", "token_introspect", "wallet_view"];
    let caller = app.bootstrap("alice", &scopes).await;
    let client = app.client().await;
    let old = mint(&client, &caller).await;
    let old_kid = kid_of(&old.raw_token);
    assert!(verify(&client, &caller, &old.raw_token).await.active);

    let retire = |kid: String, force: bool| {
        let settings = app.settings.clone();
        async move {
            tokenmint::cli::retire_key(&settings, &kid, force)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    };
    let error = retire(old_kid.clone(), true).await.unwrap_err();
    assert!(
        error.contains("keys rotate"),
        "the signing key cannot go: {error}"
    );
    let error = retire("no-such-kid".into(), true).await.unwrap_err();
    assert!(error.contains("no signing key no-such-kid"), "{error}");

    rotate_and_wait(&app, &client, &caller).await;
    let error = retire(old_kid.clone(), false).await.unwrap_err();
    assert!(
        error.contains("unexpired, unrevoked token(s)") && error.contains("--force"),
        "the caller's token and the minted one still depend on it: {error}"
    );
    assert!(
        verify(&client, &caller, &old.raw_token).await.active,
        "a refused retirement changes nothing"
    );

    let retired = retire(old_kid.clone(), true).await.unwrap();
    // The caller's and the minted token, plus any minted while the rotation propagated.
    assert!(retired.dependent_tokens >= 2, "{retired:?}");
    let fresh_caller = app.bootstrap("bob", &scopes).await;
    let withdrawn = eventually(PROPAGATION, || async {
        let answer = verify(&client, &fresh_caller, &old.raw_token).await;
        (answer.reason == pb::InactiveReason::UnknownKey as i32).then_some(answer)
    })
    .await;
    assert!(
        withdrawn.is_some(),
        "a token signed by a retired key stops verifying, even with its signature cached"
    );
    assert!(!jwks(&client).await.iter().any(|k| k.kid == old_kid));
    let listed = tokenmint::cli::list_keys(&app.settings).await.unwrap();
    assert!(!listed.iter().any(|line| line.starts_with(&old_kid)));
}

#[tokio::test]
async fn a_retired_key_with_no_live_tokens_goes_without_force() {
    let app = TestApp::spawn().await;
    let caller = app
        .bootstrap("alice", &["user_manage", "token_introspect", "wallet_view"])
        .await;
    let client = app.client().await;
    let old_kid = kid_of(&caller);
    rotate(&app).await;
    // The only token signed by the old key is revoked: nothing depends on the key any more.
    let fresh_caller = app.bootstrap("alice", &["user_manage"]).await;
    let caller_id = claims_of(&caller)["jti"].as_str().unwrap().to_owned();
    // The server accepts the fresh caller once it has loaded the new key.
    let revoked = eventually(PROPAGATION, || {
        let request = pb::RevokeTokenRequest {
            id: caller_id.clone(),
            cascade: false,
        };
        let mut client = client.clone();
        let fresh_caller = fresh_caller.clone();
        async move {
            let response = client.revoke_token(authed(&fresh_caller, request)).await;
            response.ok()
        }
    })
    .await;
    assert!(revoked.is_some());
    let retired = tokenmint::cli::retire_key(&app.settings, &old_kid, false)
        .await
        .unwrap();
    assert_eq!(retired.dependent_tokens, 0);
}

#[tokio::test]
async fn concurrent_rotations_leave_one_signing_key() {
    use tokenmint::startup::{master_key, open_store};
    let app = TestApp::spawn().await;
    let algorithm = app.settings.keys.algorithm;
    let (first, second) = (
        open_store(&app.settings).await.unwrap(),
        open_store(&app.settings).await.unwrap(),
    );
    // Both rotations get as far as their change-log entry and wait there, side by side.
    let lock = DatabaseLock::take_on(&app, "token_events").await;
    let rotations = [first, second].map(|store| {
        let master = master_key(&app.settings).unwrap();
        tokio::spawn(async move {
            tokenmint::issuance::keys::rotate_offline(&store, &master, algorithm).await
        })
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.release().await;
    for rotation in rotations {
        rotation.await.unwrap().expect("rotate keys");
    }

    let keys = tokenmint::cli::list_keys(&app.settings).await.unwrap();
    let signing: Vec<_> = keys.iter().filter(|k| k.ends_with("\tsigning")).collect();
    assert_eq!(signing.len(), 1, "one key signs: {keys:?}");
    assert_eq!(
        keys.len(),
        3,
        "the first key and both rotations' keys: {keys:?}"
    );
}
