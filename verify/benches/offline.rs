//! What offline verification costs a consuming service, against raw ring in the same run (divan).
//!
//! `cargo bench -p tokenmint-verify --bench offline`. A tokenmint server runs in-process (SQLite
//! in a temp dir) to mint a real token and publish its keys and status list; every measured call
//! is local (no network: each is polled once and must be ready).
//! - `ring_ed25519_verify`: the bare signature check of that token, the floor;
//! - `uncached_verify`: `Verifier::verify` with the cache off: form, key, signature, claims,
//!   time (the goal: at least 0.9× ring's speed, i.e. at most 1/0.9 of its time);
//! - `repeated_token`: the same token again, with revocations watched: hash and lookup of the
//!   token's text, the time check, the change stream's view and the status list entry (the goal:
//!   a million per second on one core, at most 1 µs).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, UnparsedPublicKey};
use tokenmint::cli::{self, BootstrapRequest};
use tokenmint::config::Settings;
use tokenmint::proto::v1 as pb;
use tokenmint::startup;
use tokenmint_verify::{JwksSource, Verifier};
use tonic::Request;

fn main() {
    divan::main();
}

/// Everything the benchmarks share, set up once.
struct Fixture {
    token: String,
    key: UnparsedPublicKey<Vec<u8>>,
    uncached: Verifier,
    watching: Verifier,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

static FIXTURE: std::sync::LazyLock<Fixture> = std::sync::LazyLock::new(fixture);

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (token, key, uncached, watching) = runtime.block_on(async {
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.server.listen = "127.0.0.1:0".parse().expect("an address");
        let server = startup::start(settings.clone()).await.expect("server");
        let url = format!("http://{}", server.addr);
        let request = BootstrapRequest {
            user: "bench".into(),
            scopes: vec![
                "token_introspect".into(),
                "user_manage".into(),
                "wallet_view".into(),
            ],
            admin: false,
            ttl: None,
            ips: vec![],
            label: "bench".into(),
            enterprise: None,
        };
        let caller = cli::bootstrap(&settings, request).await.expect("bootstrap");
        let caller = caller.expose().to_owned();
        let mut client = pb::token_service_client::TokenServiceClient::connect(url.clone())
            .await
            .expect("connect");
        let mut create = Request::new(pb::CreateTokenRequest {
            label: "bench".into(),
            scopes: vec!["wallet_view".into()],
            ..Default::default()
        });
        create.metadata_mut().insert(
            "authorization",
            format!("Bearer {caller}").parse().expect("ascii"),
        );
        let token = client.create_token(create).await.expect("mint");
        let token = token.into_inner().raw_token;
        let jwks = client
            .get_jwks(pb::GetJwksRequest {})
            .await
            .expect("jwks")
            .into_inner();
        let x = URL_SAFE_NO_PAD
            .decode(&jwks.keys[0].x)
            .expect("an Ed25519 key");
        let uncached = Verifier::builder(JwksSource::grpc(url.clone()))
            .cache_capacity(0)
            .build()
            .await
            .expect("verifier");
        let watching = Verifier::builder(JwksSource::grpc(url.clone()))
            .watch_revocations(url, caller)
            .build()
            .await
            .expect("watching verifier");
        // Fetches the token's status list, and fills the cache. Right after the stream starts,
        // a list rendered in its first second is not used yet ("not known yet": retry).
        let started = std::time::Instant::now();
        while let Err(error) = watching.verify(&token).await {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the token never verified: {error}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // The server keeps running on the runtime's worker threads.
        std::mem::forget(server);
        (
            token,
            UnparsedPublicKey::new(&ED25519, x),
            uncached,
            watching,
        )
    });
    Fixture {
        token,
        key,
        uncached,
        watching,
        runtime,
        _dir: dir,
    }
}

/// Polls `future` once: everything measured here completes without waiting.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a local verification waited"),
    }
}

#[divan::bench]
fn ring_ed25519_verify(bencher: divan::Bencher<'_, '_>) {
    let fixture = &*FIXTURE;
    let (signing_input, signature) = fixture.token.rsplit_once('.').expect("a JWS");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    bencher.bench(|| {
        fixture
            .key
            .verify(black_box(signing_input.as_bytes()), black_box(&signature))
            .expect("verifies")
    });
}

#[divan::bench]
fn uncached_verify(bencher: divan::Bencher<'_, '_>) {
    let fixture = &*FIXTURE;
    // A list refresh is spawned on the fixture's runtime.
    let _runtime = fixture.runtime.enter();
    bencher.bench(|| ready(fixture.uncached.verify(black_box(&fixture.token))).expect("verifies"));
}

#[divan::bench]
fn repeated_token(bencher: divan::Bencher<'_, '_>) {
    let fixture = &*FIXTURE;
    // A list refresh is spawned on the fixture's runtime.
    let _runtime = fixture.runtime.enter();
    bencher.bench(|| ready(fixture.watching.verify(black_box(&fixture.token))).expect("verifies"));
}
