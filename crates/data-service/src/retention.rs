//! Retention: what the database keeps, and for how long. Every
//! [`PRUNE_INTERVAL_MS`] the pruner deletes, oldest first, the idempotency
//! keys, the processed-event records, the rejected orders, the simulated
//! provider's charges and the dead letters older than their windows, in
//! rounds of at most [`PRUNE_BATCH`] rows per table with a pause between
//! rounds, until nothing old is left. It keeps up with any rate the writer
//! can sustain, so anonymous traffic cannot grow the store beyond its windows.
//!
//! What a flood of rejected orders costs is bounded: each keeps at most
//! [`MAX_REJECTED_ORDER_BYTES`] (its row and its idempotency key, both pruned
//! after their windows), so the rows it leaves behind are at most its rate ×
//! the rejected orders' window × that ceiling; the rate is for the gateway in
//! front of order-service to bound.
//!
//! What is not pruned, and why: acknowledged events leave the outbox when
//! they are acknowledged (a window of zero); orders that reserved stock stay,
//! as the record of what was sold (each holds stock, so there are at most as
//! many as units ever received).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stockroom_http_kit::{Metrics, metric_names};
use stockroom_storage::{Maintenance, Prune, Pruned};
use tokio_util::sync::CancellationToken;

/// The pause between two prunes.
pub const PRUNE_INTERVAL_MS: u64 = 60_000;

/// The most rows one round deletes per table, so a round never holds the
/// writer (or a table's locks) for long.
pub const PRUNE_BATCH: u32 = 10_000;

/// The pause between two rounds of one prune, so that orders are written
/// between rounds: the writer spends at most about half its time pruning a
/// backlog, and a prune still deletes far more rows a second (a round takes
/// a few tens of milliseconds) than anonymous clients can make.
pub const PRUNE_ROUND_PAUSE_MS: u64 = 50;

pub use stockroom_storage::MAX_REJECTED_ORDER_BYTES;

/// Idempotency keys are kept this long by default: two days, far beyond any
/// client's retries of one order (a day at least is what clients may count
/// on).
pub const DEFAULT_KEEP_IDEMPOTENCY_KEYS_MS: u64 = 2 * 24 * 3_600_000;

/// Processed-event records are kept this long by default. Only stores
/// written by earlier versions hold any: the order's own state now tells an
/// event that took effect from one that did not (see
/// `stockroom_domain::rules::payment_recorded`), so no record is written, and
/// the old ones leave the table within this window.
pub const DEFAULT_KEEP_PROCESSED_EVENTS_MS: u64 = 7 * 24 * 3_600_000;

/// Rejected orders (which hold no stock) are kept this long by default: a
/// week to see what a sale turned away, and never less than the idempotency
/// keys, whose replays are rebuilt from the order they name.
pub const DEFAULT_KEEP_REJECTED_ORDERS_MS: u64 = 7 * 24 * 3_600_000;

/// The simulated provider's charges are kept this long by default: every
/// charge of an order is long settled by then (a lease is at most ten
/// minutes).
pub const DEFAULT_KEEP_PROVIDER_CHARGES_MS: u64 = 30 * 24 * 3_600_000;

/// Dead letters are kept this long by default for an operator to look at and
/// redrive. The order of a dead letter does not wait for it: the sweep ends
/// every reservation whose next step is overdue.
pub const DEFAULT_KEEP_DEAD_LETTERS_MS: u64 = 30 * 24 * 3_600_000;

const _: () = assert!(DEFAULT_KEEP_REJECTED_ORDERS_MS >= DEFAULT_KEEP_IDEMPOTENCY_KEYS_MS);

