//! `GET /metrics` on the server's port: Prometheus (OpenMetrics) text whose counters move with
//! the RPCs served, and gauges describing keys, the database pool and pending writes.

use tokenmint::proto::v1 as pb;

use crate::helpers::{TestApp, authed, http_get};

/// The value of the sample named exactly `series` (name and labels as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let (status, head, body) = http_get(app.addr, "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    body
}

#[tokio::test]
async fn counters_move_with_the_rpcs_served() {
    // Last-used times stay queued for the whole test, so the queue-depth gauge is predictable.
    let app = TestApp::spawn_with(|s| {
        s.background.last_used_flush_interval_ms =
            std::num::NonZeroU64::new(3_600_000).expect("nonzero")
    })
    .await;
    let caller = app
        .bootstrap("alice", &["user_manage", "token_introspect", "wallet_view"])
        .await;
    let mut client = app.client().await;
    let before = scrape(&app).await;
    let create_ok = r#"tokenmint_rpc_requests_total{service="tokenmint.v1.TokenService",method="CreateToken",code="OK"}"#;
    assert_eq!(sample(&before, create_ok), None);

    let mut minted = Vec::new();
    for label in ["a", "b"] {
        let response = client
            .create_token(authed(
                &caller,
                pb::CreateTokenRequest {
                    label: label.into(),
                    scopes: vec!["wallet_view".into()],
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        minted.push(response);
    }
    let bad = client
        .create_token(authed(
            &caller,
            pb::CreateTokenRequest {
                label: "bad".into(),
                scopes: vec!["no_such_scope".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let verify = |token: &str| {
        authed(
            &caller,
            pb::VerifyTokenRequest {
                token: token.to_owned(),
                ..Default::default()
            },
        )
    };
    client
        .verify_token(verify(&minted[0].raw_token))
        .await
        .unwrap();
    let id = minted[1].token.as_ref().unwrap().id.clone();
    client
        .revoke_token(authed(
            &caller,
            pb::RevokeTokenRequest { id, cascade: false },
        ))
        .await
        .unwrap();
    client
        .verify_token(verify(&minted[1].raw_token))
        .await
        .unwrap();
    client.verify_token(verify("not.a.token")).await.unwrap();

    let after = scrape(&app).await;
    let expectations = [
        (create_ok, 2.0),
        (
            r#"tokenmint_rpc_requests_total{service="tokenmint.v1.TokenService",method="CreateToken",code="INVALID_ARGUMENT"}"#,
            1.0,
        ),
        (
            r#"tokenmint_rpc_requests_total{service="tokenmint.v1.TokenService",method="VerifyToken",code="OK"}"#,
            3.0,
        ),
        (
            r#"tokenmint_rpc_duration_seconds_count{service="tokenmint.v1.TokenService",method="CreateToken",code="OK"}"#,
            2.0,
        ),
        (r#"tokenmint_tokens_minted_total{outcome="minted"}"#, 2.0),
        (
            r#"tokenmint_tokens_minted_total{outcome="INVALID_SCOPE"}"#,
            1.0,
        ),
        (r#"tokenmint_tokens_verified_total{outcome="active"}"#, 1.0),
        (r#"tokenmint_tokens_verified_total{outcome="REVOKED"}"#, 1.0),
        (
            r#"tokenmint_tokens_verified_total{outcome="MALFORMED"}"#,
            1.0,
        ),
        ("tokenmint_tokens_revoked_total", 1.0),
    ];
    for (series, value) in expectations {
        assert_eq!(sample(&after, series), Some(value), "{series} in\n{after}");
    }
    // Latency buckets are cumulative: the +Inf bucket holds every request.
    let inf = r#"tokenmint_rpc_duration_seconds_bucket{le="+Inf",service="tokenmint.v1.TokenService",method="CreateToken",code="OK"}"#;
    assert_eq!(sample(&after, inf), Some(2.0), "{after}");

    let age = sample(&after, "tokenmint_signing_key_age_seconds").expect("key age");
    assert!((0.0..600.0).contains(&age), "{age}");
    let max = sample(&after, "tokenmint_db_pool_max_connections").expect("pool size");
    assert!(max >= 1.0);
    assert!(sample(&after, r#"tokenmint_db_pool_connections{state="idle"}"#).is_some());
    // The caller's token and the verified one wait to have their last use written.
    assert_eq!(sample(&after, "tokenmint_last_used_pending"), Some(2.0));
    assert!(
        after.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
}

#[tokio::test]
async fn unknown_methods_share_one_label_set() {
    let app = TestApp::spawn().await;
    for path in ["/x.Y/Z1", "/x.Y/Z2", "/tokenmint.v1.TokenService/Nope"] {
        let status = app.call_raw(path).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }
    let text = scrape(&app).await;
    let unknown =
        r#"tokenmint_rpc_requests_total{service="unknown",method="unknown",code="UNIMPLEMENTED"}"#;
    assert_eq!(sample(&text, unknown), Some(3.0), "{text}");
    assert!(!text.contains("Z1"), "paths never become labels");
}
