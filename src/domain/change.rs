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

/// One change-log entry as it was written: a log holding another entry (or none) at `seq` is
/// not the history this mark was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntryMark {
    /// The entry's position.
    pub seq: i64,
    /// When it was written (microseconds; a position handed out again after a restore is written
    /// later, so it differs).
    pub written_at: Timestamp,
}

impl LogEntryMark {
    /// The mark of `event`.
    pub fn of(event: &ChangeEvent) -> Self {
        Self {
            seq: event.seq,
            written_at: event.created_at,
        }
    }
}

/// Where a change stream (`WatchTokenChanges`) resumes: every change at a log position up to
/// `resume_after` has been sent, and `newest` is the newest entry the sending server had
/// applied, by which a log that went back in time (a restore) is recognised. Opaque to clients:
/// base64url of a version byte and the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeCursor {
    /// Every change at or before this position was sent.
    pub resume_after: i64,
    /// The newest log entry the server had applied when it handed out the cursor (none while
    /// the log was empty).
    pub newest: Option<LogEntryMark>,
}

/// The cursor format's version byte.
const CURSOR_VERSION: u8 = 1;

impl ChangeCursor {
    /// The cursor's text form.
    pub fn encode(&self) -> String {
        use base64::Engine as _;
        let mut bytes = Vec::with_capacity(26);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.resume_after.to_be_bytes());
        if let Some(mark) = self.newest {
            bytes.push(1);
            bytes.extend_from_slice(&mark.seq.to_be_bytes());
            bytes.extend_from_slice(&mark.written_at.0.to_be_bytes());
        } else {
            bytes.push(0);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a cursor made by [`encode`](Self::encode); `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        use base64::Engine as _;
        if raw.len() > 64 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()?;
        let int = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        if bytes.first() != Some(&CURSOR_VERSION) {
            return None;
        }
        let resume_after = int(1).filter(|seq| *seq >= 0)?;
        let newest = match (bytes.get(9), bytes.len()) {
            (Some(0), 10) => None,
            (Some(1), 26) => Some(LogEntryMark {
                seq: int(10).filter(|seq| *seq > 0)?,
                written_at: Timestamp(int(18)?),
            }),
            _ => return None,
        };
        Some(Self {
            resume_after,
            newest,
        })
    }
}

/// A token's state as a change stream reports it: read after the change at `position` (the
/// token's latest log position known to the reader) committed. A consumer applies it only when
/// `position` is later than the one it holds for the token, so a state read earlier and
/// delivered later never overwrites a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStateChange {
    /// The token's state (status, deletion, expiry).
    pub token: DeniedToken,
    /// The token's latest log position the state was read after.
    pub position: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_it_was_written() {
        let marked = ChangeCursor {
            resume_after: 41,
            newest: Some(LogEntryMark {
                seq: 44,
                written_at: Timestamp(1_765_000_000_123_456),
            }),
        };
        let bare = ChangeCursor {
            resume_after: 0,
            newest: None,
        };
        for cursor in [marked, bare] {
            assert_eq!(ChangeCursor::parse(&cursor.encode()), Some(cursor));
        }
    }

    #[test]
    fn anything_but_a_cursor_is_refused() {
        let good = ChangeCursor {
            resume_after: 7,
            newest: None,
        }
        .encode();
        let mut wrong_version = good.clone();
        wrong_version.replace_range(0..1, "B");
        for raw in [
            "",
            "not a cursor",
            &good[..good.len() - 1],
            &format!("{good}AA"),
            &wrong_version,
            &"A".repeat(100),
        ] {
            assert_eq!(ChangeCursor::parse(raw), None, "{raw:?}");
        }
        use base64::Engine as _;
        let negative = [&[1u8][..], &(-5i64).to_be_bytes(), &[0]].concat();
        let negative = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(negative);
        assert_eq!(ChangeCursor::parse(&negative), None, "a negative position");
    }
}
