//! The in-memory set of tokens that must not verify although they have not expired: suspended,
//! revoked or deleted. VerifyToken decides status from here without a database round trip.
//! Entries are dropped once the token has expired (expiry alone then rejects it).

use std::collections::HashMap;
use std::sync::RwLock;

use crate::domain::DeniedToken;
use crate::domain::{StoredStatus, Timestamp, TokenId};
use crate::issuance::verifier::InactiveReason;

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

/// What the list knows of one token: its denial (none once reactivated) as of the change-log
/// position `seq` that last set it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    denial: Option<Denial>,
    expires_at: Timestamp,
    seq: i64,
    /// When this entry was set (entries without a denial are kept only for a while).
    set_at: Timestamp,
}

/// Token id → denial, for tokens that have not expired yet.
///
/// Every update names the change-log position (`seq`) of the change it reflects, and an update
/// older than the one already applied is ignored. The updates come from RPC handlers after their
/// change commits and from the change feed, and nothing orders those: an ActivateToken whose
/// handler ran late could otherwise undo the SuspendToken committed after it. The change log
/// numbers the changes of one token in commit order (a change updates the token's row before it
/// takes its position, and the row stays locked until the commit). Reactivated tokens keep an
/// entry without a denial for a while, so that a late, older suspension cannot come back.
#[derive(Debug, Default)]
pub struct DenyList {
    entries: RwLock<HashMap<TokenId, Entry>>,
}

