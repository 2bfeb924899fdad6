//! The token lifecycle: active ⇄ suspended; active/suspended → revoked (final); expired is final;
//! delete works in any state.

use crate::domain::{StoredStatus, TokenStatus};

/// A lifecycle RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Suspended → active.
    Activate,
    /// Active → suspended.
    Suspend,
    /// Active or suspended → revoked.
    Revoke,
    /// Any state → deleted.
    Delete,
}

impl Action {
    /// Lowercase name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Suspend => "suspend",
            Self::Revoke => "revoke",
            Self::Delete => "delete",
        }
    }
}

/// What each action would do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvailableActions {
    /// Activate is allowed.
    pub activate: bool,
    /// Suspend is allowed.
    pub suspend: bool,
    /// Revoke is allowed.
    pub revoke: bool,
    /// Delete is allowed.
    pub delete: bool,
}

/// The actions allowed in `status`.
pub fn available_actions(status: TokenStatus) -> AvailableActions {
    AvailableActions {
        activate: status == TokenStatus::Suspended,
        suspend: status == TokenStatus::Active,
        revoke: matches!(status, TokenStatus::Active | TokenStatus::Suspended),
        delete: true,
    }
}

/// The stored status `action` leads to from `status`, or `None` if it is not allowed
/// (`Delete` is handled separately: it does not change the status).
pub fn transition(status: TokenStatus, action: Action) -> Option<StoredStatus> {
    match (status, action) {
        (TokenStatus::Suspended, Action::Activate) => Some(StoredStatus::Active),
        (TokenStatus::Active, Action::Suspend) => Some(StoredStatus::Suspended),
        (TokenStatus::Active | TokenStatus::Suspended, Action::Revoke) => {
            Some(StoredStatus::Revoked)
        }
        _ => None,
    }
}

/// Status name as shown in error metadata.
pub fn status_name(status: TokenStatus) -> &'static str {
    match status {
        TokenStatus::Active => "active",
        TokenStatus::Suspended => "suspended",
        TokenStatus::Revoked => "revoked",
        TokenStatus::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_match_available_actions() {
        for status in [
            TokenStatus::Active,
            TokenStatus::Suspended,
            TokenStatus::Revoked,
            TokenStatus::Expired,
        ] {
            let available = available_actions(status);
            assert_eq!(
                transition(status, Action::Activate).is_some(),
                available.activate
            );
            assert_eq!(
                transition(status, Action::Suspend).is_some(),
                available.suspend
            );
            assert_eq!(
                transition(status, Action::Revoke).is_some(),
                available.revoke
            );
            assert!(available.delete);
        }
        assert_eq!(transition(TokenStatus::Revoked, Action::Activate), None);
        assert_eq!(transition(TokenStatus::Expired, Action::Revoke), None);
    }
}
