//! Test harness: spawn servers, mint caller tokens, forge tokens, read error details.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::sqlx::{Connection, Executor, PgConnection};
use tokenmint::cli::{self, BootstrapRequest};
use tokenmint::config::{Secret, Settings};
use tokenmint::issuance::keys::KeyManager;
use tokenmint::proto::v1::template_service_client::TemplateServiceClient;
use tokenmint::proto::v1::token_service_client::TokenServiceClient;
use tokenmint::startup::{self, RunningServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Environment variable naming a PostgreSQL server (e.g. `postgres://postgres@127.0.0.1:5432`);
/// when set, every test runs on its own new database there instead of SQLite.
pub(crate) const PG_ENV: &str = "TOKENMINT_TEST_DATABASE_URL";

/// A database for one test (shared by every server the test starts), dropped at the end.
pub(crate) struct TestDatabase {
    /// Data directory (SQLite file and master key).
    pub dir: tempfile::TempDir,
    /// PostgreSQL URL of this test's database, if on PostgreSQL.
    pub pg_url: Option<String>,
    pg_admin: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh database: SQLite by default, PostgreSQL when [`PG_ENV`] is set.
    pub(crate) async fn create() -> Arc<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pg_url, pg_admin) = match std::env::var(PG_ENV) {
            Ok(server) if !server.is_empty() => {
                let server = server.trim_end_matches('/').to_owned();
                let name = format!("tokenmint_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin = PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .expect("connect to PostgreSQL");
                admin
                    .execute(sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(
                        format!("CREATE DATABASE {name}"),
                    )))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                (Some(format!("{server}/{name}")), Some((server, name)))
            }
            _ => (None, None),
        };
        Arc::new(Self {
            dir,
            pg_url,
            pg_admin,
        })
    }

    /// Settings for a server on this database, listening on port 0.
    pub(crate) fn settings(&self) -> Settings {
        let mut settings = Settings {
            data_dir: self.dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.server.listen = "127.0.0.1:0".parse().expect("an address");
        settings.server.shutdown_grace_secs = 2;
        settings.database.url = self.pg_url.clone().map(Secret::new);
        settings.background.change_poll_interval_ms =
            std::num::NonZeroU64::new(100).expect("nonzero");
        settings.background.last_used_flush_interval_ms =
            std::num::NonZeroU64::new(100).expect("nonzero");
        settings
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, name)) = self.pg_admin.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee: use a private runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&format!("{server}/postgres")).await {
                    let _ = admin
                        .execute(sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(
                            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A running tokenmint and the database it uses.
pub(crate) struct TestApp {
    /// Address of the server.
    pub addr: SocketAddr,
    /// Address of the plaintext metrics listener, if configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The settings it runs with.
    pub settings: Settings,
    /// Its database.
    pub db: Arc<TestDatabase>,
    server: Option<RunningServer>,
}

impl TestApp {
    /// A server on a fresh database with default test settings.
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server on a fresh database, with `configure` applied to its settings.
    pub(crate) async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDatabase::create().await;
        Self::spawn_on(db, configure).await
    }

    /// Another server on an existing database (a replica).
    pub(crate) async fn spawn_on(
        db: Arc<TestDatabase>,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut settings = db.settings();
        configure(&mut settings);
        let server = startup::start(settings.clone())
            .await
            .expect("server starts");
        Self {
            addr: server.addr,
            metrics_addr: server.metrics_addr,
            settings,
            db,
            server: Some(server),
        }
    }

    /// Starts stopping the server (drain, flush); the handle ends when it has stopped.
    pub(crate) fn begin_stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let server = self.server.take().expect("a running server");
        tokio::spawn(server.stop())
    }

    /// Stops the server (draining requests and flushing writes) and starts it again on the same database.
    pub(crate) async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean stop");
        }
        let server = startup::start(self.settings.clone())
            .await
            .expect("server restarts");
        self.addr = server.addr;
        self.metrics_addr = server.metrics_addr;
        self.server = Some(server);
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls the gRPC method at `path` (one the server may not know) with an empty message.
    pub(crate) async fn call_raw(&self, path: &str) -> Result<(), Status> {
        let channel = tonic::transport::Endpoint::from_shared(self.url())
            .expect("server URL")
            .connect()
            .await
            .expect("connect");
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("channel ready");
        let path = path.parse().expect("a gRPC path");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        grpc.unary(Request::new(()), path, codec).await.map(|_| ())
    }

    /// A connected TokenService client.
    pub(crate) async fn client(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::connect(self.url())
            .await
            .expect("connect")
    }

    /// A connected TemplateService client.
    pub(crate) async fn templates(&self) -> TemplateServiceClient<Channel> {
        TemplateServiceClient::connect(self.url())
            .await
            .expect("connect")
    }

    /// A token for `user` with `scopes`, minted by the operator CLI path.
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
            label: "test caller".into(),
            enterprise: None,
        };
        adjust(&mut request);
        cli::bootstrap(&self.settings, request)
            .await
            .expect("bootstrap")
            .expose()
            .to_owned()
    }

    /// A `user_manage` + `token_introspect` caller for `user`.
    pub(crate) async fn manager(&self, user: &str) -> String {
        self.bootstrap(
            user,
            &[
                "user_manage",
                "token_introspect",
                "wallet_view",
                "wallet_spend",
                "trade_view",
            ],
        )
        .await
    }

    /// Adds `user` to `enterprise` (the `tokenmint enterprise add-member` path).
    pub(crate) async fn add_member(&self, enterprise: &str, user: &str) {
        cli::add_enterprise_member(&self.settings, enterprise, user)
            .await
            .expect("add member");
    }

    /// Signs arbitrary header and claims with the server's current signing key — for tokens the
    /// API would never mint (expired, not yet valid, wrong issuer…). `header` may omit `kid`/`alg`.
    pub(crate) async fn forge(
        &self,
        mut header: serde_json::Value,
        claims: serde_json::Value,
    ) -> String {
        tokenmint_jwt::jsonwebtoken_provider::install();
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

    /// The standard claims of a token for `user`, valid now, as the server would mint them.
    pub(crate) fn claims(&self, user: &str, scope: &str) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let id = uuid::Uuid::now_v7().to_string();
        serde_json::json!({
            "iss": self.settings.tokens.issuer, "aud": self.settings.tokens.audience, "sub": user,
            "client_id": id, "jti": id, "iat": now, "nbf": now, "exp": now + 3600, "scope": scope, "adm": false
        })
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

/// Asserts `status` has `code` and ErrorInfo `reason` (domain tokenmint) and a RequestInfo; returns the details.
#[track_caller]
pub(crate) fn assert_error(status: &Status, code: Code, reason: &str) -> ErrorDetails {
    assert_eq!(
        status.code(),
        code,
        "unexpected code; message: {}",
        status.message()
    );
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(
        info.reason,
        reason,
        "unexpected reason; message: {}",
        status.message()
    );
    assert_eq!(info.domain, "tokenmint");
    let request_info = details.request_info().expect("RequestInfo detail");
    assert!(
        !request_info.request_id.is_empty(),
        "request id must be set"
    );
    details
}

/// The BadRequest field names of `status`.
pub(crate) fn bad_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// ErrorInfo metadata value `key` of `status`.
pub(crate) fn error_meta(status: &Status, key: &str) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .and_then(|i| i.metadata.get(key).cloned())
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

/// Decodes the claims of a JWT without verifying it (for asserting what was minted).
pub(crate) fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("json claims")
}

