//! The load generator itself: a short run reports throughput and no errors against a healthy
//! server, and failed responses count as errors, never as throughput. No timing assertions.

use std::time::Duration;

use tokenmint::proto::v1 as pb;
use tokenmint_bench::{BenchOptions, Scenario, VerifyMix};

use crate::helpers::{TestApp, authed};

const BENCH_SCOPES: &[&str] = &[
    "user_manage",
    "token_introspect",
    "wallet_view",
    "wallet_spend",
    "wallet_create",
    "trade_view",
    "trade_trade",
];

fn options(app: &TestApp, token: String, scenarios: Vec<Scenario>) -> BenchOptions {
    BenchOptions {
        addr: app.url(),
        scenarios,
        connections: 2,
        concurrency: 8,
        rate: None,
        duration: Duration::from_secs(60),
        requests: Some(200),
        warmup: Duration::ZERO,
        token,
        pool: 50,
        verify_mix: VerifyMix::Valid,
        rounds: 1,
        floors: false,
        floors_core: None,
        server_cores: 1,
        json: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_of_every_scenario_reports_throughput_and_no_errors() {
    let app = TestApp::spawn().await;
    let token = app.bootstrap("bench", BENCH_SCOPES).await;
    let all = vec![
        Scenario::Health,
        Scenario::Verify,
        Scenario::Create,
        Scenario::Mixed,
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(&app, token, all);
    options.json = Some(dir.path().join("report.json"));
    let report = tokenmint_bench::run(&options).await.unwrap();
    assert_eq!(report.scenarios.len(), 4);
    for result in &report.scenarios {
        let name = result.scenario.name();
        assert_eq!(result.ok, 200, "{name}: every request should succeed");
        assert!(result.errors.is_empty(), "{name}: {:?}", result.errors);
        assert!(result.requests_per_sec > 0.0, "{name}");
        assert!(
            result.p50_us > 0 && result.p50_us <= result.p99_us,
            "{name}"
        );
    }
    let ratios = report.ratios.as_ref().unwrap();
    assert!(ratios.verify_over_health.is_some());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["scenarios"][1]["scenario"], "verify");
    assert_eq!(json["scenarios"][1]["ok"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mixed_verify_pool_expects_inactive_answers_for_bad_tokens() {
    let app = TestApp::spawn_with(|s| s.tokens.leeway_secs = 0).await;
    let token = app.bootstrap("bench", BENCH_SCOPES).await;
    let mut options = options(&app, token, vec![Scenario::Verify]);
    options.verify_mix = VerifyMix::Mixed;
    options.pool = 40;
    let report = tokenmint_bench::run(&options).await.unwrap();
    let verify = &report.scenarios[0];
    assert_eq!(verify.mix, Some("mixed"));
    assert!(
        verify.errors.is_empty(),
        "inactive tokens are expected answers: {:?}",
        verify.errors
    );
    assert_eq!(verify.ok, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_count_as_errors_not_throughput() {
    let app = TestApp::spawn().await;
    // Health works for anyone; the create request asks for scopes this caller does not hold.
    let token = app
        .bootstrap("bench", &["user_manage", "wallet_view"])
        .await;
    let report = tokenmint_bench::run(&options(&app, token.clone(), vec![Scenario::Health]))
        .await
        .unwrap();
    assert_eq!(report.scenarios[0].ok, 200);
    let mut creates = options(&app, token, vec![Scenario::Create]);
    creates.requests = Some(50);
    let report = tokenmint_bench::run(&creates).await.unwrap();
    let create = &report.scenarios[0];
    assert_eq!(create.ok, 0, "refused creates are not throughput");
    assert_eq!(
        create.errors.get("PermissionDenied"),
        Some(&50),
        "{:?}",
        create.errors
    );
    assert_eq!(create.requests_per_sec, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_interleave_scenarios_and_add_up() {
    let app = TestApp::spawn().await;
    let token = app.bootstrap("bench", BENCH_SCOPES).await;
    let mut options = options(
        &app,
        token.clone(),
        vec![Scenario::Health, Scenario::Create],
    );
    options.rounds = 3;
    options.requests = Some(40);
    let report = tokenmint_bench::run(&options).await.unwrap();
    assert_eq!(
        report.scenarios.len(),
        2,
        "one result per scenario, not per round"
    );
    for result in &report.scenarios {
        let name = result.scenario.name();
        assert_eq!(result.ok, 120, "{name}: 3 rounds of 40 requests");
        assert!(result.errors.is_empty(), "{name}: {:?}", result.errors);
    }
    let created = app
        .client()
        .await
        .list_tokens(authed(
            &token,
            pb::ListTokensRequest {
                page_size: 500,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .len();
    // The bootstrap token plus 3 × 40 creates.
    assert_eq!(created, 121);
}

/// A paced load (the background of `scripts/propagation.sh`) stays under its rate: each worker
/// starts at most one request per period, whatever the server could take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_run_stays_under_its_rate() {
    let app = TestApp::spawn().await;
    let token = app.bootstrap("bench", BENCH_SCOPES).await;
    let mut options = options(&app, token, vec![Scenario::Health]);
    options.requests = None;
    options.duration = Duration::from_millis(1_000);
    options.concurrency = 4;
    options.rate = Some(40.0);
    let report = tokenmint_bench::run(&options).await.unwrap();
    let health = &report.scenarios[0];
    // 40 req/s for 1 s, plus the first request of each worker, which starts at once.
    assert!(health.ok <= 44, "{} requests in 1 s at 40 req/s", health.ok);
    assert!(health.ok >= 4, "every worker ran: {}", health.ok);
}

#[tokio::test]
async fn floors_alone_need_no_server() {
    let options = BenchOptions {
        addr: "http://127.0.0.1:1".into(),
        scenarios: Vec::new(),
        connections: 1,
        concurrency: 1,
        rate: None,
        duration: Duration::from_millis(10),
        requests: None,
        warmup: Duration::ZERO,
        token: String::new(),
        pool: 1,
        verify_mix: VerifyMix::Valid,
        rounds: 1,
        floors: true,
        floors_core: Some(0),
        server_cores: 1,
        json: None,
    };
    let report = tokenmint_bench::run(&options).await.unwrap();
    assert!(report.scenarios.is_empty());
    let floors = report.floors.as_ref().expect("floors measured");
    assert!(floors.ed25519_sign.ops_per_sec > 0.0 && floors.ed25519_verify.ops_per_sec > 0.0);
    // The report says where the floors were measured: the server's core, not the generator's.
    assert_eq!(report.floors_core, Some(0));
    assert!(
        report
            .to_string()
            .contains("single-core floors (ring on core 0)")
    );
}
