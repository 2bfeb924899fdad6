//! The change feed and the key set cannot be jammed: a key-set change a server cannot apply
//! does not hold up the token changes after it, a server whose position was pruned from the
//! change log reloads its deny list in full, a server notices a change log restored from a
//! backup, and tokens naming made-up keys do not tie up requests while the database is slow to
//! answer.

use std::time::Duration;

use serde_json::json;
use tokenmint::proto::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{
    DatabaseLock, TestApp, authed, eventually, execute_in_database, http_get, query_number,
};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The user of every token here.
const USER: &str = "svc";

/// How long a change may take to reach a server (it polls the change log every 100 ms): a
/// bound for a failing run, generous because a loaded CI machine has stalled PostgreSQL for
/// seconds at a time.
const PROPAGATION: Duration = Duration::from_secs(20);

/// How many change-log entries one poll reads (`issuance::change_feed`).
const POLL_BATCH: u32 = 5_000;

/// Now, in the database's unit (microseconds since the epoch).
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Mints a `wallet_view` token; returns its id and raw token.
async fn mint(client: &Client, caller: &str) -> (String, String) {
    let request = pb::CreateTokenRequest {
        label: "feed test".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let response = client.clone().create_token(authed(caller, request)).await;
    let minted = response.expect("CreateToken").into_inner();
    (minted.token.expect("metadata").id, minted.raw_token)
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

/// Waits until `client`'s server says `token` is revoked.
async fn until_revoked(client: &Client, caller: &str, token: &str) -> bool {
    let revoked = pb::InactiveReason::Revoked as i32;
    eventually(PROPAGATION, || async {
        let response = verify(client, caller, token).await;
        (response.reason == revoked).then_some(())
    })
    .await
    .is_some()
}

/// The value of the metric line starting with `name ` in `/metrics`.
async fn metric(app: &TestApp, name: &str) -> Option<String> {
    let (_, _, text) = http_get(app.addr, "/metrics").await;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

#[tokio::test]
async fn a_key_change_a_server_cannot_apply_does_not_hold_up_later_token_changes() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.db.clone(), |_| {}).await;
    let caller = a.manager(USER).await;
    let (client_a, client_b) = (a.client().await, b.client().await);
    let (id, token) = mint(&client_a, &caller).await;
    assert!(verify(&client_b, &caller, &token).await.active);

    // Someone without the master key retires every key: no stored key may sign any more, so
    // no server can apply that key-set change. More changes than one poll reads follow it.
    let now = now_micros();
    let statements = [
        format!("UPDATE signing_keys SET retired_at = {now} WHERE retired_at IS NULL"),
        format!(
            "INSERT INTO token_events (kind, token_id, created_at) VALUES ('keys', NULL, {now})"
        ),
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {POLL_BATCH}) \
             INSERT INTO token_events (kind, token_id, created_at) SELECT 'token', NULL, {now} FROM n"
        ),
    ];
    execute_in_database(&a, &statements).await;
    let request = pb::RevokeTokenRequest { id, cascade: false };
    let revoked = client_a
        .clone()
        .revoke_token(authed(&caller, request))
        .await;
    revoked.expect("RevokeToken");

    assert!(
        until_revoked(&client_b, &caller, &token).await,
        "B applies the revocation logged after the key change it cannot apply"
    );
    let failures = metric(&b, "tokenmint_change_feed_key_reload_failures").await;
    let failures: u64 = failures.expect("the metric").parse().unwrap();
    assert!(failures >= 1, "the failed key reload is counted");
    let response = verify(&client_b, &caller, &caller).await;
    assert!(response.active, "B keeps the keys it had");
}

/// Whether `stream` says the keys changed within `wait`.
async fn keys_changed_within(
    stream: &mut tonic::Streaming<pb::WatchTokenChangesResponse>,
    wait: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let Ok(message) = tokio::time::timeout_at(deadline, stream.message()).await else {
            return false;
        };
        if message.expect("open").expect("a message").keys_changed {
            return true;
        }
    }
}

