//! Orders: listing, counting, reading one, and releasing an unpaid one.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use stockroom_contract::{ErrorBody, Order, OrderCounts, OrderDocument, OrderList, ReleaseRequest};
use stockroom_domain::OrderStatus;
use stockroom_http_kit::JsonBody;
use stockroom_storage::{MAX_ORDERS_PER_PAGE, OrderFilter, ReleaseOutcome};
use utoipa::IntoParams;

use crate::{DataError, DataState};

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

fn order_filter(query: OrderQuery) -> Result<OrderFilter, DataError> {
    let status = query
        .status
        .map(|status| status.parse::<OrderStatus>())
        .transpose()
        .map_err(|error| DataError::Invalid(error.to_string()))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_ORDERS_PER_PAGE {
        return Err(DataError::Invalid(format!(
            "limit must be from 1 to {MAX_ORDERS_PER_PAGE}"
        )));
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
pub(super) async fn orders(
    State(state): State<DataState>,
    query: Result<Query<OrderQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderList>, DataError> {
    let Query(query) = query.map_err(|rejection| DataError::Invalid(rejection.body_text()))?;
    let page = state.flow.orders(order_filter(query)?).await?;
    Ok(Json(OrderList {
        orders: page.orders.iter().map(Order::from_stored).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// How many orders are in each status, exactly: read from counters every
/// write keeps, so a count costs the same however many orders are stored.
#[utoipa::path(get, path = "/orders/counts", responses((status = 200, body = OrderCounts)))]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn order_counts(
    State(state): State<DataState>,
) -> Result<Json<OrderCounts>, DataError> {
    let counts = state.flow.order_counts().await?;
    Ok(Json(OrderCounts {
        counts: counts
            .into_iter()
            .map(|count| stockroom_contract::StatusCount {
                status: count.status,
                count: count.count,
                capped: false,
            })
            .collect(),
        cap: None,
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
pub(super) async fn order(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderDocument>, DataError> {
    match state.flow.order(&order_id).await? {
        Some(stored) => Ok(Json(OrderDocument {
            order: Order::from_stored(&stored),
        })),
        None => Err(DataError::NotFound(format!("no order with id {order_id}"))),
    }
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
pub(super) async fn release(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
    JsonBody(request): JsonBody<ReleaseRequest>,
) -> Result<Json<OrderDocument>, DataError> {
    match state.flow.release(&order_id, request.reason).await? {
        ReleaseOutcome::Released(stored) | ReleaseOutcome::AlreadyCancelled(stored) => {
            Ok(Json(OrderDocument {
                order: Order::from_stored(&stored),
            }))
        }
        ReleaseOutcome::NotCancellable(stored) => Err(DataError::Conflict(format!(
            "order {order_id} is {} (payment {}) and can no longer be cancelled",
            stored.order.status,
            stored.order.payment.as_str()
        ))),
        ReleaseOutcome::UnknownOrder => {
            Err(DataError::NotFound(format!("no order with id {order_id}")))
        }
    }
}
