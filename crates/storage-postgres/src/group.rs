//! Group commit: concurrent calls share one transaction, as in the SQLite
//! writer.
//!
//! Every call the rules decide (reservations, payments, settlements, cancels,
//! sweeps, restocks) is put on a bounded queue. Collector tasks each take
//! whatever is queued and run it as one batch of the rules in one
//! transaction: the rows are loaded and locked with a fixed number of
//! queries, decided in memory, written with one statement per table, and
//! committed with one WAL flush; then each caller gets its own answer. During
//! a flash sale the hot product's row lock is taken once per batch instead of
//! once per order, and one commit serves every order of the batch.
//!
//! A transaction that PostgreSQL aborts for a concurrent one (serialization
//! failure, deadlock victim, an idempotency key claimed meanwhile by another
//! process) runs again whole, up to [`MAX_TRANSACTION_ATTEMPTS`] times.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use stockroom_storage::batch::{Answer, Command, Needs, Reply, decide};
use stockroom_storage::{StorageError, WriteCounters, WriteStats};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Mutex, RwLock, mpsc, oneshot};

use crate::ahead::{self, InFlight, StockView};
use crate::load::{FirstRead, Lock};
use crate::sql::{Tx, count_transaction_control};
use crate::{Failure, MAX_TRANSACTION_ATTEMPTS, RETRY_BACKOFF_MS, apply, load, now_ms, read};

/// The most calls that may wait for a collector. When the queue is full a
/// call fails with [`StorageError::Overloaded`] at once instead of waiting
/// without bound.
pub const GROUP_COMMIT_QUEUE_CAPACITY: usize = 8_192;

/// The most requests (orders, events) applied in one transaction by default.
/// A call is never split, so a batch may exceed this by one call's requests.
/// Larger batches commit less often but hold the hot product's row lock
/// longer and make every caller of the batch wait for the slowest request.
pub const DEFAULT_GROUP_COMMIT_MAX_REQUESTS: usize = 1_024;

/// Collector tasks per storage by default: while one waits for its commit's
/// flush, the other gathers and applies the next batch. Batches that touch
/// the same product still take its row lock one after the other.
pub const DEFAULT_COLLECTORS: usize = 2;

/// Whether and how concurrent calls share transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// `false` runs each call in its own transaction, concurrently with the
    /// others, on its own pooled connection.
    pub enabled: bool,
    /// At most about this many requests per transaction; at least 1.
    pub max_requests: usize,
    /// Collector tasks; at least 1.
    pub collectors: usize,
    /// Whether a sale's batches are decided ahead of their stock locks (see
    /// [`crate::ahead`]) rather than under them.
    pub decide_ahead: bool,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            enabled: true,
            max_requests: DEFAULT_GROUP_COMMIT_MAX_REQUESTS,
            collectors: DEFAULT_COLLECTORS,
            decide_ahead: true,
        }
    }
}

impl GroupCommitConfig {
    /// One transaction per call, as without group commit.
    pub const OFF: GroupCommitConfig = GroupCommitConfig {
        enabled: false,
        max_requests: 1,
        collectors: 1,
        decide_ahead: false,
    };

    /// Every batch's stock locked before the rules decide it, as before
    /// batches were decided ahead: for measuring what deciding ahead buys.
    pub fn locking_first(self) -> GroupCommitConfig {
        GroupCommitConfig {
            decide_ahead: false,
            ..self
        }
    }
}

/// One call waiting for its batch.
struct Job {
    command: Option<Command>,
    reply: oneshot::Sender<Result<Reply, StorageError>>,
}

/// The handle calls are queued through. The collectors stop when it is
/// dropped.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
    /// Held shared by each collector while it applies a batch, so that
    /// [`GroupCommit::flush`] can wait for every batch in flight.
    in_flight: Arc<RwLock<()>>,
    counters: Arc<WriteCounters>,
}

impl GroupCommit {
    /// Starts the collectors on the current tokio runtime.
    pub(crate) fn start(
        pool: Pool,
        statements: Arc<AtomicU64>,
        config: GroupCommitConfig,
        notify: bool,
    ) -> GroupCommit {
        let (queue, receiver) = mpsc::channel(GROUP_COMMIT_QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let in_flight = Arc::new(RwLock::new(()));
        let counters = Arc::new(WriteCounters::default());
        let batches = Batches {
            pool,
            statements,
            notify,
            view: config
                .decide_ahead
                .then(|| Arc::new(std::sync::Mutex::new(StockView::default()))),
        };
        for _ in 0..config.collectors.max(1) {
            tokio::spawn(collect(
                batches.clone(),
                Arc::clone(&counters),
                Arc::clone(&receiver),
                Arc::clone(&in_flight),
                config.max_requests.max(1),
            ));
        }
        GroupCommit {
            queue,
            in_flight,
            counters,
        }
    }

    /// The queue's depth and the batches run so far.
    pub(crate) fn stats(&self) -> WriteStats {
        self.counters
            .stats(self.queue.max_capacity() - self.queue.capacity())
    }

    /// Runs `command` in the next batch transaction and returns its reply
    /// once that has committed.
    pub(crate) async fn run(&self, command: Command) -> Result<Reply, StorageError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            command: Some(command),
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StorageError::Overloaded),
            Err(TrySendError::Closed(_)) => return Err(stopped()),
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Waits until every call queued before this one has been applied and
    /// answered. Calls are taken from the queue in order, so once a marker
    /// queued now was taken, every earlier call was taken too, by a collector
    /// that then held `in_flight` until it answered.
    pub(crate) async fn flush(&self) {
        let (reply, answer) = oneshot::channel();
        let marker = Job {
            command: None,
            reply,
        };
        if self.queue.send(marker).await.is_ok() {
            let _ = answer.await;
        }
        let _all_answered = self.in_flight.write().await;
    }
}

