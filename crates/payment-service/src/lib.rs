//! payment-service: a simulated payment provider.
//!
//! It consumes `OrderReserved` events, "charges" each order after a
//! configurable latency, declines a configurable share of them, and records
//! each verdict through data-service, which emits `PaymentSucceeded` or
//! `PaymentFailed` in the same transaction. The record is keyed by the event
//! id, so a redelivered `OrderReserved` never charges an order twice.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::{Json, Router};
use rand::Rng;
use serde::Serialize;
use stockroom_bus::{EventSource, Handled, HandlerError};
use stockroom_contract::{
    Delivery, EffectBatchResult, EffectOutcome, PaymentBatch, PaymentRecord, ProviderCharge,
    ProviderChargeBatch, ProviderStats, ProviderVerdictBatch,
};
use stockroom_domain::EventKind;
use stockroom_http_kit::{
    InternalToken, Metrics, Readiness, ServiceClient, ServiceRoutes, event_span, metric_names,
    traceparent_of,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The most simulated provider latency accepted, so a typo cannot stall the
/// flow for hours.
pub const MAX_LATENCY_MS: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct PaymentConfig {
    pub data_url: String,
    /// Simulated provider latency per charge.
    pub latency_ms: u64,
    /// Share of charges declined, from 0.0 (approve all) to 1.0.
    pub decline_rate: f64,
    /// What `/stats` requires and what this service sends to data-service.
    pub internal_token: InternalToken,
}

impl PaymentConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.decline_rate) {
            return Err(format!(
                "decline rate must be from 0 to 1, got {}",
                self.decline_rate
            ));
        }
        if self.latency_ms > MAX_LATENCY_MS {
            return Err(format!("latency may be at most {MAX_LATENCY_MS} ms"));
        }
        Ok(())
    }
}

/// Counts of what this instance did, and the provider's ledger, for
/// `GET /stats`.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentStats {
    /// Payments this instance recorded as charged.
    pub charged: u64,
    pub declined: u64,
    /// Verdicts not recorded because the reservation was gone (expired or
    /// cancelled) by the time the charge finished: nothing was taken.
    pub voided: u64,
    /// Redelivered events that were recognised and ignored.
    pub duplicates: u64,
    /// Charges this instance asked the provider for a second time (a
    /// redelivery, a lease that ran out, another instance first): the
    /// provider answered with its first verdict and charged nothing more.
    pub repeated_charges: u64,
    /// The provider's ledger, shared by every instance: one charge per order
    /// (`ordersChargedTwice` stays 0). Absent while data-service is
    /// unreachable.
    #[schema(value_type = Option<Object>)]
    pub provider: Option<ProviderStats>,
}

#[derive(Default)]
struct Counters {
    charged: AtomicU64,
    declined: AtomicU64,
    voided: AtomicU64,
    duplicates: AtomicU64,
    repeated_charges: AtomicU64,
}

#[derive(Clone)]
pub struct PaymentState {
    readiness: Readiness,
    counters: Arc<Counters>,
    data: ServiceClient,
    internal_token: InternalToken,
    metrics: Metrics,
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Stockroom payment-service",
    description = "A simulated payment provider driven by OrderReserved events."
))]
struct ApiDoc;

#[utoipa::path(get, path = "/health", responses((status = 200), (status = 503)))]
async fn health(State(state): State<PaymentState>) -> Response {
    state.readiness.health_response()
}

/// What this instance has done since it started, and the provider's ledger.
#[utoipa::path(get, path = "/stats", responses((status = 200, body = PaymentStats)))]
async fn stats(State(state): State<PaymentState>) -> Json<PaymentStats> {
    let counters = &state.counters;
    let provider = state
        .data
        .get::<ProviderStats>("/provider/stats")
        .await
        .ok();
    Json(PaymentStats {
        charged: counters.charged.load(Ordering::Relaxed),
        declined: counters.declined.load(Ordering::Relaxed),
        voided: counters.voided.load(Ordering::Relaxed),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        repeated_charges: counters.repeated_charges.load(Ordering::Relaxed),
        provider,
    })
}

