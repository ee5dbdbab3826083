//! The naive order-service: answers `pending` at once and leaves the stock
//! decision to the inventory worker, which it tells through an event.
//!
//! WRONG ON PURPOSE. Its cancel reads the order, pauses, reads it again,
//! notices when the status changed meanwhile, logs that, and writes its first
//! (stale) copy back anyway (stale order object). It publishes and forgets;
//! with fix 5 it de-duplicates the publishing in Redis, and the lab can make
//! it crash between publishing and marking the message as sent.

use std::future::Future;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use stockroom_contract::PlaceOrderRequest;
use stockroom_contract::{HistoryEntry, Order, OrderDocument, OrderLine, OrderList};
use stockroom_domain::{OrderStatus, PaymentStatus, ReleaseReason};
use stockroom_http_kit::{JsonBody, ServiceClient};
use tokio::net::TcpListener;

use crate::data::{Units, now};
use crate::fix::{Fix, VersionCheck};
use crate::inventory::OrderEvent;
use crate::publisher::{PublishDedupe, Published};
use crate::{NaiveError, RaceWindows};

/// How long the order-service takes to come back after it crashed between
/// publishing and marking the message as sent; longer than the publishing
/// lock lives, as a real restart outlasts the write-up's 10 s.
pub const RESTART_DELAY_MS: u64 = 300;

const _: () = assert!(RESTART_DELAY_MS > crate::publisher::PUBLISH_LOCK_TTL_MS);

#[derive(Debug, Clone)]
pub struct OrderConfig {
    pub data_url: String,
    pub inventory_url: String,
    pub windows: RaceWindows,
    /// The fix the system runs with (the cancel's order of writes depends
    /// on whether order writes check versions).
    pub fix: Fix,
    /// Fix 5 as written, when set.
    pub dedupe: Option<PublishDedupe>,
    /// The lab's fault: crash right after publishing, before marking the
    /// message as sent, and publish again after [`RESTART_DELAY_MS`].
    pub crash_after_publish: bool,
}

#[derive(Clone)]
struct OrderState {
    data: ServiceClient,
    inventory: ServiceClient,
    windows: RaceWindows,
    fix: Fix,
    dedupe: Option<PublishDedupe>,
    crash_after_publish: bool,
}

pub fn router(config: &OrderConfig) -> Router {
    let state = OrderState {
        data: ServiceClient::new("data-service", &config.data_url),
        inventory: ServiceClient::new("inventory-service", &config.inventory_url),
        windows: config.windows,
        fix: config.fix,
        dedupe: config.dedupe.clone(),
        crash_after_publish: config.crash_after_publish,
    };
    Router::new()
        .route("/health", get(health))
        .route("/api/orders", post(place_order).get(list_orders))
        .route("/api/orders/{id}", get(get_order))
        .route("/api/orders/{id}/cancel", post(cancel_order))
        .fallback(stockroom_http_kit::fallback_not_found)
        .method_not_allowed_fallback(stockroom_http_kit::method_not_allowed)
        .layer(stockroom_http_kit::MetricsLayer::new("naive-order-service"))
        .with_state(state)
}

pub async fn run(
    listener: TcpListener,
    config: OrderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    stockroom_http_kit::serve(listener, router(&config), shutdown).await
}

async fn health() -> Json<serde_json::Value> {
    crate::health_document("order-service")
}

