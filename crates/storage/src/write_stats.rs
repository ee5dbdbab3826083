//! Figures of a backend's write path for data-service's metrics: how many
//! calls wait for the writer, and how many calls each write transaction
//! carried (the batching that makes a flash sale cheap).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the write path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Calls queued for the writer now.
    pub queued: u64,
    /// Write transactions (batches) run since the storage was opened.
    pub batches: u64,
    /// Calls those batches carried; divided by `batches`, the mean batch size.
    pub batched_calls: u64,
}

/// The cumulative counts a backend's writer keeps, shared with the storage
/// handle that reports them. Atomics, so the writer never waits on a reader.
#[derive(Debug, Default)]
pub struct WriteCounters {
    batches: AtomicU64,
    batched_calls: AtomicU64,
}

impl WriteCounters {
    /// Counts one batch of `calls` calls.
    pub fn record_batch(&self, calls: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_calls
            .fetch_add(calls as u64, Ordering::Relaxed);
    }

    /// The counts with the queue's current depth.
    pub fn stats(&self, queued: usize) -> WriteStats {
        WriteStats {
            queued: queued as u64,
            batches: self.batches.load(Ordering::Relaxed),
            batched_calls: self.batched_calls.load(Ordering::Relaxed),
        }
    }
}
