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
    BackgroundSettings, CacheSettings, DatabaseSettings, KeySettings, LogFormat, LogSettings,
    RequestSettings, ServerSettings, TelemetrySettings, TlsSettings, TokenSettings,
};

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

impl Settings {
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

    /// The database URL: configured, or the SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose().to_owned(),
            None => crate::store::Store::sqlite_url_in(&self.data_dir),
        }
    }
}
