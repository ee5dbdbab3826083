//! payment-service: a simulated payment provider.
//!
//! It consumes `OrderReserved` events, "charges" each order after a
//! configurable latency, declines a configurable share of them, and records
//! each verdict through data-service, which emits `PaymentSucceeded` or
//! `PaymentFailed` in the same transaction. The record is keyed by the event
//! id, so a redelivered `OrderReserved` never charges an order twice.

mod charge;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::response::Response;
use axum::{Json, Router};
use serde::Serialize;
use stockroom_bus::EventSource;
use stockroom_contract::ProviderStats;
use stockroom_http_kit::{
    InternalToken, Metrics, Readiness, ServiceClient, ServiceRoutes, metric_names,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
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

/// A payment setting out of its bounds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentConfigError {
    #[error("decline rate must be from 0 to 1, got {0}")]
    DeclineRate(f64),
    #[error("latency may be at most {MAX_LATENCY_MS} ms, got {0} ms")]
    Latency(u64),
}

impl PaymentConfig {
    pub fn validate(&self) -> Result<(), PaymentConfigError> {
        if !(0.0..=1.0).contains(&self.decline_rate) {
            return Err(PaymentConfigError::DeclineRate(self.decline_rate));
        }
        if self.latency_ms > MAX_LATENCY_MS {
            return Err(PaymentConfigError::Latency(self.latency_ms));
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
    ServiceRoutes::new(public, internal)
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    service_routes().openapi()
}

pub fn router(state: PaymentState) -> Router {
    service_routes()
        .into_router(state.internal_token.clone(), None)
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
            async move { charge::charge_batch(&config, &data, &counters, &stop, deliveries).await }
        },
    )
    .await;
}
