//! The real `tokenmint` binary: `bootstrap` prints only the token, `serve` answers, a token whose
//! CreateToken was answered OK survives `kill -9` (of the only server, and of one of two replicas
//! under load), `health` probes, and `config check` validates and prints the effective
//! configuration without secrets.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokenmint::proto::v1 as pb;

use crate::helpers::{TestApp, TestDatabase, authed, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_tokenmint");

/// Runs the binary with the test database's data dir (and PostgreSQL URL, if any).
pub(crate) fn command(db: &TestDatabase, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--data-dir")
        .arg(db.dir.path())
        .env_remove("RUST_LOG");
    let ours = |name: &str| name.starts_with("TOKENMINT__") || name.starts_with("OTEL_");
    for (name, _) in std::env::vars().filter(|(n, _)| ours(n)) {
        cmd.env_remove(name);
    }
    match &db.pg_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env_remove("DATABASE_URL"),
    };
    cmd
}

/// A TCP port for a child process to listen on, free at the moment of asking.
///
/// It is drawn at random from 20000–29999, below Linux's ephemeral range (32768–60999), where
/// every port-0 bind of the tests' in-process servers lands: a port taken from that range could be
/// handed to one of them before the child binds it, and the child's health check would then reach
/// the wrong server.
pub(crate) fn free_port() -> u16 {
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 10_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn serve(db: &TestDatabase, port: u16) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let child = command(db, &["serve", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tokenmint serve");
    wait_until_serving(port).await;
    child
}

/// Waits until a server answers on `port` (at most 20 s).
pub(crate) async fn wait_until_serving(port: u16) {
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let up = eventually(Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            pb::token_service_client::TokenServiceClient::connect(url)
                .await
                .ok()
        }
    })
    .await;
    assert!(up.is_some(), "tokenmint serve did not come up on {listen}");
}

#[tokio::test]
async fn bootstrap_prints_only_the_token_on_stdout() {
    let db = TestDatabase::create().await;
    let output = command(
        &db,
        &[
            "bootstrap",
            "--user",
            "alice",
            "--scopes",
            "user_manage,wallet_view",
            "--ttl",
            "1h",
        ],
    )
    .output()
    .expect("run bootstrap");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must hold the token alone: {stdout:?}"
    );
    assert_eq!(lines[0].split('.').count(), 3, "a JWT");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains(lines[0]),
        "the token must not appear in the logs"
    );
}

#[tokio::test]
async fn bootstrap_refuses_bad_input_with_a_clear_message() {
    let db = TestDatabase::create().await;
    let output = command(
        &db,
        &["bootstrap", "--user", "alice", "--scopes", "no_such_scope"],
    )
    .output()
    .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no_such_scope"));
}

