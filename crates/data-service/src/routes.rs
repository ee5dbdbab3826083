//! data-service's handlers. Each is a thin translation between HTTP and one
//! storage call.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use serde::Deserialize;
use stockroom_contract::{
    AckRequest, BuryRequest, DeadLetterList, DeliveryBatch, EffectBatchResult, ErrorBody,
    ExpireRequest, ExpireResult, InventoryItemDocument, InventoryList, OrderCounts, OrderDocument,
    OrderList, PaymentBatch, PollRequest, ProviderChargeBatch, ProviderStats, ProviderVerdictBatch,
    RedriveRequest, RedriveResult, ReleaseRequest, ReserveBatch, ReserveBatchResult,
    RestockRequest, SettlementBatch,
};
use stockroom_domain::rules::SweepDecision;
use stockroom_domain::{Consumer, OrderStatus, ProductName};
use stockroom_http_kit::{JsonBody, ServiceRoutes};
use stockroom_storage::{
    DeliveryOutcome, MAX_COUNTED_ORDERS, MAX_ORDERS_PER_PAGE, OrderFilter, ReleaseOutcome,
};
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The most orders one expiry call may end; inventory-service's sweeper asks
/// for far fewer, and the bound keeps one call's transaction short.
pub const MAX_SWEPT_PER_CALL: u32 = 10_000;

/// The longest order id a reservation may carry. order-service sends UUIDs
/// (36 characters); the bound only keeps other callers reasonable.
pub const MAX_ORDER_ID_LENGTH: usize = 100;

use crate::{
    DataError, DataState, MAX_BODY_BYTES, MAX_EVENTS_PER_LEASE, MAX_LEASE_MS, MAX_LEASE_WAIT_MS,
    MIN_LEASE_MS,
};

#[derive(OpenApi)]
#[openapi(info(
    title = "Stockroom data-service",
    description = "The only process that touches storage: atomic operations on inventory and orders, and the embedded event bus."
))]
struct ApiDoc;

/// The public routes are the original system's reads (any client may list
/// stock and orders); everything that changes state, the event bus and the
/// provider are internal.
fn service_routes() -> ServiceRoutes<DataState> {
    let public = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(inventory))
        .routes(routes!(inventory_item))
        .routes(routes!(orders))
        .routes(routes!(order_counts))
        .routes(routes!(order));
    let internal = OpenApiRouter::new()
        .routes(routes!(restock))
        .routes(routes!(reserve))
        .routes(routes!(record_payments))
        .routes(routes!(settle))
        .routes(routes!(release))
        .routes(routes!(expire))
        .routes(routes!(lease_events))
        .routes(routes!(acknowledge_events))
        .routes(routes!(release_events))
        .routes(routes!(reject_events))
        .routes(routes!(dead_letters, bury_events))
        .routes(routes!(redrive))
        .routes(routes!(provider_charge))
        .routes(routes!(provider_stats));
    ServiceRoutes { public, internal }
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    service_routes().openapi()
}

pub fn router(state: DataState) -> Router {
    service_routes()
        .into_router(state.internal_token.clone())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(state.metrics.layer())
        .layer(stockroom_http_kit::TraceLayer::new("data-service"))
        .with_state(state)
}

/// The service's health, part by part: 503 while the storage refuses writes.
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "ok, or degraded (dead letters wait for an operator)"),
        (status = 503, description = "starting, or a part is down (the storage refuses writes)")
    )
)]
async fn health(State(state): State<DataState>) -> axum::response::Response {
    state.readiness.health_response()
}

/// Every product's stock.
#[utoipa::path(get, path = "/inventory", responses((status = 200, body = InventoryList)))]
#[tracing::instrument(level = "debug", skip_all)]
async fn inventory(State(state): State<DataState>) -> Result<Json<InventoryList>, DataError> {
    Ok(Json(InventoryList {
        inventory: state.storage.inventory().await?,
    }))
}

