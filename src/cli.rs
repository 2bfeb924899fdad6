//! Operator commands (`bootstrap`, `keys`, `enterprise`, `migrate`): each acts directly on the
//! configured store, the same one `serve` uses.

use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
use crate::domain::{EnterpriseId, UserId};
use crate::grpc::requests;
use crate::issuance::Caller;
use crate::issuance::claims::RawToken;
use crate::issuance::keys;
use crate::proto::v1 as pb;
use crate::startup::{self, Core};

/// What `tokenmint bootstrap` mints.
#[derive(Debug, Clone)]
pub struct BootstrapRequest {
    /// The user the token acts for.
    pub user: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Admin rights.
    pub admin: bool,
    /// Lifetime (default: the configured default lifetime).
    pub ttl: Option<Duration>,
    /// IP restriction.
    pub ips: Vec<String>,
    /// Label.
    pub label: String,
    /// Enterprise.
    pub enterprise: Option<String>,
}

/// Mints a token directly in the store (no caller token needed) and returns the signed token.
/// All of CreateToken's validation applies, except that the operator may grant any scope.
pub async fn bootstrap(settings: &Settings, request: BootstrapRequest) -> anyhow::Result<RawToken> {
    // In test mode the token's status list URI names the configured listen address.
    let core = Core::build(
        settings,
        settings.status_list_base_uri(settings.server.listen),
    )
    .await?;
    let user =
        UserId::parse(&request.user).map_err(|e| anyhow::anyhow!("--user: {}", e.message))?;
    // The same request, parsed by the same code, as a CreateToken RPC.
    let rpc = pb::CreateTokenRequest {
        label: request.label,
        scopes: request.scopes,
        duration_seconds: request
            .ttl
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        ip_restrict: request.ips,
        enterprise_id: request.enterprise.unwrap_or_default(),
        admin: request.admin,
        ..pb::CreateTokenRequest::default()
    };
    let minter = &core.tokens.minter;
    let result = match requests::mint_request(rpc, minter.catalog(), minter.max_lifetime_secs()) {
        Ok(mint) => minter.create(&Caller::operator(user), mint).await,
        Err(e) => Err(e),
    };
    core.shutdown().await;
    let minted = result.map_err(|e| {
        let fields: Vec<String> = e
            .violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        if fields.is_empty() {
            anyhow::anyhow!("{e}")
        } else {
            anyhow::anyhow!("{e}\n  {}", fields.join("\n  "))
        }
    })?;
    Ok(minted.raw)
}

/// Makes a new signing key; running servers pick it up through the change feed. Refused when
/// the database's keys are sealed under another master key than this command's (see
/// [`startup::master_key_for`] and [`keys::rotate_offline`]).
pub async fn rotate_keys(settings: &Settings) -> anyhow::Result<String> {
    settings.validate()?;
    let store = startup::open_store(settings).await?;
    let rotated = async {
        let master = startup::master_key_for(settings, &store).await?;
        keys::rotate_offline(&store, &master, settings.keys.algorithm).await
    }
    .await;
    store.close().await;
    rotated
}

/// Lists the signing keys: `kid algorithm created_at retired_at`.
pub async fn list_keys(settings: &Settings) -> anyhow::Result<Vec<String>> {
    settings.validate()?;
    let store = startup::open_store(settings).await?;
    let keys = store.list_keys().await?;
    store.close().await;
    Ok(keys
        .into_iter()
        .map(|k| {
            let when = |t: crate::domain::Timestamp| {
                chrono::DateTime::from_timestamp(t.as_secs(), 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default()
            };
            format!(
                "{}\t{}\t{}\t{}",
                k.kid,
                k.algorithm,
                when(k.created_at),
                k.retired_at.map(when).unwrap_or_else(|| "signing".into())
            )
        })
        .collect())
}

/// The outcome of `keys retire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetiredKey {
    /// Live tokens signed by the key (non-zero only with `--force`): they no longer verify.
    pub dependent_tokens: u64,
}

