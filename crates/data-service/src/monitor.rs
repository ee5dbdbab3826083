//! data-service's own health, part by part, and its gauges: every
//! [`MONITOR_INTERVAL_MS`] it writes through the storage's write path (a full
//! or read-only disk, a dead writer or an unreachable database shows at once)
//! and counts the outbox per consumer.
//!
//! Parts: `storage` (down while writes fail), `outbox` (waiting events and
//! the oldest one's age per consumer), `deadLetters` (degraded while any
//! event waits for an operator).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use stockroom_http_kit::{Metrics, PartStatus, Readiness};
use stockroom_storage::Storage;
use tokio_util::sync::CancellationToken;

/// The pause between two looks at the storage.
pub const MONITOR_INTERVAL_MS: u64 = 1_000;

/// Looks at the storage until `stop` is cancelled.
pub async fn run(
    storage: Arc<dyn Storage>,
    readiness: Readiness,
    metrics: Metrics,
    stop: CancellationToken,
) {
    loop {
        look(storage.as_ref(), &readiness, &metrics).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(MONITOR_INTERVAL_MS)) => {}
        }
    }
}

/// One look: the storage's parts and gauges, now.
pub async fn look(storage: &dyn Storage, readiness: &Readiness, metrics: &Metrics) {
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
    let counts = match storage.outbox_counts().await {
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
            "stockroom_outbox_pending",
            "events waiting for their consumer, per consumer",
            &[("consumer", consumer)],
            count.pending as i64,
        );
        metrics.set_gauge(
            "stockroom_outbox_oldest_age_ms",
            "how long the oldest waiting event has waited, per consumer",
            &[("consumer", consumer)],
            oldest_age_ms,
        );
        metrics.set_gauge(
            "stockroom_dead_letters",
            "events refused as poison and kept for redrive, per consumer",
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
