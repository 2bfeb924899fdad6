//! Online verification (VerifyToken) against a real tokenmint: what offline verification cannot
//! see (revocation, suspension, deletion), the answer cache, and a caller without
//! `token_introspect`.

use std::net::IpAddr;
use std::time::Duration;

use tokenmint::proto::v1 as pb;
use tokenmint_verify::{OnlineVerifier, VerifyError};

use crate::helpers::{TestApp, authed, strings};

/// A server, a manager caller for `alice` and a token it minted through CreateToken.
async fn minted(app: &TestApp, ip_restrict: &[&str]) -> (String, pb::CreateTokenResponse) {
    let manager = app.manager("alice").await;
    let created = app
        .create_token(
            &manager,
            pb::CreateTokenRequest {
                label: "online".into(),
                scopes: strings(&["wallet_view"]),
                ip_restrict: strings(ip_restrict),
                ..Default::default()
            },
        )
        .await;
    (manager, created)
}

#[tokio::test]
async fn revoked_token_still_verifies_offline_but_online_says_revoked() {
    let app = TestApp::spawn().await;
    let (manager, created) = minted(&app, &[]).await;
    let id = created.token.as_ref().expect("token").id.clone();
    let raw = created.raw_token;
    let offline = app.verifier().await;
    let online = OnlineVerifier::connect(app.url(), &manager, Duration::from_secs(5))
        .await
        .expect("online verifier connects");
    let uncached = OnlineVerifier::connect(app.url(), &manager, Duration::ZERO)
        .await
        .expect("online verifier connects");
    let claims = online.verify(&raw, None).await.expect("active");
    assert_eq!(claims.jti, id);
    assert_eq!(claims, offline.verify(&raw).await.expect("valid offline"));

    app.client()
        .await
        .revoke_token(authed(
            &manager,
            pb::RevokeTokenRequest { id, cascade: false },
        ))
        .await
        .expect("RevokeToken");

    // The documented limitation: a signature stays valid until the token expires.
    assert!(
        offline.verify(&raw).await.is_ok(),
        "offline cannot see revocation"
    );
    assert!(
        online.verify(&raw, None).await.is_ok(),
        "the cached answer is reused for its ttl"
    );
    assert_eq!(uncached.verify(&raw, None).await, Err(VerifyError::Revoked));
    online.clear_cache();
    assert_eq!(online.verify(&raw, None).await, Err(VerifyError::Revoked));
}

#[tokio::test]
async fn online_verifier_reports_suspension_deletion_and_other_reasons() {
    let app = TestApp::spawn().await;
    let (manager, created) = minted(&app, &["10.0.0.0/8"]).await;
    let id = created.token.as_ref().expect("token").id.clone();
    let raw = created.raw_token;
    let online = OnlineVerifier::connect(app.url(), &manager, Duration::ZERO)
        .await
        .expect("online verifier connects");
    let inside: Option<IpAddr> = "10.1.2.3".parse().ok();
    let mut client = app.client().await;

    assert!(online.verify(&raw, inside).await.is_ok());
    assert_eq!(
        online.verify(&raw, None).await,
        Err(VerifyError::IpNotAllowed)
    );
    assert_eq!(
        online.verify(&raw, "11.0.0.1".parse().ok()).await,
        Err(VerifyError::IpNotAllowed)
    );
    assert_eq!(
        online.verify_for(&raw, &["trade_view"], inside).await,
        Err(VerifyError::InsufficientScope)
    );
    assert_eq!(
        online
            .verify_for(&raw, &["wallet_view"], inside)
            .await
            .map(|c| c.sub),
        Ok("alice".into())
    );
    assert_eq!(
        online.verify("garbage", None).await,
        Err(VerifyError::Malformed)
    );

    client
        .suspend_token(authed(&manager, pb::SuspendTokenRequest { id: id.clone() }))
        .await
        .expect("SuspendToken");
    assert_eq!(
        online.verify(&raw, inside).await,
        Err(VerifyError::Suspended)
    );
    client
        .delete_token(authed(&manager, pb::DeleteTokenRequest { id }))
        .await
        .expect("DeleteToken");
    assert_eq!(
        online.verify(&raw, inside).await,
        Err(VerifyError::UnknownToken)
    );
}

#[tokio::test]
async fn caller_without_token_introspect_gets_an_introspection_error() {
    let app = TestApp::spawn().await;
    let weak = app.bootstrap("alice", &["wallet_view"]).await;
    let online = OnlineVerifier::connect(app.url(), &weak, Duration::from_secs(60))
        .await
        .expect("online verifier connects");

    let result = online.verify(&weak, None).await;

    assert!(
        matches!(&result, Err(VerifyError::Introspection(m)) if m.contains("PermissionDenied")),
        "{result:?}"
    );
    assert!(result.unwrap_err().is_unavailable());
    let unreachable = OnlineVerifier::connect("http://127.0.0.1:1", &weak, Duration::ZERO).await;
    assert!(matches!(unreachable, Err(VerifyError::Introspection(_))));
}