fn stopped() -> StorageError {
    StorageError::unavailable("the postgres batch collector has stopped")
}

/// Takes whatever is queued, applies it as one batch, and repeats until every
/// handle is gone. While this collector applies a batch, another one gathers.
async fn collect(
    batches: Batches,
    counters: Arc<WriteCounters>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    in_flight: Arc<RwLock<()>>,
    max_requests: usize,
) {
    loop {
        let mut batch: Vec<Job> = Vec::new();
        let applying = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut requests = first.command.as_ref().map_or(0, Command::size);
            batch.push(first);
            while requests < max_requests {
                match queue.try_recv() {
                    Ok(job) => {
                        requests += job.command.as_ref().map_or(0, Command::size);
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            // Taken before the queue is let go, so that a flush queued after
            // these calls finds this batch in flight.
            Arc::clone(&in_flight).read_owned().await
        };
        counters.record_batch(batch.len());
        apply_batch(&batches, batch).await;
        drop(applying);
    }
}

/// Applies the batch in one transaction, retrying it whole when PostgreSQL
/// aborted it for a concurrent one, and answers every caller.
async fn apply_batch(batches: &Batches, batch: Vec<Job>) {
    let (commands, repliers): (Vec<Option<Command>>, Vec<_>) = batch
        .into_iter()
        .map(|job| {
            let has_command = job.command.is_some();
            (job.command, (job.reply, has_command))
        })
        .unzip();
    let commands: Vec<Command> = commands.into_iter().flatten().collect();
    let mut answers = if commands.is_empty() {
        Vec::new()
    } else {
        batches.run_with_retries(&commands).await
    }
    .into_iter();
    // Commands keep their callers' order; flush markers carry none, and
    // their callers only wait for an answer, whatever it is.
    for (reply, has_command) in repliers {
        let answer = if has_command {
            answers.next().unwrap_or_else(|| Err(stopped()))
        } else {
            Err(StorageError::unavailable("flush marker"))
        };
        let _ = reply.send(answer);
    }
}

/// A batch's answers, and its figures in the view when one is kept.
type Decided<'a> = (Vec<Result<Answer, StorageError>>, Option<InFlight<'a>>);

/// What every batch transaction needs: the pool, the statement counter,
/// whether notices are raised, and the view of the stock this process's
/// batches decided (`None` when no batch is decided ahead).
#[derive(Clone)]
pub(crate) struct Batches {
    pub pool: Pool,
    pub statements: Arc<AtomicU64>,
    pub notify: bool,
    pub view: Option<Arc<std::sync::Mutex<StockView>>>,
}

impl Batches {
    /// The batch's answers, one per command; all of them the same error when
    /// the transaction could not be committed. A batch decided ahead whose
    /// stock moved runs again at once with its stock locked first, which
    /// counts as no attempt: it waited for no one.
    pub(crate) async fn run_with_retries(
        &self,
        commands: &[Command],
    ) -> Vec<Result<Reply, StorageError>> {
        let mut attempt: u32 = 1;
        let mut ahead = self.view.is_some() && ahead::may_decide_ahead(commands);
        loop {
            match self.run_batch(commands, ahead).await {
                Ok(answers) => return answers,
                Err(Failure::StockMoved) => ahead = false,
                Err(failure) if failure.is_retryable() && attempt < MAX_TRANSACTION_ATTEMPTS => {
                    tracing::warn!(attempt, error = %failure, "postgres batch aborted for a concurrent one; running it again");
                    tokio::time::sleep(Duration::from_millis(
                        RETRY_BACKOFF_MS * u64::from(attempt),
                    ))
                    .await;
                    attempt += 1;
                }
                Err(failure) => {
                    let error = failure.into_storage_error(attempt);
                    return commands.iter().map(|_| Err(error.clone())).collect();
                }
            }
        }
    }

    /// One run of the batch transaction, decided ahead of its stock locks
    /// when `ahead` and the view allow it. `Err` means nothing of it
    /// committed (or, for [`Failure::CommitLost`], that nobody knows).
    async fn run_batch(
        &self,
        commands: &[Command],
        ahead: bool,
    ) -> Result<Vec<Result<Reply, StorageError>>, Failure> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        count_transaction_control(&self.statements);
        let tx = Tx::new(&transaction, &self.statements);
        let now = now_ms();
        let mut needs = Needs::of(commands, now);
        let first = load::load_orders(tx, &mut needs, now, self.notify).await?;
        let view = self.view.as_deref();
        let decided = match view.filter(|_| ahead) {
            Some(view) => self.decide_ahead(tx, view, &needs, first, commands).await?,
            None => Err(first),
        };
        let (answers, in_flight) = match decided {
            Ok(decided) => decided,
            Err(first) => self.decide_locked(tx, &mut needs, first, commands).await?,
        };
        let committed = finish(tx, answers).await;
        let committed = match committed {
            Ok(replies) => transaction
                .commit()
                .await
                .map_err(Failure::commit)
                .map(|()| replies),
            Err(failure) => Err(failure),
        };
        // A batch that did not commit is forgotten as its figures drop.
        if let (Some(in_flight), Ok(_)) = (in_flight, &committed) {
            in_flight.committed();
        }
        committed
    }

    /// Decides the batch on its products' figures as this process's latest
    /// batches left them (read without a lock where the view has none), and
    /// writes it, checked under its locks (see [`crate::ahead`]). Returns
    /// the answers and the batch's figures in the view, or gives `first`
    /// back when the batch must be decided under its locks instead (a
    /// limited product, or a stock moved by someone else lately).
    async fn decide_ahead<'view>(
        &self,
        tx: Tx<'_>,
        view: &'view std::sync::Mutex<StockView>,
        needs: &Needs,
        first: FirstRead,
        commands: &[Command],
    ) -> Result<Result<Decided<'view>, FirstRead>, Failure> {
        let keys = load::product_keys(needs);
        let unknown = {
            let view = ahead::lock(view);
            if !view.allows_ahead(&keys, Instant::now()) {
                return Ok(Err(first));
            }
            view.unknown(&keys)
        };
        let read = ahead::Read {
            keys: &keys,
            unknown: &unknown,
            rows: load::stock_rows(tx, &unknown, Lock::None).await?,
        };
        // The view is held from its figures to the decision made on them,
        // and never across an await.
        let planned = {
            let mut locked = ahead::lock(view);
            match locked.overlay(read) {
                Some(rows) => {
                    // The orders whose stock the batch may move: the lock
                    // must find them as read, as a batch that locks first
                    // reads them again under its locks.
                    let moving: Vec<(String, i64)> = first
                        .orders
                        .iter()
                        .filter(|order| needs.may_move_stock(order))
                        .map(|order| (order.id.clone(), order.version))
                        .collect();
                    let FirstRead { mut book, orders } = first;
                    for order in orders {
                        book.load_order(order);
                    }
                    Ok((locked.decide(book, rows, commands, needs), moving))
                }
                None => Err(first),
            }
        };
        let (mut plan, moving) = match planned {
            Ok(planned) => planned,
            Err(first) => return Ok(Err(first)),
        };
        let in_flight = InFlight::new(view, plan.batch);
        let unmoved = apply::Unmoved {
            stock: &plan.expected,
            orders: &moving,
        };
        match apply::apply_ahead(tx, &plan.writes, unmoved, &mut plan.turn).await {
            Ok(()) => Ok(Ok((plan.answers, Some(in_flight)))),
            Err(Failure::StockMoved) => {
                in_flight.mismatched(Instant::now());
                Err(Failure::StockMoved)
            }
            Err(failure) => Err(failure),
        }
    }

    /// Locks the batch's stock, decides under the locks, and writes; returns
    /// the answers and, when a view is kept, the batch's figures in it.
    async fn decide_locked(
        &self,
        tx: Tx<'_>,
        needs: &mut Needs,
        first: FirstRead,
        commands: &[Command],
    ) -> Result<Decided<'_>, Failure> {
        let book = load::lock_and_load(tx, needs, first).await?;
        let (answers, writes) = decide(book, commands, needs);
        let in_flight = self.view.as_deref().map(|view| {
            let batch = ahead::lock(view).decided_locked(&writes);
            InFlight::new(view, batch)
        });
        // A failed write drops `in_flight`, which forgets the figures.
        apply::apply(tx, &writes).await?;
        Ok((answers, in_flight))
    }
}

/// The replies of a batch's answers, reading the orders some of them name.
async fn finish(
    tx: Tx<'_>,
    answers: Vec<Result<Answer, StorageError>>,
) -> Result<Vec<Result<Reply, StorageError>>, Failure> {
    let mut replies = Vec::with_capacity(answers.len());
    for answer in answers {
        replies.push(match answer {
            Ok(answer) => {
                let order = match answer.order_needed() {
                    Some(order_id) => read::order(tx, order_id).await?,
                    None => None,
                };
                answer.into_reply(order)
            }
            Err(error) => Err(error),
        });
    }
    Ok(replies)
}
