//! inventory-service: every stock decision.
//!
//! - Reserve: forwards batches of reservations to data-service, where each is
//!   one atomic check-and-hold, and logs every decision.
//! - Commit or release: consumes `PaymentSucceeded` and `PaymentFailed`
//!   events and settles each reservation, exactly once per event.
//! - Expire: a sweeper releases reservations left unpaid past their TTL, so no
//!   order stays `reserved` forever.
//! - Restock and customer cancel: forwarded to data-service.
//! - Audit: the invariants are checked continuously ([`stockroom_audit`]) and
//!   reported on `GET /invariants` and in `/metrics`.
//!
//! It holds no state, so any number of instances may run.

mod error;
mod settlement;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use stockroom_audit as audit;
use stockroom_bus::EventSource;
use stockroom_contract::{
    ErrorBody, ExpireRequest, ExpireResult, InventoryItemDocument, OrderDocument, ReleaseRequest,
    ReserveBatch, ReserveBatchResult, RestockRequest,
};
use stockroom_http_kit::{
    InternalToken, JsonBody, JsonBytes, Metrics, Readiness, ServiceClient, ServiceRoutes,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::InventoryError;

/// The largest request body inventory-service accepts (internal batches).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The most reservations one sweep expires in one data-service call; a sweep
/// repeats the call while it keeps coming back full.
pub const MAX_EXPIRED_PER_CALL: u32 = 500;

/// Default time a reservation may stay unpaid.
pub const DEFAULT_RESERVATION_TTL_MS: u64 = 60_000;

/// Default pause between two expiry sweeps.
pub const DEFAULT_SWEEP_INTERVAL_MS: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct InventoryConfig {
    pub data_url: String,
    /// A reservation unpaid for this long is released (`reservation_expired`).
    pub reservation_ttl_ms: u64,
    pub sweep_interval_ms: u64,
    /// What this service's internal routes require and what it sends to
    /// data-service's.
    pub internal_token: InternalToken,
    /// The operator token, for the auditor to read and replay the ledger;
    /// without it the ledger is not audited.
    pub operator_token: Option<stockroom_http_kit::OperatorToken>,
}

#[derive(Clone)]
pub struct InventoryState {
    readiness: Readiness,
    data: ServiceClient,
    metrics: Metrics,
    auditor: audit::Auditor,
    internal_token: InternalToken,
}

impl FromRef<InventoryState> for audit::Auditor {
    fn from_ref(state: &InventoryState) -> audit::Auditor {
        state.auditor.clone()
    }
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Stockroom inventory-service",
    description = "Stock decisions: reserve, commit, release, expire and restock."
))]
struct ApiDoc;

#[utoipa::path(get, path = "/health", responses((status = 200), (status = 503)))]
async fn health(State(state): State<InventoryState>) -> Response {
    state.readiness.health_response()
}

