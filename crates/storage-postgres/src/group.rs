//! Group commit of concurrent reservations, as the SQLite writer does it.
//!
//! Without it, every `reserve` call is its own transaction with its own
//! commit, and during a flash sale they all queue on the hot product's row
//! lock, each holding a pooled connection while it waits. With it, calls put
//! their requests on a bounded queue; one collector task per storage takes
//! whatever is queued and applies it in one transaction with one commit,
//! then answers each caller with its own results. The row lock is taken once
//! per batch instead of once per order, and one commit (one WAL flush)
//! serves every order of the batch.
//!
//! Each call's requests run inside a savepoint of their own, and each request
//! inside the savepoint `reserve_all` already gives it, so one call's failure
//! undoes only that call, exactly as one job's failure does in the SQLite
//! writer. An abort that PostgreSQL asks to retry (deadlock victim,
//! serialization failure) runs the whole batch again.
//!
//! Lock order: within a batch, requests of different calls may name products
//! in any order, so two batch transactions of two processes could each hold
//! a product the other wants next. The batch therefore locks every product it
//! names first, in the global order of product keys, before it reserves
//! anything; after that no statement of the batch waits for an inventory row
//! lock, so batches cannot deadlock each other on inventory rows. Within one
//! process the single collector runs one batch at a time, so its own batches
//! never compete at all.

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use stockroom_contract::{ReserveRequest, ReserveResult};
use stockroom_storage::StorageError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::sql::query;
use crate::{Failure, MAX_TRANSACTION_ATTEMPTS, RETRY_BACKOFF_MS, write};

/// The most calls that may wait for the collector. When the queue is full a
/// call fails with [`StorageError::Overloaded`] at once instead of waiting
/// without bound.
pub const GROUP_COMMIT_QUEUE_CAPACITY: usize = 8_192;

/// The most reservation requests applied in one transaction by default. A
/// call is never split, so a batch may exceed this by one call's requests.
/// Larger batches commit less often but hold the hot product's row lock
/// longer and make every caller of the batch wait for the slowest request.
pub const DEFAULT_GROUP_COMMIT_MAX_REQUESTS: usize = 1_024;

/// Whether and how concurrent `reserve` calls share transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// `false` runs each call in its own transaction, concurrently with the
    /// others, on its own pooled connection.
    pub enabled: bool,
    /// At most about this many requests per transaction; at least 1.
    pub max_requests: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            enabled: true,
            max_requests: DEFAULT_GROUP_COMMIT_MAX_REQUESTS,
        }
    }
}

impl GroupCommitConfig {
    /// One transaction per call, as without group commit.
    pub const OFF: GroupCommitConfig = GroupCommitConfig {
        enabled: false,
        max_requests: 1,
    };
}

/// One `reserve` call waiting for its batch.
struct Job {
    requests: Vec<ReserveRequest>,
    reply: oneshot::Sender<Result<Vec<ReserveResult>, StorageError>>,
}

/// The handle calls are queued through. The collector task stops when it is
/// dropped.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the collector on the current tokio runtime.
    pub(crate) fn start(pool: Pool, config: GroupCommitConfig) -> GroupCommit {
        let (queue, receiver) = mpsc::channel(GROUP_COMMIT_QUEUE_CAPACITY);
        tokio::spawn(collect(pool, receiver, config.max_requests.max(1)));
        GroupCommit { queue }
    }

    /// Reserves `requests` in the next batch transaction and returns their
    /// results once it has committed.
    pub(crate) async fn reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResult>, StorageError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { requests, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StorageError::Overloaded),
            Err(TrySendError::Closed(_)) => return Err(stopped()),
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Waits until every call queued before this one has been applied and
    /// answered: the collector takes calls in order, so an empty call's
    /// answer comes after theirs.
    pub(crate) async fn flush(&self) {
        let (reply, answer) = oneshot::channel();
        let marker = Job {
            requests: Vec::new(),
            reply,
        };
        if self.queue.send(marker).await.is_ok() {
            let _ = answer.await;
        }
    }
}

fn stopped() -> StorageError {
    StorageError::Unavailable("the postgres reservation collector has stopped".into())
}

