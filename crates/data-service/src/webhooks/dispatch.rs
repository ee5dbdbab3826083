//! The dispatcher: leases the `webhooks` consumer's events from the outbox,
//! sends each to every URL, and settles it by what the receivers answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stockroom_domain::Consumer;
use stockroom_domain::outbox::{Delivery, DeliveryOutcome, Receipt};
use stockroom_http_kit::{Metrics, metric_names};
use stockroom_storage::{EventOutbox, StorageError};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::client::WebhookClient;
use super::{
    MAX_CONCURRENT_WEBHOOKS, MAX_WEBHOOK_BACKOFF_MS, SIGNATURE_HEADER, WEBHOOK_BATCH_SIZE,
    WEBHOOK_LEASE_MS, WEBHOOK_POLL_INTERVAL_MS, WebhookConfig, WebhookConfigError, sign,
    webhook_event,
};

/// The pause after the outbox itself failed, before trying again.
const STORAGE_RETRY_MS: u64 = 1_000;

/// The pause before attempt `attempt + 1` of an event whose attempt
/// `attempt` failed: doubling from `first_ms` ([`WEBHOOK_BACKOFF_MS`] by
/// default), at most [`MAX_WEBHOOK_BACKOFF_MS`].
pub fn backoff_ms(first_ms: u64, attempt: u32) -> u64 {
    let doublings = attempt.saturating_sub(1).min(30);
    first_ms
        .saturating_mul(1_u64 << doublings)
        .min(MAX_WEBHOOK_BACKOFF_MS)
}

/// How one delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Every URL took it.
    Sent,
    /// Some URL did not: tried again after a pause.
    Retrying(u64),
    /// Out of attempts, or not a webhook at all: dead-lettered.
    Dead,
}

impl Settled {
    fn label(self) -> &'static str {
        match self {
            Settled::Sent => "sent",
            Settled::Retrying(_) => "retrying",
            Settled::Dead => "dead",
        }
    }
}

/// Sends the outbox's webhook events.
pub struct WebhookDispatcher {
    outbox: Arc<dyn EventOutbox>,
    config: WebhookConfig,
    client: WebhookClient,
    metrics: Metrics,
    /// Woken when a write may have added events.
    wake: Arc<Notify>,
}

impl WebhookDispatcher {
    pub fn new(
        outbox: Arc<dyn EventOutbox>,
        config: WebhookConfig,
        metrics: Metrics,
        wake: Arc<Notify>,
    ) -> Result<WebhookDispatcher, WebhookConfigError> {
        let client = WebhookClient::new(&config)?;
        Ok(WebhookDispatcher {
            outbox,
            config,
            client,
            metrics,
            wake,
        })
    }

    /// Sends events until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let pause_ms = match self.round().await {
                Ok(0) => WEBHOOK_POLL_INTERVAL_MS,
                Ok(_) => 0,
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "cannot lease webhook events; trying again"
                    );
                    STORAGE_RETRY_MS
                }
            };
            if pause_ms == 0 {
                if stop.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(pause_ms)) => {}
            }
        }
    }

    /// Sends one batch of due events and settles each; returns how many.
    async fn round(&self) -> Result<usize, StorageError> {
        let deliveries = self
            .outbox
            .lease_events(Consumer::Webhooks, WEBHOOK_BATCH_SIZE, WEBHOOK_LEASE_MS)
            .await?;
        let leased = deliveries.len();
        if leased == 0 {
            return Ok(0);
        }
        let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_WEBHOOKS));
        let mut sending = tokio::task::JoinSet::new();
        for delivery in deliveries {
            let client = self.client.clone();
            let config = self.config.clone();
            let limit = Arc::clone(&limit);
            sending.spawn(async move {
                let settled = settle(&client, &config, &limit, &delivery).await;
                (delivery.receipt(), settled)
            });
        }
        let mut by_outcome: BTreeMap<Outcome, Vec<Receipt>> = BTreeMap::new();
        while let Some(sent) = sending.join_next().await {
            let Ok((receipt, settled)) = sent else {
                // A task that panicked settles nothing: its event is sent
                // again when its lease ends.
                continue;
            };
            self.metrics.increment(
                metric_names::WEBHOOK_DELIVERIES_TOTAL,
                metric_names::help(metric_names::WEBHOOK_DELIVERIES_TOTAL),
                &[("outcome", settled.label())],
                1,
            );
            by_outcome
                .entry(Outcome::of(settled))
                .or_default()
                .push(receipt);
        }
        for (outcome, receipts) in by_outcome {
            self.outbox
                .finish_deliveries(Consumer::Webhooks, outcome.delivery(), receipts)
                .await?;
        }
        Ok(leased)
    }
}

