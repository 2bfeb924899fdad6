//! Publishing status lists: a list is rendered from what the database holds about it and
//! signed as a Status List Token (`typ: statuslist+jwt`) with the server's signing key.
//!
//! Fail closed: the list starts with every entry INVALID. Every position whose token committed
//! then reads VALID (the committed-position bitmaps that the group commit writes in the same
//! transaction as the token rows, `store::status_blocks`), and every suspended, revoked or
//! deleted token of the list sets its own entry (SUSPENDED or INVALID). So an index whose token
//! never committed, was deleted, revoked or lost in a restore reads INVALID; so does a deleted
//! token whose row was purged (the purge clears its bit).
//!
//! Expiry is not rendered: an entry of a token that expired while active still reads VALID.
//! A consumer checks the token's own `exp` before its status; the draft's statuses are about
//! revocation and suspension; and marking expiries would mean reading every row of the list, the
//! per-token index that the bitmaps replaced (it cost every CreateToken a random-order B-tree
//! insert). Tokens minted before the bitmaps (migration 12) are still read from their rows,
//! where an expired entry reads INVALID.
//! A consequence the draft's privacy section notes: the count of usable tokens in a list can be
//! read off it.
//!
//! A rendered list is served again for `render_cache` (one query, one compression and one
//! signature per list and period, however many consumers fetch it), so a change shows in the
//! list at most that long after it reached this server.
//!
//! The lists are public (no credentials on `GET /statuslists/{id}`), so what a stranger can make
//! the server do is bounded: an unknown id costs no query (the known ids are read again at most
//! once per second, when one is missing), renders run one at a time, and at most
//! [`MAX_WAITING`] requests wait for one, for at most [`RENDER_WAIT`]; more get
//! STATUS_LIST_BUSY.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokenmint_jwt::status_list::{
    EncodedStatusList, STATUS_LIST_TYP, StatusList, StatusListClaims, TokenStatus,
};

use crate::domain::{StatusListId, StoredStatus, Timestamp};
use crate::error::{Error, ErrorCode, Result, reason};
use crate::issuance::keys::{KeyManager, SigningKey};
use crate::issuance::status_index::IndexPermutation;
use crate::store::Store;
use crate::store::status_blocks::{is_well_formed, positions_in};
use crate::store::status_lists::{StatusListContents, StatusListRow};

/// Requests that may wait for a render at once; more are refused at once.
pub const MAX_WAITING: usize = 64;

/// How long a request waits for its turn to render.
pub const RENDER_WAIT: Duration = Duration::from_secs(5);

/// How often the known list ids may be read again when an id is missing.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How lists are signed and cached.
#[derive(Debug, Clone)]
pub struct PublishingPolicy {
    /// The `iss` claim.
    pub issuer: String,
    /// The `ttl` claim, in seconds.
    pub ttl_secs: u64,
    /// `exp - iat`, in seconds.
    pub exp_secs: u64,
    /// How long a rendered list is served again.
    pub render_cache: Duration,
}

/// A signed Status List Token.
#[derive(Debug, Clone)]
pub struct SignedStatusList {
    /// The compact JWS.
    pub token: Arc<str>,
    /// Its `ttl` claim, in seconds (for HTTP caching).
    pub ttl_secs: u64,
}

/// Renders, signs and caches status lists.
pub struct StatusListPublisher {
    store: Store,
    keys: Arc<KeyManager>,
    policy: PublishingPolicy,
    /// Lists known to exist (a list's row never changes what rendering reads).
    lists: Mutex<HashMap<StatusListId, Arc<StatusListRow>>>,
    /// When the lists were last read from the database; held while they are read again, so
    /// that misses share one read.
    lists_read_at: tokio::sync::Mutex<Option<Instant>>,
    rendered: Mutex<HashMap<StatusListId, (Instant, SignedStatusList)>>,
    /// One render at a time: concurrent requests for a list wait for one render, not one
    /// each.
    rendering: tokio::sync::Mutex<()>,
    /// Requests waiting for a render.
    waiting: tokio::sync::Semaphore,
}

impl StatusListPublisher {
    /// A publisher reading `store`, signing with `keys` under `policy`.
    pub fn new(store: Store, keys: Arc<KeyManager>, policy: PublishingPolicy) -> Self {
        Self {
            store,
            keys,
            policy,
            lists: Mutex::default(),
            lists_read_at: tokio::sync::Mutex::new(None),
            rendered: Mutex::default(),
            rendering: tokio::sync::Mutex::new(()),
            waiting: tokio::sync::Semaphore::new(MAX_WAITING),
        }
    }

