//! tokenmint-verify's offline `Verifier` with `watch_revocations`: a token revoked, suspended or
//! deleted on any server of the database is refused by a verifier that never calls VerifyToken,
//! through the change stream (changes after it started) and the status lists (changes before).
//! The bound is for a failing run; the measured delay is in BENCHMARKS.md
//! (`tokenmint-propagation --offline`).

use std::time::{Duration, Instant};

use tokenmint::proto::v1 as pb;
use tokenmint_verify::{JwksSource, Verifier, VerifyError};
use tonic::transport::Channel;

use crate::helpers::{TestApp, authed};
use crate::process::free_port;

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The user of every token here.
const USER: &str = "offline";

/// How long a change may take to reach a verifier in a failing run.
const PROPAGATION: Duration = Duration::from_secs(20);

/// An offline verifier of `app`'s tokens that watches revocations at `watch` as `caller`.
async fn verifier(app: &TestApp, watch: &TestApp, caller: &str) -> Verifier {
    Verifier::builder(JwksSource::grpc(app.url()))
        .watch_revocations(watch.url(), caller)
        .build()
        .await
        .expect("the verifier starts")
}

/// A raw change stream of `app`'s changes from now, past its first heartbeat.
async fn watch_from_now(
    client: &Client,
    caller: &str,
) -> tonic::Streaming<pb::WatchTokenChangesResponse> {
    let request = pb::WatchTokenChangesRequest::default();
    let response = client
        .clone()
        .watch_token_changes(authed(caller, request))
        .await;
    let mut stream = response.expect("WatchTokenChanges").into_inner();
    let greeting = tokio::time::timeout(PROPAGATION, stream.message()).await;
    greeting
        .expect("in time")
        .expect("a greeting")
        .expect("open");
    stream
}

