//! `WatchTokenChanges`: a verifier outside the server hears of every change that affects
//! verification as it commits, can resume from a cursor (on any server of the database) without
//! missing one, and is told clearly when it must resync instead.

use std::time::Duration;

use tokenmint::proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::helpers::{TestApp, assert_error, authed, error_meta, execute_in_database};

type Client = pb::token_service_client::TokenServiceClient<Channel>;
type Stream = Streaming<pb::WatchTokenChangesResponse>;

/// The user of every token here.
const USER: &str = "watcher";

/// How long a change may take to reach a stream (a bound for a failing run: the feed polls every
/// 100 ms in tests and is woken at once by a change committed on the same server).
const PROPAGATION: Duration = Duration::from_secs(20);

/// Opens a stream from `cursor` ("" = from now).
async fn watch(client: &Client, caller: &str, cursor: &str) -> Result<Stream, Status> {
    let request = pb::WatchTokenChangesRequest {
        cursor: cursor.into(),
    };
    let mut client = client.clone();
    let response = client.watch_token_changes(authed(caller, request)).await?;
    Ok(response.into_inner())
}

/// The next message, within [`PROPAGATION`].
async fn next(stream: &mut Stream) -> Result<pb::WatchTokenChangesResponse, Status> {
    tokio::time::timeout(PROPAGATION, stream.message())
        .await
        .expect("a message in time")
        .map(|message| message.expect("the stream is still open"))
}

/// Reads messages until one carries a change to `id`; returns that change and the message's
/// cursor.
async fn change_to(stream: &mut Stream, id: &str) -> (pb::TokenStateChange, String) {
    loop {
        let message = next(stream).await.expect("a message");
        if let Some(change) = message.changes.iter().find(|c| c.token_id == id) {
            return (change.clone(), message.cursor);
        }
    }
}

/// Reads messages up to the first heartbeat (a message without changes) and returns it.
async fn heartbeat(stream: &mut Stream) -> pb::WatchTokenChangesResponse {
    loop {
        let message = next(stream).await.expect("a message");
        if message.changes.is_empty() && !message.keys_changed {
            return message;
        }
    }
}