/// Decodes the header of a JWT.
pub(crate) fn header_of(token: &str) -> serde_json::Value {
    let header = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url"))
        .expect("json header")
}

/// A plain HTTP/1.1 GET on the server's port: the status line, the lower-cased head and the body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    http_get_with(addr, path, &[]).await
}

/// [`http_get`] with extra request headers (`name: value`).
pub(crate) async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
) -> (String, String, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        let written = stream.write_all(request.as_bytes()).await;
        written.expect("write the request");
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response).await;
        read.expect("read the response");
        response
    };
    let limit = Duration::from_secs(5);
    let response = tokio::time::timeout(limit, exchange).await;
    let response = response.expect("a response within 5 s");
    let text = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("end of head");
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status_line, head, body)
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).expect("hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").expect("CRLF");
    }
}

/// Holds the database's write lock (SQLite) or a share lock on one table (PostgreSQL; `tokens`
/// unless told), so that writes wait while reads go on.
pub(crate) enum DatabaseLock {
    /// `BEGIN IMMEDIATE` on SQLite.
    Sqlite(sea_orm::sqlx::SqliteConnection),
    /// `LOCK TABLE tokens IN SHARE MODE` on PostgreSQL.
    Postgres(sea_orm::sqlx::PgConnection),
}

impl DatabaseLock {
    /// Takes the lock on `app`'s database.
    pub(crate) async fn take(app: &TestApp) -> Self {
        Self::take_on(app, "tokens").await
    }

