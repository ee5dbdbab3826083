//! Payments and settlements: the consumers' effects of the flow's events.

use axum::Json;
use axum::extract::State;
use stockroom_contract::{EffectBatchResult, PaymentBatch, SettlementBatch};
use stockroom_http_kit::JsonBody;

use super::reservations::check_order_ids;
use crate::{DataError, DataState, calls, documents};

/// Records payment verdicts; emits `PaymentSucceeded` or `PaymentFailed`.
#[utoipa::path(
    post,
    path = "/payments",
    request_body = PaymentBatch,
    responses((status = 200, body = EffectBatchResult))
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn record_payments(
    State(state): State<DataState>,
    JsonBody(batch): JsonBody<PaymentBatch>,
) -> Result<Json<EffectBatchResult>, DataError> {
    check_order_ids(
        batch
            .payments
            .iter()
            .map(|payment| payment.order_id.as_str()),
    )?;
    let payments: Vec<_> = batch.payments.into_iter().map(calls::payment).collect();
    let order_ids: Vec<String> = payments
        .iter()
        .map(|payment| payment.order_id.clone())
        .collect();
    let effects = state.flow.record_payments(payments).await?;
    state.events_written.notify_waiters();
    Ok(Json(documents::effect_results(&order_ids, effects)))
}

/// Commits or releases paid or declined reservations.
#[utoipa::path(
    post,
    path = "/settlements",
    request_body = SettlementBatch,
    responses((status = 200, body = EffectBatchResult))
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn settle(
    State(state): State<DataState>,
    JsonBody(batch): JsonBody<SettlementBatch>,
) -> Result<Json<EffectBatchResult>, DataError> {
    check_order_ids(
        batch
            .settlements
            .iter()
            .map(|settlement| settlement.order_id.as_str()),
    )?;
    let settlements: Vec<_> = batch
        .settlements
        .into_iter()
        .map(calls::settlement)
        .collect();
    let order_ids: Vec<String> = settlements
        .iter()
        .map(|settlement| settlement.order_id.clone())
        .collect();
    let effects = state.flow.settle(settlements).await?;
    Ok(Json(documents::effect_results(&order_ids, effects)))
}
