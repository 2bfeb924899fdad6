//! Configuration: one typed [`Settings`], layered defaults → TOML file (`--config`) →
//! `TOKENMINT__SECTION__KEY` environment variables (and `DATABASE_URL`) → command-line flags.
//! Every option is documented where it is declared and in `docs/configuration.md`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::domain::{Environment, KeyAlgorithm};

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "TOKENMINT__";

/// A secret configuration value: never printed by `Debug` or serialised in clear.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value (for the one place that needs it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// All of tokenmint's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `test` (default) or `production`. Env `TOKENMINT__ENVIRONMENT`, flag `--environment`.
    pub environment: Environment,
    /// Directory for local files: the SQLite database and the generated master key. Default `./data`.
    pub data_dir: PathBuf,
    /// gRPC server settings.
    pub server: ServerSettings,
    /// Database settings.
    pub database: DatabaseSettings,
    /// Signing-key settings.
    pub keys: KeySettings,
    /// Token issuance and verification settings.
    pub tokens: TokenSettings,
    /// Caps on the repeated fields of one request.
    pub requests: RequestSettings,
    /// In-memory cache sizes.
    pub cache: CacheSettings,
    /// Background task intervals.
    pub background: BackgroundSettings,
    /// Logging.
    pub log: LogSettings,
    /// Trace export.
    pub telemetry: TelemetrySettings,
}

/// gRPC server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (gRPC and the HTTP JWKS route share it). Default `127.0.0.1:50051`.
    pub listen: String,
    /// Seconds to wait for in-flight RPCs at shutdown. Default 10.
    pub shutdown_grace_secs: u64,
    /// A second, plaintext HTTP listener serving only `GET /metrics` (e.g. `0.0.0.0:9464`), for
    /// scrapers that hold no client certificate. Unset (default): metrics are on `listen` only.
    pub metrics_listen: Option<String>,
    /// TLS (and, with `client_ca_file`, mutual TLS). Required in production unless
    /// `allow_plaintext` is set.
    pub tls: Option<TlsSettings>,
    /// Let a production server listen without TLS (behind a TLS-terminating sidecar). Default false.
    pub allow_plaintext: bool,
    /// Largest request message accepted, in bytes (larger: RESOURCE_EXHAUSTED). Default 1 MiB.
    pub max_message_bytes: usize,
    /// Longest time an RPC may run, in seconds; a caller's shorter `grpc-timeout` wins. Default 30.
    pub request_timeout_secs: u64,
    /// Concurrent streams a client may open on one HTTP/2 connection. Default 1024.
    pub max_concurrent_streams: u32,
    /// RPCs served at once per connection (more wait for a slot). Default 1024.
    pub concurrency_limit_per_connection: usize,
    /// gRPC requests running at once across all connections; one more is answered UNAVAILABLE at
    /// once (health checks and the HTTP routes are exempt). Default 4096.
    pub max_in_flight_requests: usize,
    /// TCP keepalive idle time, in seconds (0: off). Default 60.
    pub tcp_keepalive_secs: u64,
    /// Interval of HTTP/2 PING keepalives, in seconds (0: off). Default 30.
    pub http2_keepalive_interval_secs: u64,
    /// Seconds to wait for a PING answer before closing the connection. Default 20.
    pub http2_keepalive_timeout_secs: u64,
}

/// Server certificate, key and optional client CA, as PEM files. The files are re-read when they
/// change, so certificates can be renewed without a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) a client certificate must chain to. When set, clients without such a
    /// certificate fail the handshake (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes, in seconds. Default 10.
    #[serde(default = "default_tls_reload_secs")]
    pub reload_interval_secs: u64,
    /// How long a new connection has to complete its TLS handshake, in seconds; then it is
    /// closed. Default 5.
    #[serde(default = "default_tls_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    /// Handshakes in progress at once from one peer IP address (IPv6: one /64 network); a
    /// connection beyond it is closed at once (0: no bound). Behind a NAT or a TCP load balancer every client shares the
    /// balancer's address: raise it, or set 0 and bound connections there. Default 64.
    #[serde(default = "default_tls_handshakes_per_peer")]
    pub max_handshakes_per_peer: usize,
}

fn default_tls_reload_secs() -> u64 {
    10
}

