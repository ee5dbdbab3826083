//! The naive data-service's stock writes: hold, reserve, release, commit and
//! sell, each a read-modify-write of the inventory document, racy unless the
//! fix says otherwise.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use stockroom_contract::{InventoryItem, InventoryItemDocument};
use stockroom_http_kit::JsonBody;

use super::{DataState, Units, find_item};
use crate::NaiveError;
use crate::files::{InventoryFile, MAX_PROCESSED_EVENTS};
use crate::fix::VersionCheck;
use crate::store::{Document, Session};

/// How many times a compare-and-swap reservation reads again after losing
/// to a concurrent write before it gives up with a conflict.
pub const MAX_SWAP_ATTEMPTS: u32 = 100;

/// Refuses a write whose fencing token is lower than one the product's stock
/// was already written with, and remembers the highest.
fn check_fence(
    file: &mut InventoryFile,
    product: &str,
    token: Option<u64>,
) -> Result<(), NaiveError> {
    let Some(token) = token else {
        return Ok(());
    };
    let highest = file
        .fencing_tokens
        .entry(product.to_ascii_lowercase())
        .or_insert(0);
    if token < *highest {
        return Err(NaiveError::Conflict(format!(
            "stale fencing token {token} for {product}: token {highest} already wrote"
        )));
    }
    *highest = token;
    Ok(())
}

/// Records `event_id` as processed, refusing an event already recorded.
fn record_event(file: &mut InventoryFile, event_id: Option<&str>) -> Result<(), NaiveError> {
    let Some(event_id) = event_id else {
        return Ok(());
    };
    if file.processed_events.iter().any(|seen| seen == event_id) {
        return Err(NaiveError::Duplicate(format!(
            "event {event_id} was already processed"
        )));
    }
    if file.processed_events.len() >= MAX_PROCESSED_EVENTS {
        file.processed_events.remove(0);
    }
    file.processed_events.push(event_id.to_owned());
    Ok(())
}

/// Saves `file` and ends the session, answering with `product`'s item.
async fn save_item(
    mut session: Session,
    mut file: InventoryFile,
    product: &str,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    let item = find_item(&mut file.inventory, product)?;
    item.available = item.quantity - item.reserved_quantity;
    let item = item.clone();
    session.save_inventory(file).await?;
    session.commit().await?;
    Ok(Json(InventoryItemDocument { item }))
}

/// Loads the inventory, applies `change` to one product, and saves the whole
/// file: an unlocked read-modify-write unless the storage discipline locks
/// it, or a fencing token asks storage to check it.
async fn modify_item(
    state: &DataState,
    product: &str,
    units: &Units,
    change: impl FnOnce(&mut InventoryItem),
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    let mut session = if units.fencing_token.is_some() {
        state.store.locked(Document::Inventory).await?
    } else {
        state.store.begin(Document::Inventory).await?
    };
    let mut file = session.load_inventory().await?;
    check_fence(&mut file, product, units.fencing_token)?;
    change(find_item(&mut file.inventory, product)?);
    save_item(session, file, product).await
}

/// Reserves on one fresh read under the inventory's lock (or in one
/// transaction). With `check_stock`, it checks the stock first: the fixed
/// `reserveStock` of fixes 3 and 4, and the deployed conditional update. The
/// processed-events fix records the event in the same write.
async fn reserve_locked(
    state: &DataState,
    product: &str,
    units: &Units,
    check_stock: bool,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    let mut session = state.store.locked(Document::Inventory).await?;
    let mut file = session.load_inventory().await?;
    record_event(&mut file, units.event_id.as_deref())?;
    check_fence(&mut file, product, units.fencing_token)?;
    let item = find_item(&mut file.inventory, product)?;
    let available = item.quantity - item.reserved_quantity;
    if check_stock && available < units.quantity {
        return Err(insufficient(item, units.quantity, available));
    }
    item.reserved_quantity += units.quantity;
    save_item(session, file, product).await
}

fn insufficient(item: &InventoryItem, requested: i64, available: i64) -> NaiveError {
    NaiveError::InsufficientStock(format!(
        "insufficient stock: {}: requested {requested}, available {available}",
        item.product_name
    ))
}