#[tokio::test]
async fn created_tokens_survive_kill_dash_nine() {
    let db = TestDatabase::create().await;
    let caller = command(
        &db,
        &[
            "bootstrap",
            "--user",
            "alice",
            "--scopes",
            "user_manage,wallet_view",
        ],
    )
    .output()
    .expect("bootstrap");
    assert!(caller.status.success());
    let caller = String::from_utf8(caller.stdout).unwrap().trim().to_owned();
    let port = free_port();
    let mut server = serve(&db, port).await;
    let url = format!("http://127.0.0.1:{port}");
    let mut handles = Vec::new();
    for i in 0..25 {
        let (url, caller) = (url.clone(), caller.clone());
        handles.push(tokio::spawn(async move {
            let mut client = pb::token_service_client::TokenServiceClient::connect(url)
                .await
                .unwrap();
            let request = pb::CreateTokenRequest {
                label: format!("t{i}"),
                scopes: vec!["wallet_view".into()],
                ..Default::default()
            };
            client
                .create_token(authed(&caller, request))
                .await
                .unwrap()
                .into_inner()
                .token
                .unwrap()
                .id
        }));
    }
    let mut acknowledged = Vec::new();
    for handle in handles {
        acknowledged.push(handle.await.unwrap());
    }
    server.kill().expect("SIGKILL");
    server.wait().unwrap();

    let port = free_port();
    let mut server = serve(&db, port).await;
    let mut client =
        pb::token_service_client::TokenServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
    let listed = client
        .list_tokens(authed(
            &caller,
            pb::ListTokensRequest {
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    for id in &acknowledged {
        assert!(
            listed.iter().any(|t| &t.id == id),
            "acknowledged token {id} was lost"
        );
    }
    server.kill().ok();
    server.wait().ok();
}

/// A client of several replicas: each call goes to its preferred one, and to the next when that
/// one does not answer (the retry a load balancer or a client with several endpoints makes).
#[derive(Clone)]
struct ReplicaClient {
    endpoints: Vec<pb::token_service_client::TokenServiceClient<tonic::transport::Channel>>,
    caller: String,
}

impl ReplicaClient {
    /// Connects lazily to every port.
    fn new(ports: &[u16], caller: &str) -> Self {
        let endpoints = ports
            .iter()
            .map(|port| {
                let endpoint =
                    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                        .expect("endpoint")
                        .connect_timeout(Duration::from_secs(2))
                        .timeout(Duration::from_secs(10));
                pb::token_service_client::TokenServiceClient::new(endpoint.connect_lazy())
            })
            .collect();
        Self {
            endpoints,
            caller: caller.to_owned(),
        }
    }

    /// Mints a token, starting at endpoint `first` and going round the endpoints up to three
    /// times (a database stall on the loaded CI machine can fail a call on a live replica too);
    /// its id and raw token if some replica answered OK.
    async fn mint(&self, first: usize, label: String) -> Option<(String, String)> {
        for n in 0..3 * self.endpoints.len() {
            let mut client = self.endpoints[(first + n) % self.endpoints.len()].clone();
            let request = pb::CreateTokenRequest {
                label: label.clone(),
                scopes: vec!["wallet_view".into()],
                ..Default::default()
            };
            if let Ok(response) = client.create_token(authed(&self.caller, request)).await {
                let minted = response.into_inner();
                return Some((minted.token.expect("metadata").id, minted.raw_token));
            }
        }
        None
    }
}

/// Waits until `tokenmint health` reports the server on `port` SERVING (at most 20 s).
async fn wait_until_healthy(port: u16) {
    let addr = format!("http://127.0.0.1:{port}");
    let healthy = eventually(Duration::from_secs(20), || {
        let addr = addr.clone();
        async move {
            let probe = Command::new(BIN)
                .args(["health", "--addr", &addr, "--timeout", "1s"])
                .output()
                .ok()?;
            probe.status.success().then_some(())
        }
    });
    assert!(
        healthy.await.is_some(),
        "the server on {port} reports SERVING"
    );
}

#[tokio::test]
async fn a_replica_killed_under_load_loses_nothing_and_catches_up_before_serving() {
    let db = TestDatabase::create().await;
    if db.pg_url.is_none() {
        // Replicas share PostgreSQL; the SQLite server alone is the test above.
        return;
    }
    let scopes = "user_manage,token_introspect,wallet_view";
    let bootstrap = ["bootstrap", "--user", "alice", "--scopes", scopes];
    let caller = command(&db, &bootstrap).output().expect("bootstrap");
    assert!(caller.status.success());
    let caller = String::from_utf8(caller.stdout).unwrap().trim().to_owned();
    let ports = [free_port(), free_port()];
    let mut a = serve(&db, ports[0]).await;
    let mut b = serve(&db, ports[1]).await;
    let client = ReplicaClient::new(&ports, &caller);

    // Eight clients mint without pause, half of them starting at A, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..8 {
        let (client, stop) = (client.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut acknowledged, mut failed) = (Vec::new(), 0);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                match client.mint(worker % 2, format!("w{worker}-{i}")).await {
                    Some(id) => acknowledged.push(id),
                    None => failed += 1,
                }
                i += 1;
            }
            (acknowledged, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill().expect("SIGKILL");
    a.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acknowledged, mut failed) = (Vec::new(), 0);
    for worker in load {
        let (ids, failures) = worker.await.unwrap();
        acknowledged.extend(ids);
        failed += failures;
    }
    assert_eq!(failed, 0, "every call A did not answer was answered by B");
    assert!(
        acknowledged.len() >= 16,
        "the load ran: {}",
        acknowledged.len()
    );

    // While A is down, B revokes one of the tokens; A must know it from its first answer on.
    let (revoked_id, revoked_raw) = acknowledged[0].clone();
    let mut on_b = client.endpoints[1].clone();
    let request = pb::RevokeTokenRequest {
        id: revoked_id.clone(),
        cascade: false,
    };
    on_b.revoke_token(authed(&caller, request))
        .await
        .expect("RevokeToken on B");
    let mut a = serve(&db, ports[0]).await;
    wait_until_healthy(ports[0]).await;
    let mut on_a = ReplicaClient::new(&ports[..1], &caller).endpoints.remove(0);
    let request = pb::VerifyTokenRequest {
        token: revoked_raw,
        ..Default::default()
    };
    let seen = on_a.verify_token(authed(&caller, request)).await;
    assert_eq!(
        seen.expect("VerifyToken on A").into_inner().reason,
        pb::InactiveReason::Revoked as i32,
        "A's first answer knows the revoke made while it was down"
    );

    let request = pb::ListTokensRequest {
        page_size: 1000,
        ..Default::default()
    };
    let mut listed = Vec::new();
    let mut request = request;
    loop {
        let page = on_a
            .list_tokens(authed(&caller, request.clone()))
            .await
            .expect("ListTokens")
            .into_inner();
        listed.extend(page.tokens.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    for (id, _) in &acknowledged {
        assert!(listed.contains(id), "acknowledged token {id} was lost");
    }
    for server in [&mut a, &mut b] {
        server.kill().ok();
        server.wait().ok();
    }
}

#[tokio::test]
async fn health_probe_succeeds_against_a_server_and_fails_without_one() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut server = serve(&db, port).await;
    let addr = format!("http://127.0.0.1:{port}");
    let ok = Command::new(BIN)
        .args(["health", "--addr", &addr])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let service = [
        "health",
        "--addr",
        &addr,
        "--service",
        "tokenmint.v1.TemplateService",
    ];
    assert!(
        Command::new(BIN)
            .args(service)
            .output()
            .unwrap()
            .status
            .success()
    );
    server.kill().ok();
    server.wait().ok();
    let down = Command::new(BIN)
        .args(["health", "--addr", &addr, "--timeout", "1s"])
        .output()
        .unwrap();
    assert!(!down.status.success(), "no server must fail the probe");
    assert!(String::from_utf8_lossy(&down.stderr).contains("127.0.0.1"));
}

#[tokio::test]
async fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let db = TestDatabase::create().await;
    let secret = "ab".repeat(32);
    let output = command(&db, &["config", "check"])
        .env("TOKENMINT__KEYS__MASTER_KEY", &secret)
        .env("TOKENMINT__TOKENS__ISSUER", "https://issuer.example")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("issuer = \"https://issuer.example\""),
        "{stdout}"
    );
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(
        !stdout.contains(&secret),
        "the master key must not be printed"
    );

    let bad = command(&db, &["config", "check"])
        .env("TOKENMINT__SERVER__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("server.listen"));

    let unknown = command(&db, &["config", "check"])
        .env("TOKENMINT__NO_SUCH", "1")
        .output()
        .unwrap();
    assert!(!unknown.status.success(), "unknown settings are refused");
}

/// `tokenmint keys rotate` against `app`'s database, from a data directory of its own, with
/// `env` set.
fn rotate_elsewhere(
    app: &TestApp,
    data_dir: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["keys", "rotate", "--data-dir"])
        .arg(data_dir)
        .env_remove("RUST_LOG");
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TOKENMINT__")) {
        cmd.env_remove(name);
    }
    cmd.env("DATABASE_URL", app.settings.database_url());
    cmd.envs(env.iter().copied());
    cmd.output().expect("run tokenmint keys rotate")
}

