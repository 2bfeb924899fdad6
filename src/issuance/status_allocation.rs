//! Which status list entry a new token gets.
//!
//! Each server process fills lists of its own: it opens a list (random id and permutation key,
//! its own random owner name), reserves its positions a block at a time, and hands them out
//! from memory, each turned into an entry index by the list's keyed permutation
//! ([`IndexPermutation`]). So the index is known before the token is signed, two servers never
//! share one (they never share a list), a group-commit batch only inserts precomputed values,
//! and indices do not reveal the order tokens were issued in. Positions that are never used
//! have no token row, and read INVALID.
//!
//! A block is reserved by a compare-and-set on the list's counter, which must stand where this
//! process's last reservation ended (`Store::extend_status_list`). Only a database restored
//! from a backup moves it otherwise; then the positions after the restored counter may belong
//! to tokens the restore lost, so the list is dropped and a new one opened: an index is never
//! handed out twice, even when nobody noticed the restore. The next block is reserved in the
//! background once half of the current one is used, so minting does not wait for the database.

use std::sync::{Arc, Mutex};

use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::{StatusEntry, StatusListId};
use crate::error::{Error, Result};
use crate::issuance::status_index::IndexPermutation;
use crate::store::Store;
use crate::store::status_lists::StatusListRow;

/// Bits per entry of every list tokenmint opens: VALID, INVALID and SUSPENDED need two.
pub const STATUS_BITS: u8 = 2;

/// How lists are opened and blocks reserved.
#[derive(Debug, Clone)]
pub struct AllocationPolicy {
    /// The prefix of new lists' URIs (`<base_uri>/<id>`).
    pub base_uri: String,
    /// Entries per new list (a power of two).
    pub list_size: u32,
    /// Positions per reservation (a power of two, at most `list_size`).
    pub block: u32,
}

/// A new token's entry, and the URI its `status` claim names.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// The list and index, stored with the token.
    pub entry: StatusEntry,
    /// The list's URI.
    pub uri: Arc<str>,
    /// The position the index was made from (for the group commit's bitmap of committed
    /// positions; never shown to anyone).
    pub position: u32,
}

/// A list this process fills.
#[derive(Debug)]
struct HeldList {
    id: StatusListId,
    uri: Arc<str>,
    size: u32,
    permutation: IndexPermutation,
}

/// The positions `[next, end)` of a list, reserved and not handed out yet.
#[derive(Debug)]
struct Reserved {
    list: Arc<HeldList>,
    next: u32,
    end: u32,
}

#[derive(Debug, Default)]
struct State {
    /// The list positions are handed out from.
    current: Option<Reserved>,
    /// A list opened ahead, because the current one is full: used once it runs out.
    following: Option<Reserved>,
    /// A background reservation is under way.
    refilling: bool,
}

/// Clears [`State::refilling`] when the background reservation ends, however it ends.
struct Refilling<'a>(&'a StatusAllocator);

impl Drop for Refilling<'_> {
    fn drop(&mut self) {
        self.0.lock().refilling = false;
    }
}

/// Hands out status list entries to the tokens this server mints.
pub struct StatusAllocator {
    store: Store,
    policy: AllocationPolicy,
    /// This process's name on the lists it opens.
    owner: String,
    random: SystemRandom,
    state: Mutex<State>,
    /// One reservation at a time.
    refill: tokio::sync::Mutex<()>,
}