    /// Takes the lock on `app`'s database: on PostgreSQL, a share lock on `table` only.
    pub(crate) async fn take_on(app: &TestApp, table: &str) -> Self {
        use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor};
        let url = app.settings.database_url();
        if url.starts_with("postgres") {
            let mut conn = sea_orm::sqlx::PgConnection::connect(&url).await.unwrap();
            conn.execute("BEGIN").await.unwrap();
            let lock = format!("LOCK TABLE {table} IN SHARE MODE");
            conn.execute(AssertSqlSafe(lock)).await.unwrap();
            Self::Postgres(conn)
        } else {
            let mut conn = sea_orm::sqlx::SqliteConnection::connect(&url)
                .await
                .unwrap();
            conn.execute("BEGIN IMMEDIATE").await.unwrap();
            Self::Sqlite(conn)
        }
    }

    /// On PostgreSQL, an exclusive lock on `table` of `app`'s database: reads of it wait too
    /// (a database that does not answer). `None` on SQLite, whose readers nothing can hold up.
    pub(crate) async fn take_exclusive(app: &TestApp, table: &str) -> Option<Self> {
        use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor};
        let url = app.settings.database_url();
        if !url.starts_with("postgres") {
            return None;
        }
        let mut conn = sea_orm::sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute("BEGIN").await.unwrap();
        let lock = format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE");
        conn.execute(AssertSqlSafe(lock)).await.unwrap();
        Some(Self::Postgres(conn))
    }

    /// Lets writes through again.
    pub(crate) async fn release(self) {
        use sea_orm::sqlx::Executor;
        match self {
            Self::Sqlite(mut conn) => conn.execute("ROLLBACK").await.map(|_| ()),
            Self::Postgres(mut conn) => conn.execute("ROLLBACK").await.map(|_| ()),
        }
        .unwrap();
    }
}

/// Runs `statements` on `app`'s database in one transaction, as another process would: the
/// statements bypass every server (for changes a test cannot make through the API).
pub(crate) async fn execute_in_database(app: &TestApp, statements: &[String]) {
    use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor};
    let url = app.settings.database_url();
    macro_rules! run {
        ($conn:ty) => {{
            let mut conn = <$conn>::connect(&url).await.unwrap();
            let mut txn = conn.begin().await.unwrap();
            for statement in statements {
                let statement = AssertSqlSafe(statement.as_str());
                txn.execute(statement).await.unwrap();
            }
            txn.commit().await.unwrap();
        }};
    }
    if url.starts_with("postgres") {
        run!(sea_orm::sqlx::PgConnection)
    } else {
        run!(sea_orm::sqlx::SqliteConnection)
    }
}

/// The single integer `query` returns in `app`'s database (through a connection of its own).
pub(crate) async fn query_number(app: &TestApp, query: &str) -> i64 {
    use sea_orm::sqlx::{AssertSqlSafe, Connection, query_scalar};
    let url = app.settings.database_url();
    macro_rules! run {
        ($conn:ty) => {{
            let mut conn = <$conn>::connect(&url).await.unwrap();
            query_scalar(AssertSqlSafe(query.to_owned()))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }};
    }
    if url.starts_with("postgres") {
        run!(sea_orm::sqlx::PgConnection)
    } else {
        run!(sea_orm::sqlx::SqliteConnection)
    }
}

/// A certificate authority made for one test.
pub(crate) struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub(crate) fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        Self { issuer }
    }

    /// Its certificate (PEM).
    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate and its key (PEM) for `names`, for a server or a client.
    pub(crate) fn leaf(
        &self,
        names: &[&str],
        purpose: rcgen::ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        params.extended_key_usages = vec![purpose];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for `localhost` and 127.0.0.1, and its key.
    pub(crate) fn server_leaf(&self) -> (String, String) {
        self.leaf(
            &["localhost", "127.0.0.1"],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate for `name`, and its key.
    pub(crate) fn client_leaf(&self, name: &str) -> (String, String) {
        self.leaf(&[name], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }
}
