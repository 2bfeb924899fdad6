//! Group commit for token writes. CreateToken calls from many clients (and, on SQLite, the status,
//! label and deletion changes of existing tokens) are queued to one writer task, which applies
//! whatever has queued up in a single transaction (one fsync for many writes) and then answers
//! each caller. A caller is told "created" or "changed" only after its write is committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::token_batch::BatchWriter;
use super::token_changes::{ChangeStatements, apply_alone};
use crate::domain::TokenChange;
use crate::domain::TokenRecord;
use crate::error::{Error, Result};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

/// Longest the first token of a batch waits for others to join it (see [`gather_more`]).
const GATHER_LIMIT: Duration = Duration::from_millis(2);

/// A write and where to answer once it is committed.
#[expect(
    clippy::large_enum_variant,
    reason = "inserts are nearly all the jobs; boxing their record would allocate once per create"
)]
enum Job {
    /// A new token; answered with the record.
    Insert(TokenRecord, oneshot::Sender<Result<TokenRecord>>),
    /// A change to an existing token; answered with its change-log position if it applied.
    Change(TokenChange, oneshot::Sender<Result<Option<i64>>>),
}

/// The handle CreateToken and the lifecycle RPCs use to write tokens durably.
#[derive(Debug, Clone)]
pub struct TokenWriter {
    queue: mpsc::Sender<Job>,
    store: Store,
    /// On PostgreSQL, the statements a change runs in a transaction of its own (see
    /// `token_changes`); on SQLite, `None`: changes join the batches.
    alone: Option<Arc<ChangeStatements>>,
    commits: Arc<AtomicU64>,
}

impl TokenWriter {
    /// Starts the writer task on `store`. It ends once every handle is dropped and the queue drained.
    pub fn spawn(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        let alone = (store.backend() == super::Backend::Postgres)
            .then(|| Arc::new(ChangeStatements::new(|n| format!("${n}"))));
        let commits = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(store.clone(), jobs, commits.clone()));
        (
            Self {
                queue,
                store,
                alone,
                commits,
            },
            task,
        )
    }

    /// Transactions committed so far (fewer than writes when concurrent ones share one).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Inserts `record`; returns it once it is committed.
    #[tracing::instrument(level = "debug", name = "db.insert_token", skip_all, fields(db.system.name = self.store.backend().otel_name()))]
    pub async fn insert(&self, record: TokenRecord) -> Result<TokenRecord> {
        let (done, result) = oneshot::channel();
        self.submit(Job::Insert(record, done)).await?;
        result
            .await
            .map_err(|_| Error::store("the token writer stopped before committing"))?
    }

    /// Applies `change` (with its change-log event); once it is committed, returns the event's
    /// change-log position, or `None` when it did not apply: the user has no such non-deleted
    /// token or, for a status change, the stored status is no longer the expected one.
    #[tracing::instrument(level = "debug", name = "db.change_token", skip_all, fields(db.system.name = self.store.backend().otel_name()))]
    pub async fn change(&self, change: TokenChange) -> Result<Option<i64>> {
        if let Some(statements) = &self.alone {
            return apply_alone(&self.store, statements, &change)
                .await
                .map_err(|e| super::db_error(super::from_sqlx(e)));
        }
        let (done, result) = oneshot::channel();
        self.submit(Job::Change(change, done)).await?;
        result
            .await
            .map_err(|_| Error::store("the token writer stopped before committing"))?
    }

    /// Queues `job` for the writer task.
    async fn submit(&self, job: Job) -> Result<()> {
        self.queue
            .send(job)
            .await
            .map_err(|_| Error::store("the token writer has stopped"))
    }
}

