//! order-service: the public order API.
//!
//! It validates what clients send, gives each order its id, and asks
//! inventory-service to reserve the stock before it answers: the client's
//! response already says `reserved` (201) or `rejected` (409). Reads go to
//! data-service. The service holds no state, so any number of instances may
//! run behind a load balancer.
//!
//! Concurrent orders are coalesced (see [`coalescer`]): the reservations
//! that arrive within a short window travel to inventory-service as one
//! batch, and each client still gets its own answer.

mod answer;
pub mod coalescer;
mod error;
pub mod reply;
mod request;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use stockroom_contract::{
    ErrorBody, ExtendCall, ExtendRequest, OrderDocument, OrderList, PlaceOrderRequest,
    ReleaseRequest, ReserveBatch, ReserveRequest,
};
use stockroom_domain::ReleaseReason;
use stockroom_http_kit::{
    InternalToken, JsonBody, Metrics, Readiness, ServiceClient, metric_names,
};
use tokio::net::TcpListener;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use answer::{LimitExceededBody, RejectedOrder};
pub use coalescer::{CoalesceConfig, Coalescer};
pub use error::OrderError;
use reply::{Reply, ReplyBatch};
pub use stockroom_http_kit::{IDEMPOTENCY_KEY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH};

/// The largest order body accepted. A maximal order (50 items with
/// 100-character names) is about 7 KiB; anything far larger is a mistake or
/// an attack.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

// A client sending at the listener's minimum rate still delivers the
// largest order before the body's deadline.
const _: () = assert!(
    stockroom_http_kit::BODY_RATE_GRACE_MS
        + MAX_BODY_BYTES as u64 * 1_000 / stockroom_http_kit::MIN_BODY_BYTES_PER_SECOND
        <= stockroom_http_kit::BODY_DEADLINE_MS
);

/// The longest a customer may extend an unpaid reservation by, unless the
/// operator says otherwise: long enough for a slow payment (a bank's
/// challenge, a wallet's confirmation), short enough that stock held for a
/// customer who left comes back on sale the same hour.
pub const DEFAULT_MAX_RESERVATION_TTL_MS: u64 = 30 * 60 * 1_000;

/// The most any operator may allow: a day. A longer hold is not a
/// reservation but a sale on credit.
pub const MAX_RESERVATION_TTL_LIMIT_MS: u64 = 24 * 60 * 60 * 1_000;

#[derive(Debug, Clone)]
pub struct OrderConfig {
    pub inventory_url: String,
    pub data_url: String,
    /// Sent to inventory-service and data-service, whose routes that
    /// order-service calls to reserve and release are internal.
    pub internal_token: InternalToken,
    /// The longest `ttlMs` an extension may ask for; 1 to
    /// [`MAX_RESERVATION_TTL_LIMIT_MS`].
    pub max_reservation_ttl_ms: u64,
}

/// What every handler shares, behind one `Arc`. axum clones the state for
/// each request; one reference count costs less than the dozen of the
/// clients, the coalescer and the metrics inside (their clones and drops were
/// about 2 % of the process's samples on the hot product).
#[derive(Clone)]
pub struct OrderState(Arc<Shared>);

impl std::ops::Deref for OrderState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state behind [`OrderState`]; its fields are private to the service.
pub struct Shared {
    readiness: Readiness,
    inventory: ServiceClient,
    data: ServiceClient,
    /// `None` when coalescing is off: each order is then its own exchange.
    coalescer: Option<Coalescer>,
    metrics: Metrics,
    max_reservation_ttl_ms: u64,
}

impl Shared {
    /// Reserves one order, through the coalescer when it is on.
    async fn reserve(&self, request: ReserveRequest) -> Result<Reply, OrderError> {
        if let Some(coalescer) = &self.coalescer {
            return coalescer.reserve(request).await;
        }
        let batch = ReserveBatch {
            requests: vec![request],
        };
        let mut result: ReplyBatch = self.inventory.post("/reservations", &batch).await?;
        if result.results.len() != 1 {
            return Err(OrderError::Protocol(format!(
                "inventory-service returned {} results for 1 request",
                result.results.len()
            )));
        }
        Ok(result.results.remove(0))
    }
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Stockroom order-service",
    description = "The public order API: place, read and cancel orders. Stock is reserved before the answer."
))]
struct ApiDoc;

