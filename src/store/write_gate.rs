//! One write transaction at a time on SQLite, queued inside the process instead of in SQLite's
//! busy handler.
//!
//! SQLite lets one connection write at a time. A connection that finds the write lock taken waits
//! in its busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25 … up to 100 ms between attempts and
//! loses every attempt that lands while another writer holds the lock. Under CreateToken's group
//! commit, which holds the lock for most of each second, any other write (a template, a key
//! rotation, the last-used flush; RevokeToken before it joined the group commit) waited 5 ms at
//! the median and up to 130 ms under load (ARCHITECTURE.md, "The write gate"). Writers of one
//! process now take turns on a FIFO gate first, so each one starts the moment the previous one
//! commits. Writers in other processes on the same file (a second `tokenmint`, the CLI) still
//! meet SQLite's busy timeout.
//! PostgreSQL locks rows, not the database, so its writers do not take turns.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// The turn-taking of a store's write transactions; cheap to clone (clones share the queue).
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteGate(Option<Arc<Mutex<()>>>);

/// The right to write; the next writer in line gets it when this is dropped, so it must live
/// until the transaction has committed or rolled back.
#[must_use = "the turn ends when it is dropped; keep it until the transaction ends"]
pub(crate) struct WriteTurn(
    #[expect(dead_code, reason = "held for its Drop, never read")] Option<OwnedMutexGuard<()>>,
);

impl WriteGate {
    /// Writers queue, one at a time, in arrival order (SQLite).
    pub(crate) fn one_at_a_time() -> Self {
        Self(Some(Arc::new(Mutex::new(()))))
    }

    /// Writers do not wait for each other (PostgreSQL).
    pub(crate) fn open() -> Self {
        Self(None)
    }

    /// Waits for this writer's turn.
    pub(crate) async fn turn(&self) -> WriteTurn {
        match &self.0 {
            Some(gate) => WriteTurn(Some(gate.clone().lock_owned().await)),
            None => WriteTurn(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::TokenUpdate;
    use crate::domain::{ChangeKind, TokenChange};
    use crate::domain::{EnterpriseId, Label, StoredStatus, Timestamp, TokenRecord};
    use crate::store::{Store, StoreOptions, TokenWriter};

    #[tokio::test]
    async fn turns_are_taken_in_arrival_order() {
        let gate = WriteGate::one_at_a_time();
        let first = gate.turn().await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for n in 0..3 {
            let (gate, order_tx) = (gate.clone(), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = gate.turn().await;
                order_tx.send(n).unwrap();
            }));
            // Let waiter n queue before waiter n + 1 is spawned.
            tokio::task::yield_now().await;
        }
        assert!(order.try_recv().is_err(), "nobody writes during a turn");
        drop(first);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        let served: Vec<i32> = std::iter::from_fn(|| order.try_recv().ok()).collect();
        assert_eq!(served, [0, 1, 2]);
        // PostgreSQL's gate never makes anyone wait.
        let open = WriteGate::open();
        let _a = open.turn().await;
        let _b = open.turn().await;
    }

    /// Writes of every path of one process (the group commit's inserts and changes, the last-used
    /// flush, single-statement writes), all at once, on an SQLite store whose busy handler gives
    /// up at once: without turns, writers that collide fail with "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_never_meet_a_locked_database() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_connections: 4,
            connect_timeout: Duration::from_secs(5),
        };
        let store = Store::connect_sqlite_with_busy_timeout(
            &Store::sqlite_url_in(dir.path()),
            &options,
            Duration::ZERO,
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let (writer, _task) = TokenWriter::spawn(store.clone());
        let mut existing = Vec::new();
        for n in 0..48 {
            existing.push(writer.insert(TokenRecord::sample(n)).await.unwrap());
        }
        let now = Timestamp::now();
        let mut writes = tokio::task::JoinSet::<crate::error::Result<()>>::new();
        for (n, record) in existing.into_iter().enumerate() {
            let (store, writer) = (store.clone(), writer.clone());
            writes.spawn(async move {
                writer.insert(TokenRecord::sample(100 + n)).await?;
                let kind = match n % 3 {
                    0 => ChangeKind::Status {
                        from: StoredStatus::Active,
                        to: StoredStatus::Revoked,
                    },
                    1 => ChangeKind::Text(TokenUpdate {
                        label: Some(Label::parse("renamed").unwrap()),
                        description: None,
                    }),
                    _ => ChangeKind::Delete,
                };
                let change = TokenChange {
                    id: record.id,
                    user: record.user_id.clone(),
                    at: now,
                    kind,
                };
                let changed = writer.change(change).await?;
                assert!(changed.is_some(), "token {n} changed");
                store.record_last_used(&[(record.id, now, None)]).await?;
                let enterprise = EnterpriseId::parse(&format!("acme-{n}"), "enterprise_id")?;
                store
                    .add_enterprise_member(&enterprise, &record.user_id)
                    .await?;
                store.prune_events(Timestamp(0)).await?;
                Ok(())
            });
        }
        while let Some(write) = writes.join_next().await {
            write.unwrap().expect("no write fails on a locked database");
        }
    }
}