impl StatusAllocator {
    /// An allocator reserving from `store` under `policy`; it opens its first list at the
    /// first token.
    pub fn new(store: Store, policy: AllocationPolicy) -> Self {
        Self {
            store,
            policy,
            owner: StatusListId::generate().to_string(),
            random: SystemRandom::new(),
            state: Mutex::new(State::default()),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// The next entry for a new token. Waits for the database only when no reserved position
    /// is left (the first token, or a background reservation that has not finished).
    pub async fn allocate(self: &Arc<Self>) -> Result<Allocation> {
        loop {
            let (taken, refill_now) = {
                let mut state = self.lock();
                let taken = Self::take(&mut state);
                let low = state.following.is_none()
                    && state.current.as_ref().is_none_or(|r| self.is_low(r));
                let refill_now = taken.is_some() && low && !state.refilling;
                if refill_now {
                    state.refilling = true;
                }
                (taken, refill_now)
            };
            if refill_now {
                let allocator = self.clone();
                tokio::spawn(async move {
                    let refilling = Refilling(&allocator);
                    if let Err(error) = refilling.0.reserve().await {
                        tracing::warn!(%error, "could not reserve status list entries ahead");
                    }
                });
            }
            if let Some(allocation) = taken {
                return Ok(allocation);
            }
            self.reserve().await?;
        }
    }

    /// Whether at most half a block is left: time to reserve the next one.
    fn is_low(&self, reserved: &Reserved) -> bool {
        u64::from(reserved.end - reserved.next) * 2 <= u64::from(self.policy.block)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next reserved position, as an allocation; moves on to the following list when the
    /// current one runs out. A used-up current list without a following one stays, so that the
    /// next reservation extends it rather than opening another list.
    fn take(state: &mut State) -> Option<Allocation> {
        loop {
            let reserved = state.current.as_mut()?;
            if reserved.next < reserved.end {
                let position = reserved.next;
                reserved.next += 1;
                // A reservation lies inside its list, so every position has an index.
                let index = reserved.list.permutation.index_of(u64::from(position))?;
                return Some(Allocation {
                    entry: StatusEntry {
                        list: reserved.list.id.clone(),
                        index: u32::try_from(index).ok()?,
                    },
                    uri: reserved.list.uri.clone(),
                    position,
                });
            }
            state.current = Some(state.following.take()?);
        }
    }

    /// Reserves one more block: in the current list if it has room and its counter is where
    /// this process left it, else in a new list. Does nothing if a block is already ahead.
    async fn reserve(&self) -> Result<()> {
        let _one_at_a_time = self.refill.lock().await;
        let block = self.policy.block;
        let extendable = {
            let state = self.lock();
            if state.following.is_some() {
                return Ok(());
            }
            match &state.current {
                Some(r) if !self.is_low(r) => return Ok(()),
                Some(r)
                    if r.end
                        .checked_add(block)
                        .is_some_and(|end| end <= r.list.size) =>
                {
                    Some((r.list.clone(), r.end))
                }
                _ => None,
            }
        };
        if let Some((list, end)) = extendable {
            if self
                .store
                .extend_status_list(&list.id, &self.owner, end, block)
                .await?
            {
                let mut state = self.lock();
                if let Some(current) = state.current.as_mut().filter(|r| r.list.id == list.id) {
                    current.end = end + block;
                }
                return Ok(());
            }
            tracing::warn!(
                list = %list.id,
                "this server's status list counter moved under it (a database restored from a \
                 backup?): its remaining positions are dropped and a new list opens"
            );
            self.lock().current = None;
        }
        let fresh = self.fresh_list()?;
        self.store
            .open_status_list(&fresh, &self.owner, block)
            .await?;
        let reserved = Reserved {
            list: Arc::new(HeldList {
                permutation: IndexPermutation::new(
                    &fresh.perm_key,
                    fresh.id.as_str().as_bytes(),
                    u64::from(fresh.size),
                ),
                uri: fresh.uri.into(),
                size: fresh.size,
                id: fresh.id,
            }),
            next: 0,
            end: block,
        };
        let mut state = self.lock();
        match &state.current {
            Some(r) if r.next < r.end => state.following = Some(reserved),
            _ => state.current = Some(reserved),
        }
        Ok(())
    }

    /// A new list of this process: random id and permutation key.
    fn fresh_list(&self) -> Result<StatusListRow> {
        let id = StatusListId::generate();
        let mut perm_key = vec![0u8; 32];
        self.random
            .fill(&mut perm_key)
            .map_err(|_| Error::internal("the system random generator failed"))?;
        Ok(StatusListRow {
            uri: format!("{}/{id}", self.policy.base_uri),
            id,
            size: self.policy.list_size,
            bits: STATUS_BITS,
            perm_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    async fn allocator(dir: &std::path::Path, list_size: u32, block: u32) -> Arc<StatusAllocator> {
        let store = Store::migrated_sqlite_in(dir, 2, Duration::from_secs(5)).await;
        let policy = AllocationPolicy {
            base_uri: "https://t.example/lists".into(),
            list_size,
            block,
        };
        Arc::new(StatusAllocator::new(store, policy))
    }

    /// Without yielding between tokens, the background reservation has no chance to run: each
    /// used-up block must extend the same list, not open a new one.
    #[tokio::test]
    async fn used_up_blocks_extend_the_list_and_a_full_list_opens_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let statuses = allocator(dir.path(), 1024, 4).await;
        let mut seen = HashSet::new();
        let mut lists = Vec::new();
        for _ in 0..1030 {
            let allocation = statuses.allocate().await.unwrap();
            assert!(
                seen.insert(allocation.entry.clone()),
                "{:?} twice",
                allocation.entry
            );
            if lists.last() != Some(&allocation.entry.list) {
                lists.push(allocation.entry.list);
            }
        }
        assert_eq!(
            lists.len(),
            2,
            "one list until it is full, then the next: {lists:?}"
        );
    }

    #[tokio::test]
    async fn blocks_of_one_and_a_block_the_size_of_the_list_work() {
        let dir = tempfile::tempdir().unwrap();
        for (block, tokens) in [(1, 40), (2, 40), (1024, 1100)] {
            let statuses = allocator(dir.path(), 1024, block).await;
            let mut seen = HashSet::new();
            for _ in 0..tokens {
                let allocation = statuses.allocate().await.unwrap();
                assert!(
                    seen.insert(allocation.entry),
                    "block {block}: an entry twice"
                );
            }
        }
    }
}
