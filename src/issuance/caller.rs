//! Who is calling: the verified bearer token of an RPC, and the permission checks made against it.

use std::sync::Arc;

use crate::domain::{ScopeSet, TokenId, TokenRecord, UserId, scope};
use crate::error::{Error, Result, reason};
use crate::issuance::authority::{Bounder, Ceiling, EnterpriseBound};
use crate::issuance::verifier::VerifiedToken;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user the calling token acts for.
    pub user_id: UserId,
    /// The calling token's id; `None` for the operator CLI.
    pub token_id: Option<TokenId>,
    /// The calling token's scopes (shared with the cached verification: no copy per call).
    pub scopes: Arc<ScopeSet>,
    /// Whether the calling token is admin.
    pub admin: bool,
    /// The calling token's signed claims: its expiry, networks and enterprise bound what it
    /// mints. `None` for the operator CLI, which is bounded by nothing.
    pub token: Option<Arc<VerifiedToken>>,
    /// The calling token's stored metadata: its spending limits (in no claim) bound what it
    /// mints. `None` for the operator CLI.
    pub record: Option<Arc<TokenRecord>>,
}

impl Caller {
    /// The operator acting through the CLI (`tokenmint bootstrap`): holds every scope and admin.
    pub fn operator(user_id: UserId) -> Self {
        Self {
            user_id,
            token_id: None,
            scopes: Arc::new(ScopeSet::from_trusted([scope::ALL])),
            admin: true,
            token: None,
            record: None,
        }
    }

    /// The most this caller may give a token it mints or re-enables: its own scopes, admin,
    /// expiry, networks and enterprise as signed in its claims, and its stored spending limits
    /// (nothing bounds the operator). What was signed is the bound, not what a row says now: a
    /// database writer cannot lengthen or widen a caller by editing its row. Of the two expiries
    /// the earlier counts.
    pub fn ceiling(&self) -> Ceiling<'_> {
        let token = self.token.as_deref();
        let record = self.record.as_deref();
        let expires_at = match (token, record) {
            (Some(t), Some(r)) => Some(t.exp.min(r.expires_at)),
            (Some(t), None) => Some(t.exp),
            (None, r) => r.map(|r| r.expires_at),
        };
        Ceiling {
            by: Bounder::Caller,
            scopes: &self.scopes,
            admin: self.admin,
            expires_at,
            ips: token.map(|t| &t.ips),
            limits: record.map(|r| &r.limits),
            enterprise: match token.and_then(|t| t.enterprise.as_ref()) {
                Some(bound) => EnterpriseBound::Only(Some(bound)),
                None => EnterpriseBound::Any,
            },
            inherit_scopes: false,
        }
    }

    /// Fails with PERMISSION_DENIED (MISSING_SCOPE) unless the caller holds `needed` or `all`.
    pub fn require_scope(&self, needed: &str) -> Result<()> {
        if self.scopes.grants(needed) {
            Ok(())
        } else {
            Err(Error::denied(
                reason::MISSING_SCOPE,
                format!("this call needs a token with scope {needed:?} (or \"all\")"),
            )
            .with_meta("required_scope", needed))
        }
    }

    /// Fails unless the caller may give (or re-enable) a token with `scopes` and `admin`:
    /// it must hold every scope (or `all`), and be admin to grant admin.
    pub fn require_can_grant(&self, scopes: &ScopeSet, admin: bool) -> Result<()> {
        let missing = self.scopes.missing_from(scopes);
        if !missing.is_empty() {
            return Err(Error::denied(
                reason::SCOPE_NOT_HELD,
                format!(
                    "the calling token does not hold scope(s) {}",
                    missing.join(", ")
                ),
            )
            .with_meta("missing_scopes", missing.join(" ")));
        }
        if admin && !self.admin {
            return Err(Error::denied(
                reason::ADMIN_REQUIRED,
                "only an admin token may grant or re-enable admin rights",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &str, admin: bool) -> Caller {
        Caller {
            user_id: UserId::parse("u").unwrap(),
            token_id: None,
            scopes: Arc::new(ScopeSet::from_claim(scopes)),
            admin,
            token: None,
            record: None,
        }
    }

    #[test]
    fn grant_rules() {
        let weak = caller("user_manage wallet_view", false);
        assert!(
            weak.require_can_grant(&ScopeSet::from_claim("wallet_view"), false)
                .is_ok()
        );
        let err = weak
            .require_can_grant(&ScopeSet::from_claim("wallet_view trade_view"), false)
            .unwrap_err();
        assert_eq!(err.reason, reason::SCOPE_NOT_HELD);
        assert_eq!(
            weak.require_can_grant(&ScopeSet::from_claim("wallet_view"), true)
                .unwrap_err()
                .reason,
            reason::ADMIN_REQUIRED
        );
        assert!(
            caller("all", true)
                .require_can_grant(&ScopeSet::from_claim("trade_view"), true)
                .is_ok()
        );
        assert_eq!(
            weak.require_scope("token_introspect").unwrap_err().reason,
            reason::MISSING_SCOPE
        );
    }
}