#[tokio::test]
async fn keys_rotate_refuses_a_database_whose_keys_are_sealed_under_another_master_key() {
    let app = TestApp::spawn().await;
    let keys_before = tokenmint::cli::list_keys(&app.settings).await.unwrap();

    // No master key configured: the command must not make one up.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = rotate_elsewhere(&app, elsewhere.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(stderr.contains("master key"), "says why: {stderr}");
    assert!(
        stderr.contains("TOKENMINT__KEYS__MASTER_KEY_FILE"),
        "says what to do: {stderr}"
    );
    assert!(
        !elsewhere.path().join("master.key").exists(),
        "no master key was created"
    );

    // Another master key configured.
    let other = "ab".repeat(32);
    let output = rotate_elsewhere(
        &app,
        elsewhere.path(),
        &[("TOKENMINT__KEYS__MASTER_KEY", &other)],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("different master key"),
        "says why: {stderr}"
    );

    let keys_after = tokenmint::cli::list_keys(&app.settings).await.unwrap();
    assert_eq!(keys_after, keys_before, "no key was stored");

    // With the servers' master key it rotates.
    let master_file = app.settings.data_dir.join("master.key");
    let master_file = master_file.to_str().unwrap();
    let output = rotate_elsewhere(
        &app,
        elsewhere.path(),
        &[("TOKENMINT__KEYS__MASTER_KEY_FILE", master_file)],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
}
