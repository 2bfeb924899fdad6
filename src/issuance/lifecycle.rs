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

/// Property tests of the state machine the module comment documents, over arbitrary sequences of
/// actions and passing time (a model of a token: stored status, expiry, clock).
#[cfg(test)]
mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::Timestamp;
    use crate::domain::token::effective_status;

    /// One thing that happens to a token: an RPC, or time passing.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Act(Action),
        Wait(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => prop_oneof![
                Just(Action::Activate),
                Just(Action::Suspend),
                Just(Action::Revoke),
                Just(Action::Delete),
            ]
            .prop_map(Step::Act),
            1 => (0..30i64).prop_map(Step::Wait),
        ]
    }

    fn stored() -> impl Strategy<Value = StoredStatus> {
        prop_oneof![
            Just(StoredStatus::Active),
            Just(StoredStatus::Suspended),
            Just(StoredStatus::Revoked),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn no_sequence_leaves_a_final_state_or_reenables_without_activate(
            start in stored(),
            expires_at in 0..100i64,
            steps in vec(step(), 0..40),
        ) {
            let expires_at = Timestamp(expires_at);
            let (mut stored, mut now) = (start, Timestamp(0));
            for step in steps {
                let before = effective_status(stored, expires_at, now);
                let action = match step {
                    Step::Wait(secs) => {
                        now = Timestamp(now.0 + secs);
                        let after = effective_status(stored, expires_at, now);
                        // Time alone only expires what is active or suspended.
                        prop_assert!(
                            after == before
                                || (after == TokenStatus::Expired
                                    && matches!(before, TokenStatus::Active | TokenStatus::Suspended)),
                            "time turned {before:?} into {after:?}"
                        );
                        continue;
                    }
                    Step::Act(action) => action,
                };
                let available = available_actions(before);
                let next = transition(before, action);
                match action {
                    Action::Activate => {
                        prop_assert_eq!(next.is_some(), available.activate);
                    }
                    Action::Suspend => {
                        prop_assert_eq!(next.is_some(), available.suspend);
                    }
                    Action::Revoke => {
                        prop_assert_eq!(next.is_some(), available.revoke);
                    }
                    // Delete works in any state and does not change the status.
                    Action::Delete => {
                        prop_assert!(available.delete);
                        prop_assert_eq!(next, None);
                    }
                }
                if matches!(before, TokenStatus::Revoked | TokenStatus::Expired) {
                    prop_assert_eq!(next, None, "{:?} of a {:?} token", action, before);
                }
                match (action, next) {
                    (Action::Activate, Some(to)) => {
                        prop_assert_eq!(before, TokenStatus::Suspended);
                        prop_assert_eq!(to, StoredStatus::Active);
                    }
                    (Action::Suspend, Some(to)) => {
                        prop_assert_eq!(before, TokenStatus::Active);
                        prop_assert_eq!(to, StoredStatus::Suspended);
                    }
                    (Action::Revoke, Some(to)) => {
                        prop_assert!(matches!(before, TokenStatus::Active | TokenStatus::Suspended));
                        prop_assert_eq!(to, StoredStatus::Revoked);
                    }
                    _ => {}
                }
                if let Some(to) = next {
                    stored = to;
                }
                let after = effective_status(stored, expires_at, now);
                if matches!(before, TokenStatus::Revoked | TokenStatus::Expired) {
                    prop_assert_eq!(after, before, "left a final state");
                }
                if after == TokenStatus::Active && before != TokenStatus::Active {
                    prop_assert_eq!(action, Action::Activate);
                    prop_assert_eq!(before, TokenStatus::Suspended);
                }
            }
        }
    }
}