fn default_tls_handshake_timeout_secs() -> u64 {
    5
}

fn default_tls_handshakes_per_peer() -> usize {
    64
}

/// OpenTelemetry trace export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OTLP/gRPC collector endpoint, e.g. `http://otel-collector:4317`. The standard
    /// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` variables win over it. Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// Which spans and events are exported (`RUST_LOG` syntax).
    /// Default `info,tokenmint=debug,h2=warn,hyper=warn,tonic=warn,tower=warn,sqlx=warn`.
    pub span_filter: String,
    /// Time limit of one export, in ms. Unset: `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`, else 10000.
    pub export_timeout_ms: Option<u64>,
    /// CA certificates (PEM) of an `https://` collector. `OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE`
    /// wins over it.
    pub otlp_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a collector requiring mutual TLS.
    /// `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE` wins over it.
    pub otlp_client_cert_file: Option<PathBuf>,
    /// Its private key (PEM). `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY` wins over it.
    pub otlp_client_key_file: Option<PathBuf>,
}

/// Database settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://…` or `postgres://…`; default: SQLite file `tokenmint.db` in `data_dir`.
    /// Also read from `DATABASE_URL`.
    pub url: Option<Secret>,
    /// Pool size. Default 10 (SQLite uses at most 4: it has a single writer).
    pub max_connections: u32,
    /// Seconds to wait for a connection before failing. Default 5.
    pub connect_timeout_secs: u64,
}

/// Signing-key settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeySettings {
    /// Algorithm of newly generated keys: `EdDSA` (default) or `ES256`.
    pub algorithm: KeyAlgorithm,
    /// The master key sealing private keys, as 64 hex digits. Required in production (or `master_key_file`).
    pub master_key: Option<Secret>,
    /// A file holding the master key (64 hex digits). In `test`, defaults to `data_dir/master.key`,
    /// created with mode 0600 if missing.
    pub master_key_file: Option<PathBuf>,
}

/// Token issuance and verification settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// The `iss` claim. Default `tokenmint`.
    pub issuer: String,
    /// The `aud` claim. Default `tokenmint`.
    pub audience: String,
    /// Lifetime of a token when the request gives none, in seconds. Default 30 days.
    pub default_lifetime_secs: i64,
    /// Longest lifetime, in seconds. Default 366 days.
    pub max_lifetime_secs: i64,
    /// Clock leeway for `exp`/`nbf`, in seconds. Default 5.
    pub leeway_secs: i64,
    /// A TOML scope catalog replacing the built-in one.
    pub scope_catalog_file: Option<PathBuf>,
}

/// Caps on the repeated fields of one request. A request over a cap is refused with
/// INVALID_ARGUMENT (reason `TOO_MANY_ITEMS`) before any other work, so the work a request can
/// cause stays bounded whatever its size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestSettings {
    /// IP addresses and CIDR blocks in one request (`ip_restrict`, `allowed_ips`). Default 100.
    pub max_ip_entries: usize,
    /// Spending limits in one request (`token_limits.spending_limits`). Default 100.
    pub max_spending_limits: usize,
    /// Scopes in one request (`scopes`, `token_scopes`, `required_scopes`). Default 100.
    pub max_scopes: usize,
    /// Paths of one `update_mask`. Default 20.
    pub max_mask_paths: usize,
}

/// In-memory cache sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// VerifyToken subjects whose verified signature is remembered (by hash). Default 10000
    /// (about 0.7 KiB each).
    pub verified_capacity: usize,
    /// Callers' bearer tokens whose verified signature is remembered (by hash). Default 10000.
    pub caller_capacity: usize,
    /// Tokens whose metadata VerifyToken keeps in memory, both as records and as encoded
    /// responses. Default 10000 (about 1.3 KiB + 0.5 KiB each).
    pub metadata_capacity: usize,
    /// Seconds a cached metadata entry lives at most (each token's between 3/4 of this and all
    /// of it). Default 30.
    pub metadata_ttl_secs: u64,
}

