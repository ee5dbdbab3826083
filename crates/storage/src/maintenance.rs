//! Keeping a store in shape: retention, the probe that proves the write path
//! works, the write path's statistics, and closing.

use async_trait::async_trait;

use crate::{StorageError, WriteStats};

/// The most bytes one rejected order keeps in a store, its idempotency key
/// and their index entries included: 50 lines of 100-character names written
/// in four-byte characters, their shortages, the longest order id, key and
/// customer id, and the columns around them (pinned by the SQLite backend's
/// test of the largest possible order). A typical one keeps about 400.
pub const MAX_REJECTED_ORDER_BYTES: u64 = 80 * 1024;

/// What the retention pruner may delete, oldest first: rows older than each
/// cutoff, at most `limit` rows per table per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    /// Idempotency keys answered before this time (ms since the epoch).
    pub idempotency_keys_before_ms: i64,
    /// Processed-event records written before this time.
    pub processed_events_before_ms: i64,
    /// Rejected orders (with their history) created before this time.
    pub rejected_orders_before_ms: i64,
    /// The simulated provider's charges made before this time.
    pub provider_charges_before_ms: i64,
    /// Dead letters dead since before this time.
    pub dead_letters_before_ms: i64,
    pub limit: u32,
}

/// How many rows one prune deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub idempotency_keys: u64,
    pub processed_events: u64,
    pub rejected_orders: u64,
    pub provider_charges: u64,
    pub dead_letters: u64,
}

impl Pruned {
    /// Each kind of row and how many of them were deleted.
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("idempotency_keys", self.idempotency_keys),
            ("processed_events", self.processed_events),
            ("rejected_orders", self.rejected_orders),
            ("provider_charges", self.provider_charges),
            ("dead_letters", self.dead_letters),
        ]
    }

    /// Whether some table had more to delete than the limit allowed.
    pub fn hit_limit(&self, limit: u32) -> bool {
        self.by_kind()
            .iter()
            .any(|(_, count)| *count >= u64::from(limit))
    }
}

/// Retention, health and statistics of a store.
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// A short name for logs and reports, such as `sqlite`.
    fn backend_name(&self) -> &'static str;

    /// Deletes, oldest first, the rows retention no longer keeps (see
    /// [`Prune`]). Safe for the flow: a key's retries are long over; the
    /// processed-event records are those earlier versions wrote (the order's
    /// state now tells a redelivered event, for as long as the order is
    /// kept); a rejected order holds no stock (and
    /// its count leaves the counters with it); the provider's charges are
    /// long settled; a dead letter's order was ended by the sweep long ago.
    async fn prune(&self, prune: Prune) -> Result<Pruned, StorageError>;

    /// Writes and commits a tiny change through the same path every write
    /// takes: `Ok` means the storage accepts writes now (the writer is alive,
    /// the disk is neither full nor read-only, the database answers).
    async fn probe(&self) -> Result<(), StorageError>;

    /// SQL statements executed since the storage was opened, transaction
    /// control included: what a benchmark divides by the orders it placed.
    fn statements_executed(&self) -> u64;

    /// The write path's queue depth and batch counts, for the metrics. A
    /// backend without a write queue reports zeros.
    fn write_stats(&self) -> WriteStats {
        WriteStats::default()
    }

    /// Finishes queued work and closes the database. Calls made after it
    /// fail with [`StorageError::Unavailable`]. The default does nothing,
    /// for backends whose connections need no orderly close.
    async fn close(&self) {}
}