/// A verifier told "the keys changed" refetches this server's JWKS: before the server's own key
/// set has the change, that refetch would see the old keys (a retired key trusted for minutes
/// more), and nobody would say so again once the server caught up.
#[tokio::test]
async fn streams_hear_of_a_key_change_once_the_server_applied_it() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let request = authed(&caller, pb::WatchTokenChangesRequest::default());
    let response = client.clone().watch_token_changes(request).await;
    let mut stream = response.expect("WatchTokenChanges").into_inner();
    // Every key retired behind the server's back: its key set cannot take that change (no key
    // could sign), so it keeps the old one and retries.
    let now = now_micros();
    execute_in_database(
        &app,
        &[
            format!("UPDATE signing_keys SET retired_at = {now} WHERE retired_at IS NULL"),
            format!(
                "INSERT INTO token_events (kind, token_id, created_at) VALUES ('keys', NULL, {now})"
            ),
        ],
    )
    .await;
    let failed = eventually(PROPAGATION, || async {
        let failures = metric(&app, "tokenmint_change_feed_key_reload_failures").await?;
        (failures.parse::<u64>().ok()? >= 2).then_some(())
    })
    .await;
    assert!(failed.is_some(), "the reload failed (and was retried)");
    assert!(
        !keys_changed_within(&mut stream, Duration::from_millis(500)).await,
        "a key change the server could not apply was announced"
    );
    // Nor is a cursor past it handed out: a client resuming meanwhile reads it from the log.
    let request = authed(&caller, pb::WatchTokenChangesRequest::default());
    let response = client.clone().watch_token_changes(request).await;
    let mut fresh = response.expect("WatchTokenChanges").into_inner();
    let cursor = loop {
        let message = fresh.message().await.expect("open").expect("a message");
        if message.changes.is_empty() && !message.keys_changed {
            break message.cursor;
        }
    };
    let request = authed(&caller, pb::WatchTokenChangesRequest { cursor });
    let response = client.clone().watch_token_changes(request).await;
    let mut resumed = response.expect("resumes").into_inner();
    assert!(
        keys_changed_within(&mut resumed, PROPAGATION).await,
        "the cursor handed out while the reload was pending skipped the key change"
    );

    // Fixed: the retry succeeds, and the streams hear of it then.
    execute_in_database(
        &app,
        &["UPDATE signing_keys SET retired_at = NULL".to_owned()],
    )
    .await;
    assert!(
        keys_changed_within(&mut stream, PROPAGATION).await,
        "the key change is announced once the server applied it"
    );
}

#[tokio::test]
async fn a_server_whose_position_was_pruned_from_the_change_log_reloads_its_deny_list() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let (id, token) = mint(&client, &caller).await;
    assert!(verify(&client, &caller, &token).await.active);

    // Another process revokes the token, and the log entry saying so is pruned before this
    // server reads it (as after an outage longer than the log is kept); a later entry is left.
    let now = now_micros();
    let statements = [
        format!("UPDATE tokens SET status = 'revoked' WHERE id = '{id}'"),
        format!(
            "INSERT INTO token_events (kind, token_id, created_at) VALUES ('token', '{id}', {now})"
        ),
        format!(
            "INSERT INTO token_events (kind, token_id, created_at) VALUES ('token', NULL, {now})"
        ),
        "DELETE FROM token_events WHERE seq < (SELECT MAX(seq) FROM token_events)".to_owned(),
    ];
    execute_in_database(&app, &statements).await;

    assert!(
        until_revoked(&client, &caller, &token).await,
        "the revocation whose log entry was pruned is not missed"
    );
    // VerifyToken can see the revoke first, through a metadata-cache miss that reads the row:
    // the resync itself comes with the feed's next poll.
    let resynced = eventually(PROPAGATION, || async {
        (metric(&app, "tokenmint_deny_list_resyncs").await.as_deref() == Some("1")).then_some(())
    })
    .await;
    assert!(resynced.is_some(), "the server resynced its deny list once");
    let response = verify(&client, &caller, &caller).await;
    assert!(response.active, "other tokens are unaffected");
}

