//! The sections of [`Settings`](super::Settings), each option documented where it is declared,
//! with its default.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;
use crate::domain::KeyAlgorithm;

/// gRPC server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (gRPC and the HTTP JWKS route share it). Default `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// Seconds to wait for in-flight RPCs at shutdown. Default 10.
    pub shutdown_grace_secs: u64,
    /// A second, plaintext HTTP listener serving only `GET /metrics` (e.g. `0.0.0.0:9464`), for
    /// scrapers that hold no client certificate. Unset (default): metrics are on `listen` only.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS (and, with `client_ca_file`, mutual TLS). Required in production unless
    /// `allow_plaintext` is set.
    pub tls: Option<TlsSettings>,
    /// Let a production server listen without TLS (behind a TLS-terminating sidecar). Default false.
    pub allow_plaintext: bool,
    /// Largest request message accepted, in bytes (larger: RESOURCE_EXHAUSTED). Default 1 MiB.
    pub max_message_bytes: usize,
    /// Longest time an RPC may run, in seconds; a caller's shorter `grpc-timeout` wins. Default 30.
    pub request_timeout_secs: NonZeroU64,
    /// Concurrent streams a client may open on one HTTP/2 connection. Default 1024.
    pub max_concurrent_streams: NonZeroU32,
    /// RPCs served at once per connection (more wait for a slot). Default 1024.
    pub concurrency_limit_per_connection: NonZeroUsize,
    /// gRPC requests running at once across all connections; one more is answered UNAVAILABLE at
    /// once (health checks and the HTTP routes are exempt). Default 4096.
    pub max_in_flight_requests: NonZeroUsize,
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
    pub reload_interval_secs: NonZeroU64,
    /// How long a new connection has to complete its TLS handshake, in seconds; then it is
    /// closed. Default 5.
    #[serde(default = "default_tls_handshake_timeout_secs")]
    pub handshake_timeout_secs: NonZeroU64,
    /// Handshakes in progress at once from one peer IP address (IPv6: one /64 network); a
    /// connection beyond it is closed at once (0: no bound). Behind a NAT or a TCP load balancer every client shares the
    /// balancer's address: raise it, or set 0 and bound connections there. Default 64.
    #[serde(default = "default_tls_handshakes_per_peer")]
    pub max_handshakes_per_peer: usize,
}

fn default_tls_reload_secs() -> NonZeroU64 {
    NonZeroU64::new(10).expect("nonzero")
}

fn default_tls_handshake_timeout_secs() -> NonZeroU64 {
    NonZeroU64::new(5).expect("nonzero")
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
    pub max_connections: NonZeroU32,
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
    pub max_ip_entries: NonZeroUsize,
    /// Spending limits in one request (`token_limits.spending_limits`). Default 100.
    pub max_spending_limits: NonZeroUsize,
    /// Scopes in one request (`scopes`, `token_scopes`, `required_scopes`). Default 100.
    pub max_scopes: NonZeroUsize,
    /// Paths of one `update_mask`. Default 20.
    pub max_mask_paths: NonZeroUsize,
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
    pub change_poll_interval_ms: NonZeroU64,
    /// How often pending last-used times are written, in ms. Default 1000.
    pub last_used_flush_interval_ms: NonZeroU64,
}

/// `TokenService.WatchTokenChanges` streams, and how long the change log they read is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeStreamSettings {
    /// Streams this server serves at once; one more is refused `RESOURCE_EXHAUSTED`
    /// (`TOO_MANY_CHANGE_STREAMS`). Each also holds one of `server.max_in_flight_requests`, so
    /// at most half of those are used for streams whatever this says
    /// (`Settings::change_stream_cap`). Default 256.
    pub max_streams: NonZeroUsize,
    /// Change batches (one per change-feed poll) a stream may have unsent before it is cut off
    /// with `ABORTED CHANGE_STREAM_TOO_SLOW` (before its first heartbeat, it re-reads the log
    /// instead, twice at most). Default 1024.
    pub max_lag: NonZeroUsize,
    /// Time between heartbeats on a stream without changes, in ms; at most 10000. Default 5000.
    pub heartbeat_ms: NonZeroU64,
    /// How long a stream waits for a client that stopped reading (HTTP/2 flow control holds
    /// its messages) before ending it, in ms; the client resumes from its last cursor. Default
    /// 30000.
    pub stalled_client_ms: NonZeroU64,
    /// How long the change log keeps an entry, in seconds: a stream can resume from a cursor
    /// that old. At least 60. Default 3600.
    pub log_retention_secs: NonZeroU64,
}