/// One product's stock; the name is matched without regard to case.
#[utoipa::path(
    get,
    path = "/inventory/{productName}",
    params(("productName" = String, Path, description = "product name, any case")),
    responses(
        (status = 200, body = InventoryItemDocument),
        (status = 404, body = ErrorBody, description = "no such product")
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn inventory_item(
    State(state): State<DataState>,
    Path(product_name): Path<String>,
) -> Result<Json<InventoryItemDocument>, DataError> {
    match state.storage.inventory_item(&product_name).await? {
        Some(item) => Ok(Json(InventoryItemDocument { item })),
        None => Err(DataError::NotFound(format!(
            "no product named {product_name}"
        ))),
    }
}

/// Adds units to a product, creating it if it is new.
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
    State(state): State<DataState>,
    Path(product_name): Path<String>,
    JsonBody(request): JsonBody<RestockRequest>,
) -> Result<Json<InventoryItemDocument>, DataError> {
    let product =
        ProductName::new(&product_name).map_err(|error| DataError::Invalid(error.to_string()))?;
    if request.quantity == 0 {
        return Err(DataError::Invalid("quantity must be at least 1".into()));
    }
    let item = state.storage.restock(product, request.quantity).await?;
    Ok(Json(InventoryItemDocument { item }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders in this status.
    #[param(value_type = Option<stockroom_contract::OrderStatusName>, inline)]
    status: Option<String>,
    /// Only this customer's orders.
    customer_id: Option<String>,
    /// The `nextCursor` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

pub fn order_filter(query: OrderQuery) -> Result<OrderFilter, String> {
    let status = query
        .status
        .map(|status| status.parse::<OrderStatus>())
        .transpose()?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_ORDERS_PER_PAGE {
        return Err(format!("limit must be from 1 to {MAX_ORDERS_PER_PAGE}"));
    }
    Ok(OrderFilter {
        status,
        customer_id: query.customer_id,
        after: query.after,
        limit,
    })
}

/// Orders, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/orders",
    params(OrderQuery),
    responses((status = 200, body = OrderList), (status = 422, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn orders(
    State(state): State<DataState>,
    query: Result<Query<OrderQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderList>, DataError> {
    let Query(query) = query.map_err(|rejection| DataError::Invalid(rejection.body_text()))?;
    let filter = order_filter(query).map_err(DataError::Invalid)?;
    Ok(Json(state.storage.orders(filter).await?))
}

/// How many orders are in each status, each count stopping at
/// `MAX_COUNTED_ORDERS` so that it stays cheap however many orders are stored.
#[utoipa::path(get, path = "/orders/counts", responses((status = 200, body = OrderCounts)))]
#[tracing::instrument(level = "debug", skip_all)]
async fn order_counts(State(state): State<DataState>) -> Result<Json<OrderCounts>, DataError> {
    let counts = state.storage.order_counts(MAX_COUNTED_ORDERS).await?;
    Ok(Json(OrderCounts {
        counts: counts
            .into_iter()
            .map(|count| stockroom_contract::StatusCount {
                status: count.status,
                count: count.count,
                capped: count.capped,
            })
            .collect(),
        cap: MAX_COUNTED_ORDERS,
    }))
}

/// One order with its history.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    params(("id" = String, Path)),
    responses((status = 200, body = OrderDocument), (status = 404, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn order(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderDocument>, DataError> {
    match state.storage.order(&order_id).await? {
        Some(order) => Ok(Json(OrderDocument { order })),
        None => Err(DataError::NotFound(format!("no order with id {order_id}"))),
    }
}

/// Reserves a batch of orders, each atomically and in the order given.
#[utoipa::path(
    post,
    path = "/reservations",
    request_body = ReserveBatch,
    responses((status = 200, body = ReserveBatchResult), (status = 503, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn reserve(
    State(state): State<DataState>,
    JsonBody(batch): JsonBody<ReserveBatch>,
) -> Result<Json<ReserveBatchResult>, DataError> {
    check_order_ids(
        batch
            .requests
            .iter()
            .map(|request| request.order_id.as_str()),
    )?;
    let results = state.storage.reserve(batch.requests).await?;
    state.events_written.notify_waiters();
    Ok(Json(ReserveBatchResult { results }))
}

/// Records payment verdicts; emits `PaymentSucceeded` or `PaymentFailed`.
#[utoipa::path(
    post,
    path = "/payments",
    request_body = PaymentBatch,
    responses((status = 200, body = EffectBatchResult))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn record_payments(
    State(state): State<DataState>,
    JsonBody(batch): JsonBody<PaymentBatch>,
) -> Result<Json<EffectBatchResult>, DataError> {
    check_order_ids(
        batch
            .payments
            .iter()
            .map(|payment| payment.order_id.as_str()),
    )?;
    let results = state.storage.record_payments(batch.payments).await?;
    state.events_written.notify_waiters();
    Ok(Json(EffectBatchResult { results }))
}

/// Commits or releases paid or declined reservations.
#[utoipa::path(
    post,
    path = "/settlements",
    request_body = SettlementBatch,
    responses((status = 200, body = EffectBatchResult))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn settle(
    State(state): State<DataState>,
    JsonBody(batch): JsonBody<SettlementBatch>,
) -> Result<Json<EffectBatchResult>, DataError> {
    check_order_ids(
        batch
            .settlements
            .iter()
            .map(|settlement| settlement.order_id.as_str()),
    )?;
    let results = state.storage.settle(batch.settlements).await?;
    Ok(Json(EffectBatchResult { results }))
}

/// Releases an unpaid reservation. Releasing a cancelled order again is
/// harmless and answers 200.
#[utoipa::path(
    post,
    path = "/orders/{id}/release",
    params(("id" = String, Path)),
    request_body = ReleaseRequest,
    responses(
        (status = 200, body = OrderDocument),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "paid, fulfilled or rejected")
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn release(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
    JsonBody(request): JsonBody<ReleaseRequest>,
) -> Result<Json<OrderDocument>, DataError> {
    match state.storage.release(&order_id, request.reason).await? {
        ReleaseOutcome::Released(order) | ReleaseOutcome::AlreadyCancelled(order) => {
            Ok(Json(OrderDocument { order }))
        }
        ReleaseOutcome::NotCancellable(order) => Err(DataError::Conflict(format!(
            "order {order_id} is {} (payment {}) and can no longer be cancelled",
            order.status,
            order.payment_status.as_str()
        ))),
        ReleaseOutcome::UnknownOrder => {
            Err(DataError::NotFound(format!("no order with id {order_id}")))
        }
    }
}

/// Ends reservations whose next step is overdue: unpaid ones expire, declined
/// ones are released, charged ones are fulfilled.
#[utoipa::path(
    post,
    path = "/reservations/expire",
    request_body = ExpireRequest,
    responses((status = 200, body = ExpireResult))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn expire(
    State(state): State<DataState>,
    JsonBody(request): JsonBody<ExpireRequest>,
) -> Result<Json<ExpireResult>, DataError> {
    if !(1..=MAX_SWEPT_PER_CALL).contains(&request.max_orders) {
        return Err(DataError::Invalid(format!(
            "maxOrders must be from 1 to {MAX_SWEPT_PER_CALL}"
        )));
    }
    let swept = state
        .storage
        .sweep(request.older_than_ms, request.max_orders)
        .await?;
    let mut result = ExpireResult::default();
    for order in swept {
        let ids = match order.outcome {
            SweepDecision::Expired => &mut result.expired_order_ids,
            SweepDecision::Declined => &mut result.released_order_ids,
            SweepDecision::Fulfilled => &mut result.fulfilled_order_ids,
            SweepDecision::Kept => continue,
        };
        ids.push(order.order_id);
    }
    Ok(Json(result))
}

/// Refuses a batch naming an empty or over-long order id: no order can have
/// one, and an empty one would make `/orders/{id}/…` name another route.
fn check_order_ids<'a>(mut ids: impl Iterator<Item = &'a str>) -> Result<(), DataError> {
    match ids.find(|id| !(1..=MAX_ORDER_ID_LENGTH).contains(&id.chars().count())) {
        Some(id) => Err(DataError::Invalid(format!(
            "orderId must be 1 to {MAX_ORDER_ID_LENGTH} characters, got {id:?}"
        ))),
        None => Ok(()),
    }
}

fn known_consumer(consumer: &str) -> Result<Consumer, DataError> {
    consumer
        .parse()
        .map_err(|_| DataError::NotFound(format!("no consumer named {consumer}")))
}

/// Leases a consumer's next events, waiting up to `waitMs` for one to appear.
#[utoipa::path(
    post,
    path = "/events/{consumer}/lease",
    params(("consumer" = String, Path, description = "payment or inventory")),
    request_body = PollRequest,
    responses(
        (status = 200, body = DeliveryBatch),
        (status = 404, body = ErrorBody, description = "no such consumer"),
        (status = 422, body = ErrorBody, description = "a lease outside its bounds")
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn lease_events(
    State(state): State<DataState>,
    Path(consumer): Path<String>,
    JsonBody(request): JsonBody<PollRequest>,
) -> Result<Json<DeliveryBatch>, DataError> {
    let consumer = known_consumer(&consumer)?;
    if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&request.lease_ms) {
        return Err(DataError::Invalid(format!(
            "leaseMs must be from {MIN_LEASE_MS} to {MAX_LEASE_MS}"
        )));
    }
    let max_events = request.max_events.clamp(1, MAX_EVENTS_PER_LEASE);
    let wait = Duration::from_millis(request.wait_ms.min(MAX_LEASE_WAIT_MS));
    // Register for the wake-up before looking, so an event written between
    // the look and the wait is not missed.
    let notified = state.events_written.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let deliveries = state
        .storage
        .lease_events(consumer, max_events, request.lease_ms)
        .await?;
    if !deliveries.is_empty() || wait.is_zero() {
        return Ok(Json(DeliveryBatch { deliveries }));
    }
    let _ = tokio::time::timeout(wait, notified).await;
    let deliveries = state
        .storage
        .lease_events(consumer, max_events, request.lease_ms)
        .await?;
    Ok(Json(DeliveryBatch { deliveries }))
}

async fn finish(
    state: &DataState,
    consumer: &str,
    outcome: DeliveryOutcome,
    request: AckRequest,
) -> Result<StatusCode, DataError> {
    let consumer = known_consumer(consumer)?;
    if request.deliveries.len() > MAX_EVENTS_PER_LEASE as usize {
        return Err(DataError::Invalid(format!(
            "at most {MAX_EVENTS_PER_LEASE} deliveries per call"
        )));
    }
    state
        .storage
        .finish_deliveries(consumer, outcome, request.deliveries)
        .await?;
    if outcome != DeliveryOutcome::Acknowledge {
        // Released or rejected events are due again at once.
        state.events_written.notify_waiters();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Acknowledges deliveries: their effect is committed; never hand them out
/// again. A receipt whose lease ran out changes nothing.
#[utoipa::path(
    post,
    path = "/events/{consumer}/ack",
    params(("consumer" = String, Path)),
    request_body = AckRequest,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn acknowledge_events(
    State(state): State<DataState>,
    Path(consumer): Path<String>,
    JsonBody(request): JsonBody<AckRequest>,
) -> Result<StatusCode, DataError> {
    finish(&state, &consumer, DeliveryOutcome::Acknowledge, request).await
}

/// Gives deliveries back unhandled (a dependency is down): they are handed
/// out again at once, and no attempt is counted.
#[utoipa::path(
    post,
    path = "/events/{consumer}/release",
    params(("consumer" = String, Path)),
    request_body = AckRequest,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn release_events(
    State(state): State<DataState>,
    Path(consumer): Path<String>,
    JsonBody(request): JsonBody<AckRequest>,
) -> Result<StatusCode, DataError> {
    finish(&state, &consumer, DeliveryOutcome::Release, request).await
}

/// Refuses deliveries as poison: counted, and dead-lettered at the limit.
#[utoipa::path(
    post,
    path = "/events/{consumer}/reject",
    params(("consumer" = String, Path)),
    request_body = AckRequest,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn reject_events(
    State(state): State<DataState>,
    Path(consumer): Path<String>,
    JsonBody(request): JsonBody<AckRequest>,
) -> Result<StatusCode, DataError> {
    finish(&state, &consumer, DeliveryOutcome::Reject, request).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// How many to list, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A consumer's dead letters, oldest first.
#[utoipa::path(
    get,
    path = "/events/{consumer}/dead-letters",
    params(("consumer" = String, Path), DeadLetterQuery),
    responses(
        (status = 200, body = DeadLetterList),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn dead_letters(
    State(state): State<DataState>,
    Path(consumer): Path<String>,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadLetterList>, DataError> {
    let consumer = known_consumer(&consumer)?;
    let Query(query) = query.map_err(|rejection| DataError::Invalid(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_EVENTS_PER_LEASE {
        return Err(DataError::Invalid(format!(
            "limit must be from 1 to {MAX_EVENTS_PER_LEASE}"
        )));
    }
    let dead_letters = state.storage.dead_letters(consumer, limit).await?;
    Ok(Json(DeadLetterList { dead_letters }))
}

/// Keeps events a consumer refused as poison after a broker delivered them.
#[utoipa::path(
    post,
    path = "/events/{consumer}/dead-letters",
    params(("consumer" = String, Path)),
    request_body = BuryRequest,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn bury_events(
    State(state): State<DataState>,
    Path(consumer): Path<String>,
    JsonBody(request): JsonBody<BuryRequest>,
) -> Result<StatusCode, DataError> {
    let consumer = known_consumer(&consumer)?;
    if request.events.len() > MAX_EVENTS_PER_LEASE as usize {
        return Err(DataError::Invalid(format!(
            "at most {MAX_EVENTS_PER_LEASE} events per call"
        )));
    }
    state.storage.bury_events(consumer, request.events).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Puts dead letters back in line: they are handed out (or published) again,
/// and each still has at most one effect.
#[utoipa::path(
    post,
    path = "/events/{consumer}/redrive",
    params(("consumer" = String, Path)),
    request_body = RedriveRequest,
    responses(
        (status = 200, body = RedriveResult),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn redrive(
    State(state): State<DataState>,
    Path(consumer): Path<String>,
    JsonBody(request): JsonBody<RedriveRequest>,
) -> Result<Json<RedriveResult>, DataError> {
    let consumer = known_consumer(&consumer)?;
    if request.delivery_ids.len() > MAX_EVENTS_PER_LEASE as usize {
        return Err(DataError::Invalid(format!(
            "at most {MAX_EVENTS_PER_LEASE} dead letters per call"
        )));
    }
    let redriven = state
        .storage
        .redrive(consumer, request.delivery_ids)
        .await?;
    if redriven > 0 {
        state.events_written.notify_waiters();
    }
    Ok(Json(RedriveResult { redriven }))
}

/// The simulated payment provider: charges each key once; a repeated
/// request gets the first verdict and charges nothing more.
#[utoipa::path(
    post,
    path = "/provider/charges",
    request_body = ProviderChargeBatch,
    responses((status = 200, body = ProviderVerdictBatch), (status = 422, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn provider_charge(
    State(state): State<DataState>,
    JsonBody(batch): JsonBody<ProviderChargeBatch>,
) -> Result<Json<ProviderVerdictBatch>, DataError> {
    if batch.charges.len() > MAX_EVENTS_PER_LEASE as usize {
        return Err(DataError::Invalid(format!(
            "at most {MAX_EVENTS_PER_LEASE} charges per call"
        )));
    }
    let verdicts = state.storage.provider_charge(batch.charges).await?;
    Ok(Json(ProviderVerdictBatch { verdicts }))
}

/// What the simulated provider's ledger holds.
#[utoipa::path(
    get,
    path = "/provider/stats",
    responses((status = 200, body = ProviderStats))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn provider_stats(State(state): State<DataState>) -> Result<Json<ProviderStats>, DataError> {
    Ok(Json(state.storage.provider_stats().await?))
}
