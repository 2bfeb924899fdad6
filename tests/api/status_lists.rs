//! Token Status Lists (IETF draft-ietf-oauth-status-list): every new token names an entry in
//! a list the server publishes, signed, over HTTP and gRPC; the list reads VALID, SUSPENDED or
//! INVALID as the token's row says, and INVALID for every index no usable token holds.

use std::collections::HashSet;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use tokenmint::proto::v1 as pb;
use tokenmint_jwt::status_list::{StatusList, TokenStatus};
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{
    TestApp, TestDatabase, assert_error, authed, claims_of, execute_in_database, http_get,
    http_get_with, query_number,
};

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The user of every token here.
const USER: &str = "lists";

/// Most bytes a list may inflate to when read here (the default list is 32 KiB).
const MAX_LIST_BYTES: usize = 1 << 20;

/// A server that renders its lists at every request, so each read sees the latest rows.
async fn spawn_rendering_fresh() -> TestApp {
    TestApp::spawn_with(|s| s.status_list.render_cache_ms = 0).await
}

/// Mints a `wallet_view` token; returns its id and raw token.
async fn mint(client: &Client, caller: &str) -> (String, String) {
    let request = pb::CreateTokenRequest {
        label: "status list test".into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let minted = client.clone().create_token(authed(caller, request)).await;
    let minted = minted.expect("CreateToken").into_inner();
    (minted.token.expect("metadata").id, minted.raw_token)
}

/// A token's entry: its list's URI and its index.
fn entry_of(token: &str) -> (String, usize) {
    let claims = claims_of(token);
    let entry = &claims["status"]["status_list"];
    let uri = entry["uri"].as_str().expect("status.status_list.uri");
    let index = entry["idx"].as_u64().expect("status.status_list.idx");
    (uri.to_owned(), usize::try_from(index).expect("an index"))
}

/// The path part of a list URI the server derived from its own address.
fn path_of(app: &TestApp, uri: &str) -> String {
    let prefix = format!("http://{}", app.addr);
    uri.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{uri} is on this server ({prefix})"))
        .to_owned()
}

/// The list at `uri`, fetched over HTTP and checked as a relying party must (draft §8.3): the
/// signature against the published JWKS (verified by jsonwebtoken, not by tokenmint's own code),
/// `typ`, `sub` equal to the URI, `iat`/`exp` present and current; returns the claims and list.
async fn fetch_list(app: &TestApp, uri: &str) -> (Value, StatusList) {
    let (status_line, head, body) = http_get_with(
        app.addr,
        &path_of(app, uri),
        &["Accept: application/statuslist+jwt"],
    )
    .await;
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    assert!(
        head.contains("content-type: application/statuslist+jwt"),
        "{head}"
    );
    assert!(head.contains("cache-control: public, max-age=60"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    read_list_token(app, uri, &body).await
}

/// Verifies a Status List Token for `uri` with the published keys; its claims and list.
async fn read_list_token(app: &TestApp, uri: &str, token: &str) -> (Value, StatusList) {
    tokenmint_jwt::jsonwebtoken_provider::install();
    let header = jsonwebtoken::decode_header(token).expect("a JWS header");
    assert_eq!(header.typ.as_deref(), Some("statuslist+jwt"));
    let (_, _, jwks) = http_get(app.addr, "/.well-known/jwks.json").await;
    let jwks: JwkSet = serde_json::from_str(&jwks).expect("JWKS");
    let kid = header.kid.as_deref().expect("kid");
    let jwk = jwks
        .find(kid)
        .expect("the list is signed by a published key");
    let key = DecodingKey::from_jwk(jwk).expect("a decoding key");
    let mut validation = Validation::new(header.alg);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["sub", "iat", "exp"]);
    validation.sub = Some(uri.to_owned());
    validation.set_issuer(&["tokenmint"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("the list's signature and claims verify")
        .claims;
    assert!(
        claims.get("aud").is_none() && claims.get("scope").is_none(),
        "no consumer may take a status list for an access token: {claims}"
    );
    let now = chrono::Utc::now().timestamp();
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(iat <= now && iat > now - 10, "iat {iat} is now ({now})");
    assert_eq!(
        claims["exp"].as_i64(),
        Some(iat + 600),
        "exp = iat + exp_secs"
    );
    assert_eq!(claims["ttl"].as_u64(), Some(60));
    let inner = &claims["status_list"];
    assert_eq!(inner["bits"].as_u64(), Some(2));
    let list = StatusList::decode(2, inner["lst"].as_str().expect("lst"), MAX_LIST_BYTES)
        .expect("the list decodes");
    (claims, list)
}

/// How many entries of `list` are not INVALID.
fn usable_entries(list: &StatusList) -> usize {
    (0..list.len())
        .filter(|&i| list.get(i) != Some(TokenStatus::Invalid))
        .count()
}

#[tokio::test]
async fn a_new_token_names_its_entry_in_a_signed_list_served_over_http_and_grpc() {
    let app = spawn_rendering_fresh().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let (_, token) = mint(&client, &caller).await;

    let (uri, index) = entry_of(&token);
    let prefix = format!("http://{}/statuslists/", app.addr);
    assert!(
        uri.starts_with(&prefix),
        "{uri} names this server's /statuslists route"
    );
    let (claims, list) = fetch_list(&app, &uri).await;
    assert_eq!(list.len(), 1 << 17, "the default list size");
    assert_eq!(
        list.get(index),
        Some(TokenStatus::Valid),
        "the new token is VALID"
    );

    let list_id = uri.rsplit('/').next().expect("a list id").to_owned();
    let response = client
        .clone()
        .get_status_list(pb::GetStatusListRequest { list_id })
        .await
        .expect("GetStatusList needs no credentials")
        .into_inner();
    assert_eq!(response.ttl_seconds, 60);
    let (grpc_claims, grpc_list) = read_list_token(&app, &uri, &response.status_list_token).await;
    assert_eq!(grpc_claims["sub"], claims["sub"]);
    assert_eq!(grpc_list, list, "gRPC and HTTP serve the same list");
}

#[tokio::test]
async fn the_list_follows_suspend_activate_revoke_and_delete_and_every_other_index_is_invalid() {
    let app = spawn_rendering_fresh().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(mint(&client, &caller).await);
    }
    let (uri, _) = entry_of(&tokens[0].1);
    let index = |n: usize| {
        let (their_uri, index) = entry_of(&tokens[n].1);
        assert_eq!(their_uri, uri, "one server's tokens share its block's list");
        index
    };
    let status = |list: &StatusList, n: usize| list.get(index(n)).expect("in range");
    let (_, before) = fetch_list(&app, &uri).await;
    // The caller's own token may sit in the same list (the operator CLI reserved it).
    let others = usable_entries(&before) - 4;

    let mut c = client.clone();
    let id = |n: usize| tokens[n].0.clone();
    c.suspend_token(authed(&caller, pb::SuspendTokenRequest { id: id(1) }))
        .await
        .expect("suspend");
    c.revoke_token(authed(
        &caller,
        pb::RevokeTokenRequest {
            id: id(2),
            cascade: false,
        },
    ))
    .await
    .expect("revoke");
    c.delete_token(authed(&caller, pb::DeleteTokenRequest { id: id(3) }))
        .await
        .expect("delete");

    let (_, list) = fetch_list(&app, &uri).await;
    assert_eq!(status(&list, 0), TokenStatus::Valid);
    assert_eq!(status(&list, 1), TokenStatus::Suspended);
    assert_eq!(status(&list, 2), TokenStatus::Invalid, "revoked");
    assert_eq!(status(&list, 3), TokenStatus::Invalid, "deleted");
    assert_eq!(
        usable_entries(&list),
        others + 2,
        "no index without a usable token reads anything but INVALID"
    );

    c.activate_token(authed(&caller, pb::ActivateTokenRequest { id: id(1) }))
        .await
        .expect("activate");
    let (_, list) = fetch_list(&app, &uri).await;
    assert_eq!(status(&list, 1), TokenStatus::Valid, "activated again");
}

/// Housekeeping purges a deleted token's row once it has expired; its entry must keep reading
/// INVALID without the row (the purge clears the token's committed-position bit), while the
/// other tokens' entries are untouched.
#[tokio::test]
async fn a_purged_tombstone_keeps_reading_invalid() {
    use tokenmint::domain::Timestamp;
    use tokenmint::store::{Store, StoreOptions};
    let app = spawn_rendering_fresh().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let kept = mint(&client, &caller).await;
    let purged = mint(&client, &caller).await;
    let (uri, _) = entry_of(&kept.1);
    let (_, before) = fetch_list(&app, &uri).await;
    client
        .clone()
        .delete_token(authed(
            &caller,
            pb::DeleteTokenRequest {
                id: purged.0.clone(),
            },
        ))
        .await
        .expect("delete");

    let options = StoreOptions {
        max_connections: 2,
        connect_timeout: std::time::Duration::from_secs(5),
    };
    let store = Store::connect(&app.settings.database_url(), &options)
        .await
        .unwrap();
    // A cutoff past every token's expiry: only tombstones go.
    let removed = store
        .purge_expired_tombstones(Timestamp::now().plus_secs(400 * 86_400))
        .await
        .unwrap();
    assert_eq!(removed, 1, "only the deleted token's row is purged");
    let rows = query_number(
        &app,
        &format!("SELECT COUNT(*) FROM tokens WHERE id = '{}'", purged.0),
    )
    .await;
    assert_eq!(rows, 0);

    let (_, after) = fetch_list(&app, &uri).await;
    assert_eq!(after.get(entry_of(&purged.1).1), Some(TokenStatus::Invalid));
    assert_eq!(after.get(entry_of(&kept.1).1), Some(TokenStatus::Valid));
    assert_eq!(usable_entries(&after), usable_entries(&before) - 1);
}

#[tokio::test]
async fn indices_never_repeat_across_blocks_and_replicas_and_hide_issue_order() {
    let db = TestDatabase::create().await;
    // Blocks of 4: twenty tokens on each server take several reservations each. One public
    // base URI for both, as replicas behind one address have.
    let small_blocks = |s: &mut tokenmint::config::Settings| {
        s.status_list.block = 4;
        s.status_list.render_cache_ms = 0;
        s.status_list.base_uri = Some("https://tokens.example/statuslists".into());
    };
    let a = TestApp::spawn_on(db.clone(), small_blocks).await;
    let b = TestApp::spawn_on(db.clone(), small_blocks).await;
    let caller = a.manager(USER).await;
    let (client_a, client_b) = (a.client().await, b.client().await);

    let mut seen = HashSet::new();
    let mut issue_order = Vec::new();
    for _ in 0..20 {
        for client in [&client_a, &client_b] {
            let (_, token) = mint(client, &caller).await;
            let entry = entry_of(&token);
            assert!(
                seen.insert(entry.clone()),
                "entry {entry:?} handed out twice"
            );
            issue_order.push(entry);
        }
    }
    let mut concurrent = Vec::new();
    for n in 0..32 {
        let client = if n % 2 == 0 { &client_a } else { &client_b };
        let (client, caller) = (client.clone(), caller.clone());
        concurrent.push(tokio::spawn(async move { mint(&client, &caller).await }));
    }
    for minted in concurrent {
        let (_, token) = minted.await.expect("no panic");
        let entry = entry_of(&token);
        assert!(
            seen.insert(entry.clone()),
            "entry {entry:?} handed out twice"
        );
    }

    // Each server fills one list of its own (the lists are far from full), beside the one the
    // operator CLI opened for the caller's token: every block was reserved in the same list.
    let lists_opened = query_number(&a, "SELECT COUNT(*) FROM status_lists").await;
    assert_eq!(lists_opened, 3, "one list per process");
    let a_list = &issue_order[0].0;
    let a_indices: Vec<usize> = issue_order
        .iter()
        .filter(|(uri, _)| uri == a_list)
        .map(|(_, index)| *index)
        .collect();
    assert!(a_indices.len() >= 8, "{a_indices:?}");
    assert!(
        a_indices.windows(2).any(|pair| pair[0] > pair[1]),
        "indices do not follow issue order: {a_indices:?}"
    );

    // Each server publishes every list, whichever server minted into it.
    let lists: HashSet<&String> = seen.iter().map(|(uri, _)| uri).collect();
    for uri in lists {
        let id = uri.rsplit('/').next().expect("id").to_owned();
        for (server, client) in [(&a, &client_a), (&b, &client_b)] {
            let response = client
                .clone()
                .get_status_list(pb::GetStatusListRequest {
                    list_id: id.clone(),
                })
                .await
                .expect("GetStatusList")
                .into_inner();
            let (_, list) = read_list_token(server, uri, &response.status_list_token).await;
            for (_, index) in seen.iter().filter(|(their, _)| their == uri) {
                assert_eq!(list.get(*index), Some(TokenStatus::Valid), "{uri} {index}");
            }
        }
    }
}

#[tokio::test]
async fn a_restarted_server_fills_a_list_of_its_own() {
    let mut app = spawn_rendering_fresh().await;
    let caller = app.manager(USER).await;
    let (_, before) = mint(&app.client().await, &caller).await;
    // The same address after the restart: the same base URI, so only list ownership (one
    // process per list) keeps the new token out of the old list.
    app.settings.server.listen = app.addr;
    app.restart().await;
    let (_, after) = mint(&app.client().await, &caller).await;
    let (old_uri, old_index) = entry_of(&before);
    let (new_uri, _) = entry_of(&after);
    let (old_id, new_id) = (old_uri.rsplit('/').next(), new_uri.rsplit('/').next());
    assert_ne!(old_id, new_id, "a new process opens a new list");
    // The old list is still served, at its own id and with its own URI, after the restart.
    let response = app
        .client()
        .await
        .get_status_list(pb::GetStatusListRequest {
            list_id: old_id.expect("id").to_owned(),
        })
        .await
        .expect("the old list")
        .into_inner();
    let (claims, list) = read_list_token(&app, &old_uri, &response.status_list_token).await;
    assert_eq!(claims["sub"].as_str(), Some(old_uri.as_str()));
    assert_eq!(list.get(old_index), Some(TokenStatus::Valid));
}

#[tokio::test]
async fn unknown_lists_and_unsupported_requests_get_clear_answers() {
    let app = TestApp::spawn().await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let (_, token) = mint(&client, &caller).await;
    let path = path_of(&app, &entry_of(&token).0);

    for missing in [
        "/statuslists/AAAAAAAAAAAAAAAAAAAAAA",
        "/statuslists/not-an-id",
    ] {
        let (status_line, _, _) = http_get(app.addr, missing).await;
        assert!(
            status_line.starts_with("HTTP/1.1 404"),
            "{missing}: {status_line}"
        );
    }
    let (status_line, _, _) = http_get(app.addr, &format!("{path}?time=1700000000")).await;
    assert!(status_line.starts_with("HTTP/1.1 501"), "{status_line}");
    let (status_line, _, _) =
        http_get_with(app.addr, &path, &["Accept: application/statuslist+cwt"]).await;
    assert!(status_line.starts_with("HTTP/1.1 406"), "{status_line}");
    for refused in [
        "application/statuslist+jwt;q=0, */*",
        "*/*;Q=0",
        "text/html",
        "application/statuslist+jwt;q=5",
        "*/*;q=nan",
    ] {
        let (status_line, _, _) =
            http_get_with(app.addr, &path, &[&format!("Accept: {refused}")]).await;
        assert!(
            status_line.starts_with("HTTP/1.1 406"),
            "{refused}: {status_line}"
        );
    }
    for accepted in [
        "*/*",
        "application/*",
        "application/statuslist+jwt;q=0.9, */*;q=0.1",
        "text/html, */*;Q=0.5",
        "application/statuslist+jwt;q=0, application/statuslist+jwt;q=0.2",
        "",
    ] {
        let (status_line, _, _) =
            http_get_with(app.addr, &path, &[&format!("Accept: {accepted}")]).await;
        assert!(
            status_line.starts_with("HTTP/1.1 200"),
            "{accepted}: {status_line}"
        );
    }

    let mut c = client.clone();
    let malformed = c
        .get_status_list(pb::GetStatusListRequest {
            list_id: "../../etc".into(),
        })
        .await
        .expect_err("a malformed id");
    assert_error(&malformed, Code::InvalidArgument, "INVALID_ID");
    let unknown = c
        .get_status_list(pb::GetStatusListRequest {
            list_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        })
        .await
        .expect_err("an unknown id");
    assert_error(&unknown, Code::NotFound, "STATUS_LIST_NOT_FOUND");
}

#[tokio::test]
async fn a_configured_base_uri_is_baked_into_tokens() {
    let app = TestApp::spawn_with(|s| {
        s.status_list.base_uri = Some("https://tokens.example/v1/statuslists".into());
    })
    .await;
    let caller = app.manager(USER).await;
    let (_, token) = mint(&app.client().await, &caller).await;
    let (uri, _) = entry_of(&token);
    let id = uri
        .strip_prefix("https://tokens.example/v1/statuslists/")
        .unwrap_or_else(|| panic!("{uri} is under the configured base"));
    let response = app
        .client()
        .await
        .get_status_list(pb::GetStatusListRequest {
            list_id: id.to_owned(),
        })
        .await
        .expect("GetStatusList")
        .into_inner();
    let (claims, _) = read_list_token(&app, &uri, &response.status_list_token).await;
    assert_eq!(claims["sub"].as_str(), Some(uri.as_str()));
}

#[tokio::test]
async fn a_list_lost_in_a_restore_is_replaced_at_the_next_reservation() {
    let app = TestApp::spawn_with(|s| {
        s.status_list.block = 4;
        s.status_list.render_cache_ms = 0;
    })
    .await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let lost = [mint(&client, &caller).await, mint(&client, &caller).await];
    let (lost_uri, _) = entry_of(&lost[0].1);
    let lost_list = lost_uri.rsplit('/').next().expect("id").to_owned();
    // The database goes back to a backup from before the list (and its tokens) existed.
    execute_in_database(
        &app,
        &[
            format!(
                "DELETE FROM tokens WHERE id IN ('{}', '{}')",
                lost[0].0, lost[1].0
            ),
            format!("DELETE FROM status_lists WHERE id = '{lost_list}'"),
        ],
    )
    .await;
    let lost_entries: HashSet<_> = lost.iter().map(|(_, token)| entry_of(token)).collect();
    let mut last = String::new();
    for _ in 0..12 {
        let (_, token) = mint(&client, &caller).await;
        assert!(
            !lost_entries.contains(&entry_of(&token)),
            "an entry of a lost token handed out again"
        );
        last = token;
    }
    let (uri, index) = entry_of(&last);
    assert_ne!(
        uri, lost_uri,
        "a new list once the remaining positions are used"
    );
    let (_, list) = fetch_list(&app, &uri).await;
    assert_eq!(
        list.get(index),
        Some(TokenStatus::Valid),
        "the new list is served"
    );
}

#[tokio::test]
async fn a_list_whose_counter_went_back_is_left_for_a_new_one() {
    let app = TestApp::spawn_with(|s| s.status_list.block = 4).await;
    let caller = app.manager(USER).await;
    let client = app.client().await;
    let (_, first) = mint(&client, &caller).await;
    let (uri, _) = entry_of(&first);
    let list = uri.rsplit('/').next().expect("id").to_owned();
    // A restore from a backup taken when the list was new: its row is back at the start.
    let rewind = format!("UPDATE status_lists SET next_pos = 0 WHERE id = '{list}'");
    execute_in_database(&app, &[rewind]).await;
    let mut last = String::new();
    for _ in 0..12 {
        last = mint(&client, &caller).await.1;
    }
    assert_ne!(
        entry_of(&last).0,
        uri,
        "the owner does not extend a list whose counter is not where it left it"
    );
}
