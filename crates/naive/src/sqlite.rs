//! Fix 4 as written: the naive data-service's documents in SQLite, one
//! connection per data-service process, each request one deferred
//! transaction on it (the write-up's `db.transaction(…)()` on a
//! `better-sqlite3` database opened once at start).
//!
//! better-sqlite3 is synchronous: a transaction runs from `BEGIN` to `COMMIT`
//! without yielding, so inside one process two requests' transactions never
//! interleave. The process's connection sits behind an async lock held for a
//! whole session, which gives the same order here. Across processes (the
//! lab's `two-hosts` scenario starts a second data-service over the same
//! file) SQLite's own locks decide: a writer waits up to the driver's 5 s
//! busy timeout, and a reader that would have to upgrade behind another
//! writer gets "database is locked" at once (waiting could deadlock).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, params};
use stockroom_contract::{InventoryItem, Order};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::NaiveError;
use crate::files::{InventoryFile, OrdersFile};

/// The database file's name in the data directory.
pub const DATABASE_FILE: &str = "naive.sqlite3";

/// How long a connection waits for a lock before it reports "database is
/// locked": better-sqlite3's default, which the write-up kept.
pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inventory (
    product_name TEXT PRIMARY KEY,
    quantity INTEGER NOT NULL,
    reserved_quantity INTEGER NOT NULL,
    sold INTEGER NOT NULL,
    received INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    body TEXT NOT NULL
);
";

/// The database of one data-service process: its path and its one
/// connection, opened by [`SqliteStore::initialize`] (or again after a
/// request that was cut off mid-statement took it with it).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    connection: Arc<Mutex<Option<Connection>>>,
}

fn database_error(error: rusqlite::Error) -> NaiveError {
    NaiveError::Database(error)
}

impl SqliteStore {
    pub fn new(directory: &Path) -> SqliteStore {
        SqliteStore {
            path: directory.join(DATABASE_FILE),
            connection: Arc::new(Mutex::new(None)),
        }
    }

    fn open(path: &Path) -> Result<Connection, NaiveError> {
        let connection = Connection::open(path).map_err(database_error)?;
        connection
            .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS))
            .map_err(database_error)?;
        Ok(connection)
    }

    /// Creates the tables, and fills them from `inventory` when `fresh` or
    /// empty.
    pub async fn initialize(
        &self,
        inventory: InventoryFile,
        fresh: bool,
    ) -> Result<(), NaiveError> {
        let path = self.path.clone();
        let mut slot = self.connection.lock().await;
        // A second data-service over the same file keeps the first one's
        // data; only `fresh` starts over, before any connection is open.
        drop(slot.take());
        let connection = blocking(move || {
            if let Some(directory) = path.parent() {
                std::fs::create_dir_all(directory).map_err(|source| NaiveError::Io {
                    file: directory.display().to_string(),
                    source,
                })?;
            }
            if fresh {
                let _ = std::fs::remove_file(&path);
            }
            let connection = SqliteStore::open(&path)?;
            connection.execute_batch(SCHEMA).map_err(database_error)?;
            let empty: i64 = connection
                .query_row("SELECT count(*) FROM inventory", [], |row| row.get(0))
                .map_err(database_error)?;
            if empty == 0 {
                write_inventory(&connection, &inventory)?;
            }
            Ok(connection)
        })
        .await?;
        *slot = Some(connection);
        Ok(())
    }

    /// Waits for the process's connection, and begins a deferred
    /// transaction on it that holds it until the transaction ends.
    pub async fn begin(&self) -> Result<SqliteTransaction, NaiveError> {
        let mut slot = Arc::clone(&self.connection).lock_owned().await;
        let path = self.path.clone();
        let taken = slot.take();
        let connection = blocking(move || {
            let connection = match taken {
                Some(connection) => connection,
                None => SqliteStore::open(&path)?,
            };
            connection
                .execute_batch("BEGIN DEFERRED")
                .map_err(database_error)?;
            Ok(connection)
        })
        .await?;
        *slot = Some(connection);
        Ok(SqliteTransaction {
            slot,
            committed: false,
        })
    }
}

/// Runs blocking database work off the async workers, so that a connection
/// waiting for a lock never stalls the requests that would release it.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, NaiveError> + Send + 'static,
) -> Result<T, NaiveError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(NaiveError::DatabaseTask)?
}