impl DenyList {
    /// Whether (and why) `id` is denied.
    pub fn check(&self, id: &TokenId) -> Option<Denial> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .and_then(|entry| entry.denial)
    }

    /// Brings one token's entry in line with its stored state as of change-log position `seq`,
    /// unless the entry already reflects that position or a later one.
    pub fn apply(&self, state: &DeniedToken, seq: i64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.get(&state.id).is_some_and(|entry| entry.seq >= seq) {
            return;
        }
        entries.insert(
            state.id,
            Entry {
                denial: denial_of(state),
                expires_at: state.expires_at,
                seq,
                set_at: Timestamp::now(),
            },
        );
    }

    /// Replaces the whole set (start-up); the entries count as older than any change to come.
    pub fn replace_all(&self, states: &[DeniedToken]) {
        let now = Timestamp::now();
        let fresh = states
            .iter()
            .filter_map(|state| {
                let denial = denial_of(state)?;
                let entry = Entry {
                    denial: Some(denial),
                    expires_at: state.expires_at,
                    seq: i64::MIN,
                    set_at: now,
                };
                Some((state.id, entry))
            })
            .collect();
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    /// Replaces the whole set with `states`, read at change-log position `as_of` or later (after
    /// the log was pruned past what this server had read). Entries set by a later position than
    /// `as_of` meanwhile stay; earlier updates arriving late are ignored for the tokens read.
    pub fn resync(&self, states: &[DeniedToken], as_of: i64) {
        let now = Timestamp::now();
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let mut fresh: HashMap<TokenId, Entry> = entries
            .iter()
            .filter(|(_, entry)| entry.seq > as_of)
            .map(|(id, entry)| (*id, *entry))
            .collect();
        for state in states {
            let Some(denial) = denial_of(state) else {
                continue;
            };
            fresh.entry(state.id).or_insert(Entry {
                denial: Some(denial),
                expires_at: state.expires_at,
                seq: as_of,
                set_at: now,
            });
        }
        *entries = fresh;
    }

    /// Replaces the whole set with `states`, read at change-log position `as_of` or later,
    /// keeping nothing: after the log went back in time, entries set from positions past `as_of`
    /// came from a history that is gone. Updates from positions after `as_of` still apply.
    pub fn reset(&self, states: &[DeniedToken], as_of: i64) {
        let now = Timestamp::now();
        let fresh = states
            .iter()
            .filter_map(|state| {
                let entry = Entry {
                    denial: Some(denial_of(state)?),
                    expires_at: state.expires_at,
                    seq: as_of,
                    set_at: now,
                };
                Some((state.id, entry))
            })
            .collect();
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    /// Forgets entries of tokens that expired before `expired_before`, and entries without a
    /// denial set before `settled_before`; returns how many.
    pub fn prune(&self, expired_before: Timestamp, settled_before: Timestamp) -> usize {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let before = entries.len();
        entries.retain(|_, entry| {
            entry.expires_at > expired_before
                && (entry.denial.is_some() || entry.set_at >= settled_before)
        });
        before - entries.len()
    }

    /// Number of denied tokens.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|entry| entry.denial.is_some())
            .count()
    }

    /// Whether no token is denied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The denial a stored state calls for, if any.
fn denial_of(state: &DeniedToken) -> Option<Denial> {
    if state.deleted {
        return Some(Denial::Deleted);
    }
    match state.status {
        StoredStatus::Active => None,
        StoredStatus::Suspended => Some(Denial::Suspended),
        StoredStatus::Revoked => Some(Denial::Revoked),
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
        list.apply(&state(id, StoredStatus::Suspended, false, 100), 1);
        assert_eq!(list.check(&id), Some(Denial::Suspended));
        list.apply(&state(id, StoredStatus::Active, false, 100), 2);
        assert_eq!(list.check(&id), None);
        list.apply(&state(id, StoredStatus::Active, true, 100), 3);
        assert_eq!(list.check(&id), Some(Denial::Deleted));
        assert_eq!(list.len(), 1);
        assert_eq!(list.prune(Timestamp(50), Timestamp(0)), 0);
        assert_eq!(list.prune(Timestamp(100), Timestamp(0)), 1);
        assert!(list.is_empty());
    }

    /// An ActivateToken answered after the SuspendToken committed behind it must not lift the
    /// suspension (and a late suspension must not undo a later activation).
    #[test]
    fn an_update_older_than_the_applied_one_is_ignored() {
        let list = DenyList::default();
        let id = TokenId::generate();
        list.apply(&state(id, StoredStatus::Suspended, false, 100), 7);
        list.apply(&state(id, StoredStatus::Active, false, 100), 6);
        assert_eq!(list.check(&id), Some(Denial::Suspended), "older activation");
        list.apply(&state(id, StoredStatus::Suspended, false, 100), 7);
        list.apply(&state(id, StoredStatus::Active, false, 100), 8);
        assert_eq!(list.check(&id), None, "newer activation");
        list.apply(&state(id, StoredStatus::Suspended, false, 100), 7);
        assert_eq!(
            list.check(&id),
            None,
            "older suspension after the activation"
        );
        assert!(
            list.is_empty(),
            "a reactivated token is not counted as denied"
        );
    }

    /// Start-up state yields to any change; entries without a denial are forgotten once settled.
    #[test]
    fn start_up_entries_yield_and_settled_reactivations_are_pruned() {
        let list = DenyList::default();
        let (revoked, reactivated) = (TokenId::generate(), TokenId::generate());
        list.replace_all(&[
            state(revoked, StoredStatus::Revoked, false, 100),
            state(reactivated, StoredStatus::Suspended, false, 100),
        ]);
        assert_eq!(list.check(&revoked), Some(Denial::Revoked));
        list.apply(&state(reactivated, StoredStatus::Active, false, 100), 1);
        assert_eq!(list.check(&reactivated), None);
        assert_eq!(list.prune(Timestamp(0), Timestamp(0)), 0, "not settled yet");
        let later = Timestamp::now().plus_secs(1);
        assert_eq!(
            list.prune(Timestamp(0), later),
            1,
            "the reactivation settled"
        );
        assert_eq!(list.check(&revoked), Some(Denial::Revoked), "denials stay");
    }

    /// After a restore, an entry from a later position of the lost history (a revoke the backup
    /// does not hold, or a reactivation) must not outlive the reset; changes after it apply.
    #[test]
    fn a_reset_keeps_nothing_from_the_lost_history() {
        let list = DenyList::default();
        let (lost_revoke, still_revoked) = (TokenId::generate(), TokenId::generate());
        let lost_reactivation = TokenId::generate();
        list.apply(&state(lost_revoke, StoredStatus::Revoked, false, 100), 90);
        list.apply(
            &state(lost_reactivation, StoredStatus::Active, false, 100),
            91,
        );
        list.reset(
            &[
                state(still_revoked, StoredStatus::Revoked, false, 100),
                state(lost_reactivation, StoredStatus::Suspended, false, 100),
            ],
            40,
        );
        assert_eq!(list.check(&lost_revoke), None, "the restored row is active");
        assert_eq!(list.check(&still_revoked), Some(Denial::Revoked));
        assert_eq!(list.check(&lost_reactivation), Some(Denial::Suspended));
        list.apply(
            &state(lost_reactivation, StoredStatus::Active, false, 100),
            41,
        );
        assert_eq!(
            list.check(&lost_reactivation),
            None,
            "a change after the reset applies"
        );
    }
}