/// Checks the customer's purchase limits when told to (racy, see
/// [`crate::limit`]), stores the order as `pending`, publishes it to the inventory worker, and
/// answers 201 before anyone looked at the stock.
async fn place_order(
    State(state): State<OrderState>,
    JsonBody(body): JsonBody<PlaceOrderRequest>,
) -> Result<Response, NaiveError> {
    let (customer_id, items) = body
        .into_parts()
        .map_err(|error| NaiveError::Invalid(error.to_string()))?;
    if let Some(window_ms) = state.windows.limit_check_ms {
        crate::limit::check_limits(&state.data, customer_id.as_str(), &items, window_ms).await?;
    }
    let at = now();
    let order = Order {
        id: uuid::Uuid::now_v7().to_string(),
        customer_id: customer_id.as_str().to_owned(),
        status: OrderStatus::Pending,
        reason: None,
        payment_status: PaymentStatus::None,
        version: 1,
        created_at: at.clone(),
        updated_at: at.clone(),
        extended_until: None,
        items: items
            .iter()
            .map(|item| stockroom_contract::order_line(&item.product, item.quantity))
            .collect(),
        history: vec![HistoryEntry {
            version: 1,
            status: OrderStatus::Pending,
            reason: None,
            at,
        }],
    };
    let created: OrderDocument = state.data.post("/orders", &order).await?;
    let event = OrderEvent {
        // One id per order's message, as the write-up's message key.
        event_id: format!("order:{}:created", order.id),
        kind: "OrderCreated".into(),
        order_id: order.id.clone(),
    };
    // The original published and forgot: a failed publish leaves the order
    // pending forever, which the checker reports as stuck.
    match publish(&state, &event, state.crash_after_publish).await {
        Ok(Published::SentThenCrashed) => {
            let state = state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(RESTART_DELAY_MS)).await;
                // Back up, the service sends again what it has no record of
                // having sent.
                if let Err(error) = publish(&state, &event, false).await {
                    tracing::warn!(order_id = %event.order_id, error = &error as &dyn std::error::Error, "could not publish the order event after the restart");
                }
            });
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(order_id = %order.id, error = &error as &dyn std::error::Error, "could not publish the order event");
        }
    }
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn release_items(state: &OrderState, items: &[OrderLine]) -> Result<(), NaiveError> {
    for line in items {
        let _: serde_json::Value = state
            .data
            .post(
                &format!("/inventory/{}/release", line.product.name),
                &Units::of(line.quantity),
            )
            .await?;
    }
    Ok(())
}

/// Publishes `event` to the inventory worker, through fix 5's Redis
/// de-duplication when it is on.
async fn publish(
    state: &OrderState,
    event: &OrderEvent,
    crash_before_mark: bool,
) -> Result<Published, NaiveError> {
    let send = async {
        state
            .inventory
            .post::<serde_json::Value, _>("/events", event)
            .await
            .map(|_| ())
            .map_err(NaiveError::from)
    };
    match &state.dedupe {
        Some(dedupe) => {
            dedupe
                .publish_once(&event.order_id, send, crash_before_mark)
                .await
        }
        None => {
            send.await?;
            Ok(if crash_before_mark {
                Published::SentThenCrashed
            } else {
                Published::Sent
            })
        }
    }
}

async fn get_order(
    State(state): State<OrderState>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderDocument>, NaiveError> {
    Ok(Json(state.data.get(&format!("/orders/{order_id}")).await?))
}

async fn list_orders(State(state): State<OrderState>) -> Result<Json<OrderList>, NaiveError> {
    Ok(Json(state.data.get("/orders").await?))
}

/// The stale order object: read, pause, read again, notice, carry on with the
/// first copy.
async fn cancel_order(
    State(state): State<OrderState>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderDocument>, NaiveError> {
    let path = format!("/orders/{order_id}");
    let OrderDocument { order: stale } = state.data.get(&path).await?;
    if stale.status.is_final() {
        return Err(NaiveError::Conflict(format!(
            "order {order_id} is {} and can no longer be cancelled",
            stale.status
        )));
    }
    tokio::time::sleep(Duration::from_millis(state.windows.stale_order_ms)).await;
    let OrderDocument { order: fresh } = state.data.get(&path).await?;
    if fresh.status != stale.status || fresh.version != stale.version {
        tracing::warn!(
            order_id,
            read = %stale.status,
            now = %fresh.status,
            "order status changed meanwhile; continuing with the copy read first"
        );
    }
    let release = stale.status == OrderStatus::Reserved;
    let items = stale.items.clone();
    // The original released the stock first and wrote the order after; with
    // a version check, the write goes first, so that a refused write
    // releases nothing.
    let write_first = state.fix.version_check() != VersionCheck::None;
    if release && !write_first {
        release_items(&state, &items).await?;
    }
    let mut order = stale;
    let at = now();
    let reason = ReleaseReason::CancelledByCustomer.as_str().to_owned();
    order.status = OrderStatus::Cancelled;
    order.reason = Some(reason.clone());
    order.version += 1;
    order.updated_at = at.clone();
    order.history.push(HistoryEntry {
        version: order.version,
        status: OrderStatus::Cancelled,
        reason: Some(reason),
        at,
    });
    let saved: OrderDocument = state
        .data
        .post(&format!("/orders/{order_id}/replace"), &order)
        .await?;
    if release && write_first {
        release_items(&state, &items).await?;
    }
    Ok(Json(saved))
}
