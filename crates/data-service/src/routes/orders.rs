//! Orders: listing, counting, reading one, and releasing or extending an
//! unpaid one.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use stockroom_contract::{
    ErrorBody, ExtendCall, Order, OrderCounts, OrderDocument, OrderList, ReleaseRequest,
};
use stockroom_domain::OrderStatus;
use stockroom_domain::rules::ExtendDecision;
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

/// Keeps a customer's unpaid reservation until `untilMs` at least (never
/// shorter than it was). The sweep and this are decided by the rules on the
/// order's row one after the other, so an extension never races it.
#[utoipa::path(
    post,
    path = "/orders/{id}/extend",
    params(("id" = String, Path)),
    request_body = ExtendCall,
    responses(
        (status = 200, body = OrderDocument),
        (status = 403, body = ErrorBody, description = "another customer's order"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not an unpaid reservation")
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn extend(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
    JsonBody(call): JsonBody<ExtendCall>,
) -> Result<Json<OrderDocument>, DataError> {
    let until_ms = i64::try_from(call.until_ms)
        .map_err(|_| DataError::Invalid("untilMs is beyond any time".into()))?;
    match state
        .flow
        .extend(&order_id, call.customer_id.as_str(), until_ms)
        .await?
    {
        ExtendDecision::Extended(_) => match state.flow.order(&order_id).await? {
            Some(stored) => Ok(Json(OrderDocument {
                order: Order::from_stored(&stored),
            })),
            None => Err(DataError::NotFound(format!("no order with id {order_id}"))),
        },
        ExtendDecision::NotExtendable(order) => Err(DataError::NotExtendable(format!(
            "order {order_id} is {} (payment {}): only an unpaid reservation can be extended",
            order.status,
            order.payment.as_str()
        ))),
        ExtendDecision::NotYours => Err(DataError::Forbidden(format!(
            "order {order_id} is another customer's"
        ))),
        ExtendDecision::UnknownOrder => {
            Err(DataError::NotFound(format!("no order with id {order_id}")))
        }
    }
}