    /// The signed list `id` as of at most `render_cache` ago; NOT_FOUND if there is none.
    pub async fn get(&self, id: &StatusListId) -> Result<SignedStatusList> {
        if let Some(fresh) = self.cached(id) {
            return Ok(fresh);
        }
        let busy = || {
            Error::new(
                ErrorCode::Unavailable,
                reason::STATUS_LIST_BUSY,
                "too many status list requests are waiting; retry shortly",
            )
        };
        let _waiting = self.waiting.try_acquire().map_err(|_| busy())?;
        let row = tokio::time::timeout(RENDER_WAIT, self.list(id))
            .await
            .map_err(|_| busy())??;
        let _rendering = tokio::time::timeout(RENDER_WAIT, self.rendering.lock())
            .await
            .map_err(|_| busy())?;
        if let Some(fresh) = self.cached(id) {
            return Ok(fresh);
        }
        let signed = self.render(&row).await?;
        lock(&self.rendered).insert(id.clone(), (Instant::now(), signed.clone()));
        Ok(signed)
    }

    fn cached(&self, id: &StatusListId) -> Option<SignedStatusList> {
        let rendered = lock(&self.rendered);
        let (at, signed) = rendered.get(id)?;
        (at.elapsed() < self.policy.render_cache).then(|| signed.clone())
    }

    /// The list `id`: from memory, or after reading every list again if that was not done
    /// within [`RELOAD_INTERVAL`] (a list another server opened since).
    async fn list(&self, id: &StatusListId) -> Result<Arc<StatusListRow>> {
        if let Some(row) = lock(&self.lists).get(id) {
            return Ok(row.clone());
        }
        let mut read_at = self.lists_read_at.lock().await;
        if let Some(row) = lock(&self.lists).get(id) {
            return Ok(row.clone());
        }
        if read_at.is_none_or(|at| at.elapsed() >= RELOAD_INTERVAL) {
            let rows = self.store.status_lists().await?;
            let mut known = lock(&self.lists);
            for row in rows {
                known.insert(row.id.clone(), Arc::new(row));
            }
            *read_at = Some(Instant::now());
        }
        lock(&self.lists)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::status_list_not_found(id))
    }

    /// The list as the database says now, signed.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.status_list = %row.id))]
    async fn render(&self, row: &StatusListRow) -> Result<SignedStatusList> {
        let now = Timestamp::now();
        let contents = self.store.status_list_contents(&row.id, now).await?;
        let list = entries_of(row, &contents)?;
        let iat = now.as_secs();
        let claims = StatusListClaims {
            iss: Some(self.policy.issuer.as_str().into()),
            sub: row.uri.as_str().into(),
            iat,
            exp: Some(iat.saturating_add_unsigned(self.policy.exp_secs)),
            ttl: Some(self.policy.ttl_secs),
            status_list: EncodedStatusList {
                bits: u64::from(row.bits),
                lst: list.encode().into(),
            },
        };
        let ring = self.keys.ring();
        let token = sign_status_list(&claims, &ring.signing)?;
        Ok(SignedStatusList {
            token: token.into(),
            ttl_secs: self.policy.ttl_secs,
        })
    }
}

/// The entries of list `row`: INVALID, then VALID at every committed position's index, then
/// each legacy row's and each denied row's own status (fail closed: an index no committed token
/// holds stays INVALID).
fn entries_of(row: &StatusListRow, contents: &StatusListContents) -> Result<StatusList> {
    let past_end = |index: u64| {
        Error::internal(format!(
            "a token of status list {} has index {index}, past its end",
            row.id
        ))
    };
    // Not the position in the message: positions reveal issue order.
    let corrupt_block = || {
        Error::internal(format!(
            "status list {} has a corrupt block of committed positions",
            row.id
        ))
    };
    let bytes =
        usize::try_from(u64::from(row.size) * u64::from(row.bits) / 8).map_err(Error::internal)?;
    let mut list = StatusList::filled(row.bits, bytes, TokenStatus::Invalid);
    if !contents.blocks.is_empty() {
        let permutation = IndexPermutation::new(
            &row.perm_key,
            row.id.as_str().as_bytes(),
            u64::from(row.size),
        );
        for (first_pos, bits) in &contents.blocks {
            if !is_well_formed(*first_pos) {
                return Err(corrupt_block());
            }
            for position in positions_in(*first_pos, *bits) {
                let index = permutation.index_of(position).ok_or_else(corrupt_block)?;
                list.set(
                    usize::try_from(index).map_err(Error::internal)?,
                    TokenStatus::Valid,
                );
            }
        }
    }
    // Indices are unique by construction; should two legacy rows ever share one, the entry
    // must not read VALID for a token that was revoked: it reads INVALID.
    let mut seen = vec![0u64; (row.size as usize).div_ceil(64)];
    let mut shared = Vec::new();
    for &(index, usable) in &contents.legacy {
        let slot = index as usize;
        let word = seen
            .get_mut(slot / 64)
            .ok_or_else(|| past_end(u64::from(index)))?;
        let bit = 1u64 << (slot % 64);
        if *word & bit != 0 {
            shared.push(slot);
        }
        *word |= bit;
        list.set(slot, status_of(usable));
    }
    for &(index, usable) in &contents.denied {
        let slot = index as usize;
        if slot >= row.size as usize {
            return Err(past_end(u64::from(index)));
        }
        list.set(slot, status_of(usable));
    }
    for slot in shared {
        tracing::error!(list = %row.id, index = slot, "two tokens hold one status list entry: it reads INVALID");
        list.set(slot, TokenStatus::Invalid);
    }
    Ok(list)
}

