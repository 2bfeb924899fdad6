//! Configuration: one typed [`Settings`], layered defaults → TOML file (`--config`) →
//! `TOKENMINT__SECTION__KEY` environment variables (and `DATABASE_URL`) → command-line flags.
//! Every option is documented where it is declared (in [`sections`]) and in
//! `docs/configuration.md`; [`layers`] merges the sources with figment. The field types carry the
//! simple rules (an address, a count that cannot be 0), so a bad value fails while loading with
//! the option's name and source; [`Settings::validate`] keeps the rules between fields.

mod layers;
mod sections;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::domain::Environment;

pub use sections::{
    BackgroundSettings, CacheSettings, ChangeStreamSettings, DatabaseSettings, KeySettings,
    LogFormat, LogSettings, RequestSettings, ServerSettings, StatusListSettings, TelemetrySettings,
    TlsSettings, TokenSettings,
};

/// The longest `status_list.exp_secs`: a signed list replayed after this is refused.
const MAX_STATUS_LIST_EXP_SECS: u64 = 86_400;

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
    /// Token Status Lists.
    pub status_list: StatusListSettings,
    /// WatchTokenChanges streams and the change log's retention.
    pub changes: ChangeStreamSettings,
    /// Logging.
    pub log: LogSettings,
    /// Trace export.
    pub telemetry: TelemetrySettings,
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
            status_list: StatusListSettings::default(),
            changes: ChangeStreamSettings::default(),
            log: LogSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Settings {
    /// The change streams served at once: `changes.max_streams`, but at most half of
    /// `server.max_in_flight_requests` (at least 1), since each stream holds one of those slots for
    /// its whole life and unary calls must keep the rest.
    pub fn change_stream_cap(&self) -> usize {
        let half = (self.server.max_in_flight_requests.get() / 2).max(1);
        self.changes.max_streams.get().min(half)
    }

    /// Checks what the types cannot say (a count of 0, an address that is not one, … are refused
    /// while loading), with a message naming the option.
    pub fn validate(&self) -> anyhow::Result<()> {
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
            self.server.max_message_bytes >= 1024,
            "server.max_message_bytes must be at least 1024"
        );
        self.validate_status_list()?;
        anyhow::ensure!(
            self.changes.log_retention_secs.get() >= 60,
            "changes.log_retention_secs must be at least 60"
        );
        anyhow::ensure!(
            self.changes.heartbeat_ms.get() <= 10_000,
            "changes.heartbeat_ms must be at most 10000 (tokenmint-verify treats 20 s of silence \
             as a dead stream)"
        );
        if self.environment == Environment::Production {
            anyhow::ensure!(
                self.keys.master_key.is_some() || self.keys.master_key_file.is_some(),
                "production requires a configured master key: set keys.master_key (TOKENMINT__KEYS__MASTER_KEY) \
                 or keys.master_key_file"
            );
            anyhow::ensure!(
                self.status_list.base_uri.is_some(),
                "production requires status_list.base_uri (TOKENMINT__STATUS_LIST__BASE_URI): the \
                 public URL prefix every token's status list is fetched from"
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

    /// The status list rules between fields: sizes are powers of two in range, a block fits in
    /// a list, `exp` outlasts `ttl`, and the base URI is an absolute http(s) URL.
    fn validate_status_list(&self) -> anyhow::Result<()> {
        let lists = &self.status_list;
        anyhow::ensure!(
            lists.size.is_power_of_two() && (1 << 10..=1 << 20).contains(&lists.size),
            "status_list.size must be a power of two from 1024 to 1048576, not {}",
            lists.size
        );
        anyhow::ensure!(
            lists.block.is_power_of_two() && lists.block <= lists.size,
            "status_list.block must be a power of two no larger than status_list.size, not {}",
            lists.block
        );
        anyhow::ensure!(
            lists.exp_secs >= lists.ttl_secs && lists.exp_secs.get() <= MAX_STATUS_LIST_EXP_SECS,
            "status_list.exp_secs must be at least status_list.ttl_secs and at most \
             {MAX_STATUS_LIST_EXP_SECS} (a day)"
        );
        anyhow::ensure!(
            lists.render_cache_ms <= lists.ttl_secs.get().saturating_mul(1000),
            "status_list.render_cache_ms must not exceed status_list.ttl_secs"
        );
        // Tests shrink both; in production a tiny block is a write per token and no render
        // cache lets every request for a list render it.
        anyhow::ensure!(
            self.environment != Environment::Production
                || (lists.block >= 64 && lists.render_cache_ms >= 100),
            "production requires status_list.block of at least 64 and status_list.render_cache_ms \
             of at least 100"
        );
        if let Some(base) = &lists.base_uri {
            let (scheme, rest) = base.split_once("://").unwrap_or(("", ""));
            let authority = rest.split('/').next().unwrap_or("");
            anyhow::ensure!(
                matches!(scheme, "https" | "http")
                    && !authority.is_empty()
                    && !authority.starts_with(':')
                    && !authority.contains('@')
                    && !base.ends_with('/')
                    && !base.contains(['?', '#', '\\'])
                    && base.chars().all(|c| c.is_ascii_graphic()),
                "status_list.base_uri must be an http(s) URL with a host, no user information, \
                 no trailing slash, query or fragment, such as https://tokens.example.com/statuslists"
            );
            anyhow::ensure!(
                self.environment != Environment::Production
                    || scheme == "https"
                    || self.server.allow_plaintext,
                "production requires an https status_list.base_uri (or server.allow_plaintext = \
                 true, when a proxy terminates TLS)"
            );
        }
        Ok(())
    }

    /// The prefix of new status lists' URIs: `status_list.base_uri`, or in test mode the
    /// server's own `/statuslists` route at `listen` (an unspecified address read as loopback).
    pub fn status_list_base_uri(&self, listen: std::net::SocketAddr) -> String {
        if let Some(base) = &self.status_list.base_uri {
            return base.clone();
        }
        let ip = match listen.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            other => other,
        };
        let scheme = if self.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!(
            "{scheme}://{}/statuslists",
            std::net::SocketAddr::new(ip, listen.port())
        )
    }

    /// The database URL: configured, or the SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose().to_owned(),
            None => crate::store::Store::sqlite_url_in(&self.data_dir),
        }
    }
}
