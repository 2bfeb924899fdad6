//! Two servers on one database (replicas): a token minted on one verifies on the other, and
//! lifecycle changes, a caller's revocation and key rotations made elsewhere reach every server
//! through the change feed (it polls the change log every 100 ms in tests; on PostgreSQL a
//! notification wakes it at once, which the last tests check with a server that polls hourly).
//! The bound is for a failing run: a loaded CI machine has stalled PostgreSQL for seconds.

use std::time::Duration;

use tokenmint::proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{
    TestApp, assert_error, authed, claims_of, error_meta, eventually, execute_in_database,
    header_of, http_get,
};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The caller's user, who owns every token minted here.
const USER: &str = "svc";

/// How long a change made on one server may take to reach the other (a bound for a failing run;
/// the measured delay is in BENCHMARKS.md).
const PROPAGATION: Duration = Duration::from_secs(20);

/// Two servers on one database, a client for each and a `user_manage` + `token_introspect` caller.
struct Replicas {
    a: TestApp,
    b: TestApp,
    client_a: Client,
    client_b: Client,
    caller: String,
}

impl Replicas {
    async fn start() -> Self {
        let a = TestApp::spawn().await;
        let b = TestApp::spawn_on(a.db.clone(), |_| {}).await;
        let caller = a.manager(USER).await;
        let client_a = a.client().await;
        let client_b = b.client().await;
        Self {
            a,
            b,
            client_a,
            client_b,
            caller,
        }
    }

    /// Mints a token on A and checks that A and B both verify it: both have it cached as active.
    async fn mint_active_on_both(&self) -> pb::CreateTokenResponse {
        let minted = mint(&self.client_a, &self.caller).await;
        let raw = minted.raw_token.as_str();
        let on_a = verify(&self.client_a, &self.caller, raw).await;
        let on_b = verify(&self.client_b, &self.caller, raw).await;
        assert!(on_a.active && on_b.active, "active on A and B");
        minted
    }
}

