//! The outbox relay: moves events from the outbox table to a broker. It runs
//! beside data-service, the only process that touches storage.
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
use std::time::{Duration, Instant};

use serde_json::json;
use stockroom_http_kit::{ErrorChain, PartStatus, Readiness};

use stockroom_contract::Event;
use stockroom_domain::Consumer;
use stockroom_domain::outbox::{Delivery, DeliveryOutcome};
use stockroom_storage::{EventOutbox, StorageError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use stockroom_bus::{BusError, EventPublisher, MAX_RETRY_BACKOFF_MS, MIN_RETRY_BACKOFF_MS};

/// Why a round of the relay failed; the events it held are given back.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot read or settle the outbox")]
    Storage(#[from] StorageError),
    #[error("cannot publish to the broker")]
    Broker(#[from] BusError),
}

/// The most events published per round and consumer queue.
pub const RELAY_BATCH_SIZE: u32 = 500;

/// How long relayed events stay leased; if the relay dies before the broker
/// confirms them, another relay publishes them after this.
pub const RELAY_LEASE_MS: u64 = 15_000;

/// How often an idle relay looks for events written by other data-service
/// instances (its own writes wake it at once).
pub const RELAY_POLL_INTERVAL_MS: u64 = 200;

/// How long the relay may keep failing (the broker or the database down)
/// before data-service reports it down rather than degraded.
pub const RELAY_DOWN_AFTER_MS: u64 = 10_000;

/// How the relay retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelaySettings {
    /// The longest pause between two failed rounds (the pause doubles from
    /// [`MIN_RETRY_BACKOFF_MS`] up to this). Whatever it is, a failed round
    /// costs an event nothing: it is given back, never counted as an attempt.
    pub max_backoff_ms: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            max_backoff_ms: MAX_RETRY_BACKOFF_MS,
        }
    }
}

/// Runs until `shutdown` is cancelled, retrying a broker or database that is
/// down forever (backing off up to `settings.max_backoff_ms`) and reporting
/// itself as the `relay` part of `readiness`.
pub async fn relay_outbox(
    storage: Arc<dyn EventOutbox>,
    publisher: Arc<dyn EventPublisher>,
    wake: Arc<Notify>,
    readiness: Readiness,
    settings: RelaySettings,
    shutdown: CancellationToken,
) {
    let mut backoff_ms = MIN_RETRY_BACKOFF_MS.min(settings.max_backoff_ms);
    let mut failing_since: Option<Instant> = None;
    let mut relayed: u64 = 0;
    // Every failed round since the start: an operator sees how hard the relay
    // tried during an outage, and that no event paid for it.
    let mut failed_rounds: u64 = 0;
    readiness.set("relay", PartStatus::Ok, json!({"relayed": relayed}));
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let round = relay_round(storage.as_ref(), publisher.as_ref()).await;
        match &round {
            Ok(moved) => {
                relayed += *moved as u64;
                if failing_since.take().is_some() {
                    tracing::info!("outbox relay works again");
                }
                readiness.set(
                    "relay",
                    PartStatus::Ok,
                    json!({"relayed": relayed, "failedRounds": failed_rounds}),
                );
            }
            Err(error) => {
                failed_rounds += 1;
                let since = *failing_since.get_or_insert_with(Instant::now);
                let status = if since.elapsed() >= Duration::from_millis(RELAY_DOWN_AFTER_MS) {
                    PartStatus::Down
                } else {
                    PartStatus::Degraded
                };
                readiness.set(
                    "relay",
                    status,
                    json!({"relayed": relayed, "failedRounds": failed_rounds, "failingForMs": since.elapsed().as_millis() as u64, "error": ErrorChain(error).to_string()}),
                );
            }
        }
        match round {
            Ok(0) => {
                backoff_ms = MIN_RETRY_BACKOFF_MS.min(settings.max_backoff_ms);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(RELAY_POLL_INTERVAL_MS)) => {}
                }
            }
            Ok(_) => {
                backoff_ms = MIN_RETRY_BACKOFF_MS.min(settings.max_backoff_ms);
                if shutdown.is_cancelled() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    backoff_ms,
                    "outbox relay failed; retrying"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                }
                backoff_ms = (backoff_ms * 2).min(settings.max_backoff_ms);
            }
        }
    }
}

/// Publishes one batch per consumer queue; returns how many events it moved.
/// Events whose publish failed are given back at once without counting an
/// attempt: a broker outage delays events, it never dead-letters them.
async fn relay_round(
    storage: &dyn EventOutbox,
    publisher: &dyn EventPublisher,
) -> Result<usize, RelayError> {
    let mut moved = 0;
    for consumer in Consumer::FLOW {
        let deliveries = storage
            .lease_events(consumer, RELAY_BATCH_SIZE, RELAY_LEASE_MS)
            .await?;
        if deliveries.is_empty() {
            continue;
        }
        let events: Vec<Event> = deliveries
            .iter()
            .map(|delivery| Event::from_record(&delivery.event))
            .collect();
        let receipts: Vec<_> = deliveries.iter().map(Delivery::receipt).collect();
        if let Err(error) = publisher.publish(&events).await {
            if let Err(release) = storage
                .finish_deliveries(consumer, DeliveryOutcome::Release, receipts)
                .await
            {
                tracing::warn!(
                    error = &release as &dyn std::error::Error,
                    "cannot give unpublished events back; they return when their lease ends"
                );
            }
            return Err(error.into());
        }
        storage
            .finish_deliveries(consumer, DeliveryOutcome::Acknowledge, receipts)
            .await?;
        moved += deliveries.len();
    }
    Ok(moved)
}
