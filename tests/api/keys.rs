//! Signing keys: rotation through the operator CLI while the server runs, persistence of keys and
//! token states across restarts, the JWKS document (gRPC and `GET /.well-known/jwks.json`), ES256
//! servers, and verifying minted tokens offline with jsonwebtoken and the published keys.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokenmint::issuance::keys::KeyAlgorithm;
use tokenmint::proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

use crate::helpers::{TestApp, authed, claims_of, eventually, header_of};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The user of every caller token here.
const USER: &str = "svc";

/// Mints a `wallet_view` token for the caller through CreateToken.
async fn mint(client: &Client, caller: &str) -> pb::CreateTokenResponse {
    let request = pb::CreateTokenRequest {
        label: "keys test".into(),
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

/// The keys GetJwks returns.
async fn jwks(client: &Client) -> Vec<pb::Jwk> {
    client.clone().get_jwks(pb::GetJwksRequest {}).await.expect("GetJwks").into_inner().keys
}

/// The kids GetJwks returns, sorted.
async fn jwks_kids(client: &Client) -> Vec<String> {
    let mut kids: Vec<String> = jwks(client).await.into_iter().map(|k| k.kid).collect();
    kids.sort();
    kids
}

/// The `kid` header of a JWT.
fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("kid header").to_owned()
}

/// The id of a CreateToken response.
fn id_of(minted: &pb::CreateTokenResponse) -> String {
    minted.token.as_ref().expect("token metadata").id.clone()
}

/// Rotates the signing key through the CLI and waits (at most 2 s) until the server signs new
/// tokens with it; returns the new kid.
async fn rotate_and_wait(app: &TestApp, client: &Client, caller: &str) -> String {
    let new_kid = tokenmint::cli::rotate_keys(&app.settings).await.expect("rotate keys");
    let kid = new_kid.as_str();
    eventually(Duration::from_secs(2), move || async move {
        let raw = mint(client, caller).await.raw_token;
        (kid_of(&raw) == kid).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the server signs with the rotated key {new_kid} within 2 s"));
    new_kid
}

/// A plain HTTP/1.1 GET on the server's port; returns the status line, the lower-cased head and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange).await.expect("HTTP response within 5 s");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a blank line ends the response head");
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status_line, head, body)
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).expect("hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").expect("CRLF after chunk");
    }
}

// ---------------------------------------------------------------------------------------------
// Rotation while the server runs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rotation_switches_new_tokens_to_the_new_kid() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let old_kid = kid_of(&mint(&client, &caller).await.raw_token);

    let new_kid = tokenmint::cli::rotate_keys(&app.settings).await.expect("rotate keys");
    assert_ne!(new_kid, old_kid, "rotation makes a new key");

    let (client_ref, caller_ref, kid) = (&client, caller.as_str(), new_kid.as_str());
    let minted = eventually(Duration::from_secs(2), move || async move {
        let minted = mint(client_ref, caller_ref).await;
        (kid_of(&minted.raw_token) == kid).then_some(minted)
    })
    .await
    .expect("a token minted within 2 s of the rotation carries the new kid");
    assert_eq!(minted.token.expect("token metadata").key_id, new_kid, "key_id records the signing key");
}

#[tokio::test]
async fn tokens_signed_before_rotation_still_verify() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let before = mint(&client, &caller).await;
    let old_kid = kid_of(&before.raw_token);

    let new_kid = rotate_and_wait(&app, &client, &caller).await;

    assert_ne!(new_kid, old_kid);
    let response = verify(&client, &caller, &before.raw_token).await;
    assert!(response.active, "a token of the retired key still verifies, reason {}", response.reason);
    assert_eq!(response.token.expect("token metadata").key_id, old_kid);
}

#[tokio::test]
async fn grpc_jwks_lists_the_old_and_new_keys_after_rotation() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let old_kid = kid_of(&caller);
    assert_eq!(jwks_kids(&client).await, vec![old_kid.clone()], "one key before rotation");

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

    assert!(status_line.starts_with("HTTP/1.1 200"), "status line: {status_line}");
    assert!(head.contains("content-type: application/jwk-set+json"), "head: {head}");
    let document: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("JSON JWKS ({e}): {body}"));
    let keys = document["keys"].as_array().expect("a `keys` array");
    let mut kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().expect("kid")).collect();
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
        let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().expect("x")).expect("base64url x");
        assert_eq!(x.len(), 32, "Ed25519 public key length: {key}");
    }
}