/// Mints a `wallet_view` token; returns its id.
async fn mint(client: &Client, caller: &str) -> String {
    let request = pb::CreateTokenRequest {
        label: "watched".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let minted = client.clone().create_token(authed(caller, request)).await;
    minted
        .expect("CreateToken")
        .into_inner()
        .token
        .expect("metadata")
        .id
}

async fn suspend(client: &Client, caller: &str, id: &str) {
    let request = pb::SuspendTokenRequest { id: id.into() };
    client
        .clone()
        .suspend_token(authed(caller, request))
        .await
        .expect("SuspendToken");
}

async fn activate(client: &Client, caller: &str, id: &str) {
    let request = pb::ActivateTokenRequest { id: id.into() };
    client
        .clone()
        .activate_token(authed(caller, request))
        .await
        .expect("ActivateToken");
}

async fn revoke(client: &Client, caller: &str, id: &str) {
    let request = pb::RevokeTokenRequest {
        id: id.into(),
        ..Default::default()
    };
    client
        .clone()
        .revoke_token(authed(caller, request))
        .await
        .expect("RevokeToken");
}

async fn delete(client: &Client, caller: &str, id: &str) {
    let request = pb::DeleteTokenRequest { id: id.into() };
    client
        .clone()
        .delete_token(authed(caller, request))
        .await
        .expect("DeleteToken");
}

fn status_of(change: &pb::TokenStateChange) -> pb::TokenStatus {
    pb::TokenStatus::try_from(change.status).expect("a known status")
}

#[tokio::test]
async fn a_stream_sends_every_change_that_affects_verification_as_it_commits() {
    let app = TestApp::spawn().await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    let mut stream = watch(&client, &caller, "").await.expect("stream opens");
    let greeting = next(&mut stream).await.expect("a first message");
    assert!(
        greeting.changes.is_empty() && !greeting.cursor.is_empty(),
        "the stream says it is live and where it stands: {greeting:?}"
    );
    assert!(greeting.server_time.is_some());

    let id = mint(&client, &caller).await;
    suspend(&client, &caller, &id).await;
    let (suspended, _) = change_to(&mut stream, &id).await;
    assert_eq!(status_of(&suspended), pb::TokenStatus::Suspended);
    assert!(!suspended.deleted);
    assert!(suspended.expires_at.is_some() && suspended.position > 0);

    activate(&client, &caller, &id).await;
    let (active, _) = change_to(&mut stream, &id).await;
    assert_eq!(status_of(&active), pb::TokenStatus::Active);
    assert!(active.position > suspended.position);

    revoke(&client, &caller, &id).await;
    let (revoked, _) = change_to(&mut stream, &id).await;
    assert_eq!(status_of(&revoked), pb::TokenStatus::Revoked);

    let other = mint(&client, &caller).await;
    delete(&client, &caller, &other).await;
    let (deleted, _) = change_to(&mut stream, &other).await;
    assert!(deleted.deleted, "{deleted:?}");
}

#[tokio::test]
async fn a_key_rotation_tells_the_stream_to_refetch_the_keys() {
    let app = TestApp::spawn().await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    let mut stream = watch(&client, &caller, "").await.expect("stream opens");
    heartbeat(&mut stream).await;
    let jwks_version = || async {
        let response = client.clone().get_jwks(pb::GetJwksRequest {}).await;
        response.expect("GetJwks").into_inner().key_set_version
    };
    let before = jwks_version().await;
    tokenmint::cli::rotate_keys(&app.settings)
        .await
        .expect("rotate keys");
    let announced = loop {
        let message = next(&mut stream).await.expect("a message");
        if message.keys_changed {
            break message.key_set_version;
        }
        assert!(
            message.key_set_version >= before,
            "every message names the server's version"
        );
    };
    assert!(
        announced > before,
        "the stream names the version that holds the change: {announced} after {before}"
    );
    assert_eq!(
        jwks_version().await,
        announced,
        "the server's JWKS is at that version"
    );
}

#[tokio::test]
async fn a_stream_resumed_from_its_cursor_on_another_server_misses_nothing() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.db.clone(), |_| {}).await;
    let (client_a, client_b) = (a.client().await, b.client().await);
    let caller = a.manager(USER).await;
    let (revoked, suspended, untouched) = (
        mint(&client_a, &caller).await,
        mint(&client_a, &caller).await,
        mint(&client_a, &caller).await,
    );
    let mut stream = watch(&client_a, &caller, "").await.expect("stream opens");
    let cursor = heartbeat(&mut stream).await.cursor;
    drop(stream);

    // Changed while nobody watched, on both servers.
    revoke(&client_a, &caller, &revoked).await;
    suspend(&client_b, &caller, &suspended).await;

    let mut resumed = watch(&client_b, &caller, &cursor).await.expect("resumes");
    let mut seen = std::collections::HashMap::new();
    loop {
        let message = next(&mut resumed).await.expect("a message");
        if message.changes.is_empty() && !message.keys_changed {
            break; // caught up
        }
        for change in message.changes {
            seen.insert(change.token_id.clone(), status_of(&change));
        }
    }
    assert_eq!(seen.get(&revoked), Some(&pb::TokenStatus::Revoked));
    assert_eq!(seen.get(&suspended), Some(&pb::TokenStatus::Suspended));
    assert!(!seen.contains_key(&untouched), "only changed tokens");

    // And it keeps following: a change made on A after the catch-up reaches B's stream.
    // (The suspend may come again first: a catch-up and the broadcast can both carry it.)
    activate(&client_a, &caller, &suspended).await;
    loop {
        let (change, _) = change_to(&mut resumed, &suspended).await;
        if status_of(&change) == pb::TokenStatus::Active {
            break;
        }
    }
}

#[tokio::test]
async fn a_stream_needs_a_token_introspect_caller_and_a_real_cursor() {
    let app = TestApp::spawn().await;
    let client = app.client().await;
    let no_auth = client
        .clone()
        .watch_token_changes(pb::WatchTokenChangesRequest::default())
        .await
        .expect_err("no credentials");
    assert_eq!(no_auth.code(), Code::Unauthenticated);

    let manager_only = app.bootstrap(USER, &["user_manage"]).await;
    let denied = watch(&client, &manager_only, "")
        .await
        .expect_err("no scope");
    assert_error(&denied, Code::PermissionDenied, "MISSING_SCOPE");

    let caller = app.manager(USER).await;
    for bad in ["not-a-cursor", "AQ", &"A".repeat(200)] {
        let refused = watch(&client, &caller, bad).await.expect_err(bad);
        let details = assert_error(&refused, Code::InvalidArgument, "INVALID_CURSOR");
        let violations = details
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .clone();
        assert_eq!(violations[0].field, "cursor");
    }
}

