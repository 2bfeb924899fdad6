//! Operator commands (`bootstrap`, `keys`, `enterprise`, `migrate`): each acts directly on the
//! configured store, the same one `serve` uses.

use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
use crate::domain::{EnterpriseId, UserId};
use crate::issuance::Caller;
use crate::issuance::claims::RawToken;
use crate::issuance::keys;
use crate::issuance::tokens::CreateTokenInput;
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
    let core = Core::build(settings).await?;
    let user =
        UserId::parse(&request.user).map_err(|e| anyhow::anyhow!("--user: {}", e.message))?;
    let input = CreateTokenInput {
        label: request.label,
        scopes: request.scopes,
        duration_seconds: request
            .ttl
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        ip_restrict: request.ips,
        enterprise_id: request.enterprise.unwrap_or_default(),
        admin: request.admin,
        ..CreateTokenInput::default()
    };
    let result = core.tokens.create(&Caller::operator(user), input).await;
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

/// Makes a new signing key; running servers pick it up through the change feed.
pub async fn rotate_keys(settings: &Settings) -> anyhow::Result<String> {
    settings.validate()?;
    let master = startup::master_key(settings)?;
    let store = startup::open_store(settings).await?;
    let kid = keys::rotate_offline(&store, &master, settings.keys.algorithm).await?;
    store.close().await;
    Ok(kid)
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

/// Applies pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    settings.validate()?;
    let store = startup::open_store(settings).await?;
    store.close().await;
    Ok(())
}