/// Background task intervals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackgroundSettings {
    /// How often to poll the change log for changes made by other processes, in ms. Default 500.
    pub change_poll_interval_ms: u64,
    /// How often pending last-used times are written, in ms. Default 1000.
    pub last_used_flush_interval_ms: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty` (default) or `json`.
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter. Default `info,sqlx=warn,sea_orm_migration=warn`. `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            environment: Environment::Test,
            data_dir: PathBuf::from("data"),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            keys: KeySettings::default(),
            tokens: TokenSettings::default(),
            requests: RequestSettings::default(),
            cache: CacheSettings::default(),
            background: BackgroundSettings::default(),
            log: LogSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            shutdown_grace_secs: 10,
            metrics_listen: None,
            tls: None,
            allow_plaintext: false,
            max_message_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_streams: 1024,
            concurrency_limit_per_connection: 1024,
            max_in_flight_requests: 4096,
            tcp_keepalive_secs: 60,
            http2_keepalive_interval_secs: 30,
            http2_keepalive_timeout_secs: 20,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 10,
            connect_timeout_secs: 5,
        }
    }
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            algorithm: KeyAlgorithm::EdDSA,
            master_key: None,
            master_key_file: None,
        }
    }
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "tokenmint".into(),
            audience: "tokenmint".into(),
            default_lifetime_secs: 30 * 86_400,
            max_lifetime_secs: 366 * 86_400,
            leeway_secs: 5,
            scope_catalog_file: None,
        }
    }
}

impl Default for RequestSettings {
    fn default() -> Self {
        Self {
            max_ip_entries: 100,
            max_spending_limits: 100,
            max_scopes: 100,
            max_mask_paths: 20,
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            verified_capacity: 10_000,
            caller_capacity: 10_000,
            metadata_capacity: 10_000,
            metadata_ttl_secs: 30,
        }
    }
}

impl Default for BackgroundSettings {
    fn default() -> Self {
        Self {
            change_poll_interval_ms: 500,
            last_used_flush_interval_ms: 1000,
        }
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            span_filter: "info,tokenmint=debug,h2=warn,hyper=warn,tonic=warn,tower=warn,sqlx=warn"
                .into(),
            export_timeout_ms: None,
            otlp_ca_file: None,
            otlp_client_cert_file: None,
            otlp_client_key_file: None,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info,sqlx=warn,sea_orm_migration=warn".into(),
        }
    }
}