#[tokio::test]
async fn a_cursor_the_log_no_longer_covers_must_resync() {
    let app = TestApp::spawn().await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    let id = mint(&client, &caller).await;
    suspend(&client, &caller, &id).await;
    let mut stream = watch(&client, &caller, "").await.expect("stream opens");
    let old = heartbeat(&mut stream).await.cursor;
    drop(stream);
    activate(&client, &caller, &id).await;
    suspend(&client, &caller, &id).await;

    // Pruned: the log keeps only its newest entry.
    execute_in_database(
        &app,
        &["DELETE FROM token_events WHERE seq < (SELECT MAX(seq) FROM token_events)".to_owned()],
    )
    .await;
    let expired = watch(&client, &caller, &old).await.expect_err("pruned");
    assert_error(&expired, Code::FailedPrecondition, "CHANGE_CURSOR_EXPIRED");
    assert!(
        expired.message().contains("status lists"),
        "{}",
        expired.message()
    );
    assert!(error_meta(&expired, "oldest_position").is_some());

    // Restored from a backup: the entry the cursor names was written at another time.
    let mut stream = watch(&client, &caller, "").await.expect("stream opens");
    activate(&client, &caller, &id).await;
    let (_, cursor) = change_to(&mut stream, &id).await;
    drop(stream);
    execute_in_database(
        &app,
        &["UPDATE token_events SET created_at = created_at + 7".to_owned()],
    )
    .await;
    let rewound = watch(&client, &caller, &cursor).await.expect_err("rewound");
    assert_error(&rewound, Code::FailedPrecondition, "CHANGE_LOG_REWOUND");

    // An empty cursor always works: watch from now.
    let mut stream = watch(&client, &caller, "").await.expect("from now");
    heartbeat(&mut stream).await;
}

