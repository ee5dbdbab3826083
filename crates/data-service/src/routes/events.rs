//! The embedded event bus: consumers lease their events from the outbox
//! and settle them (acknowledge, release, reject); dead letters are listed,
//! kept and redriven.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use stockroom_contract::{
    AckRequest, BuryRequest, DeadLetterList, DeliveryBatch, ErrorBody, PollRequest, RedriveRequest,
    RedriveResult,
};
use stockroom_domain::Consumer;
use stockroom_domain::outbox::DeliveryOutcome;
use stockroom_domain::rules::EventRecord;
use stockroom_http_kit::JsonBody;
use utoipa::IntoParams;

use crate::{
    DataError, DataState, MAX_EVENTS_PER_LEASE, MAX_LEASE_MS, MAX_LEASE_WAIT_MS, MIN_LEASE_MS,
    calls, documents,
};

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
pub(super) async fn lease_events(
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
    let mut leased = state
        .outbox
        .lease_events(consumer, max_events, request.lease_ms)
        .await?;
    if leased.is_empty() && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, notified).await;
        leased = state
            .outbox
            .lease_events(consumer, max_events, request.lease_ms)
            .await?;
    }
    Ok(Json(DeliveryBatch {
        deliveries: leased.iter().map(documents::delivery).collect(),
    }))
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
    let receipts = request.deliveries.into_iter().map(calls::receipt).collect();
    state
        .outbox
        .finish_deliveries(consumer, outcome, receipts)
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
pub(super) async fn acknowledge_events(
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
pub(super) async fn release_events(
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
pub(super) async fn reject_events(
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
pub(super) async fn dead_letters(
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
    let letters = state.outbox.dead_letters(consumer, limit).await?;
    Ok(Json(DeadLetterList {
        dead_letters: letters.iter().map(documents::dead_letter).collect(),
    }))
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
pub(super) async fn bury_events(
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
    // An event whose time cannot be read is refused whole, never kept with
    // a made-up time.
    let events = request
        .events
        .iter()
        .map(|event| event.to_record())
        .collect::<Result<Vec<EventRecord>, _>>()
        .map_err(|error| DataError::Invalid(error.to_string()))?;
    state.outbox.bury_events(consumer, events).await?;
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
pub(super) async fn redrive(
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
    let redriven = state.outbox.redrive(consumer, request.delivery_ids).await?;
    if redriven > 0 {
        state.events_written.notify_waiters();
    }
    Ok(Json(RedriveResult { redriven }))
}
