//! Write access to the database is not enough to make a server trust a signing key: every
//! `signing_keys` row is authenticated under the master key (its MAC covers kid, algorithm,
//! public key and lifecycle). A row an attacker inserts, or a genuine row whose kid or lifecycle
//! was changed, verifies nothing, is not published, and is counted; rows made before the MAC
//! existed are upgraded at start-up and keep working.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tokenmint::proto::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{TestApp, authed, eventually, execute_in_database, header_of, http_get};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The user of every caller token here.
const USER: &str = "svc";

/// How long a change made in the database may take to reach the server (it polls every 100 ms).
const PROPAGATION: Duration = Duration::from_secs(5);

/// A SQL literal of `bytes` for `app`'s database.
fn blob(app: &TestApp, bytes: &[u8]) -> String {
    if app.settings.database_url().starts_with("postgres") {
        format!("'\\x{}'::bytea", hex::encode(bytes))
    } else {
        format!("X'{}'", hex::encode(bytes))
    }
}

/// Now, in the database's unit (microseconds since the epoch).
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The change-log entry that makes running servers re-read the keys.
fn keys_changed() -> String {
    format!(
        "INSERT INTO token_events (kind, token_id, created_at) VALUES ('keys', NULL, {})",
        now_micros()
    )
}

/// A JWT with `header` and `claims`, signed by `pair` (EdDSA).
fn signed_by(pair: &Ed25519KeyPair, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = pair.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// VerifyToken's answer for `token`.
async fn verify(client: &Client, caller: &str, token: &str) -> pb::VerifyTokenResponse {
    let request = pb::VerifyTokenRequest {
        token: token.into(),
        ..Default::default()
    };
    let response = client.clone().verify_token(authed(caller, request)).await;
    response.expect("VerifyToken").into_inner()
}

/// Whether VerifyToken says `token`'s key is unknown.
async fn key_is_unknown(client: &Client, caller: &str, token: &str) -> bool {
    let response = verify(client, caller, token).await;
    !response.active && response.reason == pb::InactiveReason::UnknownKey as i32
}

/// The kids GetJwks and `/.well-known/jwks.json` publish.
async fn published_kids(app: &TestApp, client: &Client) -> (Vec<String>, String) {
    let keys = client.clone().get_jwks(pb::GetJwksRequest {}).await;
    let kids = keys.expect("GetJwks").into_inner().keys;
    let (_, _, document) = http_get(app.addr, "/.well-known/jwks.json").await;
    (kids.into_iter().map(|k| k.kid).collect(), document)
}

/// The `kid` header of a JWT.
fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("kid").to_owned()
}

