//! The naive data-service: the contract's read endpoints over the JSON files,
//! and the original system's racy write endpoints.
//!
//! WRONG ON PURPOSE. Every write is an unlocked read-modify-write of a whole
//! file. A status update loads the orders file, loads it again, changes the
//! first (stale) copy and saves it (lost status update). A storage
//! reservation computes the available stock, pauses, and adds the
//! reservation without checking again (check-then-reserve). An operator's
//! stock adjustment writes back the figures it read plus its delta (stale
//! adjustment, in `operator`).
//!
//! A [`Fix`] changes how: the storage discipline (see [`crate::store`]), a
//! version check on order writes, a checked reservation, a processed-event
//! record or a fencing token on stock writes. Stock writes are in `stock`,
//! order writes in `orders`.

mod operator;
mod orders;
mod stock;

use std::future::Future;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use stockroom_contract::{
    InventoryItem, InventoryItemDocument, InventoryList, OrderDocument, OrderList,
};
use stockroom_domain::{OrderStatus, PaymentStatus};
use tokio::net::TcpListener;

use crate::files::JsonFiles;
use crate::fix::Fix;
use crate::store::{Document, Store};
use crate::{NaiveError, RaceWindows};

#[derive(Clone)]
pub struct DataState {
    store: Store,
    windows: RaceWindows,
    fix: Fix,
}

impl DataState {
    /// The data-service over `files`, read and written as `fix` says.
    pub fn new(files: JsonFiles, windows: RaceWindows, fix: Fix) -> DataState {
        DataState {
            store: Store::new(files.with_discipline(fix.storage())),
            windows,
            fix,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// A status change the inventory worker asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    pub status: OrderStatus,
    pub payment_status: Option<PaymentStatus>,
    pub reason: Option<String>,
    /// The version the caller last saw; only the version-checking fixes
    /// compare it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
}

/// A number of units of one product, and what the fixes send with them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Units {
    pub quantity: i64,
    /// The lock's fencing token (the fencing fix): a write with a token
    /// lower than one already seen for the product is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<u64>,
    /// The event this write is the effect of (the processed-events fix): a
    /// second write for the same event is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

impl Units {
    pub fn of(quantity: u32) -> Units {
        Units {
            quantity: i64::from(quantity),
            ..Units::default()
        }
    }
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
        .route(
            "/inventory/{product}",
            get(inventory_item).patch(operator::change_settings),
        )
        .route("/inventory/{product}/adjustments", post(operator::adjust))
        .route("/inventory/{product}/check", get(check_stock))
        .route("/inventory/{product}/hold", post(stock::hold))
        .route("/inventory/{product}/reserve", post(stock::reserve))
        .route("/inventory/{product}/release", post(stock::release))
        .route("/inventory/{product}/commit", post(stock::commit))
        .route("/inventory/{product}/sell", post(stock::sell))
        .route("/orders", get(list_orders).post(orders::create_order))
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/status", post(orders::update_status))
        .route("/orders/{id}/replace", post(orders::replace_order))
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

/// Reads a document outside any lock: the files are read as they are, the
/// database in a transaction of its own.
async fn read(state: &DataState, document: Document) -> Result<crate::store::Session, NaiveError> {
    match state.store {
        Store::Files(_) => state.store.unlocked(),
        Store::Sqlite(_) => state.store.begin(document).await,
    }
}

async fn inventory(State(state): State<DataState>) -> Result<Json<InventoryList>, NaiveError> {
    let file = read(&state, Document::Inventory)
        .await?
        .load_inventory()
        .await?;
    Ok(Json(InventoryList {
        inventory: file.inventory,
    }))
}

pub(crate) fn find_item<'a>(
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
    let mut file = read(&state, Document::Inventory)
        .await?
        .load_inventory()
        .await?;
    let item = find_item(&mut file.inventory, &product)?.clone();
    Ok(Json(InventoryItemDocument { item }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckQuery {
    quantity: i64,
    /// The fencing fix: the lock holder's token, registered with the read.
    fencing_token: Option<u64>,
}

/// "Is there stock?": the first of the worker's two remote calls.
async fn check_stock(
    State(state): State<DataState>,
    Path(product): Path<String>,
    query: Result<Query<CheckQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StockCheck>, NaiveError> {
    let Query(query) = query.map_err(|rejection| NaiveError::Invalid(rejection.body_text()))?;
    if let Some(token) = query.fencing_token {
        stock::register_fence(&state, &product, token).await?;
    }
    let mut file = read(&state, Document::Inventory)
        .await?
        .load_inventory()
        .await?;
    let item = find_item(&mut file.inventory, &product)?;
    let available = item.quantity - item.reserved_quantity;
    Ok(Json(StockCheck {
        product_name: item.product_name.clone(),
        available,
        enough: available >= query.quantity,
    }))
}

/// Every order at once (the naive service has no pagination).
async fn list_orders(
    State(state): State<DataState>,
    query: Result<Query<OrderQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderList>, NaiveError> {
    let Query(query) = query.map_err(|rejection| NaiveError::Invalid(rejection.body_text()))?;
    let status = query
        .status
        .map(|status| status.parse::<OrderStatus>())
        .transpose()
        .map_err(|error| NaiveError::Invalid(error.to_string()))?;
    let file = read(&state, Document::Orders).await?.load_orders().await?;
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
    let file = read(&state, Document::Orders).await?.load_orders().await?;
    file.orders
        .into_iter()
        .find(|order| order.id == order_id)
        .map(|order| Json(OrderDocument { order }))
        .ok_or_else(|| NaiveError::NotFound(format!("no order with id {order_id}")))
}
