//! Offline verification against a real tokenmint: both key sources, the claims, every reason the
//! token itself can show, and the use checks of `verify_for`.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use tokenmint::domain::KeyAlgorithm;
use tokenmint::proto::v1 as pb;
use tokenmint_verify::{JwksSource, Verifier, VerifyError};

use crate::helpers::{TestApp, eventually, header_of, payload_of, strings, unix_now, with_payload};

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("IP address"))
}

#[tokio::test]
async fn valid_eddsa_token_verifies_offline_via_grpc_source_with_matching_claims() {
    let app = TestApp::spawn().await;
    let manager = app.manager("alice").await;
    let created = app
        .create_token(
            &manager,
            pb::CreateTokenRequest {
                label: "claims".into(),
                scopes: strings(&["wallet_view"]),
                ip_restrict: strings(&["10.0.0.7/8", "2001:db8::1"]),
                duration_seconds: Some(600),
                ..Default::default()
            },
        )
        .await;
    let token = created.token.expect("token metadata");
    assert_eq!(header_of(&created.raw_token)["alg"], "EdDSA");

    let verifier = Verifier::builder(JwksSource::grpc(app.url()))
        .issuer("tokenmint")
        .audience("tokenmint")
        .leeway(Duration::from_secs(5))
        .refresh_interval(Duration::from_secs(300))
        .build()
        .await
        .expect("verifier builds");
    let claims = verifier
        .verify(&created.raw_token)
        .await
        .expect("valid token");

    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.jti, token.id);
    assert_eq!(claims.client_id, token.id);
    assert_eq!(claims.scope, vec!["wallet_view"]);
    assert_eq!(claims.ips, token.ip_restrict);
    assert_eq!(claims.ips, vec!["10.0.0.0/8", "2001:db8::1/128"]);
    assert_eq!(claims.ent, None);
    assert_eq!(claims.tpl, None);
    assert!(!claims.adm);
    assert_eq!(claims.exp, token.expires_at.expect("expiry").seconds);
    // tokenmint rounds the expiry up to a whole second and `iat` down.
    assert!((600..=601).contains(&(claims.exp - claims.iat)));
    assert_eq!(claims.nbf, claims.iat);
    assert_eq!(
        verifier.key_ids(),
        vec![header_of(&created.raw_token)["kid"].as_str().unwrap()]
    );
}

#[tokio::test]
async fn valid_token_verifies_offline_via_http_source() {
    let app = TestApp::spawn().await;
    let raw = app.bootstrap("bob", &["wallet_view", "trade_view"]).await;
    let verifier = Verifier::builder(JwksSource::http(app.jwks_url()))
        .build()
        .await
        .expect("verifier builds from the HTTP JWKS");

    let claims = verifier.verify(&raw).await.expect("valid token");

    assert_eq!(claims.sub, "bob");
    assert_eq!(claims.scope, vec!["trade_view", "wallet_view"]);
    assert_eq!(claims.jti, payload_of(&raw)["jti"]);
    assert!(claims.ips.is_empty());
}

#[tokio::test]
async fn unreachable_or_unusable_sources_fail_to_build() {
    let app = TestApp::spawn().await;
    let not_found = Verifier::builder(JwksSource::http(format!("{}/nope.json", app.url())))
        .build()
        .await;
    assert!(
        matches!(&not_found, Err(VerifyError::KeySource(m)) if m.contains("404")),
        "{not_found:?}"
    );
    let tls = Verifier::builder(JwksSource::grpc("https://127.0.0.1:1"))
        .build()
        .await;
    assert!(matches!(tls, Err(VerifyError::KeySource(_))), "{tls:?}");
    app.stop().await;
    let down = Verifier::builder(JwksSource::grpc("http://127.0.0.1:1"))
        .build()
        .await;
    assert!(matches!(down, Err(VerifyError::KeySource(_))), "{down:?}");
}

#[tokio::test]
async fn wrong_audience_or_issuer_is_invalid_claims() {
    let app = TestApp::spawn().await;
    let raw = app.bootstrap("alice", &["wallet_view"]).await;
    for (issuer, audience) in [("tokenmint", "payments"), ("someone-else", "tokenmint")] {
        let verifier = Verifier::builder(JwksSource::grpc(app.url()))
            .issuer(issuer)
            .audience(audience)
            .build()
            .await
            .expect("verifier builds");
        assert_eq!(
            verifier.verify(&raw).await,
            Err(VerifyError::InvalidClaims),
            "issuer {issuer}, audience {audience}"
        );
    }
}