/// Reserves a batch of orders; each is atomic, all items or none.
#[utoipa::path(
    post,
    path = "/reservations",
    request_body = ReserveBatch,
    responses((status = 200, body = ReserveBatchResult), (status = 503, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn reserve(
    State(state): State<InventoryState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, InventoryError> {
    // The batch is relayed as it is, both ways: data-service checks it and
    // decides each reservation atomically, and parsing and re-encoding it
    // here would only spend the CPU a flash sale needs. Its errors pass
    // through unchanged.
    let answer = state.data.post_raw("/reservations", body).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response())
}

/// Releases an unpaid reservation (customer cancel).
#[utoipa::path(
    post,
    path = "/orders/{id}/release",
    params(("id" = String, Path)),
    request_body = ReleaseRequest,
    responses(
        (status = 200, body = OrderDocument),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn release(
    State(state): State<InventoryState>,
    Path(order_id): Path<String>,
    JsonBody(request): JsonBody<ReleaseRequest>,
) -> Result<Json<OrderDocument>, InventoryError> {
    let document: OrderDocument = state
        .data
        .post(&format!("/orders/{}/release", encode(&order_id)), &request)
        .await?;
    tracing::info!(operation = "release", order_id, reason = request.reason.as_str(), status = %document.order.status, "release requested");
    Ok(Json(document))
}

/// Adds units to a product's stock.
#[utoipa::path(
    post,
    path = "/inventory/{productName}/restock",
    params(("productName" = inline(stockroom_contract::Name), Path)),
    request_body = RestockRequest,
    responses(
        (status = 200, body = InventoryItemDocument),
        (status = 409, body = ErrorBody, description = "the product would exceed the stock limit"),
        (status = 422, body = ErrorBody)
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn restock(
    State(state): State<InventoryState>,
    Path(product_name): Path<String>,
    JsonBody(request): JsonBody<RestockRequest>,
) -> Result<Json<InventoryItemDocument>, InventoryError> {
    let document: InventoryItemDocument = state
        .data
        .post(
            &format!("/inventory/{}/restock", encode(&product_name)),
            &request,
        )
        .await?;
    Ok(Json(document))
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Only `/health` is public; reservations, releases, restocks and the
/// auditor's findings are for the system's own services and its operator.
fn service_routes() -> ServiceRoutes<InventoryState> {
    let public = OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(health));
    let internal = OpenApiRouter::new()
        .routes(routes!(reserve))
        .routes(routes!(release))
        .routes(routes!(restock))
        .routes(routes!(audit::invariants));
    ServiceRoutes::new(public, internal)
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    service_routes().openapi()
}

pub fn router(state: InventoryState) -> Router {
    service_routes()
        .into_router(state.internal_token.clone(), None)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(state.metrics.layer())
        .layer(stockroom_http_kit::TraceLayer::new("inventory-service"))
        .with_state(state)
}

/// Serves inventory-service, its payment consumer and its expiry sweeper until
/// `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: InventoryConfig,
    events: Arc<dyn EventSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Metrics::new("inventory-service");
    let state = InventoryState {
        readiness: Readiness::new("inventory-service"),
        data: ServiceClient::new("data-service", &config.data_url)
            .with_token(config.internal_token.clone()),
        auditor: audit::Auditor::new(&config.data_url, metrics.clone())
            .with_ledger(&config.data_url, config.operator_token.as_ref()),
        metrics,
        internal_token: config.internal_token.clone(),
    };
    let stop = CancellationToken::new();
    let worker = tokio::spawn(run_workers(config, events, state.clone(), stop.clone()));
    let served = stockroom_http_kit::serve(listener, router(state), shutdown).await;
    stop.cancel();
    let _ = worker.await;
    served
}

async fn run_workers(
    config: InventoryConfig,
    events: Arc<dyn EventSource>,
    state: InventoryState,
    stop: CancellationToken,
) {
    let dependencies = [("data-service", config.data_url.as_str())];
    let wait = state.readiness.wait_for(state.data.http(), &dependencies);
    tokio::select! {
        _ = stop.cancelled() => return,
        () = wait => {}
    }
    let sweeper = tokio::spawn(sweep_expired(
        config.clone(),
        state.data.clone(),
        stop.clone(),
    ));
    let auditor = tokio::spawn(
        state
            .auditor
            .clone()
            .run(audit::DEFAULT_AUDIT_INTERVAL_MS, stop.clone()),
    );
    let data = state.data.clone();
    let settled = settlement::SettlementMetrics::new(&state.metrics);
    stockroom_bus::consume(
        "inventory",
        events,
        stop,
        state.readiness.clone(),
        move |deliveries| {
            let data = data.clone();
            let settled = settled.clone();
            async move { settlement::settle_batch(&data, &settled, deliveries).await }
        },
    )
    .await;
    let _ = sweeper.await;
    let _ = auditor.await;
}

/// Ends reservations whose next step is overdue by the TTL, every sweep
/// interval: unpaid ones expire; paid or declined ones whose settlement never
/// came are settled, so no order stays `reserved` whatever became of its
/// events.
async fn sweep_expired(config: InventoryConfig, data: ServiceClient, stop: CancellationToken) {
    let interval = Duration::from_millis(config.sweep_interval_ms.max(10));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        loop {
            let request = ExpireRequest {
                older_than_ms: config.reservation_ttl_ms,
                max_orders: MAX_EXPIRED_PER_CALL,
            };
            match data
                .post::<ExpireResult, _>("/reservations/expire", &request)
                .await
            {
                Ok(result) => {
                    for order_id in &result.expired_order_ids {
                        tracing::info!(
                            operation = "expire",
                            order_id,
                            "reservation expired and released"
                        );
                    }
                    for order_id in &result.released_order_ids {
                        tracing::info!(
                            operation = "expire",
                            order_id,
                            "declined reservation released by the sweep"
                        );
                    }
                    for order_id in &result.fulfilled_order_ids {
                        tracing::info!(
                            operation = "expire",
                            order_id,
                            "charged reservation fulfilled by the sweep"
                        );
                    }
                    if result.len() < MAX_EXPIRED_PER_CALL as usize {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "expiry sweep failed; retrying next interval"
                    );
                    break;
                }
            }
        }
    }
}