impl Default for ChangeStreamSettings {
    fn default() -> Self {
        Self {
            max_streams: NonZeroUsize::new(256).expect("nonzero"),
            max_lag: NonZeroUsize::new(1024).expect("nonzero"),
            heartbeat_ms: NonZeroU64::new(5000).expect("nonzero"),
            stalled_client_ms: NonZeroU64::new(30_000).expect("nonzero"),
            log_retention_secs: NonZeroU64::new(3600).expect("nonzero"),
        }
    }
}

/// Token Status Lists (IETF draft-ietf-oauth-status-list): every new token names an entry in a
/// list the server publishes at `GET <base_uri>/<list id>` (served as `/statuslists/<list id>` on
/// the gRPC port) and through `TokenService.GetStatusList`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusListSettings {
    /// The public URL prefix of the lists, without a trailing slash: a list's URI is
    /// `<base_uri>/<list id>`, baked into every token of the list (so it must stay reachable for
    /// as long as those tokens live; a list keeps the URI it opened with). An `http` or `https`
    /// URL. Required in production; in test mode, `http(s)://<listen address>/statuslists`.
    pub base_uri: Option<String>,
    /// Entries per list: a power of two from 1024 to 1048576. Default 131072 (32 KiB before
    /// compression at 2 bits per entry).
    pub size: u32,
    /// Positions a server reserves in one database write: a power of two, at most `size`.
    /// Default 4096.
    pub block: u32,
    /// The `ttl` claim: how many seconds a consumer may keep a list before fetching it again.
    /// Default 60.
    pub ttl_secs: NonZeroU64,
    /// How long a signed list is valid (its `exp` minus its `iat`), in seconds; at least
    /// `ttl_secs`. Default 600.
    pub exp_secs: NonZeroU64,
    /// How long this server serves a list it rendered before rendering it again, in ms (0:
    /// every request renders). Default 1000.
    pub render_cache_ms: u64,
}

impl Default for StatusListSettings {
    fn default() -> Self {
        Self {
            base_uri: None,
            size: 1 << 17,
            block: 4096,
            ttl_secs: NonZeroU64::new(60).expect("nonzero"),
            exp_secs: NonZeroU64::new(600).expect("nonzero"),
            render_cache_ms: 1000,
        }
    }
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

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            shutdown_grace_secs: 10,
            metrics_listen: None,
            tls: None,
            allow_plaintext: false,
            max_message_bytes: 1024 * 1024,
            request_timeout_secs: NonZeroU64::new(30).expect("nonzero"),
            max_concurrent_streams: NonZeroU32::new(1024).expect("nonzero"),
            concurrency_limit_per_connection: NonZeroUsize::new(1024).expect("nonzero"),
            max_in_flight_requests: NonZeroUsize::new(4096).expect("nonzero"),
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
            max_connections: NonZeroU32::new(10).expect("nonzero"),
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
            max_ip_entries: NonZeroUsize::new(100).expect("nonzero"),
            max_spending_limits: NonZeroUsize::new(100).expect("nonzero"),
            max_scopes: NonZeroUsize::new(100).expect("nonzero"),
            max_mask_paths: NonZeroUsize::new(20).expect("nonzero"),
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
            change_poll_interval_ms: NonZeroU64::new(500).expect("nonzero"),
            last_used_flush_interval_ms: NonZeroU64::new(1000).expect("nonzero"),
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