#[tokio::test]
async fn typ_and_audience_forms_follow_rfc_9068() {
    let app = TestApp::spawn().await;
    let verifier = app.verifier().await;
    let mut claims = app.claims("alice", "wallet_view");

    let upper = app
        .forge(json!({"typ": "Application/AT+JWT"}), claims.clone())
        .await;
    assert!(verifier.verify(&upper).await.is_ok());
    let jwt = app.forge(json!({"typ": "JWT"}), claims.clone()).await;
    assert_eq!(verifier.verify(&jwt).await, Err(VerifyError::InvalidClaims));
    let untyped = app.forge(json!({}), claims.clone()).await;
    assert_eq!(
        verifier.verify(&untyped).await,
        Err(VerifyError::InvalidClaims)
    );

    claims["aud"] = json!(["payments", "tokenmint"]);
    let many = app.forge(json!({"typ": "at+jwt"}), claims.clone()).await;
    assert!(verifier.verify(&many).await.is_ok());
    claims["aud"] = json!(["payments"]);
    let other = app.forge(json!({"typ": "at+jwt"}), claims).await;
    assert_eq!(
        verifier.verify(&other).await,
        Err(VerifyError::InvalidClaims)
    );
}

/// tokenmint writes `ips` only for a restricted token: a present but empty list is refused, never
/// read as "anywhere" (fail closed).
#[tokio::test]
async fn an_empty_ips_claim_is_malformed_not_unrestricted() {
    let app = TestApp::spawn().await;
    let verifier = app.verifier().await;
    let mut claims = app.claims("alice", "wallet_view");
    claims["ips"] = json!(["10.0.0.0/8"]);
    let restricted = app.forge(json!({"typ": "at+jwt"}), claims.clone()).await;
    let verified = verifier
        .verify(&restricted)
        .await
        .expect("a restricted token verifies");
    assert!(verified.is_ip_restricted());

    claims["ips"] = json!([]);
    let empty = app.forge(json!({"typ": "at+jwt"}), claims).await;
    assert_eq!(verifier.verify(&empty).await, Err(VerifyError::Malformed));
    assert_eq!(
        verifier.verify_for(&empty, &[], ip("10.0.0.1")).await,
        Err(VerifyError::Malformed)
    );
}

#[tokio::test]
async fn tampered_payload_is_bad_signature() {
    let app = TestApp::spawn().await;
    let verifier = app.verifier().await;
    let raw = app.bootstrap("alice", &["wallet_view"]).await;
    let mut payload = payload_of(&raw);
    payload["scope"] = json!("all");

    let tampered = with_payload(&raw, &payload);

    assert_eq!(
        verifier.verify(&tampered).await,
        Err(VerifyError::BadSignature)
    );
    let (signed, signature) = raw.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let other_signature = format!("{signed}.{first}{}", &signature[1..]);
    assert_eq!(
        verifier.verify(&other_signature).await,
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        verifier.verify(&format!("{signed}.")).await,
        Err(VerifyError::BadSignature),
        "no signature at all"
    );
}

#[tokio::test]
async fn alg_none_hmac_and_foreign_algorithms_are_bad_signature() {
    let app = TestApp::spawn().await;
    let verifier = app.verifier().await;
    let raw = app.bootstrap("alice", &["wallet_view"]).await;
    let kid = header_of(&raw)["kid"].clone();
    let payload = payload_of(&raw);
    let encode = |value: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let signature = raw.rsplit('.').next().unwrap();

    for alg in ["none", "None", "HS256", "ES256", "RS256", "eddsa"] {
        let header = json!({"alg": alg, "kid": kid, "typ": "at+jwt"});
        let unsigned = format!("{}.{}.", encode(&header), encode(&payload));
        let resigned = format!("{}.{}.{signature}", encode(&header), encode(&payload));
        assert_eq!(
            verifier.verify(&unsigned).await,
            Err(VerifyError::BadSignature),
            "alg {alg}, no signature"
        );
        assert_eq!(
            verifier.verify(&resigned).await,
            Err(VerifyError::BadSignature),
            "alg {alg}, original signature"
        );
    }
}

#[tokio::test]
async fn malformed_tokens_and_unknown_keys() {
    let app = TestApp::spawn().await;
    let verifier = app.verifier().await;
    let raw = app.bootstrap("alice", &["wallet_view"]).await;
    let (header, rest) = raw.split_once('.').unwrap();

    for bad in [
        String::new(),
        "not a token".into(),
        format!("{header}.{rest}.extra"),
        rest.to_owned(),
        format!("{header}!.{rest}"),
        format!("e30.{rest}"),
        format!("bm90IGpzb24.{rest}"),
    ] {
        let result = verifier.verify(&bad).await;
        // `e30` is `{}`: a JSON header without `alg` is malformed too.
        assert_eq!(result, Err(VerifyError::Malformed), "{bad:?}");
    }
    let no_kid = app
        .forge(json!({"kid": null}), app.claims("alice", "wallet_view"))
        .await;
    assert_eq!(verifier.verify(&no_kid).await, Err(VerifyError::UnknownKey));
    let unknown = app
        .forge(json!({"kid": "nobody"}), app.claims("alice", "wallet_view"))
        .await;
    assert_eq!(
        verifier.verify(&unknown).await,
        Err(VerifyError::UnknownKey)
    );
    let mut claims = app.claims("alice", "wallet_view");
    claims.as_object_mut().unwrap().remove("jti");
    let missing_claim = app.forge(json!({"typ": "at+jwt"}), claims).await;
    assert_eq!(
        verifier.verify(&missing_claim).await,
        Err(VerifyError::Malformed)
    );
}

