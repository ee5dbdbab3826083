//! The payment consumer's work on one batch: wait out the provider's
//! latency, ask the provider for a verdict on every order (keyed, so an
//! order is charged once however often its event arrives), record the
//! verdicts through data-service, and count what came of each.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use stockroom_bus::{Handled, HandlerError};
use stockroom_contract::{
    Delivery, EffectBatchResult, EffectOutcome, PaymentBatch, PaymentRecord, ProviderCharge,
    ProviderChargeBatch, ProviderVerdictBatch,
};
use stockroom_domain::EventKind;
use stockroom_http_kit::{ServiceClient, event_span, traceparent_of};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Counters, PaymentConfig};

/// The provider's idempotency key of an order's charge.
fn charge_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

/// Charges every reserved order of a batch (the provider calls run in
/// parallel, hence one latency for the batch) and records the verdicts. A
/// batch data-service refuses outright, or an event whose order contradicts
/// the stock, is poison; anything else that fails is retried.
pub(crate) async fn charge_batch(
    config: &PaymentConfig,
    data: &ServiceClient,
    counters: &Counters,
    stop: &CancellationToken,
    deliveries: Vec<Delivery>,
) -> Result<Handled, HandlerError> {
    let orders: Vec<&Delivery> = deliveries
        .iter()
        .filter(|delivery| delivery.event.kind == EventKind::OrderReserved)
        .collect();
    if orders.is_empty() {
        return Ok(Handled::default());
    }
    // One span per order, each continuing its order's trace; the batch's
    // calls run in the first one's.
    let spans: Vec<tracing::Span> = orders
        .iter()
        .map(|delivery| {
            event_span(
                "payment-service",
                "payment",
                &delivery.event.order_id,
                delivery.event.trace_parent.as_deref(),
            )
        })
        .collect();
    let first = spans[0].clone();
    charge_orders(config, data, counters, stop, &orders, &spans)
        .instrument(first)
        .await
}

/// Charges the orders of a batch and records the verdicts, each carrying its
/// own order's trace context.
async fn charge_orders(
    config: &PaymentConfig,
    data: &ServiceClient,
    counters: &Counters,
    stop: &CancellationToken,
    orders: &[&Delivery],
    spans: &[tracing::Span],
) -> Result<Handled, HandlerError> {
    wait_for_the_provider(config.latency_ms, stop).await?;
    let verdicts = ask_the_provider(config.decline_rate, data, orders).await?;
    let repeated = verdicts
        .verdicts
        .iter()
        .filter(|verdict| verdict.requests > 1)
        .count();
    counters
        .repeated_charges
        .fetch_add(repeated as u64, Ordering::Relaxed);
    let (payments, ids): (Vec<PaymentRecord>, Vec<i64>) = orders
        .iter()
        .zip(&verdicts.verdicts)
        .zip(spans)
        .map(|((delivery, verdict), span)| {
            let record = PaymentRecord {
                order_id: delivery.event.order_id.clone(),
                event_id: delivery.event.event_id.clone(),
                approved: verdict.approved,
                trace_parent: traceparent_of(span),
            };
            (record, delivery.delivery_id)
        })
        .unzip();
    match record_payments(data, &payments).await? {
        Recorded::Refused => Ok(Handled { poison: ids }),
        Recorded::Effects(result) => Ok(count_effects(counters, &payments, &result, ids)),
    }
}

/// The simulated provider's latency. A shutdown abandons charges still "at
/// the provider": nothing is recorded, so the events are delivered again
/// after a restart.
async fn wait_for_the_provider(
    latency_ms: u64,
    stop: &CancellationToken,
) -> Result<(), HandlerError> {
    if latency_ms == 0 {
        return Ok(());
    }
    tokio::select! {
        _ = stop.cancelled() => Err(HandlerError::ShuttingDown),
        _ = tokio::time::sleep(Duration::from_millis(latency_ms)) => Ok(()),
    }
}

/// Asks the provider for a verdict on every order, declining each at random
/// with `decline_rate`. Keyed by order: however often this order's event
/// arrives, at however many instances, the provider charges it once and
/// answers every repeat with its first verdict.
async fn ask_the_provider(
    decline_rate: f64,
    data: &ServiceClient,
    orders: &[&Delivery],
) -> Result<ProviderVerdictBatch, HandlerError> {
    let charges = {
        let mut random = rand::rng();
        orders
            .iter()
            .map(|delivery| ProviderCharge {
                charge_key: charge_key(&delivery.event.order_id),
                order_id: delivery.event.order_id.clone(),
                units: delivery.event.total_units,
                approved: random.random::<f64>() >= decline_rate,
            })
            .collect()
    };
    let verdicts: ProviderVerdictBatch = data
        .post("/provider/charges", &ProviderChargeBatch { charges })
        .await
        .map_err(HandlerError::dependency(
            "charge the orders at the provider",
        ))?;
    if verdicts.verdicts.len() != orders.len() {
        return Err(HandlerError::ResultCount {
            service: "the provider",
            sent: orders.len(),
            answered: verdicts.verdicts.len(),
        });
    }
    Ok(verdicts)
}

/// What data-service made of a batch of payments.
enum Recorded {
    /// Each payment's effect, in the batch's order.
    Effects(EffectBatchResult),
    /// The batch was refused outright: sending it again cannot succeed.
    Refused,
}

/// Records the verdicts through data-service, which emits each order's
/// `PaymentSucceeded` or `PaymentFailed` in the same transaction.
async fn record_payments(
    data: &ServiceClient,
    payments: &[PaymentRecord],
) -> Result<Recorded, HandlerError> {
    let batch = PaymentBatch {
        payments: payments.to_vec(),
    };
    match data.post("/payments", &batch).await {
        Ok(result) => Ok(Recorded::Effects(result)),
        Err(error) if error.is_refusal() => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "data-service refused a batch of payments"
            );
            Ok(Recorded::Refused)
        }
        Err(error) => Err(HandlerError::dependency("record the payments")(error)),
    }
}

/// Counts each payment's effect; an effect that contradicts the stock makes
/// its delivery poison.
fn count_effects(
    counters: &Counters,
    payments: &[PaymentRecord],
    result: &EffectBatchResult,
    ids: Vec<i64>,
) -> Handled {
    let mut handled = Handled::default();
    for ((payment, effect), id) in payments.iter().zip(&result.results).zip(ids) {
        let counter = match effect.outcome {
            EffectOutcome::Applied if payment.approved => &counters.charged,
            EffectOutcome::Applied => &counters.declined,
            EffectOutcome::Duplicate => &counters.duplicates,
            EffectOutcome::NotApplicable | EffectOutcome::UnknownOrder => &counters.voided,
            EffectOutcome::Inconsistent => {
                handled.poison.push(id);
                &counters.voided
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(order_id = %payment.order_id, approved = payment.approved, outcome = ?effect.outcome, "payment handled");
    }
    handled
}