// ---------------------------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keys_and_active_tokens_survive_a_restart() {
    let mut app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let minted = mint(&app.client().await, &caller).await;
    let kids_before = jwks_kids(&app.client().await).await;

    app.restart().await;

    let client = app.client().await;
    assert_eq!(jwks_kids(&client).await, kids_before, "the same keys after restart");
    let response = verify(&client, &caller, &minted.raw_token).await;
    assert!(response.active, "a token minted before the restart still verifies, reason {}", response.reason);
    assert_eq!(response.token.expect("token metadata").id, id_of(&minted));
    assert_eq!(kid_of(&mint(&client, &caller).await.raw_token), kids_before[0], "still signs with the same key");
}

#[tokio::test]
async fn revoked_token_stays_revoked_after_restart() {
    let mut app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;
    let request = pb::RevokeTokenRequest { id: id_of(&minted) };
    client.clone().revoke_token(authed(&caller, request)).await.expect("RevokeToken");

    app.restart().await;

    let response = verify(&app.client().await, &caller, &minted.raw_token).await;
    assert!(!response.active);
    assert_eq!(response.reason, pb::InactiveReason::Revoked as i32, "reason {}", response.reason);
    assert!(response.token.is_none());
}

#[tokio::test]
async fn deleted_token_stays_unknown_after_restart() {
    let mut app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;
    let request = pb::DeleteTokenRequest { id: id_of(&minted) };
    client.clone().delete_token(authed(&caller, request)).await.expect("DeleteToken");

    app.restart().await;

    let response = verify(&app.client().await, &caller, &minted.raw_token).await;
    assert!(!response.active);
    assert_eq!(response.reason, pb::InactiveReason::UnknownToken as i32, "reason {}", response.reason);
    assert!(response.token.is_none());
}

// ---------------------------------------------------------------------------------------------
// ES256
// ---------------------------------------------------------------------------------------------

async fn spawn_es256() -> TestApp {
    TestApp::spawn_with(|s| s.keys.algorithm = KeyAlgorithm::ES256).await
}

#[tokio::test]
async fn es256_server_signs_es256_and_publishes_a_p256_key() {
    let app = spawn_es256().await;
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
    assert_eq!(URL_SAFE_NO_PAD.decode(&key.x).expect("base64url x").len(), 32, "x coordinate");
    assert_eq!(URL_SAFE_NO_PAD.decode(&key.y).expect("base64url y").len(), 32, "y coordinate");
}

#[tokio::test]
async fn es256_token_verifies_through_the_server() {
    let app = spawn_es256().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;

    let response = verify(&client, &caller, &minted.raw_token).await;

    assert!(response.active, "reason {}", response.reason);
    assert_eq!(response.token.expect("token metadata").id, id_of(&minted));
}

#[tokio::test]
async fn es256_token_verifies_offline_with_the_published_coordinates() {
    tokenmint::issuance::jwt_crypto::install();
    let app = spawn_es256().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;
    let kid = kid_of(&minted.raw_token);
    let key = jwks(&client).await.into_iter().find(|k| k.kid == kid).expect("JWK for the token's kid");

    let decoding = DecodingKey::from_ec_components(&key.x, &key.y).expect("EC decoding key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["tokenmint"]);
    validation.set_issuer(&["tokenmint"]);
    let data = jsonwebtoken::decode::<Value>(&minted.raw_token, &decoding, &validation).expect("verifies offline");

    assert_eq!(data.header.alg, Algorithm::ES256);
    assert_eq!(data.claims, claims_of(&minted.raw_token));
    assert_eq!(data.claims["jti"], id_of(&minted));
    assert_eq!(data.claims["sub"], USER);
}

// ---------------------------------------------------------------------------------------------
// EdDSA offline
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn eddsa_token_verifies_offline_with_the_published_key() {
    tokenmint::issuance::jwt_crypto::install();
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let minted = mint(&client, &caller).await;
    let kid = kid_of(&minted.raw_token);
    let key = jwks(&client).await.into_iter().find(|k| k.kid == kid).expect("JWK for the token's kid");

    let decoding = DecodingKey::from_ed_components(&key.x).expect("Ed25519 decoding key");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["tokenmint"]);
    validation.set_issuer(&["tokenmint"]);
    let data = jsonwebtoken::decode::<Value>(&minted.raw_token, &decoding, &validation).expect("verifies offline");

    assert_eq!(data.header.alg, Algorithm::EdDSA);
    assert_eq!(data.claims, claims_of(&minted.raw_token));
    assert_eq!(data.claims["jti"], id_of(&minted));
    assert_eq!(data.claims["sub"], USER);

    // The published key does not verify a token whose payload was changed.
    let parts: Vec<&str> = minted.raw_token.split('.').collect();
    let mut claims = data.claims.clone();
    claims["scope"] = "all".into();
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    assert!(jsonwebtoken::decode::<Value>(&tampered, &decoding, &validation).is_err(), "tampered token is refused");
}
