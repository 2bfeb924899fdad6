//! The in-memory set of tokens that must not verify although they have not expired: suspended,
//! revoked or deleted. VerifyToken decides status from here without a database round trip.
//! Entries are dropped once the token has expired (expiry alone then rejects it).

use std::collections::HashMap;
use std::sync::RwLock;

use crate::domain::{StoredStatus, Timestamp, TokenId};
use crate::issuance::verifier::InactiveReason;
use crate::store::DeniedToken;

/// Why a token is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Suspended (may come back).
    Suspended,
    /// Revoked for good.
    Revoked,
    /// Deleted for good.
    Deleted,
}

impl Denial {
    /// The VerifyToken reason for this denial.
    pub fn reason(self) -> InactiveReason {
        match self {
            Self::Suspended => InactiveReason::Suspended,
            Self::Revoked => InactiveReason::Revoked,
            Self::Deleted => InactiveReason::UnknownToken,
        }
    }
}

/// Token id → denial, for tokens that have not expired yet.
#[derive(Debug, Default)]
pub struct DenyList {
    entries: RwLock<HashMap<TokenId, (Denial, Timestamp)>>,
}

impl DenyList {
    /// Whether (and why) `id` is denied.
    pub fn check(&self, id: &TokenId) -> Option<Denial> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|(d, _)| *d)
    }

    /// Brings one token's entry in line with its stored state.
    pub fn apply(&self, state: &DeniedToken) {
        let denial = if state.deleted {
            Some(Denial::Deleted)
        } else {
            match state.status {
                StoredStatus::Active => None,
                StoredStatus::Suspended => Some(Denial::Suspended),
                StoredStatus::Revoked => Some(Denial::Revoked),
            }
        };
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        match denial {
            Some(d) => {
                entries.insert(state.id, (d, state.expires_at));
            }
            None => {
                entries.remove(&state.id);
            }
        }
    }

    /// Replaces the whole set (start-up).
    pub fn replace_all(&self, states: &[DeniedToken]) {
        let mut fresh = HashMap::with_capacity(states.len());
        for state in states {
            let denial = if state.deleted {
                Denial::Deleted
            } else {
                match state.status {
                    StoredStatus::Active => continue,
                    StoredStatus::Suspended => Denial::Suspended,
                    StoredStatus::Revoked => Denial::Revoked,
                }
            };
            fresh.insert(state.id, (denial, state.expires_at));
        }
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    /// Forgets entries of tokens that expired before `now`.
    pub fn prune(&self, now: Timestamp) -> usize {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let before = entries.len();
        entries.retain(|_, (_, expires_at)| *expires_at > now);
        before - entries.len()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: TokenId, status: StoredStatus, deleted: bool, exp: i64) -> DeniedToken {
        DeniedToken {
            id,
            status,
            deleted,
            expires_at: Timestamp(exp),
        }
    }

    #[test]
    fn apply_tracks_the_latest_state_and_prune_forgets_expired() {
        let list = DenyList::default();
        let id = TokenId::generate();
        list.apply(&state(id, StoredStatus::Suspended, false, 100));
        assert_eq!(list.check(&id), Some(Denial::Suspended));
        list.apply(&state(id, StoredStatus::Active, false, 100));
        assert_eq!(list.check(&id), None);
        list.apply(&state(id, StoredStatus::Active, true, 100));
        assert_eq!(list.check(&id), Some(Denial::Deleted));
        assert_eq!(list.prune(Timestamp(50)), 0);
        assert_eq!(list.prune(Timestamp(100)), 1);
        assert!(list.is_empty());
    }
}