/// `/stats` shows the provider's ledger, so it is for the operator only.
fn service_routes() -> ServiceRoutes<PaymentState> {
    let public = OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(health));
    let internal = OpenApiRouter::new().routes(routes!(stats));
    ServiceRoutes { public, internal }
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    service_routes().openapi()
}

pub fn router(state: PaymentState) -> Router {
    service_routes()
        .into_router(state.internal_token.clone())
        .layer(state.metrics.layer())
        .layer(stockroom_http_kit::TraceLayer::new("payment-service"))
        .with_state(state)
}

/// Serves payment-service and runs its consumer until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: PaymentConfig,
    events: Arc<dyn EventSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = PaymentState {
        readiness: Readiness::new("payment-service"),
        counters: Arc::new(Counters::default()),
        data: ServiceClient::new("data-service", &config.data_url)
            .with_token(config.internal_token.clone()),
        internal_token: config.internal_token.clone(),
        metrics: Metrics::new("payment-service"),
    };
    let stop = CancellationToken::new();
    let worker = tokio::spawn(run_worker(config, events, state.clone(), stop.clone()));
    let served = stockroom_http_kit::serve(listener, router(state), shutdown).await;
    stop.cancel();
    let _ = worker.await;
    served
}

async fn run_worker(
    config: PaymentConfig,
    events: Arc<dyn EventSource>,
    state: PaymentState,
    stop: CancellationToken,
) {
    let data = ServiceClient::new("data-service", &config.data_url)
        .with_token(config.internal_token.clone());
    let dependencies = [("data-service", config.data_url.as_str())];
    let wait = state.readiness.wait_for(data.http(), &dependencies);
    tokio::select! {
        _ = stop.cancelled() => return,
        () = wait => {}
    }
    let config = Arc::new(config);
    let consumer_stop = stop.clone();
    let batch_size = state.metrics.histogram(
        metric_names::EVENT_BATCH_SIZE,
        metric_names::help(metric_names::EVENT_BATCH_SIZE),
        &[("consumer", "payment")],
    );
    stockroom_bus::consume(
        "payment",
        events,
        consumer_stop,
        state.readiness.clone(),
        move |deliveries| {
            let config = Arc::clone(&config);
            let data = data.clone();
            let counters = Arc::clone(&state.counters);
            let stop = stop.clone();
            batch_size.record(deliveries.len() as f64);
            async move { charge_batch(&config, &data, &counters, &stop, deliveries).await }
        },
    )
    .await;
}

/// The provider's idempotency key of an order's charge.
fn charge_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

/// Charges every reserved order of a batch (the provider calls run in
/// parallel, hence one latency for the batch) and records the verdicts. A
/// batch data-service refuses outright, or an event whose order contradicts
/// the stock, is poison; anything else that fails is retried.
async fn charge_batch(
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
    if config.latency_ms > 0 {
        // A shutdown abandons charges still "at the provider": nothing is
        // recorded, so the events are delivered again after a restart.
        tokio::select! {
            _ = stop.cancelled() => return Err(HandlerError::ShuttingDown),
            _ = tokio::time::sleep(Duration::from_millis(config.latency_ms)) => {}
        }
    }
    let charges = {
        let mut random = rand::rng();
        orders
            .iter()
            .map(|delivery| ProviderCharge {
                charge_key: charge_key(&delivery.event.order_id),
                order_id: delivery.event.order_id.clone(),
                units: delivery.event.total_units,
                approved: random.random::<f64>() >= config.decline_rate,
            })
            .collect()
    };
    // Keyed by order: however often this order's event arrives, at however
    // many instances, the provider charges it once and answers every repeat
    // with its first verdict.
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
    let result: EffectBatchResult = match data
        .post(
            "/payments",
            &PaymentBatch {
                payments: payments.clone(),
            },
        )
        .await
    {
        Ok(result) => result,
        Err(error) if error.is_refusal() => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "data-service refused a batch of payments"
            );
            return Ok(Handled { poison: ids });
        }
        Err(error) => return Err(HandlerError::dependency("record the payments")(error)),
    };
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
    Ok(handled)
}
