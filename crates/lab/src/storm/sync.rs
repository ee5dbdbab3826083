//! The synchronised storm: orders in waves of `concurrency`, each wave
//! released by its last bytes at once ([`crate::last_byte`]), so that the
//! wave's requests reach the server in the same instant.

use std::sync::atomic::Ordering;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::{Shared, WorkerTally, new_histogram, order_request, settle_answer};
use crate::history::{EventType, HistoryError, HistoryEvent, OpValue, PLACE_ORDER};
use crate::last_byte::{SyncRequest, SyncTarget, send_wave};

/// Sends waves until the storm's orders are placed or its time is up.
pub(super) async fn waves(shared: &Shared) -> (WorkerTally, Histogram<u64>, Option<HistoryError>) {
    let config = &shared.config;
    let mut tally = WorkerTally::default();
    let mut latency = new_histogram();
    let mut write_error = None;
    let target = match SyncTarget::parse(&config.order_urls[0]) {
        Ok(target) => target,
        // `validate` parsed it already.
        Err(_) => return (tally, latency, write_error),
    };
    loop {
        if shared
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            break;
        }
        let numbers: Vec<u64> = (0..config.concurrency)
            .map(|_| shared.issued.fetch_add(1, Ordering::Relaxed))
            .filter(|number| config.orders.is_none_or(|orders| *number < orders))
            .collect();
        if numbers.is_empty() {
            break;
        }
        let values: Vec<OpValue> = numbers
            .iter()
            .map(|number| order_request(shared, *number))
            .collect();
        let requests: Vec<SyncRequest> = values
            .iter()
            .map(|value| SyncRequest {
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
            })
            .collect();
        let invokes: Vec<HistoryEvent> = values
            .iter()
            .zip(&numbers)
            .map(|(value, number)| HistoryEvent {
                kind: EventType::Invoke,
                process: *number % config.concurrency as u64,
                time: shared.started.elapsed().as_nanos() as u64,
                f: PLACE_ORDER.to_owned(),
                value: value.clone(),
            })
            .collect();
        let began = Instant::now();
        let answers = send_wave(&target, &requests).await;
        let took_us = began.elapsed().as_micros().max(1) as u64;
        for ((invoke, mut value), answer) in invokes.into_iter().zip(values).zip(answers) {
            latency.saturating_record(took_us);
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
                    value.error = Some(error);
                    value.outcome = Some("error".into());
                    value.attempts = Some(1);
                    EventType::Info
                }
            };
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