/// Takes whatever is queued, applies it as one batch, and repeats until every
/// handle is gone. One batch at a time: while it runs, the next one gathers.
async fn collect(pool: Pool, mut queue: mpsc::Receiver<Job>, max_requests: usize) {
    let mut batch: Vec<Job> = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut requests = first.requests.len();
        batch.push(first);
        while requests < max_requests {
            match queue.try_recv() {
                Ok(job) => {
                    requests += job.requests.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        apply_batch(&pool, &mut batch).await;
    }
}

/// Applies the batch in one transaction, retrying it whole when PostgreSQL
/// aborted it for a concurrent one, and answers every caller.
async fn apply_batch(pool: &Pool, batch: &mut Vec<Job>) {
    let mut attempt: u32 = 1;
    let answers = loop {
        match run_batch(pool, batch).await {
            Ok(answers) => break answers,
            Err(failure) if failure.is_retryable() && attempt < MAX_TRANSACTION_ATTEMPTS => {
                tracing::warn!(attempt, error = %failure, "postgres batch transaction aborted, retrying");
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS * u64::from(attempt)))
                    .await;
                attempt += 1;
            }
            Err(failure) => {
                let error = failure.into_storage_error(attempt);
                break batch.iter().map(|_| Err(copy_error(&error))).collect();
            }
        }
    };
    for (job, answer) in batch.drain(..).zip(answers) {
        let _ = job.reply.send(answer);
    }
}

/// One run of the batch transaction. `Err` means the whole transaction is
/// lost (nothing of it committed); a single call's own failure is its answer
/// inside `Ok`.
async fn run_batch(
    pool: &Pool,
    batch: &[Job],
) -> Result<Vec<Result<Vec<ReserveResult>, StorageError>>, Failure> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_products(&tx, batch).await?;
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        tx.batch_execute("SAVEPOINT call").await?;
        match write::reserve_all(&tx, &job.requests).await {
            Ok(results) => {
                tx.batch_execute("RELEASE SAVEPOINT call").await?;
                answers.push(Ok(results));
            }
            // The whole batch runs again, so this call gets another chance
            // along with the rest.
            Err(failure) if failure.is_retryable() => return Err(failure),
            Err(failure) => {
                // Undo this call only. If even that fails the connection is
                // gone, and the `?` abandons the whole transaction.
                tx.batch_execute("ROLLBACK TO SAVEPOINT call; RELEASE SAVEPOINT call")
                    .await?;
                answers.push(Err(failure.into_storage_error(1)));
            }
        }
    }
    tx.commit().await?;
    Ok(answers)
}

/// Locks every product the batch names, in the global order of product keys,
/// so that the reservations that follow never wait for a row lock another
/// batch holds while holding one it wants.
async fn lock_products(tx: &Transaction<'_>, batch: &[Job]) -> Result<(), Failure> {
    let keys: BTreeSet<String> = batch
        .iter()
        .flat_map(|job| &job.requests)
        .flat_map(|request| request.items.iter())
        .map(|item| item.product.key())
        .collect();
    if keys.len() < 2 {
        // One product cannot be locked in the wrong order; its first
        // conditional UPDATE takes the lock as the call alone would.
        return Ok(());
    }
    let keys: Vec<String> = keys.into_iter().collect();
    query(
        tx,
        // `COLLATE "C"` sorts by bytes, as Rust sorts the keys of an order,
        // whatever collation the database was created with.
        "SELECT product_key FROM inventory WHERE product_key = ANY($1)
         ORDER BY product_key COLLATE \"C\" FOR UPDATE",
        &[&keys],
    )
    .await?;
    Ok(())
}

/// A copy of the error for each caller of a failed batch.
fn copy_error(error: &StorageError) -> StorageError {
    match error {
        StorageError::Overloaded => StorageError::Overloaded,
        StorageError::Unavailable(message) => StorageError::Unavailable(message.clone()),
        StorageError::UnknownProduct(name) => StorageError::UnknownProduct(name.clone()),
        StorageError::Invalid(message) => StorageError::Invalid(message.clone()),
        StorageError::Inconsistent(message) => StorageError::Inconsistent(message.clone()),
    }
}