#[tokio::test]
async fn a_server_notices_the_change_log_going_back_in_time_after_a_restore() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let (kept_id, kept) = mint(&client, &caller).await;
    let (lost_id, lost) = mint(&client, &caller).await;
    let (other_id, other) = mint(&client, &caller).await;
    // Two changes the restore will lose: the second one's log position will be past the end of
    // the restored log, so only a reset (not a resync that keeps newer entries) forgets it.
    let request = pb::SuspendTokenRequest {
        id: other_id.clone(),
    };
    let suspended = client.clone().suspend_token(authed(&caller, request)).await;
    suspended.expect("SuspendToken");
    let request = pb::RevokeTokenRequest {
        id: lost_id.clone(),
        cascade: false,
    };
    let revoked = client.clone().revoke_token(authed(&caller, request)).await;
    revoked.expect("RevokeToken");
    assert!(until_revoked(&client, &caller, &lost).await);
    // The server's own changes applied at once; wait until its feed has read them from the log.
    let logged = query_number(&app, "SELECT MAX(seq) FROM token_events").await;
    let read = eventually(PROPAGATION, || async {
        let position = metric(&app, "tokenmint_change_feed_position").await?;
        (position.parse::<i64>().ok()? >= logged).then_some(())
    });
    assert!(
        read.await.is_some(),
        "the feed reads the revoke's log entry"
    );

    assert!(
        verify(&client, &caller, &kept).await.active,
        "cached as active"
    );
    let key_set_version = || async {
        let response = client.clone().get_jwks(pb::GetJwksRequest {}).await;
        response.expect("GetJwks").into_inner().key_set_version
    };
    let version_before = key_set_version().await;
    // The database is restored from a backup taken before those changes, and another process
    // then revokes `kept`: its change takes the log position the suspension had.
    let now = now_micros();
    let statements = [
        "UPDATE key_set_version SET version = 1".to_owned(),
        format!("UPDATE tokens SET status = 'active' WHERE id IN ('{lost_id}', '{other_id}')"),
        format!(
            "CREATE TEMPORARY TABLE lost AS SELECT MIN(seq) AS seq FROM token_events \
             WHERE token_id = '{other_id}'"
        ),
        "DELETE FROM token_events WHERE seq >= (SELECT seq FROM lost)".to_owned(),
        format!("UPDATE tokens SET status = 'revoked' WHERE id = '{kept_id}'"),
        format!(
            "INSERT INTO token_events (seq, kind, token_id, created_at) \
             SELECT seq, 'token', '{kept_id}', {now} FROM lost"
        ),
    ];
    execute_in_database(&app, &statements).await;

    assert!(
        until_revoked(&client, &caller, &kept).await,
        "the change written at a position read before in the lost history is applied"
    );
    assert!(
        key_set_version().await > version_before,
        "the restored key-set counter is moved past the versions verifiers hold"
    );
    let response = verify(&client, &caller, &lost).await;
    assert!(
        response.active,
        "the revoke the restore lost no longer denies"
    );
    let response = verify(&client, &caller, &other).await;
    assert!(response.active, "nor does the suspension");
    let rewinds = metric(&app, "tokenmint_change_log_rewinds").await;
    assert_eq!(rewinds.as_deref(), Some("1"));
}

#[tokio::test]
async fn tokens_naming_made_up_keys_do_not_tie_up_requests_while_the_database_is_slow() {
    let app = TestApp::spawn_with(|s| {
        s.server.max_in_flight_requests = std::num::NonZeroUsize::new(4).expect("nonzero")
    })
    .await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let scopes = |token: String| {
        let mut client = client.clone();
        async move {
            client
                .list_scopes(authed(&token, pb::ListScopesRequest {}))
                .await
        }
    };
    assert!(scopes(caller.clone()).await.is_ok());
    let mut made_up = Vec::new();
    for i in 0..16 {
        let header = json!({"kid": format!("made-up-{i}"), "typ": "at+jwt"});
        made_up.push(app.forge(header, app.claims(USER, "user_manage")).await);
    }

    // Reading the keys now waits for as long as the lock is held. SQLite readers cannot be
    // held up; there the unit tests of `issuance::keys` stand in for this one.
    let Some(lock) = DatabaseLock::take_exclusive(&app, "signing_keys").await else {
        return;
    };
    let requests: Vec<_> = made_up
        .into_iter()
        .map(|token| tokio::spawn(scopes(token)))
        .collect();
    for request in requests {
        // A bound for a failing run, not a measure of speed.
        let answered = tokio::time::timeout(Duration::from_secs(20), request).await;
        let status = answered
            .expect("answered while the key table is locked")
            .unwrap()
            .expect_err("a made-up key does not authenticate");
        assert!(
            matches!(status.code(), Code::Unauthenticated | Code::Unavailable),
            "{status:?}"
        );
    }
    let served = scopes(caller.clone()).await;
    lock.release().await;
    assert!(
        served.is_ok(),
        "a genuine caller gets through while the key table is locked: {served:?}"
    );
}
