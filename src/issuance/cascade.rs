//! The cascading revoke (RevokeToken with `cascade`): a walk down a token's tree of descendants
//! that revokes every one still valid.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::{ChangeKind, DeniedToken, TokenChange};
use crate::domain::{StoredStatus, Timestamp, TokenId, TokenRecord, TokenStatus, UserId};
use crate::error::{Error, ErrorCode, Result, reason};
use crate::issuance::changes::ChangeCommitter;
use crate::store::Store;

/// Children of a token are read and revoked this many at a time.
pub(crate) const CASCADE_PAGE: u64 = 500;

/// A cascading revoke's walk down a token tree (owned parts, so that it runs as its own task).
pub(crate) struct TreeRevoker {
    pub(crate) store: Store,
    pub(crate) changes: ChangeCommitter,
    pub(crate) user: UserId,
    pub(crate) now: Timestamp,
    /// Held until the walk ends, even when the RPC that started it was cancelled.
    pub(crate) _turn: CascadeTurn,
}

/// A user's turn to run a cascading revoke: a cascade walks (and re-walks) a whole tree, so
/// one user gets one walk at a time instead of as many as they can send.
pub(crate) struct CascadeTurn {
    running: Arc<Mutex<HashSet<UserId>>>,
    user: UserId,
}

impl CascadeTurn {
    /// Takes `user`'s turn, or fails with UNAVAILABLE CASCADE_IN_PROGRESS while another runs.
    pub(crate) fn take(running: &Arc<Mutex<HashSet<UserId>>>, user: &UserId) -> Result<Self> {
        let mut set = running.lock().unwrap_or_else(PoisonError::into_inner);
        if !set.insert(user.clone()) {
            return Err(Error::new(
                ErrorCode::Unavailable,
                reason::CASCADE_IN_PROGRESS,
                "a cascading revoke of this user's tokens is still running; retry when it ends",
            ));
        }
        Ok(Self {
            running: running.clone(),
            user: user.clone(),
        })
    }
}

impl Drop for CascadeTurn {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.user);
    }
}

impl TreeRevoker {
    /// Revokes every still-valid descendant of `root`, level by level; returns how many. A
    /// descendant that kept changing concurrently does not stop the walk: the others are revoked
    /// and the call then fails with CONCURRENT_CHANGE (a repeated cascade picks it up).
    pub(crate) async fn revoke_descendants(self, root: TokenId) -> Result<u64> {
        let mut revoked = 0;
        let mut contended = 0u64;
        let mut level = vec![root];
        let mut seen = HashSet::from([root]);
        while !level.is_empty() {
            let mut next = Vec::new();
            for parents in level.chunks(CASCADE_PAGE as usize) {
                let mut after = None;
                loop {
                    let children = self
                        .store
                        .children_of(&self.user, parents, after, CASCADE_PAGE)
                        .await?;
                    let full = children.len() as u64 == CASCADE_PAGE;
                    after = children.last().map(|c| c.id);
                    let revokes = children
                        .iter()
                        .filter(|c| seen.insert(c.id))
                        .inspect(|c| next.push(c.id))
                        .filter(|c| {
                            c.deleted_at.is_none()
                                && matches!(
                                    c.status_at(self.now),
                                    TokenStatus::Active | TokenStatus::Suspended
                                )
                        })
                        .map(|c| self.revoke(c))
                        .collect::<Vec<_>>();
                    for applied in futures_util::future::join_all(revokes).await {
                        match applied {
                            Ok(applied) => revoked += u64::from(applied),
                            Err(e) if e.reason == reason::CONCURRENT_CHANGE => contended += 1,
                            Err(e) => return Err(e),
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
            level = next;
        }
        if contended > 0 {
            return Err(Error::new(
                ErrorCode::Unavailable,
                reason::CONCURRENT_CHANGE,
                format!(
                    "{revoked} descendants were revoked, but {contended} kept changing concurrently; repeat the cascading revoke"
                ),
            )
            .with_meta("descendants_revoked", revoked.to_string())
            .with_meta("descendants_contended", contended.to_string()));
        }
        Ok(revoked)
    }

    /// Revokes one descendant; `false` if it was already stopped (revoked, deleted or expired)
    /// by the time its change was applied. A concurrent change makes it re-read the token and try
    /// again, a few times at most.
    async fn revoke(&self, child: &TokenRecord) -> Result<bool> {
        let mut current = child.clone();
        for _ in 0..3 {
            let change = TokenChange {
                id: current.id,
                user: self.user.clone(),
                at: Timestamp::now(),
                kind: ChangeKind::Status {
                    from: current.status,
                    to: StoredStatus::Revoked,
                },
            };
            let denied = DeniedToken {
                id: current.id,
                status: StoredStatus::Revoked,
                deleted: false,
                expires_at: current.expires_at,
            };
            let applied = self.changes.commit(change, Some(denied)).await?;
            if applied.is_some() {
                return Ok(true);
            }
            match self.store.find_token(current.id).await? {
                Some(now)
                    if now.deleted_at.is_none()
                        && matches!(
                            now.status_at(self.now),
                            TokenStatus::Active | TokenStatus::Suspended
                        ) =>
                {
                    current = now;
                }
                _ => return Ok(false),
            }
        }
        Err(Error::new(
            ErrorCode::Unavailable,
            reason::CONCURRENT_CHANGE,
            "a descendant kept changing concurrently; repeat the cascading revoke",
        )
        .with_meta("token_id", child.id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_runs_one_cascade_at_a_time() {
        let running = Arc::default();
        let alice = UserId::parse("alice").unwrap();
        let first = CascadeTurn::take(&running, &alice).unwrap();
        let again = CascadeTurn::take(&running, &alice).map(|_| ()).unwrap_err();
        assert_eq!(again.reason, reason::CASCADE_IN_PROGRESS);
        assert!(CascadeTurn::take(&running, &UserId::parse("bob").unwrap()).is_ok());
        drop(first);
        assert!(CascadeTurn::take(&running, &alice).is_ok());
    }
}
