//! The naive data-service: the contract's read endpoints over the JSON files,
//! and the original system's racy write endpoints.
//!
//! WRONG ON PURPOSE. Every write is an unlocked read-modify-write of a whole
//! file. A status update loads the orders file, loads it again, changes the
//! first (stale) copy and saves it (lost status update). A storage
//! reservation computes the available stock, pauses, and adds the
//! reservation without checking again (check-then-reserve).

use std::future::Future;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use stockroom_contract::{
    HistoryEntry, InventoryItem, InventoryItemDocument, InventoryList, Order, OrderDocument,
    OrderList,
};
use stockroom_domain::{OrderStatus, PaymentStatus};
use stockroom_http_kit::JsonBody;
use tokio::net::TcpListener;

use crate::files::JsonFiles;
use crate::{NaiveError, RaceWindows};

#[derive(Clone)]
pub struct DataState {
    files: JsonFiles,
    windows: RaceWindows,
}

impl DataState {
    pub fn new(files: JsonFiles, windows: RaceWindows) -> DataState {
        DataState { files, windows }
    }
}

/// A status change the inventory worker asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    pub status: OrderStatus,
    pub payment_status: Option<PaymentStatus>,
    pub reason: Option<String>,
}

/// A number of units of one product.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Units {
    pub quantity: i64,
}

/// The answer to "is there stock?".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockCheck {
    pub product_name: String,
    pub available: i64,
    pub enough: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderQuery {
    status: Option<String>,
}

pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

pub fn router(state: DataState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/inventory", get(inventory))
        .route("/inventory/{product}", get(inventory_item))
        .route("/inventory/{product}/check", get(check_stock))
        .route("/inventory/{product}/hold", post(hold))
        .route("/inventory/{product}/reserve", post(reserve))
        .route("/inventory/{product}/release", post(release))
        .route("/inventory/{product}/commit", post(commit))
        .route("/inventory/{product}/sell", post(sell))
        .route("/orders", get(orders).post(create_order))
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/status", post(update_status))
        .route("/orders/{id}/replace", post(replace_order))
        .fallback(stockroom_http_kit::fallback_not_found)
        .method_not_allowed_fallback(stockroom_http_kit::method_not_allowed)
        .layer(stockroom_http_kit::MetricsLayer::new("naive-data-service"))
        .with_state(state)
}

pub async fn run(
    listener: TcpListener,
    state: DataState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    stockroom_http_kit::serve(listener, router(state), shutdown).await
}

async fn health() -> Json<serde_json::Value> {
    crate::health_document("data-service")
}

async fn inventory(State(state): State<DataState>) -> Result<Json<InventoryList>, NaiveError> {
    let file = state.files.load_inventory().await?;
    Ok(Json(InventoryList {
        inventory: file.inventory,
    }))
}

fn find_item<'a>(
    items: &'a mut [InventoryItem],
    product: &str,
) -> Result<&'a mut InventoryItem, NaiveError> {
    items
        .iter_mut()
        .find(|item| item.product_name.eq_ignore_ascii_case(product))
        .ok_or_else(|| NaiveError::NotFound(format!("no product named {product}")))
}

async fn inventory_item(
    State(state): State<DataState>,
    Path(product): Path<String>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    let mut file = state.files.load_inventory().await?;
    let item = find_item(&mut file.inventory, &product)?.clone();
    Ok(Json(InventoryItemDocument { item }))
}

#[derive(Debug, Deserialize)]
struct CheckQuery {
    quantity: i64,
}

