//! The naive data-service's order writes: creating an order, the lost status
//! update, and writing back a whole (possibly stale) order object, each with
//! the version check the fix asks for.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use stockroom_contract::{HistoryEntry, Order, OrderDocument};
use stockroom_http_kit::JsonBody;

use super::{DataState, StatusUpdate, now};
use crate::NaiveError;
use crate::fix::VersionCheck;
use crate::store::Document;

fn missing(order_id: &str) -> NaiveError {
    NaiveError::NotFound(format!("no order with id {order_id}"))
}

/// Refuses a write whose caller saw another version than `found`.
fn check_version(found: i64, expected: Option<i64>, order_id: &str) -> Result<(), NaiveError> {
    match expected {
        Some(expected) if expected != found => Err(NaiveError::Conflict(format!(
            "order {order_id} was modified by another process (version {found}, expected {expected})"
        ))),
        _ => Ok(()),
    }
}

pub(super) async fn create_order(
    State(state): State<DataState>,
    JsonBody(order): JsonBody<Order>,
) -> Result<Json<OrderDocument>, NaiveError> {
    let mut session = state.store.begin(Document::Orders).await?;
    let mut file = session.load_orders().await?;
    file.orders.push(order.clone());
    session.save_orders(file).await?;
    session.commit().await?;
    Ok(Json(OrderDocument { order }))
}

fn apply(order: &mut Order, update: StatusUpdate) {
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
}

/// The lost status update: load the whole file, load it again, change the
/// first (by now stale) copy and save it over whatever happened meanwhile.
/// Fix 2 as written compares the version on that stale copy; corrected, it
/// compares and writes on a fresh read under the lock.
pub(super) async fn update_status(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
    JsonBody(update): JsonBody<StatusUpdate>,
) -> Result<Json<OrderDocument>, NaiveError> {
    let check = state.fix.version_check();
    if check == VersionCheck::CompareAndSwap {
        let _stale = super::read(&state, Document::Orders)
            .await?
            .load_orders()
            .await?;
        tokio::time::sleep(Duration::from_millis(state.windows.lost_update_ms)).await;
        let mut session = state.store.locked(Document::Orders).await?;
        let mut fresh = session.load_orders().await?;
        let order = fresh
            .orders
            .iter_mut()
            .find(|order| order.id == order_id)
            .ok_or_else(|| missing(&order_id))?;
        check_version(order.version, update.expected_version, &order_id)?;
        apply(order, update);
        let order = order.clone();
        session.save_orders(fresh).await?;
        session.commit().await?;
        return Ok(Json(OrderDocument { order }));
    }
    let mut session = state.store.begin(Document::Orders).await?;
    let mut stale = session.load_orders().await?;
    tokio::time::sleep(Duration::from_millis(state.windows.lost_update_ms)).await;
    // The original loaded the file a second time "to be sure" and then used
    // the first copy anyway.
    let _again = session.load_orders().await?;
    let order = stale
        .orders
        .iter_mut()
        .find(|order| order.id == order_id)
        .ok_or_else(|| missing(&order_id))?;
    if check == VersionCheck::InMemory {
        check_version(order.version, update.expected_version, &order_id)?;
    }
    apply(order, update);
    let order = order.clone();
    session.save_orders(stale).await?;
    session.commit().await?;
    Ok(Json(OrderDocument { order }))
}

/// Writes a whole order object as the caller has it, stale or not. The
/// caller raised the version by one, so the version-checking fixes expect
/// the stored order one below it.
pub(super) async fn replace_order(
    State(state): State<DataState>,
    Path(order_id): Path<String>,
    JsonBody(order): JsonBody<Order>,
) -> Result<Json<OrderDocument>, NaiveError> {
    let check = state.fix.version_check();
    let mut session = if check == VersionCheck::CompareAndSwap {
        state.store.locked(Document::Orders).await?
    } else {
        state.store.begin(Document::Orders).await?
    };
    let mut file = session.load_orders().await?;
    let slot = file
        .orders
        .iter_mut()
        .find(|existing| existing.id == order_id)
        .ok_or_else(|| missing(&order_id))?;
    if check != VersionCheck::None {
        check_version(slot.version, Some(order.version - 1), &order_id)?;
    }
    *slot = order.clone();
    session.save_orders(file).await?;
    session.commit().await?;
    Ok(Json(OrderDocument { order }))
}
