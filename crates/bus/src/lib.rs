//! The event bus as its consumers see it.
//!
//! A consumer receives [`Delivery`]s from an [`EventSource`], applies their
//! effect (which records the event id in the same transaction, so a repeat is
//! harmless) and only then acknowledges them. Anything not acknowledged is
//! delivered again: delivery is at least once, the effect exactly once.
//!
//! The embedded implementation, [`EmbeddedEventSource`], leases events from
//! data-service's outbox over HTTP; a broker-backed implementation plugs in
//! behind the same trait, fed by data-service's outbox relay through an
//! [`EventPublisher`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stockroom_contract::{AckRequest, Delivery, DeliveryBatch, Event, PollRequest, Receipt};
use stockroom_http_kit::{ErrorChain, PartStatus, Readiness, ServiceClient};
use tokio_util::sync::CancellationToken;

mod error;

use error::RoundError;
pub use error::{BusError, HandlerError};

/// How long a consumer may hold leased events before data-service presumes it
/// dead and hands them to another consumer.
pub const LEASE_MS: u64 = 30_000;

/// How long one receive call waits for an event when none is ready.
pub const RECEIVE_WAIT_MS: u64 = 1_000;

/// The most events a consumer takes in one receive: a whole coalesced batch
/// of reservations (order-service sends at most 256 per batch) and more, so
/// that payment and settlement batches are as large as the reservations'.
pub const MAX_EVENTS_PER_RECEIVE: u32 = 512;

/// The first pause after a failed receive or a failed batch; it doubles up to
/// [`MAX_RETRY_BACKOFF_MS`].
pub const MIN_RETRY_BACKOFF_MS: u64 = 100;
pub const MAX_RETRY_BACKOFF_MS: u64 = 5_000;

