//! Stockroom's SQLite storage backend, the embedded default.
//!
//! One writer thread owns the only writing connection and applies every
//! change. It takes whatever jobs are queued (up to [`MAX_WRITE_BATCH`]) and
//! applies them in one transaction with one disk flush: group commit. Each job
//! runs inside its own savepoint, so one job's failure undoes only that job,
//! and no caller hears "done" before the whole transaction is on disk
//! (`journal_mode=WAL`, `synchronous=FULL`: the WAL is fsynced at every
//! commit). Reads run on a small pool of read-only connections and never wait
//! for the writer, which WAL allows.
//!
//! With a single writer, SQLite serialises every transaction, so a reservation
//! cannot interleave with another. The statements are nevertheless written the
//! way a multi-writer engine needs them (conditional updates, version checks),
//! so the logic is the same one the PostgreSQL backend uses.

mod read;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use stockroom_contract::{
    Delivery, EffectResult, InventoryItem, Order, OrderList, PaymentRecord, ReserveRequest,
    ReserveResult, Settlement, StockLine,
};
use stockroom_domain::{ProductName, ReleaseReason};
use stockroom_storage::{OrderFilter, ReleaseOutcome, Storage, StorageError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::write::{WriteCommand, WriteJob, WriteReply};

/// The most jobs the writer applies in one transaction. Larger batches flush
/// less often but make every caller in the batch wait for the slowest job.
pub const MAX_WRITE_BATCH: usize = 512;

/// The most jobs that may wait for the writer. When the queue is full callers
/// get [`StorageError::Overloaded`] at once instead of waiting without bound.
pub const WRITE_QUEUE_CAPACITY: usize = 8_192;

/// The most reads running at once; each holds one read-only connection.
pub const MAX_CONCURRENT_READS: usize = 8;

/// How long a connection waits for a lock held by another process before it
/// reports the database as busy.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The file name of the database inside the data directory.
pub const DATABASE_FILE_NAME: &str = "stockroom.db";

/// How the writer groups jobs into transactions.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// At most this many jobs per transaction; 1 turns group commit off.
    pub max_batch: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: MAX_WRITE_BATCH,
        }
    }
}

/// A SQLite database file used as Stockroom's storage.
pub struct SqliteStorage {
    path: PathBuf,
    writer: mpsc::Sender<WriteJob>,
    readers: Arc<ReaderPool>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and starts the writer.
    pub fn open(path: &Path, config: WriterConfig) -> Result<SqliteStorage, StorageError> {
        assert!(
            config.max_batch >= 1,
            "a write batch holds at least one job"
        );
        let connection = open_connection(path, false)?;
        connection
            .execute_batch(include_str!("schema.sql"))
            .map_err(unavailable)?;
        let (sender, receiver) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write::run_writer(connection, receiver, config))
            .map_err(|error| StorageError::Unavailable(error.to_string()))?;
        Ok(SqliteStorage {
            path: path.to_owned(),
            writer: sender,
            readers: Arc::new(ReaderPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(MAX_CONCURRENT_READS),
            }),
            writer_thread: Mutex::new(Some(writer_thread)),
        })
    }

    /// Opens `stockroom.db` inside `directory`, creating the directory.
    pub fn open_in_directory(
        directory: &Path,
        config: WriterConfig,
    ) -> Result<SqliteStorage, StorageError> {
        std::fs::create_dir_all(directory).map_err(|error| {
            StorageError::Unavailable(format!("cannot create {}: {error}", directory.display()))
        })?;
        SqliteStorage::open(&directory.join(DATABASE_FILE_NAME), config)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer after it has finished every queued job and closes the
    /// database (the WAL is checkpointed when the last connection closes).
    pub async fn shut_down(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .writer
            .send(WriteJob {
                command: WriteCommand::Shutdown,
                reply,
            })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
        self.readers.idle.lock().expect("reader pool lock").clear();
        let thread = self
            .writer_thread
            .lock()
            .expect("writer thread lock")
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    async fn write(&self, command: WriteCommand) -> Result<WriteReply, StorageError> {
        let (reply, receiver) = oneshot::channel();
        self.writer
            .try_send(WriteJob { command, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StorageError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    StorageError::Unavailable("the sqlite writer has stopped".into())
                }
            })?;
        receiver
            .await
            .map_err(|_| StorageError::Unavailable("the sqlite writer has stopped".into()))?
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let _permit = readers
            .permits
            .acquire()
            .await
            .map_err(|_| StorageError::Unavailable("reader pool closed".into()))?;
        let pool = Arc::clone(&readers);
        tokio::task::spawn_blocking(move || {
            let connection = pool.take()?;
            let result = work(&connection);
            pool.give_back(connection);
            result
        })
        .await
        .map_err(|error| StorageError::Unavailable(format!("read task failed: {error}")))?
    }
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, StorageError> {
        if let Some(connection) = self.idle.lock().expect("reader pool lock").pop() {
            return Ok(connection);
        }
        open_connection(&self.path, true)
    }

    fn give_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().expect("reader pool lock");
        if idle.len() < MAX_CONCURRENT_READS {
            idle.push(connection);
        }
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StorageError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let connection = Connection::open_with_flags(path, flags).map_err(|error| {
        StorageError::Unavailable(format!("cannot open {}: {error}", path.display()))
    })?;
    connection
        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(unavailable)?;
    if !read_only {
        // WAL lets readers work while the writer commits; synchronous=FULL
        // fsyncs the WAL at every commit, so a commit that returned survives
        // a crash or power loss. That is what a 2xx promises. The savepoints
        // that make each job all-or-nothing keep their journal in memory
        // (temp_store): on disk it cost a write per changed page. The page
        // cache is 64 MiB.
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA cache_size = -65536;",
            )
            .map_err(unavailable)?;
    }
    Ok(connection)
}