/// A settlement as the outbox takes it, ordered so that receipts of one
/// kind travel together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Acknowledge,
    Postpone(u64),
    Reject,
}

impl Outcome {
    fn of(settled: Settled) -> Outcome {
        match settled {
            Settled::Sent => Outcome::Acknowledge,
            Settled::Retrying(delay_ms) => Outcome::Postpone(delay_ms),
            Settled::Dead => Outcome::Reject,
        }
    }

    fn delivery(self) -> DeliveryOutcome {
        match self {
            Outcome::Acknowledge => DeliveryOutcome::Acknowledge,
            Outcome::Postpone(delay_ms) => DeliveryOutcome::Postpone { delay_ms },
            Outcome::Reject => DeliveryOutcome::Reject,
        }
    }
}

/// Sends one event to every URL and decides how it is settled.
async fn settle(
    client: &WebhookClient,
    config: &WebhookConfig,
    limit: &Semaphore,
    delivery: &Delivery,
) -> Settled {
    let Some(event) = webhook_event(&delivery.event) else {
        tracing::error!(
            event_id = %delivery.event.event_id,
            "an event of the webhooks consumer is not a webhook; dead-lettered"
        );
        return Settled::Dead;
    };
    let body = bytes::Bytes::from(
        serde_json::to_vec(&event).expect("a webhook document always serialises"),
    );
    let mut every_url_took_it = true;
    for url in &config.urls {
        let _slot = limit
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let timestamp_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let signature = sign(config.secret.expose(), timestamp_s, &body);
        let headers = [
            (SIGNATURE_HEADER, signature.as_str()),
            ("stockroom-event-id", event.id.as_str()),
        ];
        let took_it = match client.post(url, &headers, body.clone()).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%url, error = &error as &dyn std::error::Error, event_id = %event.id, attempt = delivery.attempt, "a webhook receiver did not take an event");
                false
            }
        };
        every_url_took_it &= took_it;
    }
    if every_url_took_it {
        Settled::Sent
    } else if delivery.attempt >= config.max_attempts.max(1) {
        tracing::error!(event_id = %event.id, attempts = delivery.attempt, "a webhook was refused too many times; dead-lettered for an operator to redrive");
        Settled::Dead
    } else {
        Settled::Retrying(backoff_ms(config.backoff_ms, delivery.attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_WEBHOOK_ATTEMPTS, WEBHOOK_BACKOFF_MS};
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_ceiling() {
        let backoff = |attempt| backoff_ms(WEBHOOK_BACKOFF_MS, attempt);
        assert_eq!(backoff(1), 1_000);
        assert_eq!(backoff(2), 2_000);
        assert_eq!(backoff(5), 16_000);
        assert_eq!(backoff(12), MAX_WEBHOOK_BACKOFF_MS);
        assert_eq!(backoff(u32::MAX), MAX_WEBHOOK_BACKOFF_MS);
        let total_ms: u64 = (1..MAX_WEBHOOK_ATTEMPTS).map(backoff).sum();
        assert!(
            (15 * 60_000..=30 * 60_000).contains(&total_ms),
            "a receiver may be down {total_ms} ms"
        );
    }
}
