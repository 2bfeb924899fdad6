//! Which status list entry a new token gets. A server reserves a block of consecutive
//! positions of a list in one database write (`Store::reserve_status_block`), then hands the
//! block's positions out from memory, each turned into an entry index by the list's keyed
//! permutation ([`IndexPermutation`]). So the index is known before the token is signed, two
//! servers never share one (their blocks differ), a group-commit batch only inserts precomputed
//! values, and indices do not reveal the order tokens were issued in. Positions of a block
//! that are never used have no token row, and read INVALID.

use std::sync::{Arc, Mutex};

use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::{StatusEntry, StatusListId};
use crate::error::{Error, Result};
use crate::issuance::status_index::IndexPermutation;
use crate::store::Store;
use crate::store::status_lists::{ReservedBlock, StatusListRow};

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
}

/// A list this server holds a block of.
#[derive(Debug)]
struct HeldList {
    id: StatusListId,
    uri: Arc<str>,
    permutation: IndexPermutation,
}

/// The positions left of the block in hand.
#[derive(Debug)]
struct Block {
    list: Arc<HeldList>,
    next: u32,
    end: u32,
}

/// Hands out status list entries to the tokens this server mints.
pub struct StatusAllocator {
    store: Store,
    policy: AllocationPolicy,
    random: SystemRandom,
    block: Mutex<BlockState>,
    /// One reservation at a time: minters that find the block empty wait for it.
    refill: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct BlockState {
    current: Option<Block>,
    /// Moves on at every [`StatusAllocator::discard_blocks`]: a reservation that was under way
    /// across one is thrown away.
    generation: u64,
}

impl StatusAllocator {
    /// An allocator reserving from `store` under `policy`; it holds no block until the first
    /// token.
    pub fn new(store: Store, policy: AllocationPolicy) -> Self {
        Self {
            store,
            policy,
            random: SystemRandom::new(),
            block: Mutex::new(BlockState::default()),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// The next entry for a new token; reserves a block first when the one in hand is used up
    /// (one database write per `block` tokens).
    pub async fn allocate(&self) -> Result<Allocation> {
        loop {
            if let Some(allocation) = self.take() {
                return Ok(allocation);
            }
            let _refill = self.refill.lock().await;
            if let Some(allocation) = self.take() {
                return Ok(allocation);
            }
            let generation = self.state().generation;
            let reserved = self
                .store
                .reserve_status_block(self.policy.block, self.fresh_list()?)
                .await?;
            let block = Self::block_of(reserved)?;
            let mut state = self.state();
            if state.generation == generation {
                state.current = Some(block);
            }
        }
    }

    /// Drops the block in hand and any reservation under way, so that the next token reserves
    /// anew. Called after the database went back in time (a restore), once its open lists are
    /// closed: the block may hold positions the restored counter hands out again.
    pub fn discard_blocks(&self) {
        let mut state = self.state();
        state.current = None;
        state.generation += 1;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BlockState> {
        self.block
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next position of the block in hand, as an allocation.
    fn take(&self) -> Option<Allocation> {
        let mut state = self.state();
        let block = state.current.as_mut()?;
        while block.next < block.end {
            let position = block.next;
            block.next += 1;
            // A block lies inside its list, so every position has an index.
            let Some(index) = block.list.permutation.index_of(u64::from(position)) else {
                continue;
            };
            let index = u32::try_from(index).ok()?;
            return Some(Allocation {
                entry: StatusEntry {
                    list: block.list.id.clone(),
                    index,
                },
                uri: block.list.uri.clone(),
            });
        }
        state.current = None;
        None
    }

    /// A list to open if no open list has room: random id and permutation key.
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

    fn block_of(reserved: ReservedBlock) -> Result<Block> {
        let list = reserved.list;
        if reserved
            .start
            .checked_add(reserved.len)
            .is_none_or(|end| end > list.size)
        {
            return Err(Error::internal(format!(
                "status list {} handed out a block past its end",
                list.id
            )));
        }
        Ok(Block {
            list: Arc::new(HeldList {
                permutation: IndexPermutation::new(
                    &list.perm_key,
                    list.id.as_str().as_bytes(),
                    u64::from(list.size),
                ),
                uri: list.uri.into(),
                id: list.id,
            }),
            next: reserved.start,
            end: reserved.start + reserved.len,
        })
    }
}