async fn run(store: Store, mut jobs: mpsc::Receiver<Job>, commits: Arc<AtomicU64>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<TokenRecord> = Vec::with_capacity(MAX_BATCH);
    let mut created = Vec::with_capacity(MAX_BATCH);
    let mut changes: Vec<TokenChange> = Vec::new();
    let mut changed = Vec::new();
    let mut writer = BatchWriter::new(store);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        gather_more(&mut jobs, &mut batch).await;
        for job in batch.drain(..) {
            match job {
                Job::Insert(record, done) => {
                    records.push(record);
                    created.push(done);
                }
                Job::Change(change, done) => {
                    changes.push(change);
                    changed.push(done);
                }
            }
        }
        let outcome = writer.write(&records, &changes).await;
        tracing::debug!(
            inserts = records.len(),
            changes = changes.len(),
            ok = outcome.is_ok(),
            "token batch committed"
        );
        changes.clear();
        match outcome {
            Ok(applied) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for (record, done) in records.drain(..).zip(created.drain(..)) {
                    let _ = done.send(Ok(record));
                }
                for (applied, done) in applied.into_iter().zip(changed.drain(..)) {
                    let _ = done.send(Ok(applied));
                }
            }
            Err(err) => {
                let error = crate::store::db_error(err);
                records.clear();
                for done in created.drain(..) {
                    let _ = done.send(Err(error.clone()));
                }
                for done in changed.drain(..) {
                    let _ = done.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Lets the requests that are already being served join this batch before it is committed: each
/// yield runs every other ready task once (a CreateToken that is signing its token queues its row
/// before the writer continues). Stops as soon as a yield brings nothing new, so an idle server
/// commits a lone token at once, and a busy one shares one commit (and one fsync) among many;
/// under a flood it stops after [`GATHER_LIMIT`] so the first caller's latency stays bounded.
async fn gather_more(jobs: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    let started = Instant::now();
    while batch.len() < MAX_BATCH && started.elapsed() < GATHER_LIMIT {
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    /// Group commit: creates that are in progress together share transactions, and every one
    /// of them is stored once its caller hears back.
    #[tokio::test]
    async fn concurrent_inserts_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_connections: 4,
            connect_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), &options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let (writer, _task) = TokenWriter::spawn(store.clone());
        let inserts: Vec<_> = (0..64)
            .map(|n| {
                let (writer, record) = (writer.clone(), TokenRecord::sample(n));
                tokio::spawn(async move { writer.insert(record).await })
            })
            .collect();
        let mut ids = Vec::new();
        for insert in inserts {
            ids.push(insert.await.unwrap().unwrap().id);
        }
        for id in &ids {
            assert!(
                store.find_token(*id).await.unwrap().is_some(),
                "{id} stored"
            );
        }
        let commits = writer.commits();
        assert!(
            (1..=8).contains(&commits),
            "64 concurrent inserts took {commits} commits"
        );
        // A lone insert on an idle writer is committed at once, in its own transaction.
        writer.insert(TokenRecord::sample(64)).await.unwrap();
        assert_eq!(writer.commits(), commits + 1);
    }

    /// On SQLite a change to an existing token is written by the group commit: alone it takes one
    /// commit, and changes that arrive with creates share their transactions.
    #[tokio::test]
    async fn changes_ride_the_group_commit_on_sqlite() {
        use crate::domain::{ChangeKind, TokenChange};
        use crate::domain::{StoredStatus, Timestamp};
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_connections: 4,
            connect_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), &options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let (writer, _task) = TokenWriter::spawn(store.clone());
        let mut existing = Vec::new();
        for n in 0..16 {
            existing.push(writer.insert(TokenRecord::sample(n)).await.unwrap());
        }
        let revoke = |record: &TokenRecord| TokenChange {
            id: record.id,
            user: record.user_id.clone(),
            at: Timestamp::now(),
            kind: ChangeKind::Status {
                from: StoredStatus::Active,
                to: StoredStatus::Revoked,
            },
        };
        let before = writer.commits();
        assert!(writer.change(revoke(&existing[0])).await.unwrap().is_some());
        assert_eq!(
            writer.commits(),
            before + 1,
            "the change was committed by the writer"
        );

        let before = writer.commits();
        let mut writes = tokio::task::JoinSet::new();
        for (n, record) in existing.iter().enumerate().skip(1) {
            let (changer, change) = (writer.clone(), revoke(record));
            writes.spawn(async move {
                changer
                    .change(change)
                    .await
                    .map(|seq| usize::from(seq.is_some()))
            });
            let creator = writer.clone();
            writes.spawn(async move {
                creator
                    .insert(TokenRecord::sample(100 + n))
                    .await
                    .map(|_| 1)
            });
        }
        let mut done = 0;
        while let Some(write) = writes.join_next().await {
            done += write.unwrap().unwrap();
        }
        assert_eq!(done, 30, "15 revokes applied and 15 tokens created");
        let commits = writer.commits() - before;
        assert!(
            (1..=8).contains(&commits),
            "30 concurrent writes took {commits} commits"
        );
        for record in &existing {
            let stored = store.find_token(record.id).await.unwrap().unwrap();
            assert_eq!(stored.status, StoredStatus::Revoked);
        }
    }
}
