//! The outbox relay: moves events from the outbox table to a broker.
//!
//! Events are written to the outbox in the transaction of the change they
//! report. The relay leases them (the same lease the embedded bus uses, so
//! several data-service instances can relay at once without handing out the
//! same event twice while it is leased), publishes them, waits for the
//! broker's confirms, and only then acknowledges them in storage. A crash
//! between publish and acknowledge publishes an event again after its lease:
//! at least once, and the consumers' de-duplication makes it exactly one
//! effect.

use std::sync::Arc;
use std::time::Duration;

use stockroom_domain::{CONSUMER_INVENTORY, CONSUMER_PAYMENT};
use stockroom_storage::Storage;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{EventPublisher, MAX_RETRY_BACKOFF_MS, MIN_RETRY_BACKOFF_MS};

/// The most events published per round and consumer queue.
pub const RELAY_BATCH_SIZE: u32 = 500;

/// How long relayed events stay leased; if the relay dies before the broker
/// confirms them, another relay publishes them after this.
pub const RELAY_LEASE_MS: u64 = 15_000;

/// How often an idle relay looks for events written by other data-service
/// instances (its own writes wake it at once).
pub const RELAY_POLL_INTERVAL_MS: u64 = 200;

/// Runs until `shutdown` is cancelled.
pub async fn relay_outbox(
    storage: Arc<dyn Storage>,
    publisher: Arc<dyn EventPublisher>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff_ms = MIN_RETRY_BACKOFF_MS;
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match relay_round(storage.as_ref(), publisher.as_ref()).await {
            Ok(0) => {
                backoff_ms = MIN_RETRY_BACKOFF_MS;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(RELAY_POLL_INTERVAL_MS)) => {}
                }
            }
            Ok(_) => {
                backoff_ms = MIN_RETRY_BACKOFF_MS;
                if shutdown.is_cancelled() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, backoff_ms, "outbox relay failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                }
                backoff_ms = (backoff_ms * 2).min(MAX_RETRY_BACKOFF_MS);
            }
        }
    }
}

/// Publishes one batch per consumer queue; returns how many events it moved.
async fn relay_round(
    storage: &dyn Storage,
    publisher: &dyn EventPublisher,
) -> Result<usize, String> {
    let mut moved = 0;
    for consumer in [CONSUMER_PAYMENT, CONSUMER_INVENTORY] {
        let deliveries = storage
            .lease_events(consumer, RELAY_BATCH_SIZE, RELAY_LEASE_MS)
            .await
            .map_err(|error| error.to_string())?;
        if deliveries.is_empty() {
            continue;
        }
        let events: Vec<_> = deliveries
            .iter()
            .map(|delivery| delivery.event.clone())
            .collect();
        publisher
            .publish(&events)
            .await
            .map_err(|error| error.to_string())?;
        let ids = deliveries
            .iter()
            .map(|delivery| delivery.delivery_id)
            .collect();
        storage
            .acknowledge_events(consumer, ids)
            .await
            .map_err(|error| error.to_string())?;
        moved += deliveries.len();
    }
    Ok(moved)
}
