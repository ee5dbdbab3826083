//! The naive inventory-service: a worker that decides `pending` orders later,
//! in one of the original system's flows, and the same invariant auditor as
//! the fixed inventory-service.
//!
//! WRONG ON PURPOSE. The worker checks stock and reserves it in two separate
//! remote calls (or pays before it decrements the stock), and it processes a
//! redelivered event again: there is no record of events already handled.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use stockroom_audit::{self as audit, Auditor};
use stockroom_contract::{Order, OrderDocument};
use stockroom_domain::{OrderStatus, PaymentStatus};
use stockroom_http_kit::{JsonBody, Metrics, ServiceClient};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::data::{StatusUpdate, StockCheck, Units};
use crate::payment::{Charge, ChargeRequest};
use crate::{NaiveError, NaiveFlow, RaceWindows};

/// The most events waiting for the worker; a full queue answers 503.
pub const MAX_QUEUED_EVENTS: usize = 10_000;

/// The most events the worker handles at once.
pub const MAX_EVENTS_IN_FLIGHT: usize = 256;

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
    let worker = tokio::spawn(work(Worker::new(&config), events, stop.clone()));
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
    state.queue.try_send(event).map_err(|_| {
        NaiveError::Dependency(stockroom_http_kit::ClientError::Unreachable {
            service: "inventory worker".into(),
            message: "the event queue is full".into(),
        })
    })?;
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

#[derive(Clone)]
struct Worker {
    data: ServiceClient,
    payment: ServiceClient,
    flow: NaiveFlow,
    windows: RaceWindows,
}

async fn work(worker: Worker, mut events: mpsc::Receiver<OrderEvent>, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_EVENTS_IN_FLIGHT));
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let worker = worker.clone();
        tokio::spawn(async move {
            if let Err(error) = worker.handle(&event).await {
                tracing::warn!(order_id = %event.order_id, %error, "naive worker gave up on an order");
            }
            drop(permit);
        });
    }
}

impl Worker {
    fn new(config: &InventoryConfig) -> Worker {
        Worker {
            data: ServiceClient::new("data-service", &config.data_url),
            payment: ServiceClient::new("payment-service", &config.payment_url),
            flow: config.flow,
            windows: config.windows,
        }
    }

    async fn set_status(
        &self,
        order_id: &str,
        status: OrderStatus,
        payment_status: Option<PaymentStatus>,
        reason: Option<&str>,
    ) -> Result<(), NaiveError> {
        let _: OrderDocument = self
            .data
            .post(
                &format!("/orders/{order_id}/status"),
                &StatusUpdate {
                    status,
                    payment_status,
                    reason: reason.map(str::to_owned),
                },
            )
            .await?;
        Ok(())
    }

    async fn stock_call(
        &self,
        product: &str,
        action: &str,
        quantity: u32,
    ) -> Result<(), NaiveError> {
        let _: serde_json::Value = self
            .data
            .post(
                &format!("/inventory/{product}/{action}"),
                &Units {
                    quantity: i64::from(quantity),
                },
            )
            .await?;
        Ok(())
    }

    /// "Is there stock?" for every item, in remote calls.
    async fn enough_stock(&self, order: &Order) -> Result<bool, NaiveError> {
        for line in &order.items {
            let check: StockCheck = self
                .data
                .get(&format!(
                    "/inventory/{}/check?quantity={}",
                    line.product.name, line.quantity
                ))
                .await?;
            if !check.enough {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn charge(&self, order: &Order, event: &OrderEvent) -> Result<(), NaiveError> {
        let units = order
            .items
            .iter()
            .map(|line| u64::from(line.quantity))
            .sum();
        let _: Charge = self
            .payment
            .post(
                "/charge",
                &ChargeRequest {
                    order_id: order.id.clone(),
                    event_id: event.event_id.clone(),
                    units,
                },
            )
            .await?;
        Ok(())
    }

    /// Decides one order, whatever its status: a redelivered event runs the
    /// whole flow again.
    async fn handle(&self, event: &OrderEvent) -> Result<(), NaiveError> {
        let OrderDocument { order } = self
            .data
            .get(&format!("/orders/{}", event.order_id))
            .await?;
        let id = order.id.as_str();
        match self.flow {
            NaiveFlow::TwoCalls => {
                if !self.enough_stock(&order).await? {
                    return self
                        .set_status(id, OrderStatus::Rejected, None, Some("insufficient_stock"))
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(self.windows.two_call_ms)).await;
                for line in &order.items {
                    self.stock_call(&line.product.name, "hold", line.quantity)
                        .await?;
                }
                self.set_status(id, OrderStatus::Reserved, None, None)
                    .await?;
                self.pay_and_commit(&order, event, "commit").await
            }
            NaiveFlow::StorageCheck => {
                for line in &order.items {
                    match self
                        .stock_call(&line.product.name, "reserve", line.quantity)
                        .await
                    {
                        Ok(()) => {}
                        Err(NaiveError::Dependency(stockroom_http_kit::ClientError::Status {
                            status,
                            ..
                        })) if status == reqwest::StatusCode::CONFLICT => {
                            return self
                                .set_status(
                                    id,
                                    OrderStatus::Rejected,
                                    None,
                                    Some("insufficient_stock"),
                                )
                                .await;
                        }
                        Err(error) => return Err(error),
                    }
                }
                self.set_status(id, OrderStatus::Reserved, None, None)
                    .await?;
                self.pay_and_commit(&order, event, "commit").await
            }
            NaiveFlow::PayFirst => {
                if !self.enough_stock(&order).await? {
                    return self
                        .set_status(id, OrderStatus::Rejected, None, Some("insufficient_stock"))
                        .await;
                }
                self.pay_and_commit(&order, event, "sell").await
            }
        }
    }

    /// Charges, then takes the units off the shelf with `action` (`commit`
    /// for reserved units, `sell` for units never reserved), then fulfils.
    async fn pay_and_commit(
        &self,
        order: &Order,
        event: &OrderEvent,
        action: &str,
    ) -> Result<(), NaiveError> {
        self.charge(order, event).await?;
        self.set_status(
            &order.id,
            OrderStatus::Reserved,
            Some(PaymentStatus::Charged),
            Some("payment_charged"),
        )
        .await?;
        for line in &order.items {
            self.stock_call(&line.product.name, action, line.quantity)
                .await?;
        }
        self.set_status(&order.id, OrderStatus::Fulfilled, None, None)
            .await
    }
}
