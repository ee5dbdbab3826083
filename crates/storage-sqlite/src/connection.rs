//! The database's connections: opening one (the writer's with WAL and a
//! synchronous commit; readers read-only), the schema's migrations, and the
//! pool of idle read connections.

use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};
use stockroom_storage::{StorageError, cause};
use tokio::sync::Semaphore;

use crate::sql::storage_error;
use crate::{BUSY_TIMEOUT_MS, MAX_CONCURRENT_READS};

/// The writer's page cache, in KiB (SQLite's default is about 2 MiB).
///
/// Larger is not better here: at every commit SQLite walks its page cache's
/// hash table, whose size follows the pages the cache has held, so with a
/// 64 MiB cache that walk was 4 % of the writer thread's time on the hot
/// product, 1 % with 8 MiB and 0.25 % with 2 MiB (`perf record -t` on the
/// writer, docs/benchmarks.md). 8 MiB keeps the pages a batch touches (the
/// order, outbox and ledger tables' newest pages, each index's insertion
/// points) in memory; a miss is a read from the operating system's cache.
pub const WRITER_CACHE_KIB: i64 = 8_192;

/// The schema's history. Versions only grow; a released migration is never
/// edited, a change is a new one.
pub(crate) static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("migrations/0001_initial_schema.sql")),
        M::up(include_str!("migrations/0002_rules_engine.sql")),
        M::up(include_str!("migrations/0003_outbox_trace_context.sql")),
        M::up(include_str!("migrations/0004_history_in_order_row.sql")),
        M::up(include_str!("migrations/0005_keys_keep_decisions.sql")),
        M::up(include_str!("migrations/0006_counters_and_retention.sql")),
        M::up(include_str!("migrations/0007_shop_operations.sql")),
        M::up(include_str!("migrations/0008_room_for_updates.sql")),
        M::up(include_str!(
            "migrations/0009_fewer_order_index_entries.sql"
        )),
        M::up(include_str!("migrations/0010_outbox_rows_by_batch.sql")),
    ])
});

/// Read connections kept open between reads, at most
/// [`MAX_CONCURRENT_READS`] at once (`permits`).
pub(crate) struct ReaderPool {
    pub(crate) path: PathBuf,
    pub(crate) idle: Mutex<Vec<Connection>>,
    pub(crate) permits: Semaphore,
}

impl ReaderPool {
    pub(crate) fn take(&self) -> Result<Connection, StorageError> {
        if let Some(connection) = self.idle.lock().expect("reader pool lock").pop() {
            return Ok(connection);
        }
        open_connection(&self.path, true)
    }

    pub(crate) fn give_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().expect("reader pool lock");
        if idle.len() < MAX_CONCURRENT_READS {
            idle.push(connection);
        }
    }
}

/// Brings the schema to the newest version this build knows, each
/// migration in a transaction of its own.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), StorageError> {
    MIGRATIONS
        .to_latest(connection)
        .map_err(|error| StorageError::Unavailable {
            context: "cannot bring the sqlite schema up to date".into(),
            source: Some(cause(error)),
        })
}

pub(crate) fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StorageError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let connection =
        Connection::open_with_flags(path, flags).map_err(|error| StorageError::Unavailable {
            context: format!("cannot open {}", path.display()),
            source: Some(cause(error)),
        })?;
    connection
        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(storage_error)?;
    if !read_only {
        // WAL lets readers work while the writer commits; synchronous=FULL
        // fsyncs the WAL at every commit, so a commit that returned survives
        // a crash or power loss. That is what a 2xx promises. Savepoints keep
        // their journal in memory (temp_store): on disk it cost a write per
        // changed page. The page cache is `WRITER_CACHE_KIB`.
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA cache_size = -{WRITER_CACHE_KIB};"
            ))
            .map_err(storage_error)?;
    }
    Ok(connection)
}
