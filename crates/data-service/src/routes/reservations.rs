//! Reservations: holding stock for a batch of new orders, and ending the
//! reservations whose next step is overdue.

use axum::Json;
use axum::extract::State;
use stockroom_contract::{
    ErrorBody, ExpireRequest, ExpireResult, ReserveBatch, ReserveBatchResult,
};
use stockroom_http_kit::JsonBody;

use crate::{DataError, DataState, calls, documents};

/// The most orders one expiry call may end; inventory-service's sweeper asks
/// for far fewer, and the bound keeps one call's transaction short.
pub const MAX_SWEPT_PER_CALL: u32 = 10_000;

/// The longest order id a reservation may carry. order-service sends UUIDs
/// (36 characters); the bound only keeps other callers reasonable.
pub const MAX_ORDER_ID_LENGTH: usize = 100;

/// Reserves a batch of orders, each atomically and in the order given.
#[utoipa::path(
    post,
    path = "/reservations",
    request_body = ReserveBatch,
    responses((status = 200, body = ReserveBatchResult), (status = 503, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn reserve(
    State(state): State<DataState>,
    JsonBody(batch): JsonBody<ReserveBatch>,
) -> Result<Json<ReserveBatchResult>, DataError> {
    check_order_ids(
        batch
            .requests
            .iter()
            .map(|request| request.order_id.as_str()),
    )?;
    let order_ids: Vec<String> = batch
        .requests
        .iter()
        .map(|request| request.order_id.clone())
        .collect();
    let requests = batch.requests.into_iter().map(calls::reservation).collect();
    let decisions = state.flow.reserve(requests).await?;
    state.events_written.notify_waiters();
    Ok(Json(ReserveBatchResult {
        results: order_ids
            .iter()
            .zip(decisions)
            .map(|(order_id, decision)| documents::reserve_result(order_id, decision))
            .collect(),
    }))
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
pub(super) async fn expire(
    State(state): State<DataState>,
    JsonBody(request): JsonBody<ExpireRequest>,
) -> Result<Json<ExpireResult>, DataError> {
    if !(1..=MAX_SWEPT_PER_CALL).contains(&request.max_orders) {
        return Err(DataError::Invalid(format!(
            "maxOrders must be from 1 to {MAX_SWEPT_PER_CALL}"
        )));
    }
    let swept = state
        .flow
        .sweep(request.older_than_ms, request.max_orders)
        .await?;
    Ok(Json(documents::expire_result(swept)))
}

/// Refuses a batch naming an empty or over-long order id: no order can have
/// one, and an empty one would make `/orders/{id}/…` name another route.
pub(super) fn check_order_ids<'a>(mut ids: impl Iterator<Item = &'a str>) -> Result<(), DataError> {
    match ids.find(|id| !(1..=MAX_ORDER_ID_LENGTH).contains(&id.chars().count())) {
        Some(id) => Err(DataError::Invalid(format!(
            "orderId must be 1 to {MAX_ORDER_ID_LENGTH} characters, got {id:?}"
        ))),
        None => Ok(()),
    }
}
