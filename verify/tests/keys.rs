//! Key rotation and refresh: an unknown `kid` triggers one rate-limited refresh, old keys keep
//! verifying, the background refresh picks up new keys and stops with the verifier.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokenmint_verify::{JwksSource, Verifier, VerifyError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, eventually, header_of, read_request_head};

/// Rotates the signing key with the operator command and waits until the running server
/// publishes the new key (it learns of it through its change feed). Returns the new kid.
async fn rotate(app: &TestApp) -> String {
    let kid = tokenmint::cli::rotate_keys(&app.settings)
        .await
        .expect("rotate keys");
    let client = app.client().await;
    let published = eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        let kid = kid.clone();
        async move {
            let keys = client
                .get_jwks(tokenmint::proto::v1::GetJwksRequest {})
                .await
                .ok()?
                .into_inner()
                .keys;
            keys.iter().any(|k| k.kid == kid).then_some(())
        }
    })
    .await;
    assert!(published.is_some(), "the server publishes the rotated key");
    kid
}

#[tokio::test]
async fn rotated_key_verifies_after_an_unknown_kid_refresh_and_old_tokens_still_verify() {
    let app = TestApp::spawn().await;
    let verifier = Verifier::builder(JwksSource::grpc(app.url()))
        .min_refresh_interval(Duration::ZERO)
        .build()
        .await
        .expect("verifier builds");
    let old = app.bootstrap("alice", &["wallet_view"]).await;
    let old_kid = header_of(&old)["kid"].as_str().unwrap().to_owned();

    let new_kid = rotate(&app).await;
    let new = app.bootstrap("alice", &["wallet_view"]).await;

    assert_eq!(header_of(&new)["kid"], new_kid.as_str());
    assert_eq!(
        verifier.key_ids(),
        vec![old_kid.clone()],
        "not refreshed yet"
    );
    assert_eq!(
        verifier.verify(&new).await.map(|c| c.sub),
        Ok("alice".into()),
        "the unknown kid triggers a refresh"
    );
    let mut both = vec![old_kid, new_kid];
    both.sort();
    assert_eq!(verifier.key_ids(), both);
    assert!(
        verifier.verify(&old).await.is_ok(),
        "the old key still verifies"
    );
}

#[tokio::test]
async fn unknown_kid_refreshes_are_rate_limited() {
    let app = TestApp::spawn().await;
    let verifier = Verifier::builder(JwksSource::http(app.jwks_url()))
        .min_refresh_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("verifier builds");

    rotate(&app).await;
    let new = app.bootstrap("alice", &["wallet_view"]).await;

    assert_eq!(
        verifier.verify(&new).await,
        Err(VerifyError::UnknownKey),
        "the build fetched the keys less than min_refresh_interval ago"
    );
    assert_eq!(
        verifier.refresh().await,
        Ok(2),
        "an explicit refresh is not rate-limited"
    );
    assert!(verifier.verify(&new).await.is_ok());
}

#[tokio::test]
async fn background_refresh_picks_up_rotated_keys() {
    let app = TestApp::spawn().await;
    let verifier = Verifier::builder(JwksSource::grpc(app.url()))
        .refresh_interval(Duration::from_millis(100))
        .min_refresh_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("verifier builds");

    let new_kid = rotate(&app).await;
    let refreshed = eventually(Duration::from_secs(10), || async {
        verifier.key_ids().contains(&new_kid).then_some(())
    })
    .await;

    assert!(
        refreshed.is_some(),
        "the background refresh fetched the new key"
    );
    let new = app.bootstrap("alice", &["wallet_view"]).await;
    assert!(verifier.verify(&new).await.is_ok());
}