/// Mints a `wallet_view` token; returns its id and raw token.
async fn mint(client: &Client, caller: &str) -> (String, String) {
    let request = pb::CreateTokenRequest {
        label: "offline".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let minted = client.clone().create_token(authed(caller, request)).await;
    let minted = minted.expect("CreateToken").into_inner();
    (minted.token.expect("metadata").id, minted.raw_token)
}

/// The verifier's first answer about `token` that is not "not known yet" (a token issued in the
/// second the verifier's stream started, and not in its list yet, waits for a newer list).
async fn settled_answer(verifier: &Verifier, token: &str) -> Result<(), VerifyError> {
    let started = Instant::now();
    loop {
        match verifier.verify(token).await.map(drop) {
            Err(VerifyError::RevocationSource(_)) if started.elapsed() < PROPAGATION => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answer => return answer,
        }
    }
}

/// Asks `verifier` about `token` until the answer is `expected` (or the bound passes); returns
/// how long that took.
async fn until_answer(
    verifier: &Verifier,
    token: &str,
    expected: Result<(), VerifyError>,
) -> Duration {
    let started = Instant::now();
    loop {
        let answer = verifier.verify(token).await.map(|_| ());
        if answer == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "still {answer:?} after {PROPAGATION:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn lifecycle(client: &Client, caller: &str, id: &str, action: &str) {
    let mut client = client.clone();
    let id = id.to_owned();
    let result = match action {
        "suspend" => client
            .suspend_token(authed(caller, pb::SuspendTokenRequest { id }))
            .await
            .map(drop),
        "activate" => client
            .activate_token(authed(caller, pb::ActivateTokenRequest { id }))
            .await
            .map(drop),
        "revoke" => client
            .revoke_token(authed(
                caller,
                pb::RevokeTokenRequest {
                    id,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "delete" => client
            .delete_token(authed(caller, pb::DeleteTokenRequest { id }))
            .await
            .map(drop),
        other => panic!("unknown action {other}"),
    };
    result.unwrap_or_else(|status| panic!("{action}: {status}"));
}

#[tokio::test]
async fn every_lifecycle_change_reaches_an_offline_verifier() {
    let app = TestApp::spawn().await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    let verifier = verifier(&app, &app, &caller).await;
    let health = verifier
        .revocation_health()
        .expect("revocations are watched");
    assert!(health.stream_connected, "{health:?}");

    let (id, token) = mint(&client, &caller).await;
    settled_answer(&verifier, &token)
        .await
        .expect("a new token verifies");
    lifecycle(&client, &caller, &id, "suspend").await;
    until_answer(&verifier, &token, Err(VerifyError::Suspended)).await;
    lifecycle(&client, &caller, &id, "activate").await;
    until_answer(&verifier, &token, Ok(())).await;
    lifecycle(&client, &caller, &id, "revoke").await;
    until_answer(&verifier, &token, Err(VerifyError::Revoked)).await;

    let (other, other_token) = mint(&client, &caller).await;
    settled_answer(&verifier, &other_token)
        .await
        .expect("verifies");
    lifecycle(&client, &caller, &other, "delete").await;
    until_answer(&verifier, &other_token, Err(VerifyError::UnknownToken)).await;
    let health = verifier.revocation_health().expect("watched");
    assert!(health.changes_applied >= 4, "{health:?}");
}

#[tokio::test]
async fn changes_made_before_the_verifier_started_come_from_the_status_lists() {
    let app = TestApp::spawn_with(|s| s.status_list.render_cache_ms = 0).await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    let (_, valid) = mint(&client, &caller).await;
    let (suspended_id, suspended) = mint(&client, &caller).await;
    let (revoked_id, revoked) = mint(&client, &caller).await;
    let mut settled = watch_from_now(&client, &caller).await;
    lifecycle(&client, &caller, &suspended_id, "suspend").await;
    lifecycle(&client, &caller, &revoked_id, "revoke").await;
    // Once a stream has carried both changes, the server's feed is past them, and a stream
    // opened from now (the verifier's) starts after them.
    let mut pending = vec![suspended_id.clone(), revoked_id.clone()];
    while !pending.is_empty() {
        let message = tokio::time::timeout(PROPAGATION, settled.message()).await;
        let message = message.expect("in time").expect("a message").expect("open");
        pending.retain(|id| !message.changes.iter().any(|c| &c.token_id == id));
    }

    let verifier = verifier(&app, &app, &caller).await;
    settled_answer(&verifier, &valid)
        .await
        .expect("valid in its list");
    assert_eq!(
        settled_answer(&verifier, &suspended).await,
        Err(VerifyError::Suspended)
    );
    assert_eq!(
        settled_answer(&verifier, &revoked).await,
        Err(VerifyError::Revoked)
    );
    let health = verifier.revocation_health().expect("watched");
    assert_eq!(health.cached_lists, 1, "{health:?}");
    assert_eq!(
        health.changes_applied, 0,
        "nothing came by the stream: {health:?}"
    );

    // A token minted after the list was fetched is not in it yet, and still verifies.
    let (_, newer) = mint(&client, &caller).await;
    settled_answer(&verifier, &newer)
        .await
        .expect("a token newer than the list");
}

#[tokio::test]
async fn a_revoke_on_one_replica_reaches_verifiers_watching_the_others() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.db.clone(), |_| {}).await;
    let c = TestApp::spawn_on(a.db.clone(), |_| {}).await;
    let client_a = a.client().await;
    let caller = a.manager(USER).await;
    let on_b = verifier(&b, &b, &caller).await;
    let on_c = verifier(&c, &c, &caller).await;
    for _ in 0..5 {
        let (id, token) = mint(&client_a, &caller).await;
        settled_answer(&on_b, &token).await.expect("verifies on B");
        settled_answer(&on_c, &token).await.expect("verifies on C");
        lifecycle(&client_a, &caller, &id, "revoke").await;
        until_answer(&on_b, &token, Err(VerifyError::Revoked)).await;
        until_answer(&on_c, &token, Err(VerifyError::Revoked)).await;
    }
}

#[tokio::test]
async fn a_verifier_catches_up_after_its_server_comes_back() {
    let port = free_port();
    let mut a = TestApp::spawn_with(|s| {
        s.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    })
    .await;
    let b = TestApp::spawn_on(a.db.clone(), |_| {}).await;
    let client_b = b.client().await;
    let caller = a.manager(USER).await;
    let verifier = verifier(&b, &a, &caller).await;
    let (id, token) = mint(&client_b, &caller).await;
    settled_answer(&verifier, &token).await.expect("verifies");

    let stopping = a.begin_stop();
    stopping.await.expect("join").expect("A stops");
    let down = tokio::time::timeout(PROPAGATION, async {
        while verifier
            .revocation_health()
            .expect("watched")
            .stream_connected
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(down.is_ok(), "the verifier notices its stream is gone");
    lifecycle(&client_b, &caller, &id, "revoke").await;

    a.restart().await;
    assert_eq!(a.addr.port(), port, "A is back where the verifier looks");
    until_answer(&verifier, &token, Err(VerifyError::Revoked)).await;
    let health = verifier.revocation_health().expect("watched");
    assert!(
        health.stream_connected && health.stream_disconnects >= 1,
        "{health:?}"
    );
    assert_eq!(health.resyncs, 0, "resumed from its cursor: {health:?}");
}

#[tokio::test]
async fn a_verifier_whose_caller_may_not_watch_does_not_start() {
    let app = TestApp::spawn().await;
    let caller = app.bootstrap(USER, &["wallet_view"]).await;
    let error = Verifier::builder(JwksSource::grpc(app.url()))
        .watch_revocations(app.url(), &caller)
        .build()
        .await
        .expect_err("no token_introspect");
    assert_eq!(error.as_str(), "REVOCATION_SOURCE");
    assert!(error.to_string().contains("PermissionDenied"), "{error}");
}