/// "Reserve": the second remote call. The caller checked, so the original
/// does not; the fixes that rewrote `reserveStock` check here.
pub(super) async fn hold(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    if state.fix.checked_reserve() || units.event_id.is_some() {
        return reserve_locked(&state, &product, &units, state.fix.checked_reserve()).await;
    }
    modify_item(&state, &product, &units, |item| {
        item.reserved_quantity += units.quantity
    })
    .await
}

/// The fencing fix's stock check: the lock holder presents its token with
/// the read it decides on, so that storage refuses every later write of an
/// older holder, whose decision rests on what may be a stale read.
pub(super) async fn register_fence(
    state: &DataState,
    product: &str,
    token: u64,
) -> Result<(), NaiveError> {
    let mut session = state.store.locked(Document::Inventory).await?;
    let mut file = session.load_inventory().await?;
    check_fence(&mut file, product, Some(token))?;
    session.save_inventory(file).await?;
    session.commit().await
}

/// Check-then-reserve in storage: available is computed, the window passes,
/// and the reservation is added to a fresh load without checking again. In
/// one session, so a fix that locks the session or makes it a transaction
/// closes the gap.
pub(super) async fn reserve(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    if state.fix.version_check() == VersionCheck::CompareAndSwap {
        return reserve_compare_and_swap(&state, &product, &units).await;
    }
    let mut session = if state.fix.checked_reserve() {
        state.store.locked(Document::Inventory).await?
    } else {
        state.store.begin(Document::Inventory).await?
    };
    let mut file = session.load_inventory().await?;
    let item = find_item(&mut file.inventory, &product)?;
    let available = item.quantity - item.reserved_quantity;
    if available < units.quantity {
        return Err(insufficient(item, units.quantity, available));
    }
    tokio::time::sleep(Duration::from_millis(state.windows.toctou_ms)).await;
    let mut file = session.load_inventory().await?;
    check_fence(&mut file, &product, units.fencing_token)?;
    find_item(&mut file.inventory, &product)?.reserved_quantity += units.quantity;
    save_item(session, file, &product).await
}

/// Fix 2 corrected, for the stock: check on a plain read, and write only if
/// the item is still as read (compared and written under the lock), else
/// read and check again.
async fn reserve_compare_and_swap(
    state: &DataState,
    product: &str,
    units: &Units,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    for _ in 0..MAX_SWAP_ATTEMPTS {
        let mut read = super::read(state, Document::Inventory)
            .await?
            .load_inventory()
            .await?;
        let item = find_item(&mut read.inventory, product)?;
        let seen = (item.quantity, item.reserved_quantity);
        let available = item.quantity - item.reserved_quantity;
        if available < units.quantity {
            return Err(insufficient(item, units.quantity, available));
        }
        tokio::time::sleep(Duration::from_millis(state.windows.toctou_ms)).await;
        let mut session = state.store.locked(Document::Inventory).await?;
        let mut file = session.load_inventory().await?;
        let item = find_item(&mut file.inventory, product)?;
        if (item.quantity, item.reserved_quantity) != seen {
            continue;
        }
        item.reserved_quantity += units.quantity;
        return save_item(session, file, product).await;
    }
    Err(NaiveError::Conflict(format!(
        "{product} changed under every one of {MAX_SWAP_ATTEMPTS} reservation attempts"
    )))
}

pub(super) async fn release(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    modify_item(&state, &product, &units, |item| {
        item.reserved_quantity -= units.quantity
    })
    .await
}

/// Sells reserved units: on hand and reserved both drop.
pub(super) async fn commit(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    modify_item(&state, &product, &units, |item| {
        item.quantity -= units.quantity;
        item.reserved_quantity -= units.quantity;
        item.sold += units.quantity;
    })
    .await
}

/// Sells units that were never reserved (pay before reserve): nothing stops
/// on-hand stock from going negative.
pub(super) async fn sell(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(units): JsonBody<Units>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    modify_item(&state, &product, &units, |item| {
        item.quantity -= units.quantity;
        item.sold += units.quantity;
    })
    .await
}