/// Withdraws the key `kid`: it is deleted (private key included), leaves the JWKS, and running
/// servers stop accepting its signatures through the change feed. Refused for the current
/// signing key, and while live tokens depend on it unless `force`.
pub async fn retire_key(settings: &Settings, kid: &str, force: bool) -> anyhow::Result<RetiredKey> {
    settings.validate()?;
    let store = startup::open_store(settings).await?;
    let result = keys::retire_offline(&store, kid, force, settings.tokens.leeway_secs).await;
    store.close().await;
    Ok(RetiredKey {
        dependent_tokens: result?,
    })
}

/// TLS options of `tokenmint health`, for a server with TLS or mutual TLS.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProbeTls {
    /// CA certificate (PEM) that issued the server's certificate (implies TLS).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for a server requiring mutual TLS.
    #[arg(long, requires = "key_file")]
    pub cert_file: Option<std::path::PathBuf>,
    /// Client private key (PEM).
    #[arg(long, requires = "cert_file")]
    pub key_file: Option<std::path::PathBuf>,
    /// Name to verify the server certificate against (default: the address's host).
    #[arg(long)]
    pub server_name: Option<String>,
}

impl ProbeTls {
    /// The client TLS configuration, or `None` when no TLS option is given.
    fn client_config(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        if self.ca_file.is_none() && self.cert_file.is_none() && self.server_name.is_none() {
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca_file {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(Some(config))
    }
}

/// Adds a user to an enterprise.
pub async fn add_enterprise_member(
    settings: &Settings,
    enterprise: &str,
    user: &str,
) -> anyhow::Result<()> {
    settings.validate()?;
    let enterprise = EnterpriseId::parse(enterprise, "enterprise")
        .map_err(|e| anyhow::anyhow!("--enterprise: {}", e.message))?;
    let user = UserId::parse(user).map_err(|e| anyhow::anyhow!("--user: {}", e.message))?;
    let store = startup::open_store(settings).await?;
    store
        .add_enterprise_member(&enterprise, &user)
        .await
        .context("cannot add the member")?;
    store.close().await;
    Ok(())
}

/// Asks the gRPC health service at `addr` about `service`; fails unless it answers SERVING
/// within `timeout`.
pub async fn health_probe(
    addr: &str,
    tls: &ProbeTls,
    service: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let probe = async {
        let mut endpoint = tonic::transport::Endpoint::from_shared(addr.to_owned())
            .with_context(|| format!("invalid address {addr}"))?;
        if let Some(config) = tls.client_config()? {
            endpoint = endpoint.tls_config(config).context("invalid TLS options")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let response = HealthClient::new(channel)
            .check(request)
            .await
            .context("health check failed")?;
        let status =
            ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown);
        anyhow::ensure!(
            status == ServingStatus::Serving,
            "{addr} is {}",
            status.as_str_name()
        );
        Ok(())
    };
    tokio::time::timeout(timeout, probe)
        .await
        .map_err(|_| anyhow::anyhow!("no health answer from {addr} within {timeout:?}"))?
}

/// Validates the configuration without starting anything (the master key and the scope catalog
/// are read when configured; the database is not contacted) and returns the effective
/// configuration as TOML, secrets redacted.
pub fn check_config(settings: &Settings) -> anyhow::Result<String> {
    settings.validate_server()?;
    startup::scope_catalog(settings)?;
    if let Some(tls) = &settings.server.tls {
        crate::tls::load(tls)?;
    }
    if settings.keys.master_key.is_some() || settings.keys.master_key_file.is_some() {
        startup::master_key(settings)?;
    }
    Ok(toml::to_string_pretty(settings)?)
}

/// Applies pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    settings.validate()?;
    let store = startup::open_store(settings).await?;
    store.close().await;
    Ok(())
}