#[utoipa::path(get, path = "/health", responses((status = 200), (status = 503)))]
async fn health(State(state): State<OrderState>) -> Response {
    state.readiness.health_response()
}

/// Places an order. Stock for every item is reserved atomically, all or
/// nothing, before the answer.
#[utoipa::path(
    post,
    path = "/api/orders",
    request_body = stockroom_contract::OrderShape,
    params(("Idempotency-Key" = Option<String>, Header,
        min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
        description = "1 to 255 visible ASCII characters; retrying with the same key and body returns the first answer and creates nothing")),
    responses(
        (status = 201, body = OrderDocument, description = "reserved"),
        (status = 409, body = RejectedOrder, description = "rejected: insufficient stock (`insufficient_stock`, the order is kept as rejected), or past a product's purchase limit (`limit_exceeded`, a LimitExceededBody; nothing is created)"),
        (status = 400, body = ErrorBody, description = "malformed JSON or empty body"),
        (status = 413, body = ErrorBody, description = "body too large"),
        (status = 422, body = ErrorBody, description = "invalid order, unknown product, or idempotency key reused with another body"),
        (status = 503, body = ErrorBody, description = "overloaded or a dependency is unavailable; retry after Retry-After")
    )
)]
#[tracing::instrument(name = "place order", level = "debug", skip_all, fields(order_id))]
async fn place_order(
    State(state): State<OrderState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PlaceOrderRequest>,
) -> Result<Response, OrderError> {
    let idempotency_key = request::idempotency_key(&headers)?;
    let (customer_id, items) = body
        .into_parts()
        .map_err(|error| OrderError::Invalid(error.to_string()))?;
    let request_fingerprint = idempotency_key
        .as_ref()
        .map(|_| request::fingerprint(&customer_id, &items));
    let order_id = uuid::Uuid::now_v7().to_string();
    tracing::Span::current().record("order_id", order_id.as_str());
    let request = ReserveRequest {
        order_id,
        customer_id,
        items,
        idempotency_key,
        request_fingerprint,
        trace_parent: stockroom_http_kit::current_traceparent(),
    };
    let result = state.reserve(request).await?;
    let mut response = answer::answer(result.outcome, &state.metrics)?;
    if result.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// One order with its history.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    params(("id" = String, Path)),
    responses((status = 200, body = OrderDocument), (status = 404, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn get_order(
    State(state): State<OrderState>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderDocument>, OrderError> {
    request::check_order_id(&order_id)?;
    Ok(Json(state.data.get(&format!("/orders/{order_id}")).await?))
}

#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// reserved, rejected, fulfilled or cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<stockroom_contract::OrderStatusName>, inline)]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    /// The `nextCursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Orders, oldest first, filtered and a page at a time.
#[utoipa::path(
    get,
    path = "/api/orders",
    params(ListQuery),
    responses((status = 200, body = OrderList), (status = 422, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn list_orders(
    State(state): State<OrderState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderList>, OrderError> {
    let Query(query) = query.map_err(|rejection| OrderError::Invalid(rejection.body_text()))?;
    Ok(Json(state.data.get_query("/orders", &query).await?))
}

/// Cancels an order that is not paid yet, releasing its stock. Cancelling a
/// cancelled order again is harmless.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/cancel",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = OrderDocument),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "paid, fulfilled or rejected")
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn cancel_order(
    State(state): State<OrderState>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderDocument>, OrderError> {
    request::check_order_id(&order_id)?;
    let request = ReleaseRequest {
        reason: ReleaseReason::CancelledByCustomer,
    };
    Ok(Json(
        state
            .inventory
            .post(&format!("/orders/{order_id}/release"), &request)
            .await?,
    ))
}

/// Keeps the customer's unpaid reservation for `ttlMs` more from now (at
/// most the operator's `--max-reservation-ttl-ms`), while a slow payment
/// completes. It never shortens a reservation, and never races the sweep
/// that expires it: whichever the rules decide first wins.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/extend",
    params(("id" = String, Path)),
    request_body = ExtendRequest,
    responses(
        (status = 200, body = OrderDocument, description = "kept at least until its extendedUntil"),
        (status = 403, body = ErrorBody, description = "another customer's order"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not an unpaid reservation (paid, expired, cancelled, fulfilled or rejected)"),
        (status = 422, body = ErrorBody, description = "ttlMs out of bounds")
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn extend_order(
    State(state): State<OrderState>,
    Path(order_id): Path<String>,
    JsonBody(request): JsonBody<ExtendRequest>,
) -> Result<Json<OrderDocument>, OrderError> {
    request::check_order_id(&order_id)?;
    if !(1..=state.max_reservation_ttl_ms).contains(&request.ttl_ms) {
        return Err(OrderError::Invalid(format!(
            "ttlMs must be from 1 to {}",
            state.max_reservation_ttl_ms
        )));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let call = ExtendCall {
        customer_id: request.customer_id,
        until_ms: now_ms + request.ttl_ms,
    };
    Ok(Json(
        state
            .data
            .post(&format!("/orders/{order_id}/extend"), &call)
            .await?,
    ))
}

fn api_router() -> OpenApiRouter<OrderState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(extend_order))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

pub fn router(state: OrderState) -> Router {
    let (router, api) = api_router().split_for_parts();
    stockroom_http_kit::with_openapi_and_fallbacks(router, api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(state.metrics.layer())
        .layer(stockroom_http_kit::TraceLayer::new("order-service"))
        .with_state(state)
}

/// Serves order-service until `shutdown` completes, coalescing orders with
/// the default [`CoalesceConfig`]. It reports healthy once inventory-service
/// and data-service are.
pub async fn run(
    listener: TcpListener,
    config: OrderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_coalescing(listener, config, CoalesceConfig::default(), shutdown).await
}

/// Serves order-service until `shutdown` completes, coalescing orders as
/// `coalesce` says ([`CoalesceConfig::OFF`] sends each order on its own).
pub async fn run_with_coalescing(
    listener: TcpListener,
    config: OrderConfig,
    coalesce: CoalesceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let inventory = ServiceClient::new("inventory-service", &config.inventory_url)
        .with_token(config.internal_token.clone());
    let metrics = Metrics::new("order-service");
    let coalescer = coalesce.is_enabled().then(|| {
        let client = inventory.clone();
        let batch_size = metrics.histogram(
            metric_names::ORDER_BATCH_SIZE,
            metric_names::help(metric_names::ORDER_BATCH_SIZE),
            &[],
        );
        Coalescer::start(coalesce, move |batch: ReserveBatch| {
            let client = client.clone();
            batch_size.record(batch.requests.len() as f64);
            async move { client.post("/reservations", &batch).await }
        })
    });
    let state = OrderState(Arc::new(Shared {
        readiness: Readiness::new("order-service"),
        inventory,
        data: ServiceClient::new("data-service", &config.data_url)
            .with_token(config.internal_token.clone()),
        coalescer,
        metrics,
        max_reservation_ttl_ms: config
            .max_reservation_ttl_ms
            .clamp(1, MAX_RESERVATION_TTL_LIMIT_MS),
    }));
    let readiness = state.readiness.clone();
    let http = state.data.http().clone();
    let waiter = tokio::spawn(async move {
        let dependencies = [
            ("data-service", config.data_url.as_str()),
            ("inventory-service", config.inventory_url.as_str()),
        ];
        readiness.wait_for(&http, &dependencies).await;
    });
    let served = stockroom_http_kit::serve(listener, router(state), shutdown).await;
    waiter.abort();
    served
}