impl Settings {
    /// Layers defaults, the optional TOML `file` and the environment `vars` (`TOKENMINT__A__B=v`
    /// sets `a.b`; `DATABASE_URL` sets `database.url`).
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let layer = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let layer: toml::Value = toml::from_str(&text)
                    .with_context(|| format!("invalid TOML in config file {}", path.display()))?;
                Some(layer)
            }
            None => None,
        };
        Self::from_layers(layer, vars)
    }

    /// [`Settings::load`] with the file's text given instead of its path (no file system access).
    pub fn from_toml(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let layer: toml::Value = toml::from_str(text).context("invalid TOML in config")?;
        Self::from_layers(Some(layer), vars)
    }

    /// Layers defaults, the parsed file `layer` and the environment `vars`.
    fn from_layers(
        layer: Option<toml::Value>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut merged = toml::Value::try_from(Settings::default()).context("default settings")?;
        if let Some(layer) = layer {
            merge(&mut merged, layer);
        }
        for (name, value) in vars {
            let path: Vec<String> = if name == "DATABASE_URL" {
                vec!["database".into(), "url".into()]
            } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                rest.split("__").map(|p| p.to_ascii_lowercase()).collect()
            } else {
                continue;
            };
            set_path(&mut merged, &path, env_value(&value))
                .with_context(|| format!("environment variable {name} does not name a setting"))?;
        }
        let settings: Settings = merged.try_into().context("invalid configuration")?;
        Ok(settings)
    }

    /// Checks values that parse but make no sense, with a message naming the option.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        anyhow::ensure!(
            self.tokens.max_lifetime_secs > 0,
            "tokens.max_lifetime_secs must be positive"
        );
        anyhow::ensure!(
            self.tokens.default_lifetime_secs > 0,
            "tokens.default_lifetime_secs must be positive"
        );
        anyhow::ensure!(
            self.tokens.default_lifetime_secs <= self.tokens.max_lifetime_secs,
            "tokens.default_lifetime_secs must not exceed tokens.max_lifetime_secs"
        );
        anyhow::ensure!(
            self.tokens.leeway_secs >= 0,
            "tokens.leeway_secs must not be negative"
        );
        anyhow::ensure!(
            !self.tokens.issuer.is_empty(),
            "tokens.issuer must not be empty"
        );
        anyhow::ensure!(
            !self.tokens.audience.is_empty(),
            "tokens.audience must not be empty"
        );
        anyhow::ensure!(
            self.database.max_connections > 0,
            "database.max_connections must be positive"
        );
        anyhow::ensure!(
            self.server.max_message_bytes >= 1024,
            "server.max_message_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.server.request_timeout_secs > 0,
            "server.request_timeout_secs must be positive"
        );
        anyhow::ensure!(
            self.server.max_concurrent_streams > 0
                && self.server.concurrency_limit_per_connection > 0
                && self.server.max_in_flight_requests > 0,
            "server.max_concurrent_streams, server.concurrency_limit_per_connection and \
             server.max_in_flight_requests must be positive"
        );
        anyhow::ensure!(
            self.requests.max_ip_entries > 0
                && self.requests.max_spending_limits > 0
                && self.requests.max_scopes > 0
                && self.requests.max_mask_paths > 0,
            "requests.max_ip_entries, requests.max_spending_limits, requests.max_scopes and \
             requests.max_mask_paths must be positive"
        );
        anyhow::ensure!(
            self.background.change_poll_interval_ms > 0
                && self.background.last_used_flush_interval_ms > 0,
            "background.change_poll_interval_ms and background.last_used_flush_interval_ms \
             must be positive"
        );
        if let Some(tls) = &self.server.tls {
            anyhow::ensure!(
                tls.reload_interval_secs > 0,
                "server.tls.reload_interval_secs must be positive"
            );
            anyhow::ensure!(
                tls.handshake_timeout_secs > 0,
                "server.tls.handshake_timeout_secs must be positive"
            );
        }
        if self.environment == Environment::Production {
            anyhow::ensure!(
                self.keys.master_key.is_some() || self.keys.master_key_file.is_some(),
                "production requires a configured master key: set keys.master_key (TOKENMINT__KEYS__MASTER_KEY) \
                 or keys.master_key_file"
            );
        }
        Ok(())
    }

    /// [`Settings::validate`], plus what only a server needs: production listens with TLS unless
    /// `server.allow_plaintext` says a proxy terminates it.
    pub fn validate_server(&self) -> anyhow::Result<()> {
        self.validate()?;
        anyhow::ensure!(
            self.environment != Environment::Production
                || self.server.tls.is_some()
                || self.server.allow_plaintext,
            "production requires TLS: set server.tls.cert_file and server.tls.key_file \
             (TOKENMINT__SERVER__TLS__CERT_FILE, TOKENMINT__SERVER__TLS__KEY_FILE), or set \
             server.allow_plaintext = true when a proxy terminates TLS"
        );
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().with_context(|| {
            format!(
                "server.listen {:?} is not an address like 127.0.0.1:50051",
                self.server.listen
            )
        })
    }

    /// The database URL: configured, or the SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose().to_owned(),
            None => crate::store::Store::sqlite_url_in(&self.data_dir),
        }
    }
}

