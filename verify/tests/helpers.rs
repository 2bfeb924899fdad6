//! Test harness: a real tokenmint server in-process (SQLite in a temp dir, port 0), tokens minted
//! through its operator CLI path and gRPC API, forged tokens signed with its own key, and
//! verifiers pointed at it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokenmint::cli::{self, BootstrapRequest};
use tokenmint::config::Settings;
use tokenmint::issuance::keys::KeyManager;
use tokenmint::proto::v1 as pb;
use tokenmint::startup::{self, RunningServer};
use tokenmint_verify::{JwksSource, Verifier};
use tonic::Request;
use tonic::transport::Channel;

/// tokenmint's generated TokenService client.
pub(crate) type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// The scopes of a caller that manages its own tokens and may introspect any.
pub(crate) const MANAGER_SCOPES: &[&str] = &["user_manage", "token_introspect", "wallet_view"];

/// A running tokenmint on its own database.
pub(crate) struct TestApp {
    /// Address of the server.
    pub addr: SocketAddr,
    /// The settings it runs with (shared with the CLI functions, so they act on its store).
    pub settings: Settings,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// A server with the default test settings.
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server with `configure` applied to the test settings.
    pub(crate) async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.server.listen = "127.0.0.1:0".parse().expect("an address");
        settings.server.shutdown_grace_secs = 2;
        settings.background.change_poll_interval_ms =
            std::num::NonZeroU64::new(100).expect("nonzero");
        settings.background.last_used_flush_interval_ms =
            std::num::NonZeroU64::new(100).expect("nonzero");
        configure(&mut settings);
        let server = startup::start(settings.clone())
            .await
            .expect("server starts");
        Self {
            addr: server.addr,
            settings,
            server: Some(server),
            _dir: dir,
        }
    }

    /// The gRPC endpoint.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The JWKS document's URL.
    pub(crate) fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// A connected TokenService client.
    pub(crate) async fn client(&self) -> Client {
        Client::connect(self.url()).await.expect("connect")
    }

    /// A verifier with default settings reading keys through GetJwks.
    pub(crate) async fn verifier(&self) -> Verifier {
        Verifier::builder(JwksSource::grpc(self.url()))
            .build()
            .await
            .expect("verifier builds")
    }

    /// A token for `user` with `scopes`, minted by the operator CLI path (`tokenmint bootstrap`).
    pub(crate) async fn bootstrap(&self, user: &str, scopes: &[&str]) -> String {
        self.bootstrap_with(user, scopes, |_| {}).await
    }

    /// Like [`bootstrap`](Self::bootstrap), with the request adjusted by `adjust`.
    pub(crate) async fn bootstrap_with(
        &self,
        user: &str,
        scopes: &[&str],
        adjust: impl FnOnce(&mut BootstrapRequest),
    ) -> String {
        let mut request = BootstrapRequest {
            user: user.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            admin: false,
            ttl: None,
            ips: vec![],
            label: "verify test".into(),
            enterprise: None,
        };
        adjust(&mut request);
        cli::bootstrap(&self.settings, request)
            .await
            .expect("bootstrap")
            .expose()
            .to_owned()
    }

    /// A caller for `user` with [`MANAGER_SCOPES`].
    pub(crate) async fn manager(&self, user: &str) -> String {
        self.bootstrap(user, MANAGER_SCOPES).await
    }

    /// Mints a token through CreateToken as `caller`.
    pub(crate) async fn create_token(
        &self,
        caller: &str,
        request: pb::CreateTokenRequest,
    ) -> pb::CreateTokenResponse {
        self.client()
            .await
            .create_token(authed(caller, request))
            .await
            .expect("CreateToken")
            .into_inner()
    }

    /// Signs arbitrary `header` and `claims` with the server's current signing key (tokens the
    /// API would never mint). `header` may omit `kid` and `alg`; they default to the key's.
    pub(crate) async fn forge(
        &self,
        mut header: serde_json::Value,
        claims: serde_json::Value,
    ) -> String {
        let store = startup::open_store(&self.settings).await.expect("store");
        let master = startup::master_key(&self.settings).expect("master key");
        let keys = KeyManager::load(store.clone(), master, self.settings.keys.algorithm, 86_400)
            .await
            .expect("keys");
        let ring = keys.ring();
        let object = header.as_object_mut().expect("header object");
        object
            .entry("kid")
            .or_insert_with(|| ring.signing.kid.clone().into());
        object
            .entry("alg")
            .or_insert_with(|| ring.signing.algorithm.name().into());
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = ring.signing.sign(signing_input.as_bytes()).expect("sign");
        drop(ring);
        drop(keys);
        store.close().await;
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Claims as the server would mint them for `user`, valid for an hour from now.
    pub(crate) fn claims(&self, user: &str, scope: &str) -> serde_json::Value {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let now = unix_now();
        // A UUID, as every tokenmint token id is (any other `jti` is malformed).
        let id = format!(
            "00000000-0000-4000-8000-{:012x}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        serde_json::json!({
            "iss": self.settings.tokens.issuer, "aud": self.settings.tokens.audience, "sub": user,
            "client_id": id, "jti": id, "iat": now, "nbf": now, "exp": now + 3600,
            "scope": scope, "adm": false
        })
    }

    /// Stops the server, draining requests.
    pub(crate) async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean stop");
        }
    }
}

/// A request carrying `authorization: Bearer <token>`.
pub(crate) fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// Polls `check` until it returns `Some` or `within` has passed.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The decoded JOSE header of a JWT.
pub(crate) fn header_of(token: &str) -> serde_json::Value {
    decode_part(token, 0)
}

/// The decoded payload of a JWT (not verified).
pub(crate) fn payload_of(token: &str) -> serde_json::Value {
    decode_part(token, 1)
}

fn decode_part(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// `token` with its payload replaced by `payload` (signature untouched).
pub(crate) fn with_payload(token: &str, payload: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    )
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Owned strings.
pub(crate) fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Reads an HTTP/1.1 request head from `stream` (up to the blank line); false when the peer
/// closed first. For the tests' one-route JWKS servers, which answer every request alike.
pub(crate) async fn read_request_head(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    true
}