/// "Is there stock?": the first of the worker's two remote calls.
async fn check_stock(
    State(state): State<DataState>,
    Path(product): Path<String>,
    query: Result<Query<CheckQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StockCheck>, NaiveError> {
    let Query(query) = query.map_err(|rejection| NaiveError::Invalid(rejection.body_text()))?;
    let mut file = state.files.load_inventory().await?;
    let item = find_item(&mut file.inventory, &product)?;
    let available = item.quantity - item.reserved_quantity;
    Ok(Json(StockCheck {
        product_name: item.product_name.clone(),
        available,
        enough: available >= query.quantity,
    }))
}

/// Loads the inventory, applies `change` to one product, and saves the whole
/// file: an unlocked read-modify-write.
async fn modify_item(
    state: &DataState,
    product: &str,
    change: impl FnOnce(&mut InventoryItem),
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    let mut file = state.files.load_inventory().await?;
    let item = find_item(&mut file.inventory, product)?;
    change(item);
    item.available = item.quantity - item.reserved_quantity;
    let item = item.clone();
    state.files.save_inventory(&file).await?;
    Ok(Json(InventoryItemDocument { item }))
}

/// "Reserve": the second remote call. The caller checked, so this does not.
async fn hold(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    modify_item(&state, &product, |item| {
        item.reserved_quantity += units.quantity
    })
    .await
}

/// Check-then-reserve in storage: available is computed, the window passes,
/// and the reservation is added to a fresh load without checking again.
async fn reserve(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    let mut file = state.files.load_inventory().await?;
    let item = find_item(&mut file.inventory, &product)?;
    let available = item.quantity - item.reserved_quantity;
    if available < units.quantity {
        return Err(NaiveError::InsufficientStock(format!(
            "insufficient stock: {}: requested {}, available {available}",
            item.product_name, units.quantity
        )));
    }
    tokio::time::sleep(Duration::from_millis(state.windows.toctou_ms)).await;
    modify_item(&state, &product, |item| {
        item.reserved_quantity += units.quantity
    })
    .await
}

async fn release(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    modify_item(&state, &product, |item| {
        item.reserved_quantity -= units.quantity
    })
    .await
}

/// Sells reserved units: on hand and reserved both drop.
async fn commit(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    modify_item(&state, &product, |item| {
        item.quantity -= units.quantity;
        item.reserved_quantity -= units.quantity;
        item.sold += units.quantity;
    })
    .await
}

/// Sells units that were never reserved (pay before reserve): nothing stops
/// on-hand stock from going negative.
async fn sell(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    modify_item(&state, &product, |item| {
        item.quantity -= units.quantity;
        item.sold += units.quantity;
    })
    .await
}

/// Every order at once (the naive service has no pagination).
async fn orders(
    State(state): State<DataState>,
    query: Result<Query<OrderQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderList>, NaiveError> {
    let Query(query) = query.map_err(|rejection| NaiveError::Invalid(rejection.body_text()))?;
    let status = query
        .status
        .map(|status| status.parse::<OrderStatus>())
        .transpose()
        .map_err(NaiveError::Invalid)?;
    let file = state.files.load_orders().await?;
    let orders = file
        .orders
        .into_iter()
        .filter(|order| status.is_none_or(|status| order.status == status))
        .collect();
    Ok(Json(OrderList {
        orders,
        next_cursor: None,
    }))
}

async fn order(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderDocument>, NaiveError> {
    let file = state.files.load_orders().await?;
    file.orders
        .into_iter()
        .find(|order| order.id == order_id)
        .map(|order| Json(OrderDocument { order }))
        .ok_or_else(|| NaiveError::NotFound(format!("no order with id {order_id}")))
}

async fn create_order(
    State(state): State<DataState>,
    JsonBody(order): JsonBody<Order>,
) -> Result<Json<OrderDocument>, NaiveError> {
    let mut file = state.files.load_orders().await?;
    file.orders.push(order.clone());
    state.files.save_orders(&file).await?;
    Ok(Json(OrderDocument { order }))
}

/// The lost status update: load the whole file, load it again, change the
/// first (by now stale) copy and save it over whatever happened meanwhile.
async fn update_status(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
    JsonBody(update): JsonBody<StatusUpdate>,
) -> Result<Json<OrderDocument>, NaiveError> {
    let mut stale = state.files.load_orders().await?;
    tokio::time::sleep(Duration::from_millis(state.windows.lost_update_ms)).await;
    // The original loaded the file a second time "to be sure" and then used
    // the first copy anyway.
    let _again = state.files.load_orders().await?;
    let order = stale
        .orders
        .iter_mut()
        .find(|order| order.id == order_id)
        .ok_or_else(|| NaiveError::NotFound(format!("no order with id {order_id}")))?;
    let at = now();
    order.status = update.status;
    if let Some(payment_status) = update.payment_status {
        order.payment_status = payment_status;
    }
    if update.status.is_final() {
        order.reason = update.reason.clone();
    }
    order.version += 1;
    order.updated_at = at.clone();
    order.history.push(HistoryEntry {
        version: order.version,
        status: update.status,
        reason: update.reason,
        at,
    });
    let order = order.clone();
    state.files.save_orders(&stale).await?;
    Ok(Json(OrderDocument { order }))
}

/// Writes a whole order object as the caller has it, stale or not.
async fn replace_order(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
    JsonBody(order): JsonBody<Order>,
) -> Result<Json<OrderDocument>, NaiveError> {
    let mut file = state.files.load_orders().await?;
    let slot = file
        .orders
        .iter_mut()
        .find(|existing| existing.id == order_id)
        .ok_or_else(|| NaiveError::NotFound(format!("no order with id {order_id}")))?;
    *slot = order.clone();
    state.files.save_orders(&file).await?;
    Ok(Json(OrderDocument { order }))
}
