//! data-service's own health, part by part, and its gauges: every
//! [`MONITOR_INTERVAL_MS`] it writes through the storage's write path (a full
//! or read-only disk, a dead writer or an unreachable database shows at once)
//! and counts the outbox per consumer, and it publishes the write path's
//! queue depth and batch counts.
//!
//! Parts: `storage` (down while writes fail), `outbox` (waiting events and
//! the oldest one's age per consumer), `deadLetters` (degraded while any
//! event waits for an operator).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use stockroom_http_kit::{Metrics, PartStatus, Readiness, metric_names};
use stockroom_storage::{EventOutbox, Maintenance};
use tokio_util::sync::CancellationToken;

/// The pause between two looks at the storage.
pub const MONITOR_INTERVAL_MS: u64 = 1_000;

/// Looks at the storage until `stop` is cancelled.
pub async fn run(
    storage: Arc<dyn Maintenance>,
    outbox: Arc<dyn EventOutbox>,
    readiness: Readiness,
    metrics: Metrics,
    stop: CancellationToken,
) {
    loop {
        look(storage.as_ref(), outbox.as_ref(), &readiness, &metrics).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(MONITOR_INTERVAL_MS)) => {}
        }
    }
}

/// One look: the storage's parts and gauges, now.
pub async fn look(
    storage: &dyn Maintenance,
    outbox: &dyn EventOutbox,
    readiness: &Readiness,
    metrics: &Metrics,
) {
    match storage.probe().await {
        Ok(()) => readiness.set(
            "storage",
            PartStatus::Ok,
            json!({"backend": storage.backend_name(), "writable": true}),
        ),
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "storage does not accept writes"
            );
            readiness.set(
                "storage",
                PartStatus::Down,
                json!({"backend": storage.backend_name(), "writable": false, "error": error.to_string()}),
            );
        }
    }
    publish_write_stats(storage, metrics);
    let counts = match outbox.outbox_counts().await {
        Ok(counts) => counts,
        Err(error) => {
            readiness.set(
                "outbox",
                PartStatus::Down,
                json!({"error": error.to_string()}),
            );
            return;
        }
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    let mut outbox = serde_json::Map::new();
    let mut dead = serde_json::Map::new();
    let mut any_dead = false;
    for count in &counts {
        let consumer = count.consumer.as_str();
        let oldest_age_ms = count
            .oldest_pending_at_ms
            .map_or(0, |oldest| (now_ms - oldest).max(0));
        outbox.insert(
            consumer.to_owned(),
            json!({"pending": count.pending, "oldestAgeMs": oldest_age_ms}),
        );
        dead.insert(consumer.to_owned(), json!(count.dead));
        any_dead |= count.dead > 0;
        metrics.set_gauge(
            metric_names::OUTBOX_PENDING,
            metric_names::help(metric_names::OUTBOX_PENDING),
            &[("consumer", consumer)],
            count.pending as i64,
        );
        metrics.set_gauge(
            metric_names::OUTBOX_OLDEST_AGE_MS,
            metric_names::help(metric_names::OUTBOX_OLDEST_AGE_MS),
            &[("consumer", consumer)],
            oldest_age_ms,
        );
        metrics.set_gauge(
            metric_names::DEAD_LETTERS,
            metric_names::help(metric_names::DEAD_LETTERS),
            &[("consumer", consumer)],
            count.dead as i64,
        );
    }
    readiness.set("outbox", PartStatus::Ok, serde_json::Value::Object(outbox));
    let dead_status = if any_dead {
        PartStatus::Degraded
    } else {
        PartStatus::Ok
    };
    readiness.set("deadLetters", dead_status, serde_json::Value::Object(dead));
}

/// The write path's queue depth and batch counts: the mean batch size is the
/// rate of calls over the rate of batches.
fn publish_write_stats(storage: &dyn Maintenance, metrics: &Metrics) {
    let stats = storage.write_stats();
    let backend = [("backend", storage.backend_name())];
    metrics.set_gauge(
        metric_names::WRITE_QUEUE_DEPTH,
        metric_names::help(metric_names::WRITE_QUEUE_DEPTH),
        &backend,
        stats.queued as i64,
    );
    metrics.set_counter(
        metric_names::WRITE_BATCHES_TOTAL,
        metric_names::help(metric_names::WRITE_BATCHES_TOTAL),
        &backend,
        stats.batches,
    );
    metrics.set_counter(
        metric_names::WRITE_BATCH_CALLS_TOTAL,
        metric_names::help(metric_names::WRITE_BATCH_CALLS_TOTAL),
        &backend,
        stats.batched_calls,
    );
}