#[tokio::test]
async fn background_refresh_stops_when_the_verifier_is_dropped() {
    let app = TestApp::spawn().await;
    let (jwks_url, fetches) = counting_jwks_proxy(app.addr).await;
    let verifier = Verifier::builder(JwksSource::http(jwks_url))
        .refresh_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("verifier builds");
    let clone = verifier.clone();

    let running = eventually(Duration::from_secs(10), || async {
        (fetches.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert!(running.is_some(), "the background refresh runs");

    drop(verifier);
    let before = fetches.load(Ordering::SeqCst);
    let still_running = eventually(Duration::from_secs(10), || async {
        (fetches.load(Ordering::SeqCst) >= before + 2).then_some(())
    })
    .await;
    assert!(
        still_running.is_some(),
        "a live clone keeps the refresh running"
    );

    drop(clone);
    let stopped_at = fetches.load(Ordering::SeqCst);
    // Proving that nothing happens takes a wait: four refresh periods.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        fetches.load(Ordering::SeqCst) <= stopped_at + 1,
        "at most a fetch already in flight completes after the last clone is dropped"
    );
}

/// A one-route HTTP/1.1 server that answers every request with tokenmint's JWKS document (read
/// from `tokenmint`) and counts the requests. Returns its URL and the counter.
async fn counting_jwks_proxy(tokenmint: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    jwks_server(move || fetch_jwks(tokenmint)).await
}

/// A one-route HTTP/1.1 server that answers every request with the JWKS document `document`
/// gives, and counts the requests. Returns its URL and the counter.
async fn jwks_server<F, D>(document: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn() -> D + Clone + Send + 'static,
    D: std::future::Future<Output = String> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            let document = document.clone();
            tokio::spawn(async move {
                if !read_request_head(&mut stream).await {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let document = document().await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{document}",
                    document.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/jwks.json"), count)
}

/// tokenmint's JWKS document, fetched with a bare HTTP/1.1 request.
async fn fetch_jwks(tokenmint: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(tokenmint)
        .await
        .expect("connect to tokenmint");
    stream
        .write_all(
            b"GET /.well-known/jwks.json HTTP/1.1\r\nhost: tokenmint\r\nconnection: close\r\n\r\n",
        )
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let (_, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    body.to_owned()
}

#[tokio::test]
async fn a_cached_token_stops_verifying_once_its_key_left_the_key_set() {
    let app = TestApp::spawn().await;
    let verifier = Verifier::builder(JwksSource::grpc(app.url()))
        .min_refresh_interval(Duration::ZERO)
        .build()
        .await
        .expect("verifier builds");
    let old = app.bootstrap("alice", &["wallet_view"]).await;
    let old_kid = header_of(&old)["kid"].as_str().unwrap().to_owned();
    verifier
        .verify(&old)
        .await
        .expect("verifies, and is cached");

    rotate(&app).await;
    tokenmint::cli::retire_key(&app.settings, &old_kid, true)
        .await
        .expect("retire the old key");
    // The server's key set follows through its change feed.
    let started = std::time::Instant::now();
    while {
        verifier.refresh().await.expect("refresh");
        verifier.key_ids().contains(&old_kid)
    } {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the key was never withdrawn"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        verifier.verify(&old).await.is_err(),
        "a token verified under a withdrawn key is not served from the cache"
    );
}

/// The key-set version of a JWKS document as tokenmint serves it over HTTP.
fn version_of(document: &str) -> u64 {
    let document: serde_json::Value = serde_json::from_str(document).expect("JSON");
    document["tokenmint_key_set_version"]
        .as_u64()
        .expect("tokenmint publishes its key-set version")
}

#[tokio::test]
async fn a_jwks_from_a_replica_still_catching_up_never_brings_back_a_withdrawn_key() {
    let app = TestApp::spawn().await;
    let old = app.bootstrap("alice", &["wallet_view"]).await;
    let old_kid = header_of(&old)["kid"].as_str().unwrap().to_owned();
    rotate(&app).await;
    // What a replica that has not heard of the withdrawal yet still serves.
    let lagging_document = fetch_jwks(app.addr).await;
    assert!(lagging_document.contains(&old_kid));
    tokenmint::cli::retire_key(&app.settings, &old_kid, true)
        .await
        .expect("withdraw the old key");
    let current_document = eventually(Duration::from_secs(10), || async {
        let document = fetch_jwks(app.addr).await;
        (!document.contains(&old_kid)).then_some(document)
    })
    .await
    .expect("the server withdraws the key");
    assert!(version_of(&current_document) > version_of(&lagging_document));

    // The same set as an older tokenmint (no key-set versions) would serve it.
    let mut unversioned: serde_json::Value = serde_json::from_str(&lagging_document).unwrap();
    unversioned
        .as_object_mut()
        .unwrap()
        .remove("tokenmint_key_set_version");
    let unversioned_document = unversioned.to_string();
    // 0: the current set; 1: a replica behind; 2: an older tokenmint behind.
    let lagging = Arc::new(AtomicUsize::new(0));
    let (url, fetches) = jwks_server({
        let lagging = lagging.clone();
        move || {
            let document = match lagging.load(Ordering::SeqCst) {
                0 => current_document.clone(),
                1 => lagging_document.clone(),
                _ => unversioned_document.clone(),
            };
            async move { document }
        }
    })
    .await;
    let verifier = Verifier::builder(JwksSource::http(url))
        .min_refresh_interval(Duration::ZERO)
        .build()
        .await
        .expect("verifier builds");
    assert!(!verifier.key_ids().contains(&old_kid));

    // A load balancer sends the next fetches to the replica that is behind, then to one that
    // still runs an older tokenmint.
    for behind in [1, 2] {
        lagging.store(behind, Ordering::SeqCst);
        let before = fetches.load(Ordering::SeqCst);
        verifier.refresh().await.expect("refresh");
        assert!(
            matches!(verifier.verify(&old).await, Err(VerifyError::UnknownKey)),
            "a token under the withdrawn key is refused ({behind})"
        );
        assert!(
            fetches.load(Ordering::SeqCst) >= before + 2,
            "the older set was fetched"
        );
        assert!(
            !verifier.key_ids().contains(&old_kid),
            "the older key set is not installed over the newer one ({behind})"
        );
    }
}

#[tokio::test]
async fn the_grpc_key_set_version_grows_with_each_key_change() {
    let app = TestApp::spawn().await;
    let mut client = app.client().await;
    let version = |response: tonic::Response<tokenmint::proto::v1::GetJwksResponse>| {
        response.into_inner().key_set_version
    };
    let first = version(
        client
            .get_jwks(tokenmint::proto::v1::GetJwksRequest {})
            .await
            .unwrap(),
    );
    assert!(first > 0);
    rotate(&app).await;
    let rotated = version(
        client
            .get_jwks(tokenmint::proto::v1::GetJwksRequest {})
            .await
            .unwrap(),
    );
    assert!(rotated > first);
}

#[tokio::test]
async fn a_key_change_on_the_stream_is_fetched_until_the_key_source_has_it() {
    let app = TestApp::spawn().await;
    let watcher = app.bootstrap("watcher", &["token_introspect"]).await;
    let old = app.bootstrap("alice", &["wallet_view"]).await;
    let old_kid = header_of(&old)["kid"].as_str().unwrap().to_owned();
    // What a replica that missed the rotation too still serves: a set older than the one the
    // verifier will hold, and different from it.
    let stale_document = fetch_jwks(app.addr).await;
    let stale_answers = Arc::new(AtomicUsize::new(0));
    let (url, _) = jwks_server({
        let stale_answers = stale_answers.clone();
        let addr = app.addr;
        move || {
            let stale = stale_answers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let stale_document = stale_document.clone();
            async move {
                if stale {
                    stale_document
                } else {
                    fetch_jwks(addr).await
                }
            }
        }
    })
    .await;
    let verifier = Verifier::builder(JwksSource::http(url))
        .watch_revocations(app.url(), watcher)
        .refresh_interval(Duration::from_secs(3_600))
        .build()
        .await
        .expect("verifier builds");
    let new_kid = rotate(&app).await;
    // No refresh from here on: only the stream's reports make the verifier fetch.
    let rotated = eventually(Duration::from_secs(20), || async {
        (verifier.key_ids().len() == 2).then_some(())
    })
    .await;
    assert!(rotated.is_some(), "the stream's report brings the new key");

    // The key source answers the next few fetches as that lagging replica.
    stale_answers.store(3, Ordering::SeqCst);
    tokenmint::cli::retire_key(&app.settings, &old_kid, true)
        .await
        .expect("withdraw the old key");
    let withdrawn = eventually(Duration::from_secs(20), || async {
        (verifier.key_ids() == [new_kid.clone()]).then_some(())
    })
    .await;
    assert!(
        withdrawn.is_some(),
        "the verifier fetched past the stale answers: holds {:?}",
        verifier.key_ids()
    );
    assert_eq!(stale_answers.load(Ordering::SeqCst), 0);
    assert!(verifier.verify(&old).await.is_err());
}
