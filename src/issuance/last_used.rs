//! Write-behind recording of `last_used_at` / `last_used_ip`. Successful verifications only touch
//! memory; a background task flushes the latest use of each token in one transaction per interval
//! (and once more at shutdown).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::domain::{Timestamp, TokenId};
use crate::error::Result;
use crate::store::Store;

/// Pending last-used updates, newest per token.
#[derive(Debug, Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<TokenId, (Timestamp, Option<IpAddr>)>>,
}

impl LastUsed {
    /// Notes that `id` was used at `at` from `ip`.
    pub fn record(&self, id: TokenId, at: Timestamp, ip: Option<IpAddr>) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (at, ip));
    }

    /// Number of tokens waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Writes everything pending to `store`. On failure the updates are put back (unless newer
    /// ones arrived meanwhile) for the next flush.
    pub async fn flush(&self, store: &Store) -> Result<usize> {
        let drained: Vec<(TokenId, Timestamp, Option<IpAddr>)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().map(|(id, (at, ip))| (id, at, ip)).collect()
        };
        if drained.is_empty() {
            return Ok(0);
        }
        match store.record_last_used(&drained).await {
            Ok(held) if held.is_empty() => Ok(drained.len()),
            Ok(held) => {
                // Another server was writing these rows: keep them for the next flush, unless
                // a newer use replaced them meanwhile.
                let held: HashSet<TokenId> = held.into_iter().collect();
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (id, at, ip) in drained.iter().filter(|(id, ..)| held.contains(id)) {
                    pending.entry(*id).or_insert((*at, *ip));
                }
                Ok(drained.len() - held.len())
            }
            Err(error) => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (id, at, ip) in drained {
                    pending.entry(id).or_insert((at, ip));
                }
                Err(error)
            }
        }
    }
}
