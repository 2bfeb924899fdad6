//! Keeps a server's in-memory state (deny list, metadata cache, key ring) in step with changes
//! made by other processes on the same database: the CLI, or other replicas.
//!
//! Every change appends to `token_events` in its own transaction. The poller reads the events of a
//! sliding window (so an event whose transaction committed late is still seen), skips those it has
//! applied, and for each changed token re-reads the token's *current* state: applying is
//! idempotent and order-independent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Timestamp, TokenId};
use crate::error::Result;
use crate::issuance::caches::MetadataCache;
use crate::issuance::deny_list::DenyList;
use crate::issuance::keys::KeyManager;
use crate::store::Store;
use crate::store::events::EventKind;

/// How far back each poll looks, to catch transactions that committed after later ones.
const WINDOW: Duration = Duration::from_secs(10);

/// The poller's state.
pub struct ChangeFeed {
    store: Store,
    deny: Arc<DenyList>,
    metadata: Arc<MetadataCache>,
    keys: Arc<KeyManager>,
    /// Applied event sequence numbers, by creation time, for the window.
    applied: BTreeMap<i64, Timestamp>,
}

impl ChangeFeed {
    /// A feed that updates `deny`, `metadata` and `keys`.
    pub fn new(
        store: Store,
        deny: Arc<DenyList>,
        metadata: Arc<MetadataCache>,
        keys: Arc<KeyManager>,
    ) -> Self {
        Self {
            store,
            deny,
            metadata,
            keys,
            applied: BTreeMap::new(),
        }
    }

    /// Reads new events and applies them; returns how many were applied.
    pub async fn poll(&mut self) -> Result<usize> {
        let now = Timestamp::now();
        let since = Timestamp(now.0 - WINDOW.as_micros() as i64);
        let events = self.store.events_since(since).await?;
        let fresh: Vec<_> = events
            .into_iter()
            .filter(|e| !self.applied.contains_key(&e.seq))
            .collect();
        if fresh.is_empty() {
            self.forget_before(since);
            return Ok(0);
        }
        // Each changed token, with the latest log position seen for it: the state read below is
        // at least that recent, and the deny list ignores it if it already holds a later one.
        let mut tokens: HashMap<TokenId, i64> = HashMap::new();
        let mut keys_changed = false;
        for event in &fresh {
            match (event.kind, event.token_id) {
                (EventKind::TokenChanged, Some(id)) => {
                    let seq = tokens.entry(id).or_insert(event.seq);
                    *seq = (*seq).max(event.seq);
                }
                (EventKind::TokenChanged, None) => {}
                (EventKind::KeysChanged, _) => keys_changed = true,
            }
        }
        let ids: Vec<TokenId> = tokens.keys().copied().collect();
        for state in self.store.token_states(&ids).await? {
            self.deny.apply(&state, tokens[&state.id]);
        }
        for id in &ids {
            self.metadata.invalidate(id);
        }
        if keys_changed {
            self.keys
                .reload()
                .await
                .map_err(crate::error::Error::store)?;
        }
        for event in &fresh {
            self.applied.insert(event.seq, event.created_at);
        }
        self.forget_before(since);
        Ok(fresh.len())
    }

    fn forget_before(&mut self, since: Timestamp) {
        self.applied.retain(|_, at| *at >= since);
    }
}
