//! The settlement consumer: commits the reservations whose payment
//! succeeded and releases those whose payment failed, one data-service call
//! per batch, each settlement continuing its order's trace, and the
//! settlement lag and batch sizes it measures.

use stockroom_bus::{Handled, HandlerError};
use stockroom_contract::{
    Delivery, EffectBatchResult, EffectOutcome, Settlement, SettlementAction, SettlementBatch,
};
use stockroom_domain::EventKind;
use stockroom_http_kit::{Metrics, ServiceClient, event_span, metric_names};
use tracing::Instrument;

/// Commits the reservations whose payment succeeded and releases those whose
/// payment failed, in one data-service call. A batch data-service refuses
/// outright, or an event whose order contradicts the stock, is poison;
/// anything else that fails is retried.
pub(crate) async fn settle_batch(
    data: &ServiceClient,
    metrics: &SettlementMetrics,
    deliveries: Vec<Delivery>,
) -> Result<Handled, HandlerError> {
    metrics.batch_size.record(deliveries.len() as f64);
    // One span per settlement, each continuing its order's trace; the
    // batch's call runs in the first one's.
    let spans: Vec<tracing::Span> = deliveries
        .iter()
        .filter(|delivery| delivery.event.kind != EventKind::OrderReserved)
        .map(|delivery| {
            event_span(
                "inventory-service",
                "settlement",
                &delivery.event.order_id,
                delivery.event.trace_parent.as_deref(),
            )
        })
        .collect();
    let Some(first) = spans.first().cloned() else {
        return Ok(Handled::default());
    };
    settle_deliveries(data, metrics, &deliveries)
        .instrument(first)
        .await
}

/// Settles the payment verdicts of a batch in one data-service call.
async fn settle_deliveries(
    data: &ServiceClient,
    metrics: &SettlementMetrics,
    deliveries: &[Delivery],
) -> Result<Handled, HandlerError> {
    let (settlements, ids): (Vec<Settlement>, Vec<i64>) = deliveries
        .iter()
        .filter_map(|delivery| {
            let action = match delivery.event.kind {
                EventKind::PaymentSucceeded => SettlementAction::Commit,
                EventKind::PaymentFailed => SettlementAction::Release,
                // Only payment verdicts are settled here; the others are
                // routed to other consumers and never reach this one.
                _ => return None,
            };
            let settlement = Settlement {
                order_id: delivery.event.order_id.clone(),
                event_id: delivery.event.event_id.clone(),
                action,
            };
            Some((settlement, delivery.delivery_id))
        })
        .unzip();
    if settlements.is_empty() {
        return Ok(Handled::default());
    }
    let result: EffectBatchResult = match data
        .post(
            "/settlements",
            &SettlementBatch {
                settlements: settlements.clone(),
            },
        )
        .await
    {
        Ok(result) => result,
        Err(error) if error.is_refusal() => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "data-service refused a batch of settlements"
            );
            return Ok(Handled { poison: ids });
        }
        Err(error) => return Err(HandlerError::dependency("record the settlements")(error)),
    };
    metrics.record_lag(deliveries);
    let mut handled = Handled::default();
    for ((settlement, effect), id) in settlements.iter().zip(&result.results).zip(ids) {
        if effect.outcome == EffectOutcome::Inconsistent {
            handled.poison.push(id);
        }
        tracing::debug!(order_id = %settlement.order_id, action = ?settlement.action, outcome = ?effect.outcome, "settlement handled");
    }
    Ok(handled)
}

/// The settlement consumer's handles: how many events each batch carried,
/// and how long each payment verdict waited between its event and its
/// settlement (the lag an operator watches during an outage).
#[derive(Clone)]
pub(crate) struct SettlementMetrics {
    batch_size: metrics::Histogram,
    lag_seconds: metrics::Histogram,
}

impl SettlementMetrics {
    pub(crate) fn new(metrics: &Metrics) -> SettlementMetrics {
        SettlementMetrics {
            batch_size: metrics.histogram(
                metric_names::EVENT_BATCH_SIZE,
                metric_names::help(metric_names::EVENT_BATCH_SIZE),
                &[("consumer", "inventory")],
            ),
            lag_seconds: metrics.histogram(
                metric_names::SETTLEMENT_LAG_SECONDS,
                metric_names::help(metric_names::SETTLEMENT_LAG_SECONDS),
                &[],
            ),
        }
    }

    fn record_lag(&self, deliveries: &[Delivery]) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64);
        for delivery in deliveries {
            if delivery.event.kind == EventKind::OrderReserved {
                continue;
            }
            if let Some(occurred_ms) = stockroom_contract::parse_time(&delivery.event.occurred_at) {
                self.lag_seconds
                    .record((now_ms - occurred_ms).max(0) as f64 / 1_000.0);
            }
        }
    }
}
