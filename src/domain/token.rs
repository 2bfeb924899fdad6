//! A token's stored metadata and lifecycle states.

use std::net::IpAddr;

use crate::domain::{
    Description, EnterpriseId, IpRestriction, KeyId, Label, ScopeSet, StatusEntry, TemplateId,
    Timestamp, TokenId, TokenLimits, UserId,
};

/// The status column: what an operator last did to the token. Expiry is derived from time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredStatus {
    /// Verifies (until it expires).
    Active,
    /// Disabled until activated again.
    Suspended,
    /// Disabled for good.
    Revoked,
}

impl StoredStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }

    /// Parses the database spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// The status a caller sees: the stored status, or `Expired` once the expiry time has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenStatus {
    /// Verifies.
    Active,
    /// Disabled until activated again.
    Suspended,
    /// Disabled for good.
    Revoked,
    /// Past its expiry; final.
    Expired,
}

/// Everything tokenmint keeps about a token (never the signed token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's id (`jti`).
    pub id: TokenId,
    /// The user it acts for (`sub`).
    pub user_id: UserId,
    /// Human-readable label.
    pub label: Label,
    /// Free-text description.
    pub description: Description,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Bound enterprise.
    pub enterprise_id: Option<EnterpriseId>,
    /// Allowed client networks.
    pub ip_restrict: IpRestriction,
    /// Spending limits.
    pub limits: TokenLimits,
    /// Admin rights.
    pub admin: bool,
    /// Template it was minted from.
    pub template_id: Option<TemplateId>,
    /// Version of that template; 0 when none.
    pub template_version: i64,
    /// Stored status.
    pub status: StoredStatus,
    /// Last 6 characters of the signed token.
    pub checksum: String,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Who created it.
    pub created_by: UserId,
    /// Who last changed it.
    pub updated_by: UserId,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change time.
    pub updated_at: Timestamp,
    /// Expiry time.
    pub expires_at: Timestamp,
    /// Last successful verification.
    pub last_used_at: Option<Timestamp>,
    /// Client address of the last successful verification.
    pub last_used_ip: Option<IpAddr>,
    /// Deletion time; a deleted token is a tombstone.
    pub deleted_at: Option<Timestamp>,
    /// The token that minted this one; `None` for a root token (made by the operator CLI).
    pub parent_id: Option<TokenId>,
    /// The token's entry in a status list (its `status` claim); `None` for tokens minted
    /// before status lists existed.
    pub status_entry: Option<StatusEntry>,
    /// The list position `status_entry`'s index was made from: the group commit sets its bit in
    /// the list's committed-position bitmap. Internal (it reveals issue order): never in a
    /// response. `None` for tokens minted before the bitmaps.
    pub status_position: Option<u32>,
}

impl TokenRecord {
    /// The status as seen at `now`.
    pub fn status_at(&self, now: Timestamp) -> TokenStatus {
        effective_status(self.status, self.expires_at, now)
    }

    /// A test fixture: an active `wallet_view` token of user `alice` labelled `token {n}`,
    /// with a fresh id, checksum `n` and fixed times; tests override the fields they are about.
    #[cfg(test)]
    pub(crate) fn sample(n: usize) -> Self {
        let user = UserId::parse("alice").expect("valid user id");
        Self {
            id: TokenId::generate(),
            user_id: user.clone(),
            label: Label::parse(&format!("token {n}")).expect("valid label"),
            description: Description::parse("").expect("valid description"),
            scopes: ScopeSet::from_trusted(["wallet_view"]),
            enterprise_id: None,
            ip_restrict: IpRestriction::default(),
            limits: TokenLimits::default(),
            admin: false,
            template_id: None,
            template_version: 0,
            status: StoredStatus::Active,
            checksum: format!("{n:06}"),
            key_id: KeyId::new("k1"),
            created_by: user.clone(),
            updated_by: user,
            created_at: Timestamp(1_700_000_000_000_000),
            updated_at: Timestamp(1_700_000_000_000_000),
            expires_at: Timestamp(1_800_000_000_000_000),
            last_used_at: None,
            last_used_ip: None,
            deleted_at: None,
            parent_id: None,
            status_entry: None,
            status_position: None,
        }
    }
}

/// Combines a stored status with the expiry time: revoked stays revoked, anything else past its
/// expiry is expired.
pub fn effective_status(
    stored: StoredStatus,
    expires_at: Timestamp,
    now: Timestamp,
) -> TokenStatus {
    match stored {
        StoredStatus::Revoked => TokenStatus::Revoked,
        _ if expires_at <= now => TokenStatus::Expired,
        StoredStatus::Active => TokenStatus::Active,
        StoredStatus::Suspended => TokenStatus::Suspended,
    }
}

/// A change of a token's label and description (UpdateToken), each field already valid.
#[derive(Debug, Clone, Default)]
pub struct TokenUpdate {
    /// New label, if it changes.
    pub label: Option<Label>,
    /// New description, if it changes.
    pub description: Option<Description>,
}
