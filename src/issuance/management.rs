//! Token management: reading, listing, changing and the lifecycle transitions of existing tokens
//! (GetToken, ListTokens, UpdateToken, Suspend/Activate/Revoke/DeleteToken).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tracing::Instrument;

use crate::domain::Environment;
use crate::domain::{ChangeKind, DeniedToken, TokenChange};
use crate::domain::{Timestamp, TokenId, TokenRecord, TokenStatus, TokenUpdate, UserId};
use crate::error::{Error, ErrorCode, Result, reason};
use crate::issuance::authority;
use crate::issuance::caller::Caller;
use crate::issuance::cascade::{CascadeTurn, TreeRevoker};
use crate::issuance::changes::ChangeCommitter;
use crate::issuance::lifecycle::{self, Action};
use crate::issuance::paging::{Page, Resume};
use crate::issuance::rules;
use crate::store::Store;
use crate::store::tokens::StatusFilter;

/// One page of ListTokens.
#[derive(Debug)]
pub struct TokenPage {
    /// The tokens, newest first.
    pub tokens: Vec<TokenRecord>,
    /// Token for the next page; empty when this is the last.
    pub next_page_token: String,
    /// The next page's token should the page end early, after any of `tokens`.
    pub resume: Resume,
}

/// The fields UpdateToken may change (its `update_mask` paths).
pub const UPDATABLE_FIELDS: &[&str] = &["label", "description"];

/// Manages existing tokens for their owners. Shared by the handlers behind an `Arc`.
pub struct TokenManager {
    store: Store,
    changes: ChangeCommitter,
    environment: Environment,
    leeway_secs: i64,
    /// Users with a cascading revoke running: one walk per user at a time.
    cascades: Arc<Mutex<HashSet<UserId>>>,
}

impl TokenManager {
    /// Reads from `store` and commits through `changes`; re-enabled tokens meet `environment`'s
    /// rules; tokens read as expired `leeway_secs` after their expiry.
    pub fn new(
        store: Store,
        changes: ChangeCommitter,
        environment: Environment,
        leeway_secs: i64,
    ) -> Self {
        Self {
            store,
            changes,
            environment,
            leeway_secs,
            cascades: Arc::default(),
        }
    }

    /// "Now" for judging expiry: the current time minus the clock leeway, so that a token reads
    /// EXPIRED exactly when it stops verifying (and can be revoked until then).
    pub fn expiry_clock(&self) -> Timestamp {
        Timestamp::now().plus_secs(-self.leeway_secs)
    }

    /// `caller`'s token `id`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id))]
    pub async fn get(&self, caller: &Caller, id: TokenId) -> Result<TokenRecord> {
        self.owned(caller, id).await
    }

    /// Loads `id` if it exists, is not deleted and belongs to `caller`; otherwise NOT_FOUND.
    async fn owned(&self, caller: &Caller, id: TokenId) -> Result<TokenRecord> {
        match self.store.find_token(id).await? {
            Some(record) if record.deleted_at.is_none() && record.user_id == caller.user_id => {
                Ok(record)
            }
            _ => Err(Error::token_not_found(id)),
        }
    }

    /// A page of `caller`'s tokens, newest first.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id))]
    pub async fn list(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
        status: Option<TokenStatus>,
        parent: Option<TokenId>,
    ) -> Result<TokenPage> {
        let filter = match status {
            None => StatusFilter::Any,
            Some(TokenStatus::Active) => StatusFilter::Active,
            Some(TokenStatus::Suspended) => StatusFilter::Suspended,
            Some(TokenStatus::Revoked) => StatusFilter::Revoked,
            Some(TokenStatus::Expired) => StatusFilter::Expired,
        };
        let parent_tag = parent.map(|p| p.to_string()).unwrap_or_default();
        let page = Page::parse(
            page_size,
            page_token,
            format!("tokens:{}:{parent_tag}", filter_tag(filter)),
        )?;
        let now = self.expiry_clock();
        let mut tokens = self
            .store
            .list_tokens(
                &caller.user_id,
                filter,
                parent,
                page.cursor.clone(),
                page.fetch_limit(),
                now,
            )
            .await?;
        let next_page_token = page.finish(&mut tokens, |t| (t.created_at, t.id.to_string()));
        Ok(TokenPage {
            tokens,
            next_page_token,
            resume: page.resume(),
        })
    }

    /// Changes label/description of `caller`'s token `id`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id))]
    pub async fn update(
        &self,
        caller: &Caller,
        id: TokenId,
        update: TokenUpdate,
    ) -> Result<TokenRecord> {
        let change = TokenChange {
            id,
            user: caller.user_id.clone(),
            at: Timestamp::now(),
            kind: ChangeKind::Text(update),
        };
        if self.changes.commit(change, None).await?.is_none() {
            return Err(Error::token_not_found(id));
        }
        self.owned(caller, id).await
    }

