//! The simulated payment provider's ledger, for payment-service.

use axum::Json;
use axum::extract::State;
use stockroom_contract::{ErrorBody, ProviderChargeBatch, ProviderStats, ProviderVerdictBatch};
use stockroom_http_kit::JsonBody;

use crate::{DataError, DataState, MAX_EVENTS_PER_LEASE, calls, documents};

/// The simulated payment provider: charges each key once; a repeated
/// request gets the first verdict and charges nothing more.
#[utoipa::path(
    post,
    path = "/provider/charges",
    request_body = ProviderChargeBatch,
    responses((status = 200, body = ProviderVerdictBatch), (status = 422, body = ErrorBody))
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn provider_charge(
    State(state): State<DataState>,
    JsonBody(batch): JsonBody<ProviderChargeBatch>,
) -> Result<Json<ProviderVerdictBatch>, DataError> {
    if batch.charges.len() > MAX_EVENTS_PER_LEASE as usize {
        return Err(DataError::Invalid(format!(
            "at most {MAX_EVENTS_PER_LEASE} charges per call"
        )));
    }
    let charges = batch.charges.into_iter().map(calls::charge).collect();
    let verdicts = state.ledger.provider_charge(charges).await?;
    Ok(Json(ProviderVerdictBatch {
        verdicts: verdicts.into_iter().map(documents::verdict).collect(),
    }))
}

/// What the simulated provider's ledger holds.
#[utoipa::path(
    get,
    path = "/provider/stats",
    responses((status = 200, body = ProviderStats))
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn provider_stats(
    State(state): State<DataState>,
) -> Result<Json<ProviderStats>, DataError> {
    let stats = state.ledger.provider_stats().await?;
    Ok(Json(documents::provider_stats(stats)))
}
