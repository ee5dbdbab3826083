//! Retention: what the database keeps, and for how long. Every
//! [`PRUNE_INTERVAL_MS`] the pruner deletes, oldest first and at most
//! [`PRUNE_BATCH`] rows per table per round, the idempotency keys, the
//! processed-event records and the rejected orders older than their windows,
//! so the disk does not fill with rows nobody needs.
//!
//! What is not pruned, and why: acknowledged events leave the outbox when
//! they are acknowledged (a window of zero); dead letters stay until an
//! operator redrives them; orders that reserved stock stay, as the record of
//! what was sold.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stockroom_http_kit::{Metrics, metric_names};
use stockroom_storage::{Maintenance, Prune};
use tokio_util::sync::CancellationToken;

/// The pause between two prunes.
pub const PRUNE_INTERVAL_MS: u64 = 60_000;

/// The most rows one round deletes per table, so a prune never holds the
/// writer (or a table's locks) for long.
pub const PRUNE_BATCH: u32 = 10_000;

/// The most rounds one prune runs; a backlog larger than this many batches
/// is worked off over several intervals.
pub const MAX_PRUNE_ROUNDS: u32 = 10;

/// Idempotency keys are kept this long by default: two days, far beyond any
/// client's retries of one order (a day at least is what clients may count
/// on).
pub const DEFAULT_KEEP_IDEMPOTENCY_KEYS_MS: u64 = 2 * 24 * 3_600_000;

/// Processed-event records are kept this long by default. An event delivered
/// after its record is gone (a dead letter redriven after a week, say) finds
/// its order moved on and changes nothing; the record only lets it be
/// reported as a duplicate.
pub const DEFAULT_KEEP_PROCESSED_EVENTS_MS: u64 = 7 * 24 * 3_600_000;

/// Rejected orders (which hold no stock) are kept this long by default.
pub const DEFAULT_KEEP_REJECTED_ORDERS_MS: u64 = 30 * 24 * 3_600_000;

/// How long each kind of row is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub idempotency_keys_ms: u64,
    pub processed_events_ms: u64,
    pub rejected_orders_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            idempotency_keys_ms: DEFAULT_KEEP_IDEMPOTENCY_KEYS_MS,
            processed_events_ms: DEFAULT_KEEP_PROCESSED_EVENTS_MS,
            rejected_orders_ms: DEFAULT_KEEP_REJECTED_ORDERS_MS,
        }
    }
}

impl Retention {
    /// The cutoffs as of `now_ms`.
    pub fn prune_at(&self, now_ms: i64) -> Prune {
        let before =
            |window_ms: u64| now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        Prune {
            idempotency_keys_before_ms: before(self.idempotency_keys_ms),
            processed_events_before_ms: before(self.processed_events_ms),
            rejected_orders_before_ms: before(self.rejected_orders_ms),
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
        prune_once(storage.as_ref(), retention, &metrics).await;
    }
}

/// One prune: rounds until nothing old is left or [`MAX_PRUNE_ROUNDS`].
pub async fn prune_once(storage: &dyn Maintenance, retention: Retention, metrics: &Metrics) {
    for _ in 0..MAX_PRUNE_ROUNDS {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64);
        let prune = retention.prune_at(now_ms);
        match storage.prune(prune).await {
            Ok(pruned) => {
                for (table, count) in [
                    ("idempotency_keys", pruned.idempotency_keys),
                    ("processed_events", pruned.processed_events),
                    ("rejected_orders", pruned.rejected_orders),
                ] {
                    if count > 0 {
                        metrics.increment(
                            metric_names::PRUNED_ROWS_TOTAL,
                            metric_names::help(metric_names::PRUNED_ROWS_TOTAL),
                            &[("kind", table)],
                            count,
                        );
                    }
                }
                if pruned != Default::default() {
                    tracing::info!(
                        idempotency_keys = pruned.idempotency_keys,
                        processed_events = pruned.processed_events,
                        rejected_orders = pruned.rejected_orders,
                        "retention pruned old rows"
                    );
                }
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
        };
        let prune = retention.prune_at(10_000);
        assert_eq!(prune.idempotency_keys_before_ms, 9_000);
        assert_eq!(prune.processed_events_before_ms, 8_000);
        assert!(
            prune.rejected_orders_before_ms < 0,
            "a window longer than time itself keeps all"
        );
        assert_eq!(prune.limit, PRUNE_BATCH);
        assert!(Retention::default().idempotency_keys_ms >= 24 * 3_600_000);
    }
}