/// Where a consumer's events come from.
#[async_trait]
pub trait EventSource: Send + Sync + 'static {
    /// Up to `max_events` events, waiting a bounded time when none is ready.
    async fn receive(&self, max_events: u32) -> Result<Vec<Delivery>, BusError>;

    /// Confirms that these deliveries' effects are committed.
    async fn acknowledge(&self, deliveries: &[Receipt]) -> Result<(), BusError>;

    /// Gives deliveries back unhandled (a dependency is down), to be
    /// delivered again at once, to this or another consumer, without
    /// counting an attempt.
    async fn release(&self, deliveries: &[Receipt]) -> Result<(), BusError>;

    /// Refuses deliveries as poison: no consumer can handle them. They are
    /// dead-lettered (kept in storage for inspection and redrive) instead of
    /// being delivered again and again.
    async fn reject(&self, deliveries: &[Delivery]) -> Result<(), BusError>;
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
    /// `token` is data-service's internal token: the bus routes are internal.
    pub fn new(
        data_url: &str,
        consumer: &'static str,
        token: stockroom_http_kit::InternalToken,
    ) -> EmbeddedEventSource {
        EmbeddedEventSource {
            client: ServiceClient::new("data-service", data_url).with_token(token),
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

impl EmbeddedEventSource {
    async fn finish(&self, verb: &str, deliveries: &[Receipt]) -> Result<(), BusError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.client
            .post::<(), _>(
                &format!("/events/{}/{verb}", self.consumer),
                &AckRequest {
                    deliveries: deliveries.to_vec(),
                },
            )
            .await?;
        Ok(())
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

    async fn acknowledge(&self, deliveries: &[Receipt]) -> Result<(), BusError> {
        self.finish("ack", deliveries).await
    }

    async fn release(&self, deliveries: &[Receipt]) -> Result<(), BusError> {
        self.finish("release", deliveries).await
    }

    async fn reject(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let receipts: Vec<Receipt> = deliveries.iter().map(Delivery::receipt).collect();
        self.finish("reject", &receipts).await
    }
}

/// What a handler made of a batch: every delivery it does not name as poison
/// had its effect (or needs none) and is acknowledged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Handled {
    /// Deliveries no consumer can handle, by delivery id.
    pub poison: Vec<i64>,
}

/// How many batches one consumer handles at once. While one batch's effect
/// is being written, the next is received and handled, so a consumer keeps up
/// with a flash sale's reservations instead of taking turns with itself.
/// Deliveries are leased (or unacknowledged) one by one, so concurrent
/// batches never share an event.
pub const BATCHES_IN_FLIGHT: usize = 2;

/// How long a consumer may keep failing (its source or its handler's
/// dependency down) before its service reports it down rather than degraded.
pub const CONSUMER_DOWN_AFTER_MS: u64 = 10_000;

/// What a consumer reports as the `consumer` part of its service's health.
struct ConsumerState {
    handled: u64,
    /// How old the oldest event of the last batch was when it arrived.
    lag_ms: i64,
    failing_since: Option<std::time::Instant>,
    /// The last failure and its causes, as the health document shows it.
    last_error: Option<String>,
}

impl ConsumerState {
    fn report(&self, name: &str, readiness: &Readiness) {
        let detail = serde_json::json!({
            "consumer": name,
            "handled": self.handled,
            "lagMs": self.lag_ms,
            "lastError": self.last_error,
        });
        let status = match self.failing_since {
            None => PartStatus::Ok,
            Some(since) if since.elapsed() >= Duration::from_millis(CONSUMER_DOWN_AFTER_MS) => {
                PartStatus::Down
            }
            Some(_) => PartStatus::Degraded,
        };
        readiness.set("consumer", status, detail);
    }

    /// Takes in how a round ended (`count` events handled, the oldest
    /// `lag_ms` old) and reports the new state.
    fn record(
        &mut self,
        outcome: &Result<(), RoundError>,
        count: u64,
        lag_ms: i64,
        name: &str,
        readiness: &Readiness,
    ) {
        match outcome {
            Ok(()) => {
                self.handled += count;
                self.lag_ms = lag_ms;
                self.failing_since = None;
                self.last_error = None;
            }
            Err(error) => {
                self.failing_since
                    .get_or_insert_with(std::time::Instant::now);
                // The health document is text: the whole chain, on one line.
                self.last_error = Some(ErrorChain(error).to_string());
            }
        }
        self.report(name, readiness);
    }
}

/// Receives batches until `shutdown` is cancelled, [`BATCHES_IN_FLIGHT`] at a
/// time, and hands each to `handle`. When the handler succeeds, the batch is
/// acknowledged, but for the deliveries it names as poison, which are
/// rejected. When it fails (a dependency is down), the batch is given back at
/// once, without counting an attempt, and the loop backs off, doubling the
/// pause up to [`MAX_RETRY_BACKOFF_MS`]: a consumer never gives up, and an
/// outage never dead-letters an event. The consumer's state (events handled,
/// lag, failing or not) is the `consumer` part of `readiness`.
pub async fn consume<H, F>(
    name: &'static str,
    source: Arc<dyn EventSource>,
    shutdown: CancellationToken,
    readiness: Readiness,
    handle: H,
) where
    H: Fn(Vec<Delivery>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Handled, HandlerError>> + Send + 'static,
{
    let handle = Arc::new(handle);
    let state = Arc::new(Mutex::new(ConsumerState {
        handled: 0,
        lag_ms: 0,
        failing_since: None,
        last_error: None,
    }));
    state
        .lock()
        .expect("consumer state")
        .report(name, &readiness);
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..BATCHES_IN_FLIGHT {
        loops.spawn(consume_loop(
            name,
            Arc::clone(&source),
            shutdown.clone(),
            Arc::clone(&handle),
            Arc::clone(&state),
            readiness.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

async fn consume_loop<H, F>(
    name: &'static str,
    source: Arc<dyn EventSource>,
    shutdown: CancellationToken,
    handle: Arc<H>,
    state: Arc<Mutex<ConsumerState>>,
    readiness: Readiness,
) where
    H: Fn(Vec<Delivery>) -> F + Send + Sync,
    F: Future<Output = Result<Handled, HandlerError>> + Send,
{
    let mut backoff_ms = MIN_RETRY_BACKOFF_MS;
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = source.receive(MAX_EVENTS_PER_RECEIVE) => received,
        };
        let (count, lag_ms) = match &received {
            Ok(deliveries) => (deliveries.len() as u64, oldest_age_ms(deliveries)),
            Err(_) => (0, 0),
        };
        let outcome = match received {
            Ok(deliveries) if deliveries.is_empty() => Ok(()),
            Ok(deliveries) => finish_batch(source.as_ref(), handle.as_ref(), deliveries).await,
            Err(error) => Err(RoundError::Source(error)),
        };
        state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record(&outcome, count, lag_ms, name, &readiness);
        match outcome {
            Ok(()) => backoff_ms = MIN_RETRY_BACKOFF_MS,
            Err(error) => {
                tracing::warn!(
                    consumer = name,
                    error = &error as &dyn std::error::Error,
                    backoff_ms,
                    "event batch not handled; it is delivered again, retrying"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                }
                backoff_ms = (backoff_ms * 2).min(MAX_RETRY_BACKOFF_MS);
            }
        }
    }
}

/// How long ago the oldest of `deliveries` happened.
fn oldest_age_ms(deliveries: &[Delivery]) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    deliveries
        .iter()
        .filter_map(|delivery| stockroom_contract::parse_time(&delivery.event.occurred_at))
        .min()
        .map_or(0, |oldest| (now - oldest).max(0))
}

/// Handles one batch and settles it with the source. The batch is finished
/// even when shutdown is requested meanwhile: stopping halfway would only
/// cause redelivery.
async fn finish_batch<H, F>(
    source: &dyn EventSource,
    handle: &H,
    deliveries: Vec<Delivery>,
) -> Result<(), RoundError>
where
    H: Fn(Vec<Delivery>) -> F + Send + Sync,
    F: Future<Output = Result<Handled, HandlerError>> + Send,
{
    let receipts: Vec<Receipt> = deliveries.iter().map(Delivery::receipt).collect();
    let kept = deliveries.clone();
    match handle(deliveries).await {
        Ok(handled) => {
            let (poison, done): (Vec<Delivery>, Vec<Delivery>) = kept
                .into_iter()
                .partition(|delivery| handled.poison.contains(&delivery.delivery_id));
            if !poison.is_empty() {
                tracing::error!(
                    count = poison.len(),
                    "events refused as poison; dead-lettering them"
                );
                source.reject(&poison).await?;
            }
            let done: Vec<Receipt> = done.iter().map(Delivery::receipt).collect();
            Ok(source.acknowledge(&done).await?)
        }
        Err(error) => {
            // Given back at once, so the queue keeps moving; if even that
            // fails, the lease runs out and the events come back anyway.
            if let Err(release) = source.release(&receipts).await {
                tracing::warn!(
                    error = &release as &dyn std::error::Error,
                    "cannot give the batch back; it returns when its lease ends"
                );
            }
            Err(RoundError::Handler(error))
        }
    }
}
