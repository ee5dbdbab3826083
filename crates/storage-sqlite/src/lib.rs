//! Stockroom's SQLite storage backend, the embedded default.
//!
//! One writer thread owns the only writing connection and applies every
//! change. It takes whatever jobs are queued (up to [`MAX_WRITE_BATCH`]) and
//! applies them in one transaction with one disk flush: group commit. The
//! jobs the rules decide run as one batch of the rules ([`write`]): the rows
//! they touch are loaded with a fixed number of queries, every decision is
//! made in memory by [`stockroom_domain::rules`], and the result is written
//! with one statement per table. No caller hears "done" before the whole
//! transaction is on disk (`journal_mode=WAL`, `synchronous=FULL`: the WAL is
//! fsynced at every commit). Reads run on a small pool of read-only
//! connections and never wait for the writer, which WAL allows.
//!
//! The schema is versioned (`PRAGMA user_version`, `migrations/`), and its
//! CHECK constraints restate the stock invariants.

mod apply;
mod bus;
mod connection;
mod directory;
mod ledger;
mod load;
mod provider;
mod prune;
mod read;
mod records;
mod sql;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use stockroom_domain::Consumer;
use stockroom_domain::outbox::DeadLetter;
use stockroom_domain::rules::{StockRecord, StoredOrder};
use stockroom_storage::batch::{Command, Reply};
use stockroom_storage::bus::{OutboxCommand, OutboxReply};
use stockroom_storage::{
    Charge, EventOutbox, InitialStock, LedgerStats, MAX_MOVEMENTS_PER_PAGE, Maintenance,
    MovementPage, OrderFilter, OrderFlow, OrderPage, OutboxCounts, ProviderLedger, Prune, Pruned,
    StatusCount, StorageError, Verdict, WriteCounters, WriteStats, cause,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::connection::ReaderPool;
pub use crate::connection::WRITER_CACHE_KIB;
pub(crate) use crate::connection::{migrate, open_connection};
pub use crate::directory::{DataDirectory, LOCK_FILE_NAME, MAX_HOLDER_DESCRIPTION_BYTES};
use crate::sql::Sql;
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

/// How the writer groups jobs into transactions, and what the rules write.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// At most this many jobs per transaction; 1 turns group commit off.
    pub max_batch: usize,
    /// Whether the rules raise notices for other systems (webhooks are
    /// configured); without, nothing is written for them.
    pub notify: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: MAX_WRITE_BATCH,
            notify: false,
        }
    }
}

