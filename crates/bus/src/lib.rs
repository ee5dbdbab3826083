//! The event bus as its consumers see it.
//!
//! A consumer receives [`Delivery`]s from an [`EventSource`], applies their
//! effect (which records the event id in the same transaction, so a repeat is
//! harmless) and only then acknowledges them. Anything not acknowledged is
//! delivered again: delivery is at least once, the effect exactly once.
//!
//! The embedded implementation, [`EmbeddedEventSource`], leases events from
//! data-service's outbox over HTTP; a broker-backed implementation plugs in
//! behind the same trait, fed by [`relay_outbox`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stockroom_contract::{AckRequest, Delivery, DeliveryBatch, Event, PollRequest};
use stockroom_http_kit::{ClientError, ServiceClient};
use tokio_util::sync::CancellationToken;

mod relay;

pub use relay::{RELAY_BATCH_SIZE, RELAY_LEASE_MS, RELAY_POLL_INTERVAL_MS, relay_outbox};

/// How long a consumer may hold leased events before data-service presumes it
/// dead and hands them to another consumer.
pub const LEASE_MS: u64 = 30_000;

/// How long one receive call waits for an event when none is ready.
pub const RECEIVE_WAIT_MS: u64 = 1_000;

/// The most events a consumer takes in one receive.
pub const MAX_EVENTS_PER_RECEIVE: u32 = 256;

/// The first pause after a failed receive or a failed batch; it doubles up to
/// [`MAX_RETRY_BACKOFF_MS`].
pub const MIN_RETRY_BACKOFF_MS: u64 = 100;
pub const MAX_RETRY_BACKOFF_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

impl From<ClientError> for BusError {
    fn from(error: ClientError) -> Self {
        BusError::Unavailable(error.to_string())
    }
}

/// Where a consumer's events come from.
#[async_trait]
pub trait EventSource: Send + Sync + 'static {
    /// Up to `max_events` events, waiting a bounded time when none is ready.
    async fn receive(&self, max_events: u32) -> Result<Vec<Delivery>, BusError>;

    /// Confirms that these deliveries' effects are committed.
    async fn acknowledge(&self, delivery_ids: &[i64]) -> Result<(), BusError>;

    /// Gives deliveries back undone, to be delivered again (to this or another
    /// consumer). A source whose deliveries come back by themselves when a
    /// lease runs out may do nothing here.
    async fn reject(&self, delivery_ids: &[i64]) -> Result<(), BusError>;
}

/// Where the outbox relay publishes events when a broker carries them.
#[async_trait]
pub trait EventPublisher: Send + Sync + 'static {
    /// Publishes every event durably; returns only after the broker confirmed
    /// each one, so the caller may then mark them as sent.
    async fn publish(&self, events: &[Event]) -> Result<(), BusError>;
}

/// Leases events from data-service's outbox (the embedded bus).
pub struct EmbeddedEventSource {
    client: ServiceClient,
    consumer: &'static str,
    lease_ms: u64,
    wait_ms: u64,
}

impl EmbeddedEventSource {
    pub fn new(data_url: &str, consumer: &'static str) -> EmbeddedEventSource {
        EmbeddedEventSource {
            client: ServiceClient::new("data-service", data_url),
            consumer,
            lease_ms: LEASE_MS,
            wait_ms: RECEIVE_WAIT_MS,
        }
    }

    /// A shorter wait for events, for tests that poll in a tight loop.
    pub fn with_wait_ms(mut self, wait_ms: u64) -> EmbeddedEventSource {
        self.wait_ms = wait_ms;
        self
    }

    /// A shorter lease, for tests that simulate a consumer crash.
    pub fn with_lease_ms(mut self, lease_ms: u64) -> EmbeddedEventSource {
        self.lease_ms = lease_ms;
        self
    }
}

#[async_trait]
impl EventSource for EmbeddedEventSource {
    async fn receive(&self, max_events: u32) -> Result<Vec<Delivery>, BusError> {
        let batch: DeliveryBatch = self
            .client
            .post(
                &format!("/events/{}/lease", self.consumer),
                &PollRequest {
                    max_events,
                    wait_ms: self.wait_ms,
                    lease_ms: self.lease_ms,
                },
            )
            .await?;
        Ok(batch.deliveries)
    }

    async fn acknowledge(&self, delivery_ids: &[i64]) -> Result<(), BusError> {
        if delivery_ids.is_empty() {
            return Ok(());
        }
        self.client
            .post::<(), _>(
                &format!("/events/{}/ack", self.consumer),
                &AckRequest {
                    delivery_ids: delivery_ids.to_vec(),
                },
            )
            .await?;
        Ok(())
    }

    async fn reject(&self, _delivery_ids: &[i64]) -> Result<(), BusError> {
        // The lease runs out and data-service hands the events out again.
        Ok(())
    }
}

/// Receives batches until `shutdown` is cancelled. Each batch goes to
/// `handle`; only when it succeeds is the batch acknowledged. A failure leaves
/// the batch unacknowledged, so it is delivered again after its lease.
pub async fn consume<H, F>(
    name: &'static str,
    source: Arc<dyn EventSource>,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(Vec<Delivery>) -> F + Send + Sync,
    F: Future<Output = Result<(), String>> + Send,
{
    let mut backoff_ms = MIN_RETRY_BACKOFF_MS;
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = source.receive(MAX_EVENTS_PER_RECEIVE) => received,
        };
        let outcome = match received {
            Ok(deliveries) if deliveries.is_empty() => Ok(()),
            Ok(deliveries) => {
                let ids: Vec<i64> = deliveries
                    .iter()
                    .map(|delivery| delivery.delivery_id)
                    .collect();
                // The batch is finished even when shutdown is requested meanwhile:
                // stopping halfway would only cause redelivery.
                match handle(deliveries).await {
                    Ok(()) => source
                        .acknowledge(&ids)
                        .await
                        .map_err(|error| error.to_string()),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(()) => backoff_ms = MIN_RETRY_BACKOFF_MS,
            Err(error) => {
                tracing::warn!(consumer = name, %error, backoff_ms, "event batch failed; it will be delivered again");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                }
                backoff_ms = (backoff_ms * 2).min(MAX_RETRY_BACKOFF_MS);
            }
        }
    }
}