    /// Applies a lifecycle action (activate, suspend or revoke) to `caller`'s token `id`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id, action = action.as_str()))]
    pub async fn transition(
        &self,
        caller: &Caller,
        id: TokenId,
        action: Action,
    ) -> Result<TokenRecord> {
        // Compare-and-set on the stored status; a concurrent change makes us re-decide against
        // the new state (a few times at most) rather than fail with a stale reason.
        let mut attempts = 0;
        let (record, target) = loop {
            attempts += 1;
            let record = self.owned(caller, id).await?;
            let status = record.status_at(self.expiry_clock());
            let Some(target) = lifecycle::transition(status, action) else {
                return Err(invalid_transition(id, status, action));
            };
            if action == Action::Activate {
                // Re-enabling is minting again: the caller must be able to mint it today.
                authority::admits(&caller.ceiling(), &record)?;
                rules::require_issuable(
                    &self.store,
                    self.environment,
                    &caller.user_id,
                    &record.scopes,
                    &record.ip_restrict,
                    record.enterprise_id.as_ref(),
                )
                .await?;
            }
            let change = TokenChange {
                id,
                user: caller.user_id.clone(),
                at: Timestamp::now(),
                kind: ChangeKind::Status {
                    from: record.status,
                    to: target,
                },
            };
            let denied = DeniedToken {
                id,
                status: target,
                deleted: false,
                expires_at: record.expires_at,
            };
            if self.changes.commit(change, Some(denied)).await?.is_some() {
                break (record, target);
            }
            if attempts >= 3 {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    reason::CONCURRENT_CHANGE,
                    "the token kept changing concurrently; retry",
                )
                .with_meta("token_id", id.to_string()));
            }
        };
        tracing::info!(token_id = %id, action = action.as_str(), from = record.status.as_str(), to = target.as_str(), "token status changed");
        self.owned(caller, id).await
    }

    /// Deletes `caller`'s token `id` (any state): it never verifies again.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id))]
    pub async fn delete(&self, caller: &Caller, id: TokenId) -> Result<()> {
        let record = self.owned(caller, id).await?;
        let change = TokenChange {
            id,
            user: caller.user_id.clone(),
            at: Timestamp::now(),
            kind: ChangeKind::Delete,
        };
        let denied = DeniedToken {
            id,
            status: record.status,
            deleted: true,
            expires_at: record.expires_at,
        };
        if self.changes.commit(change, Some(denied)).await?.is_none() {
            return Err(Error::token_not_found(id));
        }
        tracing::info!(token_id = %id, "token deleted");
        Ok(())
    }

    /// Revokes `caller`'s token `id` (unless it is already revoked or expired) and every token
    /// descending from it. Returns the token and how many descendants this call revoked.
    ///
    /// The tree is walked breadth-first in pages of [`CASCADE_PAGE`] children, each page's revokes
    /// applied concurrently; it runs as a task of its own, so a caller who gives up does not leave
    /// the tree half revoked, and one user runs one walk at a time (CASCADE_IN_PROGRESS). Children minted during the walk are found if their parent's page
    /// has not been read yet; a repeated cascade revokes any still valid.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id))]
    pub async fn revoke_tree(&self, caller: &Caller, id: TokenId) -> Result<(TokenRecord, u64)> {
        let root = self.owned(caller, id).await?;
        let turn = CascadeTurn::take(&self.cascades, &caller.user_id)?;
        if matches!(
            root.status_at(self.expiry_clock()),
            TokenStatus::Active | TokenStatus::Suspended
        ) {
            match self.transition(caller, id, Action::Revoke).await {
                // Revoked (or expired) meanwhile: the walk goes on all the same.
                Err(e) if e.reason == reason::INVALID_TRANSITION => {}
                other => {
                    other?;
                }
            }
        }
        let walk = TreeRevoker {
            store: self.store.clone(),
            changes: self.changes.clone(),
            user: caller.user_id.clone(),
            now: self.expiry_clock(),
            _turn: turn,
        };
        let revoked = tokio::spawn(
            walk.revoke_descendants(id)
                .instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| Error::internal(format!("a cascading revoke failed: {e}")))??;
        tracing::info!(token_id = %id, descendants_revoked = revoked, "token tree revoked");
        Ok((self.owned(caller, id).await?, revoked))
    }
}

fn invalid_transition(id: TokenId, status: TokenStatus, action: Action) -> Error {
    Error::new(
        ErrorCode::FailedPrecondition,
        reason::INVALID_TRANSITION,
        format!(
            "cannot {} a token that is {}",
            action.as_str(),
            lifecycle::status_name(status)
        ),
    )
    .with_meta("token_id", id.to_string())
    .with_meta("status", lifecycle::status_name(status))
    .with_meta("action", action.as_str())
}

fn filter_tag(filter: StatusFilter) -> &'static str {
    match filter {
        StatusFilter::Any => "any",
        StatusFilter::Active => "active",
        StatusFilter::Suspended => "suspended",
        StatusFilter::Revoked => "revoked",
        StatusFilter::Expired => "expired",
    }
}