/// Parses an environment value as a TOML value when it is one (numbers, booleans), else a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut table) => match table.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_)),
            ) => v,
            _ => toml::Value::String(raw.to_owned()),
        },
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn merge(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(base), toml::Value::Table(layer)) => {
            for (k, v) in layer {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

fn set_path(root: &mut toml::Value, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| anyhow::anyhow!("empty setting name"))?;
    let mut node = root;
    for key in parents {
        let table = node
            .as_table_mut()
            .ok_or_else(|| anyhow::anyhow!("{key} is not a section"))?;
        node = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node
        .as_table_mut()
        .ok_or_else(|| anyhow::anyhow!("{last} is not inside a section"))?;
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_validate() {
        let s = Settings::load(None, vec![]).unwrap();
        s.validate().unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:50051");
        assert_eq!(s.tokens.leeway_secs, 5);
    }

    #[test]
    fn a_zero_background_interval_is_refused() {
        for var in [
            "TOKENMINT__BACKGROUND__CHANGE_POLL_INTERVAL_MS",
            "TOKENMINT__BACKGROUND__LAST_USED_FLUSH_INTERVAL_MS",
        ] {
            let s = Settings::load(None, vars(&[(var, "0")])).unwrap();
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains("must be positive"), "{var}: {err}");
        }
    }

    #[test]
    fn request_caps_have_defaults_and_must_be_positive() {
        let s = Settings::load(None, vars(&[("TOKENMINT__REQUESTS__MAX_SCOPES", "7")])).unwrap();
        assert_eq!(s.requests.max_scopes, 7);
        assert_eq!(s.requests.max_ip_entries, 100);
        assert_eq!(s.requests.max_mask_paths, 20);
        let s =
            Settings::load(None, vars(&[("TOKENMINT__REQUESTS__MAX_IP_ENTRIES", "0")])).unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("requests.max_ip_entries"), "{err}");
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "environment = \"production\"\n[tokens]\nleeway_secs = 9\nissuer = \"a\"\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&file),
            vars(&[
                ("TOKENMINT__TOKENS__ISSUER", "b"),
                ("DATABASE_URL", "postgres://x"),
                ("OTHER", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.environment, Environment::Production);
        assert_eq!(s.tokens.leeway_secs, 9);
        assert_eq!(s.tokens.issuer, "b");
        assert_eq!(s.database_url(), "postgres://x");
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("master key"), "{err}");
    }

    #[test]
    fn the_example_configuration_is_a_valid_production_server_configuration() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/tokenmint.example.toml");
        let key = "ab".repeat(32);
        let s = Settings::load(
            Some(&example),
            vars(&[("TOKENMINT__KEYS__MASTER_KEY", key.as_str())]),
        )
        .unwrap();
        assert_eq!(s.environment, Environment::Production);
        assert!(s.server.tls.is_some());
        s.validate_server().unwrap();
    }

    #[test]
    fn the_kubernetes_configmap_holds_a_valid_production_server_configuration() {
        let manifest = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml"),
        )
        .unwrap();
        // The block scalar under `tokenmint.toml: |`, indented four spaces.
        let toml: String = manifest
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("tokenmint.toml: |"))
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
            .collect();
        assert!(toml.contains("[server]"), "found the embedded file: {toml}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokenmint.toml");
        std::fs::write(&file, toml).unwrap();
        let s = Settings::load(Some(&file), vec![]).unwrap();
        assert_eq!(s.environment, Environment::Production);
        assert!(s.server.metrics_listen.is_some());
        s.validate_server().unwrap();
    }

    #[test]
    fn production_servers_need_tls_or_an_explicit_plaintext_allowance() {
        let key = "ab".repeat(32);
        let production = [
            ("TOKENMINT__ENVIRONMENT", "production"),
            ("TOKENMINT__KEYS__MASTER_KEY", key.as_str()),
        ];
        let s = Settings::load(None, vars(&production)).unwrap();
        s.validate().expect("commands other than serve need no TLS");
        let error = s.validate_server().unwrap_err().to_string();
        assert!(error.contains("production requires TLS"), "{error}");
        let mut allowed = production.to_vec();
        allowed.push(("TOKENMINT__SERVER__ALLOW_PLAINTEXT", "true"));
        let s = Settings::load(None, vars(&allowed)).unwrap();
        s.validate_server().unwrap();
        let mut with_tls = production.to_vec();
        with_tls.push(("TOKENMINT__SERVER__TLS__CERT_FILE", "/tls/cert.pem"));
        with_tls.push(("TOKENMINT__SERVER__TLS__KEY_FILE", "/tls/key.pem"));
        let s = Settings::load(None, vars(&with_tls)).unwrap();
        let tls = s
            .server
            .tls
            .as_ref()
            .expect("nested TLS settings from the environment");
        assert_eq!(tls.reload_interval_secs, 10);
        s.validate_server().unwrap();
    }

    #[test]
    fn unknown_settings_and_bad_values_are_refused() {
        assert!(Settings::load(None, vars(&[("TOKENMINT__NOPE", "1")])).is_err());
        let s = Settings::load(None, vars(&[("TOKENMINT__SERVER__LISTEN", "nowhere")])).unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("server.listen")
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::load(None, vars(&[("TOKENMINT__KEYS__MASTER_KEY", "00ff")])).unwrap();
        assert!(!format!("{s:?}").contains("00ff"));
        assert!(!toml::to_string(&s).unwrap().contains("00ff"));
    }
}
