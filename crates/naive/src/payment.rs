//! The naive payment-service: a slow provider that charges every request.
//!
//! WRONG ON PURPOSE. It keeps no record of what it already charged, so a
//! redelivered order event charges the customer a second time.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use stockroom_http_kit::JsonBody;
use tokio::net::TcpListener;

/// The most charges kept in the ledger, so a long run stays bounded.
pub const MAX_LEDGER_ENTRIES: usize = 100_000;

/// One charge request from the inventory worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    pub order_id: String,
    pub event_id: String,
    pub units: u64,
}

/// One charge the provider made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    pub charge_id: String,
    pub order_id: String,
    pub event_id: String,
    pub units: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    pub charges: Vec<Charge>,
}

#[derive(Clone)]
pub struct PaymentState {
    latency_ms: u64,
    ledger: Arc<Mutex<Vec<Charge>>>,
}

impl PaymentState {
    pub fn new(latency_ms: u64) -> PaymentState {
        PaymentState {
            latency_ms,
            ledger: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

pub fn router(state: PaymentState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/charge", post(charge))
        .route("/charges", get(charges))
        .fallback(stockroom_http_kit::fallback_not_found)
        .method_not_allowed_fallback(stockroom_http_kit::method_not_allowed)
        .layer(stockroom_http_kit::MetricsLayer::new(
            "naive-payment-service",
        ))
        .with_state(state)
}

pub async fn run(
    listener: TcpListener,
    state: PaymentState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    stockroom_http_kit::serve(listener, router(state), shutdown).await
}

async fn health() -> Json<serde_json::Value> {
    crate::health_document("payment-service")
}

/// Charges after the provider's latency, whatever was charged before.
async fn charge(
    State(state): State<PaymentState>,
    JsonBody(request): JsonBody<ChargeRequest>,
) -> Json<Charge> {
    tokio::time::sleep(Duration::from_millis(state.latency_ms)).await;
    let charge = Charge {
        charge_id: uuid::Uuid::now_v7().to_string(),
        order_id: request.order_id,
        event_id: request.event_id,
        units: request.units,
    };
    let mut ledger = state
        .ledger
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if ledger.len() < MAX_LEDGER_ENTRIES {
        ledger.push(charge.clone());
    }
    Json(charge)
}

async fn charges(State(state): State<PaymentState>) -> Json<Ledger> {
    let ledger = state
        .ledger
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Json(Ledger {
        charges: ledger.clone(),
    })
}
