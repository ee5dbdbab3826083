//! The synchronised storm: orders in waves of `concurrency`, each wave
//! released by its last bytes at once ([`crate::last_byte`]), so that the
//! wave's requests reach the server in the same instant.

use std::sync::atomic::Ordering;
use std::time::Instant;

use stockroom_http_kit::ErrorChain;

use super::{Shared, WorkerResult, WorkerTally, new_histogram, order_request, settle_answer};
use crate::history::{EventType, HistoryEvent, OpValue, PLACE_ORDER};
use crate::last_byte::{SyncRequest, SyncResponse, SyncTarget, WaveError, send_wave};

/// Sends waves until the storm's orders are placed or its time is up.
pub(super) async fn waves(shared: &Shared) -> WorkerResult {
    let mut tally = WorkerTally::default();
    let mut latency = new_histogram();
    let mut write_error = None;
    let target = match SyncTarget::parse(&shared.config.order_urls[0]) {
        Ok(target) => target,
        // `validate` parsed it already.
        Err(_) => return (tally, latency, write_error),
    };
    while let Some(numbers) = next_wave(shared) {
        let values: Vec<OpValue> = numbers
            .iter()
            .map(|number| order_request(shared, *number))
            .collect();
        let requests: Vec<SyncRequest> = values.iter().map(sync_request).collect();
        let invokes = invokes(shared, &numbers, &values);
        let began = Instant::now();
        let answers = send_wave(&target, &requests).await;
        let took_us = began.elapsed().as_micros().max(1) as u64;
        for ((invoke, value), answer) in invokes.into_iter().zip(values).zip(answers) {
            latency.saturating_record(took_us);
            let (kind, value) = completion(value, answer);
            let done = HistoryEvent {
                kind,
                process: invoke.process,
                time: shared.started.elapsed().as_nanos() as u64,
                f: PLACE_ORDER.to_owned(),
                value,
            };
            tally.record(shared, invoke, done, 1, &mut write_error);
        }
    }
    (tally, latency, write_error)
}

/// The order numbers of the next wave: up to `concurrency` of them, none
/// once the storm's time is up or its orders are all issued.
fn next_wave(shared: &Shared) -> Option<Vec<u64>> {
    let config = &shared.config;
    if shared
        .deadline
        .is_some_and(|deadline| Instant::now() >= deadline)
    {
        return None;
    }
    let numbers: Vec<u64> = (0..config.concurrency)
        .map(|_| shared.issued.fetch_add(1, Ordering::Relaxed))
        .filter(|number| config.orders.is_none_or(|orders| *number < orders))
        .collect();
    (!numbers.is_empty()).then_some(numbers)
}

/// An order's request as the wave sends it.
fn sync_request(value: &OpValue) -> SyncRequest {
    SyncRequest {
        path: "/api/orders".into(),
        body: serde_json::json!({
            "productName": value.product,
            "quantity": value.quantity,
            "customerId": value.customer_id,
        })
        .to_string(),
        headers: value
            .idempotency_key
            .iter()
            .map(|key| ("Idempotency-Key".to_owned(), key.clone()))
            .collect(),
    }
}

/// The history's invocation of each order of a wave, all at one time.
fn invokes(shared: &Shared, numbers: &[u64], values: &[OpValue]) -> Vec<HistoryEvent> {
    let concurrency = shared.config.concurrency as u64;
    values
        .iter()
        .zip(numbers)
        .map(|(value, number)| HistoryEvent {
            kind: EventType::Invoke,
            process: *number % concurrency,
            time: shared.started.elapsed().as_nanos() as u64,
            f: PLACE_ORDER.to_owned(),
            value: value.clone(),
        })
        .collect()
}

/// How one order completed, from its answer: the event's kind and the
/// completed value. An answer that could not be read, or a request that got
/// none, is an `info` event (the outcome is unknown) with the failure as its
/// error.
fn completion(mut value: OpValue, answer: Result<SyncResponse, WaveError>) -> (EventType, OpValue) {
    let kind = match answer {
        Ok(response) => {
            let document: serde_json::Value =
                serde_json::from_str(&response.body).unwrap_or_default();
            settle_answer(&mut value, response.status, &document, 1).unwrap_or_else(|_| {
                value.outcome = Some("error".into());
                value.attempts = Some(1);
                EventType::Info
            })
        }
        Err(error) => {
            value.error = Some(ErrorChain(&error).to_string());
            value.outcome = Some("error".into());
            value.attempts = Some(1);
            EventType::Info
        }
    };
    (kind, value)
}