/// How long each kind of row is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub idempotency_keys_ms: u64,
    pub processed_events_ms: u64,
    /// At least `idempotency_keys_ms`: a key's replay is rebuilt from the
    /// order it created.
    pub rejected_orders_ms: u64,
    pub provider_charges_ms: u64,
    pub dead_letters_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            idempotency_keys_ms: DEFAULT_KEEP_IDEMPOTENCY_KEYS_MS,
            processed_events_ms: DEFAULT_KEEP_PROCESSED_EVENTS_MS,
            rejected_orders_ms: DEFAULT_KEEP_REJECTED_ORDERS_MS,
            provider_charges_ms: DEFAULT_KEEP_PROVIDER_CHARGES_MS,
            dead_letters_ms: DEFAULT_KEEP_DEAD_LETTERS_MS,
        }
    }
}

impl Retention {
    /// The cutoffs as of `now_ms`. A rejected order outlives its key, whatever
    /// the windows say.
    pub fn prune_at(&self, now_ms: i64) -> Prune {
        let before =
            |window_ms: u64| now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        Prune {
            idempotency_keys_before_ms: before(self.idempotency_keys_ms),
            processed_events_before_ms: before(self.processed_events_ms),
            rejected_orders_before_ms: before(
                self.rejected_orders_ms.max(self.idempotency_keys_ms),
            ),
            provider_charges_before_ms: before(self.provider_charges_ms),
            dead_letters_before_ms: before(self.dead_letters_ms),
            limit: PRUNE_BATCH,
        }
    }
}

/// Prunes every [`PRUNE_INTERVAL_MS`] until `stop` is cancelled.
pub async fn run(
    storage: Arc<dyn Maintenance>,
    retention: Retention,
    metrics: Metrics,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(PRUNE_INTERVAL_MS)) => {}
        }
        prune_once(storage.as_ref(), retention, &metrics, &stop).await;
    }
}

/// One prune: rounds, [`PRUNE_ROUND_PAUSE_MS`] apart, until nothing old is
/// left, the storage fails (tried again next interval) or `stop` is
/// cancelled.
pub async fn prune_once(
    storage: &dyn Maintenance,
    retention: Retention,
    metrics: &Metrics,
    stop: &CancellationToken,
) {
    loop {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64);
        let prune = retention.prune_at(now_ms);
        match storage.prune(prune).await {
            Ok(pruned) => {
                record(&pruned, metrics);
                if !pruned.hit_limit(prune.limit) {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "retention could not prune; trying again next interval"
                );
                return;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(PRUNE_ROUND_PAUSE_MS)) => {}
        }
    }
}

/// Counts and logs what one round deleted.
fn record(pruned: &Pruned, metrics: &Metrics) {
    for (kind, count) in pruned.by_kind() {
        if count > 0 {
            metrics.increment(
                metric_names::PRUNED_ROWS_TOTAL,
                metric_names::help(metric_names::PRUNED_ROWS_TOTAL),
                &[("kind", kind)],
                count,
            );
        }
    }
    if *pruned != Pruned::default() {
        tracing::info!(
            idempotency_keys = pruned.idempotency_keys,
            processed_events = pruned.processed_events,
            rejected_orders = pruned.rejected_orders,
            provider_charges = pruned.provider_charges,
            dead_letters = pruned.dead_letters,
            "retention pruned old rows"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_cutoff() {
        let retention = Retention {
            idempotency_keys_ms: 1_000,
            processed_events_ms: 2_000,
            rejected_orders_ms: u64::MAX,
            provider_charges_ms: 3_000,
            dead_letters_ms: 4_000,
        };
        let prune = retention.prune_at(10_000);
        assert_eq!(prune.idempotency_keys_before_ms, 9_000);
        assert_eq!(prune.processed_events_before_ms, 8_000);
        assert_eq!(prune.provider_charges_before_ms, 7_000);
        assert_eq!(prune.dead_letters_before_ms, 6_000);
        assert!(
            prune.rejected_orders_before_ms < 0,
            "a window longer than time itself keeps all"
        );
        let short = Retention {
            rejected_orders_ms: 10,
            ..retention
        };
        assert_eq!(
            short.prune_at(10_000).rejected_orders_before_ms,
            9_000,
            "a rejected order outlives its key"
        );
        assert_eq!(prune.limit, PRUNE_BATCH);
        assert!(Retention::default().idempotency_keys_ms >= 24 * 3_600_000);
    }
}
