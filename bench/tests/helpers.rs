//! Test harness: a real tokenmint server in-process (SQLite in a temp dir, port 0), and callers
//! minted through its operator CLI path.

use std::net::SocketAddr;

use tokenmint::cli::{self, BootstrapRequest};
use tokenmint::config::Settings;
use tokenmint::proto::v1::token_service_client::TokenServiceClient;
use tokenmint::startup::{self, RunningServer};
use tonic::Request;
use tonic::transport::Channel;

/// A running tokenmint on its own database.
pub(crate) struct TestApp {
    /// Address of the server.
    pub addr: SocketAddr,
    /// The settings it runs with (shared with the CLI functions, so they act on its store).
    pub settings: Settings,
    _server: RunningServer,
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
            _server: server,
            _dir: dir,
        }
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected TokenService client.
    pub(crate) async fn client(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::connect(self.url())
            .await
            .expect("connect")
    }

    /// A token for `user` with `scopes`, minted by the operator CLI path (`tokenmint bootstrap`).
    pub(crate) async fn bootstrap(&self, user: &str, scopes: &[&str]) -> String {
        let request = BootstrapRequest {
            user: user.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            admin: false,
            ttl: None,
            ips: vec![],
            label: "bench test".into(),
            enterprise: None,
        };
        cli::bootstrap(&self.settings, request)
            .await
            .expect("bootstrap")
            .expose()
            .to_owned()
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
