//! Group commit for new tokens. CreateToken calls from many clients are queued to one writer task,
//! which inserts whatever has queued up in a single transaction (one fsync for many tokens) and then
//! answers each caller. A caller is told "created" only after its row is committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::token_batch::BatchInserter;
use crate::domain::TokenRecord;
use crate::error::{Error, Result};

/// Most tokens committed in one transaction.
const MAX_BATCH: usize = 256;

/// Longest the first token of a batch waits for others to join it (see [`gather_more`]).
const GATHER_LIMIT: Duration = Duration::from_millis(2);

/// A record to insert and where to hand it back once committed.
type Job = (TokenRecord, oneshot::Sender<Result<TokenRecord>>);

/// The handle CreateToken uses to persist a token durably.
#[derive(Debug, Clone)]
pub struct TokenWriter {
    queue: mpsc::Sender<Job>,
    backend: super::Backend,
    commits: Arc<AtomicU64>,
}

impl TokenWriter {
    /// Starts the writer task on `store`. It ends once every handle is dropped and the queue drained.
    pub fn spawn(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        let backend = store.backend();
        let commits = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(store, jobs, commits.clone()));
        (
            Self {
                queue,
                backend,
                commits,
            },
            task,
        )
    }

    /// Transactions committed so far (fewer than tokens when concurrent creates share one).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Inserts `record`; returns it once it is committed.
    #[tracing::instrument(level = "debug", name = "db.insert_token", skip_all, fields(db.system.name = self.backend.otel_name()))]
    pub async fn insert(&self, record: TokenRecord) -> Result<TokenRecord> {
        let (done, result) = oneshot::channel();
        self.queue
            .send((record, done))
            .await
            .map_err(|_| Error::store("the token writer has stopped"))?;
        result
            .await
            .map_err(|_| Error::store("the token writer stopped before committing"))?
    }
}

async fn run(store: Store, mut jobs: mpsc::Receiver<Job>, commits: Arc<AtomicU64>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<TokenRecord> = Vec::with_capacity(MAX_BATCH);
    let mut waiters = Vec::with_capacity(MAX_BATCH);
    let mut inserter = BatchInserter::new(store);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        gather_more(&mut jobs, &mut batch).await;
        for (record, done) in batch.drain(..) {
            records.push(record);
            waiters.push(done);
        }
        let outcome = inserter.insert(&records).await;
        tracing::debug!(
            batch = records.len(),
            ok = outcome.is_ok(),
            "token batch committed"
        );
        match outcome {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for (record, done) in records.drain(..).zip(waiters.drain(..)) {
                    let _ = done.send(Ok(record));
                }
            }
            Err(err) => {
                let error = crate::store::db_error(err);
                records.clear();
                for done in waiters.drain(..) {
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
}
