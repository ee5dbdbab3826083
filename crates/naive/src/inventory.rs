//! The naive inventory-service: a worker that decides `pending` orders later,
//! in one of the original system's flows, and the same invariant auditor as
//! the fixed inventory-service.
//!
//! WRONG ON PURPOSE. The naive bus hands the worker (`crate::worker`) an
//! event as often as it is delivered.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use stockroom_audit::{self as audit, Auditor};
use stockroom_http_kit::{JsonBody, Metrics};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fix::Fix;
use crate::redis_lock::RedisLocks;
use crate::worker;
use crate::{NaiveError, NaiveFlow, RaceWindows};

/// The most events waiting for the worker; a full queue answers 503.
pub const MAX_QUEUED_EVENTS: usize = 10_000;

/// The most delivered events remembered for `GET /events`.
pub const MAX_EVENT_LOG: usize = 10_000;

/// The event order-service publishes for every new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    pub event_id: String,
    pub kind: String,
    pub order_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventLog {
    pub events: Vec<OrderEvent>,
}

#[derive(Debug, Clone)]
pub struct InventoryConfig {
    pub data_url: String,
    pub payment_url: String,
    pub flow: NaiveFlow,
    pub windows: RaceWindows,
    pub fix: Fix,
    /// The Redis locks, for the fixes that take one.
    pub locks: Option<RedisLocks>,
}

#[derive(Clone)]
struct InventoryState {
    queue: mpsc::Sender<OrderEvent>,
    log: Arc<Mutex<VecDeque<OrderEvent>>>,
    auditor: Auditor,
}

impl FromRef<InventoryState> for Auditor {
    fn from_ref(state: &InventoryState) -> Auditor {
        state.auditor.clone()
    }
}

/// Serves the naive inventory-service, its worker and its auditor until
/// `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: InventoryConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Metrics::new("naive-inventory-service");
    let auditor = Auditor::new(&config.data_url, metrics.clone());
    let (queue, events) = mpsc::channel(MAX_QUEUED_EVENTS);
    let state = InventoryState {
        queue,
        log: Arc::new(Mutex::new(VecDeque::new())),
        auditor: auditor.clone(),
    };
    let router = Router::new()
        .route("/health", get(health))
        .route("/events", post(publish).get(event_log))
        .route("/invariants", get(audit::invariants))
        .fallback(stockroom_http_kit::fallback_not_found)
        .method_not_allowed_fallback(stockroom_http_kit::method_not_allowed)
        .layer(metrics.layer())
        .with_state(state);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(worker::work(
        worker::Worker::new(&config),
        events,
        stop.clone(),
    ));
    let audits = tokio::spawn(auditor.run(audit::DEFAULT_AUDIT_INTERVAL_MS, stop.clone()));
    let served = stockroom_http_kit::serve(listener, router, shutdown).await;
    stop.cancel();
    let _ = worker.await;
    let _ = audits.await;
    served
}

async fn health() -> Json<serde_json::Value> {
    crate::health_document("inventory-service")
}

/// The naive bus: an event goes to the worker as often as it is delivered.
async fn publish(
    State(state): State<InventoryState>,
    JsonBody(event): JsonBody<OrderEvent>,
) -> Result<(StatusCode, Json<serde_json::Value>), NaiveError> {
    {
        let mut log = state
            .log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if log.len() == MAX_EVENT_LOG {
            log.pop_front();
        }
        log.push_back(event.clone());
    }
    state
        .queue
        .try_send(event)
        .map_err(|_| NaiveError::WorkerQueueFull)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"accepted": true})),
    ))
}

async fn event_log(State(state): State<InventoryState>) -> Json<EventLog> {
    let log = state
        .log
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Json(EventLog {
        events: log.iter().cloned().collect(),
    })
}