#[tokio::test]
async fn expired_token_is_expired() {
    let app = TestApp::spawn_with(|s| s.tokens.leeway_secs = 0).await;
    let verifier = Verifier::builder(JwksSource::grpc(app.url()))
        .leeway(Duration::ZERO)
        .build()
        .await
        .expect("verifier builds");
    let raw = app
        .bootstrap_with("alice", &["wallet_view"], |r| {
            r.ttl = Some(Duration::from_secs(1))
        })
        .await;

    let outcome = eventually(Duration::from_secs(10), || async {
        verifier.verify(&raw).await.err()
    })
    .await;

    assert_eq!(outcome, Some(VerifyError::Expired));
    assert!(payload_of(&raw)["exp"].as_i64().unwrap() <= unix_now());
}

#[tokio::test]
async fn nbf_and_exp_are_judged_with_leeway() {
    let app = TestApp::spawn().await;
    let verifier = app.verifier().await;
    let now = unix_now();
    let mut claims = app.claims("alice", "wallet_view");

    claims["nbf"] = json!(now + 3600);
    let future = app.forge(json!({"typ": "at+jwt"}), claims.clone()).await;
    assert_eq!(
        verifier.verify(&future).await,
        Err(VerifyError::NotYetValid)
    );

    claims["nbf"] = json!(now + 2);
    let almost = app.forge(json!({"typ": "at+jwt"}), claims.clone()).await;
    assert!(
        verifier.verify(&almost).await.is_ok(),
        "within the 5 s leeway"
    );

    claims["nbf"] = json!(now - 60);
    claims["exp"] = json!(now - 2);
    let just_expired = app.forge(json!({"typ": "at+jwt"}), claims.clone()).await;
    assert!(
        verifier.verify(&just_expired).await.is_ok(),
        "within the 5 s leeway"
    );

    claims["exp"] = json!(now - 30);
    let expired = app.forge(json!({"typ": "at+jwt"}), claims).await;
    assert_eq!(verifier.verify(&expired).await, Err(VerifyError::Expired));
}

#[tokio::test]
async fn es256_server_tokens_verify_through_both_sources() {
    let app = TestApp::spawn_with(|s| s.keys.algorithm = KeyAlgorithm::ES256).await;
    let raw = app.bootstrap("alice", &["wallet_view"]).await;
    assert_eq!(header_of(&raw)["alg"], "ES256");

    for source in [
        JwksSource::grpc(app.url()),
        JwksSource::http(app.jwks_url()),
    ] {
        let verifier = Verifier::builder(source.clone())
            .build()
            .await
            .expect("verifier builds");
        let claims = verifier.verify(&raw).await.expect("ES256 token verifies");
        assert_eq!(claims.sub, "alice", "{source}");

        let mut payload = payload_of(&raw);
        payload["sub"] = json!("mallory");
        assert_eq!(
            verifier.verify(&with_payload(&raw, &payload)).await,
            Err(VerifyError::BadSignature)
        );
    }
}

#[tokio::test]
async fn verify_for_checks_client_address_then_scopes() {
    let app = TestApp::spawn().await;
    let verifier = app.verifier().await;
    let restricted = app
        .bootstrap_with("alice", &["wallet_view"], |r| {
            r.ips = strings(&["10.0.0.0/8"])
        })
        .await;
    let anywhere = app.bootstrap("alice", &["wallet_view"]).await;
    let all = app.bootstrap("root", &["all"]).await;

    let check = |token: &str, scopes: &'static [&'static str], client: Option<IpAddr>| {
        let (verifier, token) = (verifier.clone(), token.to_owned());
        async move {
            verifier
                .verify_for(&token, scopes, client)
                .await
                .map(|c| c.sub)
        }
    };

    assert_eq!(
        check(&restricted, &["wallet_view"], ip("10.1.2.3")).await,
        Ok("alice".into())
    );
    assert_eq!(
        check(&restricted, &["wallet_view"], ip("::ffff:10.1.2.3")).await,
        Ok("alice".into())
    );
    assert_eq!(
        check(&restricted, &["wallet_view"], ip("11.0.0.1")).await,
        Err(VerifyError::IpNotAllowed)
    );
    assert_eq!(
        check(&restricted, &["wallet_view"], None).await,
        Err(VerifyError::IpNotAllowed)
    );
    assert_eq!(
        check(&restricted, &["trade_view"], ip("11.0.0.1")).await,
        Err(VerifyError::IpNotAllowed),
        "the address is checked before the scopes"
    );
    assert_eq!(
        check(&restricted, &["wallet_view", "trade_view"], ip("10.1.2.3")).await,
        Err(VerifyError::InsufficientScope)
    );
    assert_eq!(
        check(&anywhere, &["wallet_view"], None).await,
        Ok("alice".into())
    );
    assert_eq!(
        check(&anywhere, &[], ip("203.0.113.9")).await,
        Ok("alice".into())
    );
    assert_eq!(
        check(&all, &["wallet_view", "trade_view", "user_manage"], None).await,
        Ok("root".into())
    );
    let claims = verifier.verify(&all).await.unwrap();
    assert!(claims.has_scope("anything") && !claims.is_ip_restricted());
}