/// The entry of a token row whose usable status is `usable` (`None`: INVALID).
fn status_of(usable: Option<StoredStatus>) -> TokenStatus {
    match usable {
        Some(StoredStatus::Active) => TokenStatus::Valid,
        Some(StoredStatus::Suspended) => TokenStatus::Suspended,
        Some(StoredStatus::Revoked) | None => TokenStatus::Invalid,
    }
}

/// Signs a Status List Token: the signing key's `alg` and `kid`, `typ: statuslist+jwt`.
fn sign_status_list(claims: &StatusListClaims<'_>, key: &SigningKey) -> Result<String> {
    let header = serde_json::json!({
        "alg": key.algorithm.name(),
        "kid": key.kid,
        "typ": STATUS_LIST_TYP,
    });
    let payload = serde_json::to_vec(claims).map_err(Error::internal)?;
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block's bits with `offsets` set.
    fn mask(offsets: &[u32]) -> i64 {
        offsets
            .iter()
            .fold(0, |bits, offset| bits | (1i64 << offset))
    }

    /// A list of 8,192 entries, to span two blocks of positions.
    fn row() -> StatusListRow {
        let id = StatusListId::generate();
        StatusListRow {
            uri: format!("https://t.example/lists/{id}"),
            id,
            size: 8192,
            bits: 2,
            perm_key: vec![3; 32],
        }
    }

    /// Committed positions read VALID at their permuted indices, denied rows override them,
    /// legacy rows read as their rows say, and every other entry is INVALID.
    #[test]
    fn entries_are_the_committed_positions_overridden_by_the_denied_rows() {
        let row = row();
        let permutation = IndexPermutation::new(&row.perm_key, row.id.as_str().as_bytes(), 8192);
        let index = |position: u64| permutation.index_of(position).unwrap() as u32;
        let contents = StatusListContents {
            blocks: vec![(0, mask(&[0, 1, 2, 63])), (4096, mask(&[0]))],
            legacy: vec![(7000, Some(StoredStatus::Active)), (7001, None)],
            denied: vec![
                (index(1), Some(StoredStatus::Suspended)),
                (index(2), None),
                (7000, Some(StoredStatus::Suspended)),
            ],
        };
        let list = entries_of(&row, &contents).unwrap();
        let mut expected = vec![TokenStatus::Invalid; 8192];
        for position in [0, 63, 4096] {
            expected[index(position) as usize] = TokenStatus::Valid;
        }
        expected[index(1) as usize] = TokenStatus::Suspended;
        expected[7000] = TokenStatus::Suspended;
        let read: Vec<TokenStatus> = (0..8192).map(|i| list.get(i).unwrap()).collect();
        assert_eq!(read, expected);
    }

    /// An index past the list's end, or a malformed block, is corruption, not an entry to
    /// skip.
    #[test]
    fn an_index_past_the_end_fails_the_render() {
        let row = row();
        for contents in [
            StatusListContents {
                denied: vec![(8192, None)],
                ..StatusListContents::default()
            },
            StatusListContents {
                legacy: vec![(9000, Some(StoredStatus::Active))],
                ..StatusListContents::default()
            },
            StatusListContents {
                blocks: vec![(8192, mask(&[0]))],
                ..StatusListContents::default()
            },
            StatusListContents {
                blocks: vec![(-64, mask(&[0]))],
                ..StatusListContents::default()
            },
            StatusListContents {
                blocks: vec![(32, mask(&[0]))],
                ..StatusListContents::default()
            },
        ] {
            assert!(entries_of(&row, &contents).is_err(), "{contents:?}");
        }
    }
}
