//! Group commit for new tokens. CreateToken calls from many clients are queued to one writer task,
//! which inserts whatever has queued up in a single transaction (one fsync for many tokens) and then
//! answers each caller. A caller is told "created" only after its row is committed.

use tokio::sync::{mpsc, oneshot};

use super::Store;
use crate::domain::TokenRecord;
use crate::error::{Error, Result};

/// Most tokens committed in one transaction.
const MAX_BATCH: usize = 256;

/// A record to insert and where to hand it back once committed.
type Job = (TokenRecord, oneshot::Sender<Result<TokenRecord>>);

/// The handle CreateToken uses to persist a token durably.
#[derive(Debug, Clone)]
pub struct TokenWriter {
    queue: mpsc::Sender<Job>,
    backend: super::Backend,
}

impl TokenWriter {
    /// Starts the writer task on `store`. It ends once every handle is dropped and the queue drained.
    pub fn spawn(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        let backend = store.backend();
        let task = tokio::spawn(run(store, jobs));
        (Self { queue, backend }, task)
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

async fn run(store: Store, mut jobs: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<TokenRecord> = Vec::with_capacity(MAX_BATCH);
    let mut waiters = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        gather_more(&mut jobs, &mut batch).await;
        for (record, done) in batch.drain(..) {
            records.push(record);
            waiters.push(done);
        }
        let outcome = store.insert_tokens(&records).await;
        tracing::debug!(
            batch = records.len(),
            ok = outcome.is_ok(),
            "token batch committed"
        );
        match outcome {
            Ok(()) => {
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
/// commits a lone token at once, and a busy one shares one commit (and one fsync) among many.
async fn gather_more(jobs: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < MAX_BATCH {
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
