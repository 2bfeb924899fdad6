//! Issuance rules shared by tokens and templates: what production demands, and enterprise
//! membership.

use crate::domain::Environment;
use crate::domain::{EnterpriseId, IpRestriction, ScopeSet, UserId, scope};
use crate::error::{Error, Result, reason};
use crate::store::Store;

/// Production rules: at least one allowed network, none of them a catch-all, and never scope
/// `all`. `ips_field` and
/// `scopes_field` name the request fields for the error.
pub fn check_environment(
    environment: Environment,
    scopes: &ScopeSet,
    ips: &IpRestriction,
    scopes_field: &str,
    ips_field: &str,
) -> Result<()> {
    if environment != Environment::Production {
        return Ok(());
    }
    if ips.is_unrestricted() {
        return Err(Error::invalid(
            ips_field,
            reason::IP_RESTRICTION_REQUIRED,
            "in production tokens must be restricted to IP addresses or CIDR blocks",
        ));
    }
    if ips.is_catch_all() {
        return Err(Error::invalid(
            ips_field,
            reason::IP_RESTRICTION_REQUIRED,
            "in production a restriction may not let in every address (0.0.0.0/0, ::/0, ::ffff:0:0/96)",
        ));
    }
    if scopes.has_all() {
        return Err(Error::invalid(
            scopes_field,
            reason::SCOPE_NOT_ALLOWED,
            "scope \"all\" is not allowed in production",
        )
        .with_meta("scope", scope::ALL));
    }
    Ok(())
}

/// The rules every new or re-enabled token meets besides its caller's bounds: the
/// environment's (production: a restriction that is not a catch-all, no `all`) and membership of
/// its enterprise by the user it is minted for.
pub async fn require_issuable(
    store: &Store,
    environment: Environment,
    user: &UserId,
    scopes: &ScopeSet,
    ips: &IpRestriction,
    enterprise: Option<&EnterpriseId>,
) -> Result<()> {
    check_environment(environment, scopes, ips, "scopes", "ip_restrict")?;
    if let Some(enterprise) = enterprise {
        require_member(store, enterprise, user).await?;
    }
    Ok(())
}

/// Fails with PERMISSION_DENIED (NOT_ENTERPRISE_MEMBER) unless `user` belongs to `enterprise`.
pub async fn require_member(store: &Store, enterprise: &EnterpriseId, user: &UserId) -> Result<()> {
    if store.is_enterprise_member(enterprise, user).await? {
        return Ok(());
    }
    Err(Error::denied(
        reason::NOT_ENTERPRISE_MEMBER,
        format!("user {user} is not a member of enterprise {enterprise}"),
    )
    .with_meta("enterprise_id", enterprise.to_string()))
}

/// Fails with INVALID_ARGUMENT (INVALID_SCOPE) when no scope is given.
pub fn require_scopes(scopes: &ScopeSet, field: &str) -> Result<()> {
    if scopes.is_empty() {
        return Err(Error::invalid(
            field,
            reason::INVALID_SCOPE,
            "at least one scope is required",
        ));
    }
    Ok(())
}