pub(crate) fn unavailable(error: rusqlite::Error) -> StorageError {
    StorageError::Unavailable(error.to_string())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn format_time(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn initialize_stock(&self, lines: Vec<StockLine>) -> Result<bool, StorageError> {
        match self.write(WriteCommand::InitializeStock(lines)).await? {
            WriteReply::Loaded(loaded) => Ok(loaded),
            other => Err(unexpected(other)),
        }
    }

    async fn inventory(&self) -> Result<Vec<InventoryItem>, StorageError> {
        self.read(read::inventory).await
    }

    async fn inventory_item(&self, product: &str) -> Result<Option<InventoryItem>, StorageError> {
        let key = product.trim().to_lowercase();
        self.read(move |connection| read::inventory_item(connection, &key))
            .await
    }

    async fn restock(
        &self,
        product: ProductName,
        quantity: u64,
    ) -> Result<InventoryItem, StorageError> {
        match self.write(WriteCommand::Restock(product, quantity)).await? {
            WriteReply::Item(item) => Ok(item),
            other => Err(unexpected(other)),
        }
    }

    async fn reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResult>, StorageError> {
        match self.write(WriteCommand::Reserve(requests)).await? {
            WriteReply::Reserved(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    async fn order(&self, order_id: &str) -> Result<Option<Order>, StorageError> {
        let order_id = order_id.to_owned();
        self.read(move |connection| read::order(connection, &order_id))
            .await
    }

    async fn orders(&self, filter: OrderFilter) -> Result<OrderList, StorageError> {
        self.read(move |connection| read::orders(connection, &filter))
            .await
    }

    async fn record_payments(
        &self,
        payments: Vec<PaymentRecord>,
    ) -> Result<Vec<EffectResult>, StorageError> {
        match self.write(WriteCommand::RecordPayments(payments)).await? {
            WriteReply::Effects(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    async fn settle(
        &self,
        settlements: Vec<Settlement>,
    ) -> Result<Vec<EffectResult>, StorageError> {
        match self.write(WriteCommand::Settle(settlements)).await? {
            WriteReply::Effects(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    async fn release(
        &self,
        order_id: &str,
        reason: ReleaseReason,
    ) -> Result<ReleaseOutcome, StorageError> {
        match self
            .write(WriteCommand::Release(order_id.to_owned(), reason))
            .await?
        {
            WriteReply::Release(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn expire(
        &self,
        older_than_ms: u64,
        max_orders: u32,
    ) -> Result<Vec<String>, StorageError> {
        match self
            .write(WriteCommand::Expire {
                older_than_ms,
                max_orders,
            })
            .await?
        {
            WriteReply::Expired(ids) => Ok(ids),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_events(
        &self,
        consumer: &str,
        max_events: u32,
        lease_ms: u64,
    ) -> Result<Vec<Delivery>, StorageError> {
        match self
            .write(WriteCommand::LeaseEvents {
                consumer: consumer.to_owned(),
                max_events,
                lease_ms,
            })
            .await?
        {
            WriteReply::Deliveries(deliveries) => Ok(deliveries),
            other => Err(unexpected(other)),
        }
    }

    async fn acknowledge_events(
        &self,
        consumer: &str,
        delivery_ids: Vec<i64>,
    ) -> Result<(), StorageError> {
        match self
            .write(WriteCommand::AcknowledgeEvents {
                consumer: consumer.to_owned(),
                delivery_ids,
            })
            .await?
        {
            WriteReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn dead_letter_count(&self, consumer: &str) -> Result<u64, StorageError> {
        let consumer = consumer.to_owned();
        self.read(move |connection| read::dead_letter_count(connection, &consumer))
            .await
    }

    async fn close(&self) {
        self.shut_down().await;
    }
}

fn unexpected(reply: WriteReply) -> StorageError {
    StorageError::Inconsistent(format!("writer answered with the wrong reply: {reply:?}"))
}
