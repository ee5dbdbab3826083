//! Keeping the outbox small while it is used as a queue.
//!
//! Acknowledgements delete outbox rows (a row holds a batch's events for
//! one consumer), and PostgreSQL keeps a deleted row's index entries until
//! the table is vacuumed; every lease scans the pending rows in order and
//! walks past them. Autovacuum looks at a table at most once a minute by
//! default, while a flash sale deletes hundreds of outbox rows a second, so
//! leases would slow down as the sale goes on. This task vacuums the outbox itself, every
//! [`OUTBOX_VACUUM_INTERVAL_MS`], whenever at least
//! [`OUTBOX_VACUUM_MIN_DELETES`] rows were deleted since the last time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

/// The pause between two looks at how many outbox rows were deleted.
pub const OUTBOX_VACUUM_INTERVAL_MS: u64 = 1_000;

/// Deleted rows that make a vacuum worth its cost: fewer cost the leases
/// less than the vacuum would. A row holds up to a batch's events, so this
/// is a few thousand events, seconds of a flash sale.
pub const OUTBOX_VACUUM_MIN_DELETES: u64 = 250;

/// The vacuum the task runs. SKIP_LOCKED: a vacuum another instance is
/// running already does the work; never queue behind it. TRUNCATE false: a
/// queue's empty tail pages are filled again within the second, and giving
/// them back to the file system takes the table's exclusive lock, which every
/// batch that writes an event then waits for (PostgreSQL tries for up to
/// 5 s, the vacuum task stuck meanwhile; seen in docs/benchmarks.md, fifth
/// pass).
pub(crate) const OUTBOX_VACUUM: &str = "VACUUM (SKIP_LOCKED, TRUNCATE false) outbox";

/// Starts the task; it ends when the pool is closed or the handle aborted.
pub(crate) fn start(
    pool: Pool,
    deleted: Arc<AtomicU64>,
    statements: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(OUTBOX_VACUUM_INTERVAL_MS)).await;
            if pool.is_closed() {
                return;
            }
            if deleted.load(Ordering::Relaxed) < OUTBOX_VACUUM_MIN_DELETES {
                continue;
            }
            let count = deleted.swap(0, Ordering::Relaxed);
            let Ok(client) = pool.get().await else {
                continue;
            };
            statements.fetch_add(1, Ordering::Relaxed);
            match client.batch_execute(OUTBOX_VACUUM).await {
                Ok(()) => tracing::debug!(deleted = count, "outbox vacuumed"),
                Err(error) => tracing::warn!(%error, "outbox vacuum failed; trying again later"),
            }
        }
    })
}