/// Mints a `wallet_view` token through CreateToken.
async fn mint(client: &Client, caller: &str) -> pb::CreateTokenResponse {
    let request = pb::CreateTokenRequest {
        label: "replica test".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let mut client = client.clone();
    let response = client.create_token(authed(caller, request)).await;
    response.expect("CreateToken").into_inner()
}

/// VerifyToken without client address or required scopes.
async fn verify(client: &Client, caller: &str, token: &str) -> pb::VerifyTokenResponse {
    let request = pb::VerifyTokenRequest {
        token: token.into(),
        ..Default::default()
    };
    let mut client = client.clone();
    let response = client.verify_token(authed(caller, request)).await;
    response.expect("VerifyToken").into_inner()
}

/// ListTokens: a call that only needs the caller's token to authenticate.
async fn list(client: &Client, caller: &str) -> Result<pb::ListTokensResponse, Status> {
    let request = pb::ListTokensRequest::default();
    let mut client = client.clone();
    let response = client.list_tokens(authed(caller, request)).await;
    response.map(|r| r.into_inner())
}

/// RevokeToken on `id`.
async fn revoke(client: &Client, caller: &str, id: String) {
    let request = pb::RevokeTokenRequest { id, cascade: false };
    let mut client = client.clone();
    let response = client.revoke_token(authed(caller, request)).await;
    response.expect("RevokeToken");
}

/// SuspendToken on `id`.
async fn suspend(client: &Client, caller: &str, id: String) {
    let request = pb::SuspendTokenRequest { id };
    let mut client = client.clone();
    let response = client.suspend_token(authed(caller, request)).await;
    response.expect("SuspendToken");
}

/// ActivateToken on `id`.
async fn activate(client: &Client, caller: &str, id: String) {
    let request = pb::ActivateTokenRequest { id };
    let mut client = client.clone();
    let response = client.activate_token(authed(caller, request)).await;
    response.expect("ActivateToken");
}

/// DeleteToken on `id`.
async fn delete(client: &Client, caller: &str, id: String) {
    let request = pb::DeleteTokenRequest { id };
    let mut client = client.clone();
    let response = client.delete_token(authed(caller, request)).await;
    response.expect("DeleteToken");
}

/// Polls VerifyToken on `client` until it answers with `reason` (UNSPECIFIED: active); `None` if
/// it does not within [`PROPAGATION`].
async fn verify_until(
    client: &Client,
    caller: &str,
    token: &str,
    reason: pb::InactiveReason,
) -> Option<pb::VerifyTokenResponse> {
    eventually(PROPAGATION, move || async move {
        let response = verify(client, caller, token).await;
        (response.reason == reason as i32).then_some(response)
    })
    .await
}

/// The id of a CreateToken response.
fn id_of(minted: &pb::CreateTokenResponse) -> String {
    minted.token.as_ref().expect("token metadata").id.clone()
}

/// The `kid` header of a JWT.
fn kid_of(token: &str) -> String {
    let header = header_of(token);
    header["kid"].as_str().expect("kid header").to_owned()
}

#[tokio::test]
async fn token_minted_on_one_replica_verifies_on_the_other() {
    let r = Replicas::start().await;
    assert_ne!(r.a.addr, r.b.addr, "two servers");
    let minted = mint(&r.client_a, &r.caller).await;

    let response = verify(&r.client_b, &r.caller, &minted.raw_token).await;

    assert!(response.active, "reason {}", response.reason);
    let token = response.token.expect("token metadata");
    assert_eq!(token.id, id_of(&minted));
    assert_eq!(token.user_id, USER);
}

#[tokio::test]
async fn revocation_on_one_replica_reaches_the_other() {
    let r = Replicas::start().await;
    let minted = r.mint_active_on_both().await;
    let raw = minted.raw_token.as_str();

    revoke(&r.client_b, &r.caller, id_of(&minted)).await;

    let revoked = pb::InactiveReason::Revoked;
    let seen = verify_until(&r.client_a, &r.caller, raw, revoked).await;
    let response = seen.expect("A reports REVOKED within the bound");
    assert!(!response.active);
    assert!(response.token.is_none());
}

#[tokio::test]
async fn a_change_logged_with_an_old_time_still_reaches_every_replica() {
    // Another process revokes a token, and its change-log entry carries a time 15 s in the past:
    // its clock runs behind, or the revoke waited that long for a lock before committing.
    let r = Replicas::start().await;
    let minted = r.mint_active_on_both().await;
    let raw = minted.raw_token.as_str();

    let id = id_of(&minted);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let stamped = now_us - 15_000_000;
    let statements = [
        format!("UPDATE tokens SET status = 'revoked', updated_at = {stamped} WHERE id = '{id}'"),
        format!(
            "INSERT INTO token_events (kind, token_id, created_at) \
             VALUES ('token', '{id}', {stamped})"
        ),
    ];
    execute_in_database(&r.a, &statements).await;

    let revoked = pb::InactiveReason::Revoked;
    for (name, client) in [("A", &r.client_a), ("B", &r.client_b)] {
        let seen = verify_until(client, &r.caller, raw, revoked).await;
        assert!(seen.is_some(), "{name} reports REVOKED within the bound");
    }
}

#[tokio::test]
async fn suspension_and_activation_on_one_replica_reach_the_other() {
    let r = Replicas::start().await;
    let minted = mint(&r.client_a, &r.caller).await;
    let (id, raw) = (id_of(&minted), minted.raw_token.as_str());
    let before = verify(&r.client_a, &r.caller, raw).await;
    assert!(before.active, "active on A");

    suspend(&r.client_b, &r.caller, id.clone()).await;
    let suspended = pb::InactiveReason::Suspended;
    let seen = verify_until(&r.client_a, &r.caller, raw, suspended).await;
    assert!(seen.is_some(), "A reports SUSPENDED within the bound");

    activate(&r.client_b, &r.caller, id).await;
    let active = pb::InactiveReason::Unspecified;
    let seen = verify_until(&r.client_a, &r.caller, raw, active).await;
    let response = seen.expect("A reports the token active again within the bound");
    assert!(response.active);
    let token = response.token.expect("token metadata");
    assert_eq!(token.status, pb::TokenStatus::Active as i32);
}

#[tokio::test]
async fn deletion_on_one_replica_reaches_the_other() {
    let r = Replicas::start().await;
    let minted = mint(&r.client_a, &r.caller).await;
    let raw = minted.raw_token.as_str();
    let before = verify(&r.client_a, &r.caller, raw).await;
    assert!(before.active, "active on A");

    delete(&r.client_b, &r.caller, id_of(&minted)).await;

    let unknown = pb::InactiveReason::UnknownToken;
    let seen = verify_until(&r.client_a, &r.caller, raw, unknown).await;
    let response = seen.expect("A reports UNKNOWN_TOKEN within the bound");
    assert!(response.token.is_none());
}

#[tokio::test]
async fn caller_token_revoked_on_one_replica_is_refused_by_the_other() {
    let r = Replicas::start().await;
    let claims = claims_of(&r.caller);
    let own_id = claims["jti"].as_str().expect("jti").to_owned();
    let before = list(&r.client_a, &r.caller).await;
    before.expect("A accepts the caller");

    revoke(&r.client_b, &r.caller, own_id).await;

    let (client, caller) = (&r.client_a, r.caller.as_str());
    let status = eventually(PROPAGATION, move || async move {
        let refused = list(client, caller).await.err()?;
        let unauthenticated = refused.code() == Code::Unauthenticated;
        unauthenticated.then_some(refused)
    })
    .await
    .expect("A refuses the revoked caller within the bound");
    assert_error(&status, Code::Unauthenticated, "INVALID_CREDENTIALS");
    let why = error_meta(&status, "inactive_reason");
    assert_eq!(why.as_deref(), Some("REVOKED"));
}

#[tokio::test]
async fn key_rotation_through_the_cli_reaches_every_replica() {
    let r = Replicas::start().await;
    let old_kid = kid_of(&r.caller);

    let new_kid = tokenmint::cli::rotate_keys(&r.a.settings).await;

    let new_kid = new_kid.expect("rotate keys");
    assert_ne!(new_kid, old_kid);
    let (caller, kid) = (r.caller.as_str(), new_kid.as_str());
    for (name, client) in [("A", &r.client_a), ("B", &r.client_b)] {
        let switched = eventually(PROPAGATION, move || async move {
            let raw = mint(client, caller).await.raw_token;
            (kid_of(&raw) == kid).then_some(())
        })
        .await;
        assert!(
            switched.is_some(),
            "{name} signs with {kid} within the bound"
        );
        // The caller's token, signed by the retired key, still verifies.
        let response = verify(client, caller, caller).await;
        assert!(response.active, "{name}: reason {}", response.reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_a_fresh_database_do_not_race_on_migrations() {
    let db = crate::helpers::TestDatabase::create().await;
    let starts = (0..6).map(|_| {
        let db = db.clone();
        tokio::spawn(async move { TestApp::spawn_on(db, |_| {}).await })
    });
    let mut apps = Vec::new();
    for start in starts {
        apps.push(start.await.expect("every replica starts"));
    }
    let keys = tokenmint::cli::list_keys(&apps[0].settings).await.unwrap();
    let signing: Vec<_> = keys.iter().filter(|k| k.ends_with("\tsigning")).collect();
    assert_eq!(
        signing.len(),
        1,
        "one signing key, not one per replica: {keys:?}"
    );
    let token = apps[0].manager("alice").await;
    for app in &apps {
        let listed = app
            .client()
            .await
            .list_tokens(authed(&token, pb::ListTokensRequest::default()))
            .await;
        assert!(listed.is_ok(), "{listed:?}");
    }
}

#[tokio::test]
async fn a_key_rotated_in_elsewhere_is_used_before_the_change_feed_brings_it() {
    // B reads the change log once an hour: only a token naming the new key can make it look.
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.db.clone(), |s| {
        s.background.change_poll_interval_ms =
            std::num::NonZeroU64::new(3_600_000).expect("nonzero");
    })
    .await;
    let client_b = b.client().await;
    let old_caller = a.manager(USER).await;
    // B's first poll, at start-up, is over.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let new_kid = tokenmint::cli::rotate_keys(&a.settings).await;
    let new_kid = new_kid.expect("rotate keys");
    // The CLI signs with the newest key; B has not heard of it.
    let new_caller = a.manager(USER).await;
    assert_eq!(kid_of(&new_caller), new_kid);

    let response = verify(&client_b, &old_caller, &new_caller).await;
    assert!(response.active, "B verifies it: reason {}", response.reason);
    let listed = list(&client_b, &new_caller).await;
    assert!(listed.is_ok(), "B authenticates it as a caller: {listed:?}");
}

// PostgreSQL notifications: a change wakes every replica's change feed at once.

/// A replica of `a` that reads the change log only once an hour on its own: a change can reach
/// it in time only through a notification.
async fn replica_that_barely_polls(a: &TestApp) -> TestApp {
    TestApp::spawn_on(a.db.clone(), |s| {
        s.background.change_poll_interval_ms =
            std::num::NonZeroU64::new(3_600_000).expect("nonzero");
    })
    .await
}

/// Whether `app` runs on PostgreSQL. SQLite has no notifications: its replicas (one server and
/// the CLI) hear of each other's changes by polling, which the tests above cover.
fn on_postgresql(app: &TestApp) -> bool {
    app.settings.database_url().starts_with("postgres")
}

#[tokio::test]
async fn on_postgresql_a_revoke_reaches_a_replica_that_is_not_polling() {
    let a = TestApp::spawn().await;
    if !on_postgresql(&a) {
        return;
    }
    let b = replica_that_barely_polls(&a).await;
    let caller = a.manager(USER).await;
    let (client_a, client_b) = (a.client().await, b.client().await);
    let minted = mint(&client_a, &caller).await;
    let raw = minted.raw_token.as_str();
    assert!(
        verify(&client_b, &caller, raw).await.active,
        "B has it as active"
    );

    revoke(&client_a, &caller, id_of(&minted)).await;

    let seen = verify_until(&client_b, &caller, raw, pb::InactiveReason::Revoked).await;
    assert!(
        seen.is_some(),
        "B reports REVOKED within the bound, though it polls hourly"
    );
}

#[tokio::test]
async fn on_postgresql_a_key_rotated_by_the_cli_is_announced_to_the_servers() {
    let a = TestApp::spawn().await;
    if !on_postgresql(&a) {
        return;
    }
    let b = replica_that_barely_polls(&a).await;
    let caller = a.manager(USER).await;
    let client_b = b.client().await;

    let new_kid = tokenmint::cli::rotate_keys(&a.settings).await;
    let new_kid = new_kid.expect("rotate keys");

    let kid = new_kid.as_str();
    let (client_b, caller) = (&client_b, caller.as_str());
    let switched = eventually(PROPAGATION, move || async move {
        let minted = mint(client_b, caller).await;
        (kid_of(&minted.raw_token) == kid).then_some(())
    })
    .await;
    assert!(
        switched.is_some(),
        "B signs with {new_kid} within the bound, though it polls hourly"
    );
}

#[tokio::test]
async fn on_postgresql_a_lost_listening_connection_is_re_established() {
    use sea_orm::sqlx::{Connection, PgConnection};
    let a = TestApp::spawn().await;
    if !on_postgresql(&a) {
        return;
    }
    let b = replica_that_barely_polls(&a).await;
    let caller = a.manager(USER).await;
    let (client_a, client_b) = (a.client().await, b.client().await);
    let minted = mint(&client_a, &caller).await;
    let raw = minted.raw_token.as_str();
    assert!(
        verify(&client_b, &caller, raw).await.active,
        "B has it as active"
    );

    // Cut every server's listening connection, as a database restart or a proxy would.
    let url = a.settings.database_url();
    let listeners = |terminate: bool| {
        let url = url.clone();
        async move {
            let mut admin = PgConnection::connect(&url).await.expect("connect");
            let terminated = if terminate {
                "pg_terminate_backend(pid)"
            } else {
                "true"
            };
            let query = format!(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN%' AND {terminated}"
            );
            let pids: Vec<i32> = sea_orm::sqlx::query_scalar(sea_orm::sqlx::AssertSqlSafe(query))
                .fetch_all(&mut admin)
                .await
                .expect("pg_stat_activity");
            pids
        }
    };
    let listening = |cut: Vec<i32>| {
        let listeners = &listeners;
        eventually(PROPAGATION, move || {
            let cut = cut.clone();
            async move {
                let pids = listeners(false).await;
                let fresh = pids.iter().filter(|pid| !cut.contains(pid)).count();
                (fresh >= 2).then_some(())
            }
        })
    };
    assert!(listening(Vec::new()).await.is_some(), "both servers listen");
    let cut = listeners(true).await;
    assert!(cut.len() >= 2, "both listening connections cut: {cut:?}");
    // Only a notification on a new connection can now bring B the revoke in time.
    assert!(
        listening(cut).await.is_some(),
        "both servers listen again, on new connections"
    );
    let says_listening = eventually(PROPAGATION, || async {
        let (_, _, text) = http_get(b.addr, "/metrics").await;
        let line = "tokenmint_change_notifications_listening 1";
        text.lines().any(|l| l == line).then_some(())
    });
    assert!(
        says_listening.await.is_some(),
        "B's metric says it hears notifications"
    );
    revoke(&client_a, &caller, id_of(&minted)).await;

    let seen = verify_until(&client_b, &caller, raw, pb::InactiveReason::Revoked).await;
    assert!(
        seen.is_some(),
        "B reports REVOKED within the bound, though it polls hourly"
    );
}

#[tokio::test]
async fn on_postgresql_replicas_flushing_last_use_of_the_same_tokens_do_not_deadlock() {
    use tokenmint::domain::{Timestamp, TokenId};
    use tokenmint::store::{LastUse, Store, StoreOptions};
    let a = TestApp::spawn().await;
    if !on_postgresql(&a) {
        return;
    }
    let caller = a.manager(USER).await;
    let client = a.client().await;
    // Three statements per flush on PostgreSQL (16 rows each).
    let mut ids = Vec::new();
    for _ in 0..48 {
        let id = id_of(&mint(&client, &caller).await);
        ids.push(TokenId::parse(&id, "id").expect("a token id"));
    }
    let options = StoreOptions {
        max_connections: 2,
        connect_timeout: Duration::from_secs(5),
    };
    let url = a.settings.database_url();
    let one = Store::connect(&url, &options).await.expect("connect");
    let two = Store::connect(&url, &options).await.expect("connect");

    for round in 0..5 {
        // Two servers' flushes of the same tokens, each in its own (here: opposite) order.
        let at = Timestamp::now();
        let forward: Vec<LastUse> = ids.iter().map(|id| (*id, at, None)).collect();
        let backward: Vec<LastUse> = forward.iter().rev().copied().collect();
        let (first, second) = tokio::join!(
            one.record_last_used(&forward),
            two.record_last_used(&backward)
        );
        let (first, second) = match (first, second) {
            (Ok(first), Ok(second)) => (first, second),
            other => panic!("round {round}: both flushes commit: {other:?}"),
        };
        // A row one flush left to the other is handed back to be written next time, never
        // dropped; no row is left by both.
        assert!(
            first.iter().all(|id| !second.contains(id)),
            "round {round}: {first:?} {second:?}"
        );
    }
}