/// A SQLite database file used as Stockroom's storage.
pub struct SqliteStorage {
    path: PathBuf,
    writer: mpsc::Sender<WriteJob>,
    readers: Arc<ReaderPool>,
    statements: Arc<AtomicU64>,
    write_counters: Arc<WriteCounters>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The data directory this storage holds, released when it is shut
    /// down (or dropped), so that the same process may open it again.
    directory: Mutex<Option<DataDirectory>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path`, brings its schema
    /// up to date and starts the writer. It takes no lock on the directory:
    /// the system opens its store with [`SqliteStorage::open_in_directory`].
    pub fn open(path: &Path, config: WriterConfig) -> Result<SqliteStorage, StorageError> {
        assert!(
            config.max_batch >= 1,
            "a write batch holds at least one job"
        );
        let mut connection = open_connection(path, false)?;
        migrate(&mut connection)?;
        let statements = Arc::new(AtomicU64::new(0));
        let (sender, receiver) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let writer_statements = Arc::clone(&statements);
        let write_counters = Arc::new(WriteCounters::default());
        let writer_counters = Arc::clone(&write_counters);
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                write::run_writer(
                    connection,
                    writer_statements,
                    writer_counters,
                    receiver,
                    config,
                )
            })
            .map_err(|error| StorageError::Unavailable {
                context: "cannot start the sqlite writer thread".into(),
                source: Some(cause(error)),
            })?;
        Ok(SqliteStorage {
            path: path.to_owned(),
            writer: sender,
            readers: Arc::new(ReaderPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(MAX_CONCURRENT_READS),
            }),
            statements,
            write_counters,
            writer_thread: Mutex::new(Some(writer_thread)),
            directory: Mutex::new(None),
        })
    }

    /// Opens `stockroom.db` inside `directory`, creating the directory, and
    /// holds the directory for as long as the storage lives (see
    /// [`DataDirectory`]): a second process is refused.
    pub fn open_in_directory(
        directory: &Path,
        config: WriterConfig,
    ) -> Result<SqliteStorage, StorageError> {
        SqliteStorage::open_held(DataDirectory::lock(directory)?, config)
    }

    /// Opens the database of a directory this process already holds (for
    /// `--fresh`, which empties it first), and keeps holding it.
    pub fn open_held(
        directory: DataDirectory,
        config: WriterConfig,
    ) -> Result<SqliteStorage, StorageError> {
        let storage = SqliteStorage::open(&directory.database_path(), config)?;
        *storage.directory.lock().expect("directory lock") = Some(directory);
        Ok(storage)
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
        // The database is closed: let the directory go.
        self.directory.lock().expect("directory lock").take();
    }

    async fn write(&self, command: WriteCommand) -> Result<WriteReply, StorageError> {
        let (reply, receiver) = oneshot::channel();
        self.writer
            .try_send(WriteJob { command, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StorageError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => writer_stopped(),
            })?;
        receiver.await.map_err(|_| {
            if self.writer.is_closed() {
                writer_stopped()
            } else {
                StorageError::Inconsistent("the write batch failed on a bug; see the log".into())
            }
        })?
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Sql<'_>) -> Result<T, StorageError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let _permit = readers
            .permits
            .acquire()
            .await
            .map_err(|_| StorageError::unavailable("the reader pool is closed"))?;
        let pool = Arc::clone(&readers);
        let statements = Arc::clone(&self.statements);
        tokio::task::spawn_blocking(move || {
            let connection = pool.take()?;
            let result = work(Sql::new(&connection, &statements));
            pool.give_back(connection);
            result
        })
        .await
        .map_err(|error| StorageError::unavailable(format!("read task failed: {error}")))?
    }
}

fn writer_stopped() -> StorageError {
    StorageError::unavailable("the sqlite writer has stopped")
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

#[async_trait]
impl OrderFlow for SqliteStorage {
    async fn initialize_stock(&self, lines: Vec<InitialStock>) -> Result<bool, StorageError> {
        match self.write(WriteCommand::InitializeStock(lines)).await? {
            WriteReply::Loaded(loaded) => Ok(loaded),
            other => Err(unexpected(other)),
        }
    }

    async fn inventory(&self) -> Result<Vec<StockRecord>, StorageError> {
        self.read(read::inventory).await
    }

    async fn inventory_item(&self, product: &str) -> Result<Option<StockRecord>, StorageError> {
        let key = product.trim().to_lowercase();
        self.read(move |sql| read::inventory_item(sql, &key)).await
    }

    async fn order(&self, order_id: &str) -> Result<Option<StoredOrder>, StorageError> {
        let order_id = order_id.to_owned();
        self.read(move |sql| read::order(sql, &order_id)).await
    }

    async fn movements(
        &self,
        product: &str,
        after: u64,
        limit: u32,
    ) -> Result<Option<MovementPage>, StorageError> {
        let key = product.trim().to_lowercase();
        let limit = limit.clamp(1, MAX_MOVEMENTS_PER_PAGE);
        self.read(move |sql| ledger::movements(sql, &key, after, limit))
            .await
    }

    async fn orders(&self, filter: OrderFilter) -> Result<OrderPage, StorageError> {
        self.read(move |sql| read::orders(sql, &filter)).await
    }

    async fn order_counts(&self) -> Result<Vec<StatusCount>, StorageError> {
        self.read(read::order_counts).await
    }

    #[tracing::instrument(name = "storage", level = "debug", skip_all, fields(backend = "sqlite", calls = command.size()))]
    async fn run(&self, command: Command) -> Result<Reply, StorageError> {
        match self.write(WriteCommand::Rules(command)).await? {
            WriteReply::Rules(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }
}

#[async_trait]
impl EventOutbox for SqliteStorage {
    #[tracing::instrument(
        name = "storage",
        level = "debug",
        skip_all,
        fields(backend = "sqlite")
    )]
    async fn run_outbox(&self, command: OutboxCommand) -> Result<OutboxReply, StorageError> {
        match self.write(WriteCommand::Outbox(command)).await? {
            WriteReply::Outbox(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    async fn dead_letters(
        &self,
        consumer: Consumer,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        self.read(move |sql| bus::dead_letters(sql, consumer, limit))
            .await
    }

    async fn outbox_counts(&self) -> Result<Vec<OutboxCounts>, StorageError> {
        self.read(bus::counts).await
    }
}

#[async_trait]
impl ProviderLedger for SqliteStorage {
    async fn provider_charge(&self, charges: Vec<Charge>) -> Result<Vec<Verdict>, StorageError> {
        if charges.is_empty() {
            return Ok(Vec::new());
        }
        match self.write(WriteCommand::Charge(charges)).await? {
            WriteReply::Verdicts(verdicts) => Ok(verdicts),
            other => Err(unexpected(other)),
        }
    }

    async fn provider_stats(&self) -> Result<LedgerStats, StorageError> {
        self.read(provider::stats).await
    }
}

#[async_trait]
impl Maintenance for SqliteStorage {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn prune(&self, prune: Prune) -> Result<Pruned, StorageError> {
        match self.write(WriteCommand::Prune(prune)).await? {
            WriteReply::Pruned(pruned) => Ok(pruned),
            other => Err(unexpected(other)),
        }
    }

    async fn probe(&self) -> Result<(), StorageError> {
        match self.write(WriteCommand::Probe).await? {
            WriteReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn write_stats(&self) -> WriteStats {
        let queued = self.writer.max_capacity() - self.writer.capacity();
        self.write_counters.stats(queued)
    }

    async fn close(&self) {
        self.shut_down().await;
    }
}

#[cfg(feature = "testing")]
#[async_trait]
impl stockroom_storage::testing::FaultInjection for SqliteStorage {
    async fn execute_unchecked(&self, statement: &str) -> Result<u64, StorageError> {
        let path = self.path.clone();
        let statement = statement.to_owned();
        tokio::task::spawn_blocking(move || {
            let connection = open_connection(&path, false)?;
            connection
                .execute(&statement, [])
                .map(|changed| changed as u64)
                .map_err(crate::sql::storage_error)
        })
        .await
        .map_err(|error| StorageError::unavailable(format!("fault injection failed: {error}")))?
    }
}

fn unexpected(reply: WriteReply) -> StorageError {
    StorageError::Inconsistent(format!("writer answered with the wrong reply: {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite_migration::{M, Migrations};
    use stockroom_domain::Consumer;

    /// A database of schema version 1, with an event waiting, one
    /// dead-lettered and an idempotency key, comes up to date with nothing
    /// lost: the waiting event is leased, the dead letter listed, the key
    /// scoped to its customer.
    #[tokio::test]
    async fn a_version_one_database_is_migrated_without_loss() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(DATABASE_FILE_NAME);
        {
            let mut connection = open_connection(&path, false).unwrap();
            Migrations::new(vec![M::up(include_str!(
                "migrations/0001_initial_schema.sql"
            ))])
            .to_latest(&mut connection)
            .unwrap();
            connection
                .execute_batch(
                    "INSERT INTO outbox (seq, event_id, kind, order_id, order_version, total_units, occurred_at_ms)
                     VALUES (1, 'OrderReserved:a:1', 'OrderReserved', 'a', 1, 2, 1000),
                            (2, 'OrderReserved:b:1', 'OrderReserved', 'b', 1, 1, 1000),
                            (3, 'OrderReserved:c:1', 'OrderReserved', 'c', 1, 1, 1000);
                     INSERT INTO deliveries (consumer, seq, attempts, leased_until_ms) VALUES ('payment', 1, 2, 0);
                     INSERT INTO dead_letters (consumer, seq, attempts, at_ms) VALUES ('payment', 2, 10, 2000);
                     INSERT INTO idempotency_keys (key, fingerprint, result_json, created_at_ms)
                     VALUES ('k1', 'f1', '{\"outcome\":\"reserved\",\"order\":{\"id\":\"a\",\"customerId\":\"c7\"}}', 1000),
                            ('k3', 'f3', '{\"outcome\":\"rejected\",\"order\":{\"id\":\"r\",\"customerId\":\"c8\"},\"shortages\":[{\"productName\":\"Laptop\",\"requested\":3,\"available\":1}]}', 1000);
                     INSERT INTO orders (id, customer_id, status, reason, payment_status, version, created_at_ms, updated_at_ms)
                     VALUES ('a', 'c7', 'reserved', NULL, 'none', 1, 1000, 1000);
                     INSERT INTO order_items (order_id, product_key, product_name, quantity)
                     VALUES ('a', 'phone', 'Phone', 1), ('a', 'laptop', 'Laptop', 2);
                     INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
                     VALUES ('laptop', 'Laptop', 5, 2, 0, 5), ('phone', 'Phone', 3, 1, 0, 3);
                     INSERT INTO order_history (order_id, version, status, reason, at_ms)
                     VALUES ('a', 1, 'reserved', NULL, 1000);",
                )
                .unwrap();
        }
        let storage = SqliteStorage::open(&path, WriterConfig::default()).unwrap();
        let leased = storage
            .lease_events(Consumer::Payment, 10, 60_000)
            .await
            .unwrap();
        assert_eq!(leased.len(), 1, "the waiting event, and only it, is leased");
        assert_eq!(leased[0].event.order_id, "a");
        assert_eq!(leased[0].attempt, 3, "earlier deliveries are remembered");
        let dead = storage.dead_letters(Consumer::Payment, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event.order_id, "b");
        let keys = storage
            .read(|sql| {
                sql.rows(
                    "SELECT customer_id, key, order_id, shortages FROM idempotency_keys
                     ORDER BY key",
                    [],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, Option<String>>(3)?,
                        ))
                    },
                )
            })
            .await
            .unwrap();
        assert_eq!(
            keys,
            [
                ("c7".into(), "k1".into(), "a".into(), None),
                (
                    "c8".into(),
                    "k3".into(),
                    "r".into(),
                    Some(r#"[["Laptop",3,1]]"#.into())
                )
            ],
            "keys keep their customer, order and shortages"
        );
        let replay = storage
            .reserve(vec![stockroom_storage_conformance::support::keyed_request(
                "c7",
                &[("Laptop", 2), ("Phone", 1)],
                "k1",
                Some("f1"),
            )])
            .await
            .unwrap();
        stockroom_storage_conformance::support::assert_migrated_replay(&replay);
        let order = storage
            .order("a")
            .await
            .unwrap()
            .expect("the order survives");
        stockroom_storage_conformance::support::assert_migrated_order(&order);
        stockroom_storage_conformance::support::assert_migrated_ledger(&storage).await;
        storage.shut_down().await;
    }

    /// The largest rejected order anyone can make (50 products of
    /// 100-character names in four-byte characters, the longest order id,
    /// customer id and key) keeps at most `MAX_REJECTED_ORDER_BYTES` in its
    /// rows and their index entries.
    #[tokio::test]
    async fn the_largest_rejected_order_keeps_at_most_its_ceiling() {
        use stockroom_domain::rules::{ReserveAnswer, ReserveDecision};
        use stockroom_domain::{
            CustomerId, MAX_CUSTOMER_ID_LENGTH, MAX_ITEMS_PER_ORDER, MAX_PRODUCT_NAME_LENGTH,
            OrderItem, OrderItems, ProductName, Quantity,
        };
        use stockroom_storage::batch::Reservation;
        use stockroom_storage::{InitialStock, MAX_REJECTED_ORDER_BYTES, OrderFlow};

        let directory = tempfile::tempdir().unwrap();
        let storage =
            SqliteStorage::open_in_directory(directory.path(), WriterConfig::default()).unwrap();
        let wide = |seed: usize, length: usize| -> String {
            (0..length)
                .map(|index| char::from_u32(0x1_0000 + (seed * 131 + index) as u32).unwrap())
                .collect()
        };
        let products: Vec<ProductName> = (0..MAX_ITEMS_PER_ORDER)
            .map(|index| ProductName::new(&wide(index, MAX_PRODUCT_NAME_LENGTH)).unwrap())
            .collect();
        storage
            .initialize_stock(
                products
                    .iter()
                    .map(|product| InitialStock {
                        product: product.clone(),
                        quantity: 1,
                    })
                    .collect(),
            )
            .await
            .unwrap();
        let items = OrderItems::new(
            products
                .iter()
                .map(|product| OrderItem {
                    product: product.clone(),
                    quantity: Quantity::new(1_000).unwrap(),
                })
                .collect(),
        )
        .unwrap();
        let decision = storage
            .reserve(vec![Reservation {
                order_id: wide(999, 100),
                customer_id: CustomerId::new(&wide(998, MAX_CUSTOMER_ID_LENGTH)).unwrap(),
                items,
                idempotency_key: Some("k".repeat(255)),
                fingerprint: Some("f".repeat(64)),
                trace_parent: None,
            }])
            .await
            .unwrap();
        assert!(matches!(
            decision[0],
            ReserveDecision::Created(ReserveAnswer::Rejected { .. })
        ));
        let bytes = |column: &str| format!("COALESCE(length(CAST({column} AS BLOB)), 8)");
        let order_row = [
            "id",
            "customer_id",
            "status",
            "reason",
            "payment_status",
            "version",
            "created_at_ms",
            "updated_at_ms",
            "lines",
            "history",
        ]
        .map(bytes)
        .join(" + ");
        let key_row = [
            "customer_id",
            "key",
            "fingerprint",
            "order_id",
            "shortages",
            "created_at_ms",
        ]
        .map(bytes)
        .join(" + ");
        // Each index entry repeats its columns and the row's key.
        let order_indexes = format!(
            "3 * {} + {} + {}",
            bytes("id"),
            bytes("status"),
            bytes("customer_id")
        );
        let key_indexes = format!("2 * ({} + {}) + 8", bytes("customer_id"), bytes("key"));
        let kept: i64 = storage
            .read(move |sql| {
                sql.row(
                    &format!(
                        "SELECT (SELECT {order_row} + {order_indexes} FROM orders)
                              + (SELECT {key_row} + {key_indexes} FROM idempotency_keys)"
                    ),
                    [],
                    |row| row.get(0),
                )
            })
            .await
            .unwrap()
            .unwrap();
        assert!(
            u64::try_from(kept).unwrap() <= MAX_REJECTED_ORDER_BYTES,
            "the largest rejected order keeps {kept} bytes"
        );
        assert!(
            kept > 16 * 1024,
            "the order is really the largest: {kept} bytes"
        );
        storage.shut_down().await;
    }

    /// An outbox stored by schema version 9 (a row per event) comes up to
    /// date with every event and its state, and new events are numbered
    /// after every one it ever handed out.
    #[tokio::test]
    async fn a_version_nine_outbox_keeps_every_event_and_its_state() {
        use stockroom_storage_conformance::support;

        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(DATABASE_FILE_NAME);
        {
            let mut connection = open_connection(&path, false).unwrap();
            connection::MIGRATIONS
                .to_version(&mut connection, 9)
                .unwrap();
            connection
                .execute_batch(support::VERSION_NINE_OUTBOX)
                .unwrap();
            connection
                .execute(
                    "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'outbox'",
                    [support::VERSION_NINE_LAST_SEQ],
                )
                .unwrap();
        }
        let storage = Arc::new(SqliteStorage::open(&path, WriterConfig::default()).unwrap());
        support::assert_migrated_outbox(
            &(Arc::clone(&storage) as Arc<dyn stockroom_storage::testing::TestStorage>),
        )
        .await;
        storage.close().await;
    }
}
