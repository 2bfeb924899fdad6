//! The vocabulary of changes to tokens, shared by the core (which decides them and applies them
//! to its memory) and the store (which writes and reads them): a change to one token, the change
//! log's entries, a token that must not verify, and a position in a newest-first listing.

use crate::domain::{StoredStatus, Timestamp, TokenId, TokenUpdate, UserId};

/// A change to `user`'s token `id`, made at `at`. It applies only to a token of that user that
/// is not deleted (and, for a status change, still has the expected status).
#[derive(Debug, Clone)]
pub struct TokenChange {
    /// The token.
    pub id: TokenId,
    /// Its owner, who makes the change.
    pub user: UserId,
    /// When the change is made.
    pub at: Timestamp,
    /// What changes.
    pub kind: ChangeKind,
}

/// What a [`TokenChange`] changes.
#[derive(Debug, Clone)]
pub enum ChangeKind {
    /// Status `from` → `to`, only if the stored status is still `from` (compare-and-set).
    Status {
        /// The status the caller saw.
        from: StoredStatus,
        /// The new status.
        to: StoredStatus,
    },
    /// A new label and/or description.
    Text(TokenUpdate),
    /// Marks the token deleted (a tombstone that keeps id and expiry until it expires).
    Delete,
}

/// A token that must not verify although it has not expired: suspended, revoked or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedToken {
    /// The token.
    pub id: TokenId,
    /// Its stored status.
    pub status: StoredStatus,
    /// Whether it was deleted.
    pub deleted: bool,
    /// When it expires (after which it can be forgotten).
    pub expires_at: Timestamp,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A token's status, metadata or deletion.
    TokenChanged,
    /// The set of signing keys (rotation).
    KeysChanged,
}

impl EventKind {
    /// The name stored in the change log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenChanged => "token",
            Self::KeysChanged => "keys",
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Log position (unique; not necessarily visible in order across concurrent transactions).
    pub seq: i64,
    /// What changed.
    pub kind: EventKind,
    /// The token concerned, for token events.
    pub token_id: Option<TokenId>,
    /// When the change was written.
    pub created_at: Timestamp,
}

/// Where a keyset-paginated list continues: after the row with this creation time and id
/// (lists are ordered by creation time, then id, both descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    /// Creation time of the last row of the previous page.
    pub created_at: Timestamp,
    /// Id of the last row of the previous page.
    pub id: String,
}