/// The value of the metric line starting with `name ` in `/metrics`.
async fn metric(app: &TestApp, name: &str) -> Option<String> {
    let (_, _, text) = http_get(app.addr, "/metrics").await;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

#[tokio::test]
async fn a_key_row_inserted_without_the_master_key_is_never_trusted_nor_published() {
    let app = TestApp::spawn().await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    // The attacker holds a key pair and can write to the database.
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let public_key = blob(&app, pair.public_key().as_ref());
    let now = now_micros();
    let insert = |kid: &str, mac: &str| {
        format!(
            "INSERT INTO signing_keys \
             (kid, algorithm, public_key, sealed_private_key, created_at, retired_at, mac) \
             VALUES ('{kid}', 'EdDSA', {public_key}, {}, {now}, {now}, {mac})",
            blob(&app, &[7; 60])
        )
    };
    let bogus_mac = blob(&app, &[0; 32]);
    let statements = [
        insert("attacker-bogus-mac", &bogus_mac),
        insert("attacker-no-mac", "NULL"),
        keys_changed(),
    ];
    execute_in_database(&app, &statements).await;
    // The server has read the rows, and counted them as untrusted.
    until_untrusted_rows(&app, "2").await;

    for kid in ["attacker-bogus-mac", "attacker-no-mac"] {
        let header = json!({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"});
        let forged = signed_by(&pair, &header, &app.claims(USER, "user_manage"));
        assert!(
            key_is_unknown(&client, &caller, &forged).await,
            "{kid}: the attacker's signature is not accepted"
        );
        let listed = client
            .clone()
            .list_tokens(authed(&forged, pb::ListTokensRequest::default()))
            .await;
        let status = listed.expect_err("the attacker's token does not authenticate");
        assert_eq!(status.code(), Code::Unauthenticated, "{kid}: {status:?}");
    }
    let (kids, document) = published_kids(&app, &client).await;
    assert_eq!(kids, [kid_of(&caller)], "only the genuine key is published");
    assert!(!document.contains("attacker"), "{document}");
    let response = verify(&client, &caller, &caller).await;
    assert!(response.active, "the genuine key still verifies");
}

/// A server whose first key was retired by a rotation: the server, a client, a caller signed by
/// the retired key and one signed by the new key.
async fn after_a_rotation(app: &TestApp) -> (Client, String, String) {
    let client = app.client().await;
    let old_caller = app.manager(USER).await;
    tokenmint::cli::rotate_keys(&app.settings).await.unwrap();
    let new_caller = app.manager(USER).await;
    let known = eventually(PROPAGATION, || async {
        let response = verify(&client, &old_caller, &new_caller).await;
        response.active.then_some(())
    })
    .await;
    assert!(known.is_some(), "the server knows the new key");
    let response = verify(&client, &new_caller, &old_caller).await;
    assert!(response.active, "the retired key still verifies its tokens");
    (client, old_caller, new_caller)
}

/// Waits until the server has re-read the keys and counts `n` untrusted rows.
async fn until_untrusted_rows(app: &TestApp, n: &str) {
    let counted = eventually(PROPAGATION, || async {
        let value = metric(app, "tokenmint_signing_keys_untrusted").await;
        (value.as_deref() == Some(n)).then_some(())
    })
    .await;
    assert!(counted.is_some(), "{n} untrusted key row(s) counted");
}

#[tokio::test]
async fn a_genuine_key_row_whose_lifecycle_was_changed_is_no_longer_trusted() {
    let app = TestApp::spawn().await;
    let (client, old_caller, new_caller) = after_a_rotation(&app).await;

    // Retired keys keep verifying for a while; moving one back to signing is a change its MAC
    // does not cover.
    let old_kid = kid_of(&old_caller);
    let statements = [
        format!("UPDATE signing_keys SET retired_at = NULL WHERE kid = '{old_kid}'"),
        keys_changed(),
    ];
    execute_in_database(&app, &statements).await;
    let untrusted = eventually(PROPAGATION, || async {
        key_is_unknown(&client, &new_caller, &old_caller)
            .await
            .then_some(())
    })
    .await;
    assert!(
        untrusted.is_some(),
        "a key whose lifecycle was changed verifies nothing"
    );
    until_untrusted_rows(&app, "1").await;
    let (kids, _) = published_kids(&app, &client).await;
    assert_eq!(kids, [kid_of(&new_caller)]);
    let response = verify(&client, &new_caller, &new_caller).await;
    assert!(response.active, "the current key is unaffected");
}

#[tokio::test]
async fn a_genuine_key_row_whose_kid_was_changed_is_no_longer_trusted() {
    let app = TestApp::spawn().await;
    // Signed by the first key, naming the kid that key will be renamed to.
    let renamed_header = json!({"kid": "renamed", "typ": "at+jwt"});
    let renamed = app
        .forge(renamed_header, app.claims(USER, "wallet_view"))
        .await;
    let (client, old_caller, new_caller) = after_a_rotation(&app).await;

    let old_kid = kid_of(&old_caller);
    let statements = [
        format!("UPDATE signing_keys SET kid = 'renamed' WHERE kid = '{old_kid}'"),
        keys_changed(),
    ];
    execute_in_database(&app, &statements).await;
    until_untrusted_rows(&app, "1").await;
    assert!(
        key_is_unknown(&client, &new_caller, &renamed).await,
        "a renamed key verifies nothing under its new kid"
    );
    assert!(key_is_unknown(&client, &new_caller, &old_caller).await);
    let (kids, _) = published_kids(&app, &client).await;
    assert_eq!(kids, [kid_of(&new_caller)]);
}

#[tokio::test]
async fn keys_made_before_rows_were_authenticated_keep_working_after_the_upgrade() {
    let mut app = TestApp::spawn().await;
    let old_caller = app.manager(USER).await;
    tokenmint::cli::rotate_keys(&app.settings).await.unwrap();
    let new_caller = app.manager(USER).await;
    // As the rows of a deployment made before the MAC column existed.
    execute_in_database(&app, &["UPDATE signing_keys SET mac = NULL".to_owned()]).await;

    app.restart().await;
    let client = app.client().await;
    for (caller, token) in [(&new_caller, &old_caller), (&old_caller, &new_caller)] {
        let response = verify(&client, caller, token).await;
        assert!(response.active, "reason {}", response.reason);
    }
    let minted = client
        .clone()
        .create_token(authed(
            &new_caller,
            pb::CreateTokenRequest {
                label: "after the upgrade".into(),
                scopes: vec!["wallet_view".into()],
                ..Default::default()
            },
        ))
        .await
        .expect("the server signs after the upgrade")
        .into_inner();
    assert_eq!(kid_of(&minted.raw_token), kid_of(&new_caller));
    let (mut kids, _) = published_kids(&app, &client).await;
    kids.sort();
    let mut expected = vec![kid_of(&old_caller), kid_of(&new_caller)];
    expected.sort();
    assert_eq!(kids, expected);
    assert_eq!(
        metric(&app, "tokenmint_signing_keys_untrusted")
            .await
            .as_deref(),
        Some("0")
    );
}