#[tokio::test]
async fn streams_have_their_own_cap_heartbeats_and_outlive_the_request_timeout() {
    let app = TestApp::spawn_with(|s| {
        s.changes.max_streams = 2.try_into().unwrap();
        s.changes.heartbeat_ms = 100.try_into().unwrap();
        s.server.request_timeout_secs = 1.try_into().unwrap();
    })
    .await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    let mut first = watch(&client, &caller, "").await.expect("first");
    let second = watch(&client, &caller, "").await.expect("second");
    let third = watch(&client, &caller, "").await.expect_err("over the cap");
    assert_error(&third, Code::ResourceExhausted, "TOO_MANY_CHANGE_STREAMS");
    drop(second);
    let again = tokio::time::timeout(PROPAGATION, async {
        loop {
            match watch(&client, &caller, "").await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(again.is_ok(), "a closed stream frees its slot");

    // Heartbeats keep coming past the 1 s request timeout.
    let started = std::time::Instant::now();
    let mut beats = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        heartbeat(&mut first).await;
        beats += 1;
    }
    assert!(beats >= 5, "{beats} heartbeats in 2.5 s at 100 ms");
}

#[tokio::test]
async fn a_server_shutting_down_tells_its_streams_to_resume_elsewhere() {
    let mut app = TestApp::spawn_with(|s| s.server.shutdown_grace_secs = 30).await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    let mut stream = watch(&client, &caller, "").await.expect("stream opens");
    heartbeat(&mut stream).await;
    let stopping = app.begin_stop();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without saying why"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ends well before the grace period");
    assert_error(&ended, Code::Unavailable, "SHUTTING_DOWN");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stops without waiting for the stream's grace")
        .expect("join")
        .expect("clean stop");
}

#[tokio::test]
async fn a_stream_ends_when_its_caller_token_is_revoked() {
    let app = TestApp::spawn().await;
    let client = app.client().await;
    let manager = app.manager(USER).await;
    let request = pb::CreateTokenRequest {
        label: "watcher".into(),
        scopes: vec!["token_introspect".into()],
        ..Default::default()
    };
    let minted = client.clone().create_token(authed(&manager, request)).await;
    let minted = minted.expect("CreateToken").into_inner();
    let watcher_id = minted.token.expect("metadata").id;
    let mut stream = watch(&client, &minted.raw_token, "")
        .await
        .expect("stream opens");
    heartbeat(&mut stream).await;

    revoke(&client, &manager, &watcher_id).await;
    let ended = loop {
        match next(&mut stream).await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_error(&ended, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert!(ended.message().contains("revoked"), "{}", ended.message());
}

/// Tokens minted before status lists existed have no list to read their state from: a stream
/// started from scratch opens with the ones that must not verify, or a verifier started after
/// their revoke would accept them until they expire.
#[tokio::test]
async fn a_stream_from_scratch_opens_with_the_denied_tokens_no_status_list_covers() {
    let app = TestApp::spawn().await;
    let client = app.client().await;
    let caller = app.manager(USER).await;
    let revoked_old = mint(&client, &caller).await;
    let suspended_old = mint(&client, &caller).await;
    let deleted_old = mint(&client, &caller).await;
    let active_old = mint(&client, &caller).await;
    let revoked_listed = mint(&client, &caller).await;
    revoke(&client, &caller, &revoked_old).await;
    suspend(&client, &caller, &suspended_old).await;
    delete(&client, &caller, &deleted_old).await;
    revoke(&client, &caller, &revoked_listed).await;
    // As rows written before migration 8 look: no list entry.
    let unlisted = [&revoked_old, &suspended_old, &deleted_old, &active_old]
        .map(|id| format!("'{id}'"))
        .join(", ");
    execute_in_database(
        &app,
        &[format!(
            "UPDATE tokens SET status_list_id = NULL, status_idx = NULL WHERE id IN ({unlisted})"
        )],
    )
    .await;

    let mut stream = watch(&client, &caller, "").await.expect("stream opens");
    let mut snapshot = Vec::new();
    let greeting = loop {
        let message = next(&mut stream).await.expect("a message");
        if message.changes.is_empty() && !message.keys_changed {
            break message;
        }
        // Changes the feed applies after the stream opened carry a cursor; the snapshot does
        // not (a stream cut off inside it starts over).
        if message.cursor.is_empty() {
            snapshot.extend(message.changes);
        }
    };
    assert!(!greeting.cursor.is_empty());
    let state = |id: &str| snapshot.iter().find(|c| c.token_id == id);
    let revoked = state(&revoked_old).expect("the revoked unlisted token");
    assert_eq!(status_of(revoked), pb::TokenStatus::Revoked);
    let suspended = state(&suspended_old).expect("the suspended unlisted token");
    assert_eq!(status_of(suspended), pb::TokenStatus::Suspended);
    assert!(
        state(&deleted_old)
            .expect("the deleted unlisted token")
            .deleted
    );
    assert!(state(&active_old).is_none(), "active tokens are not sent");
    assert!(
        state(&revoked_listed).is_none(),
        "a listed token's state comes from its list"
    );
    assert_eq!(snapshot.len(), 3, "{snapshot:?}");

    let mut resumed = watch(&client, &caller, &greeting.cursor)
        .await
        .expect("resumes");
    let first = next(&mut resumed).await.expect("a message");
    assert!(
        first.changes.is_empty(),
        "a resumed stream has had the snapshot: {first:?}"
    );
}

/// A client that stops reading (its HTTP/2 window stays full) would hold a stream slot and the
/// feed's updates forever: the server ends the stream after `changes.stalled_client_ms`.
#[tokio::test]
async fn a_client_that_stops_reading_loses_its_stream() {
    let app = TestApp::spawn_with(|s| {
        s.changes.max_streams = 1.try_into().unwrap();
        s.changes.heartbeat_ms = 20.try_into().unwrap();
        s.changes.stalled_client_ms = 300.try_into().unwrap();
    })
    .await;
    let caller = app.manager(USER).await;
    // A connection whose receive window a few heartbeats fill, and which never reads.
    let channel = tonic::transport::Endpoint::from_shared(app.url())
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .expect("connect");
    let stalled_client = pb::token_service_client::TokenServiceClient::new(channel);
    let stalled = watch(&stalled_client, &caller, "").await.expect("opens");

    let client = app.client().await;
    let refused = watch(&client, &caller, "")
        .await
        .expect_err("the only slot is taken");
    assert_error(&refused, Code::ResourceExhausted, "TOO_MANY_CHANGE_STREAMS");
    let freed = tokio::time::timeout(PROPAGATION, async {
        loop {
            match watch(&client, &caller, "").await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert!(
        freed.is_ok(),
        "the stalled stream was ended and its slot freed"
    );
    drop(stalled);
}