/// One request's transaction on the process's connection, which it holds
/// until it ends; dropped without [`commit`](Self::commit), it rolls back.
pub struct SqliteTransaction {
    slot: OwnedMutexGuard<Option<Connection>>,
    committed: bool,
}

impl SqliteTransaction {
    /// Runs `work` on the connection off the async workers. A request cut
    /// off while its statement runs loses the connection with it; the next
    /// transaction opens another.
    async fn with<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&Connection) -> Result<T, NaiveError> + Send + 'static,
    ) -> Result<T, NaiveError> {
        let connection = self.slot.take().ok_or(NaiveError::TransactionEnded)?;
        let (connection, result) = blocking(move || {
            let result = work(&connection);
            Ok((connection, result))
        })
        .await?;
        *self.slot = Some(connection);
        result
    }

    pub async fn load_inventory(&mut self) -> Result<InventoryFile, NaiveError> {
        self.with(|connection| {
            let mut statement = connection
                .prepare(
                    "SELECT product_name, quantity, reserved_quantity, sold, received
                     FROM inventory ORDER BY rowid",
                )
                .map_err(database_error)?;
            let inventory = statement
                .query_map([], |row| {
                    let quantity: i64 = row.get(1)?;
                    let reserved_quantity: i64 = row.get(2)?;
                    Ok(InventoryItem {
                        product_name: row.get(0)?,
                        quantity,
                        reserved_quantity,
                        available: quantity - reserved_quantity,
                        sold: row.get(3)?,
                        received: row.get(4)?,
                        max_per_customer: None,
                        low_stock_threshold: None,
                        movement_seq: None,
                    })
                })
                .map_err(database_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(database_error)?;
            Ok(InventoryFile {
                inventory,
                ..InventoryFile::default()
            })
        })
        .await
    }

    pub async fn save_inventory(&mut self, file: InventoryFile) -> Result<(), NaiveError> {
        self.with(move |connection| write_inventory(connection, &file))
            .await
    }

    pub async fn load_orders(&mut self) -> Result<OrdersFile, NaiveError> {
        self.with(|connection| {
            let mut statement = connection
                .prepare("SELECT body FROM orders ORDER BY position")
                .map_err(database_error)?;
            let bodies = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(database_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(database_error)?;
            let orders = bodies
                .iter()
                .map(|body| serde_json::from_str::<Order>(body))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| NaiveError::Corrupted {
                    file: DATABASE_FILE.into(),
                    message: error.to_string(),
                })?;
            Ok(OrdersFile { orders })
        })
        .await
    }

    pub async fn save_orders(&mut self, file: OrdersFile) -> Result<(), NaiveError> {
        self.with(move |connection| {
            let mut statement = connection
                .prepare(
                    "INSERT INTO orders (id, position, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                )
                .map_err(database_error)?;
            for (position, order) in file.orders.iter().enumerate() {
                let body = serde_json::to_string(order).map_err(NaiveError::Encode)?;
                statement
                    .execute(params![order.id, position as i64, body])
                    .map_err(database_error)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn commit(mut self) -> Result<(), NaiveError> {
        self.with(|connection| connection.execute_batch("COMMIT").map_err(database_error))
            .await?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for SqliteTransaction {
    /// Rolls back what the request did not commit before the next request
    /// gets the connection, so that no lock outlives its request (another
    /// process may be waiting for it). A rollback touches no file when the
    /// transaction wrote nothing, and otherwise only discards its pages.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Some(connection) = self.slot.as_ref()
            && !connection.is_autocommit()
            && let Err(error) = connection.execute_batch("ROLLBACK")
        {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot roll back; the connection is closed"
            );
            self.slot.take();
        }
    }
}

fn write_inventory(connection: &Connection, file: &InventoryFile) -> Result<(), NaiveError> {
    let mut statement = connection
        .prepare(
            "INSERT INTO inventory (product_name, quantity, reserved_quantity, sold, received)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (product_name) DO UPDATE SET quantity = excluded.quantity,
                 reserved_quantity = excluded.reserved_quantity, sold = excluded.sold,
                 received = excluded.received",
        )
        .map_err(database_error)?;
    for item in &file.inventory {
        statement
            .execute(params![
                item.product_name,
                item.quantity,
                item.reserved_quantity,
                item.sold,
                item.received
            ])
            .map_err(database_error)?;
    }
    Ok(())
}
