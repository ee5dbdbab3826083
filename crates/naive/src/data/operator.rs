//! The naive data-service's operator routes, as a shop adds them to the
//! original system: a product's purchase limit, and stock adjustments.
//!
//! WRONG ON PURPOSE. An adjustment loads the inventory, pauses (the
//! adjustment window), and writes back the figures it read plus its delta:
//! two operators adjusting the same product at once each write over the
//! other, and one update is lost (stale adjustment). There is no ledger, no
//! idempotency key and no operator token.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use stockroom_contract::InventoryItemDocument;
use stockroom_contract::stock_operations::{AdjustmentRequest, SettingsPatch, check_settings};
use stockroom_http_kit::JsonBody;

use super::{DataState, find_item};
use crate::NaiveError;
use crate::store::Document;

/// Changes a product's purchase limit or low-stock threshold; a field left
/// out stays as it is.
pub(super) async fn change_settings(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> Result<Json<InventoryItemDocument>, NaiveError> {
    check_settings(
        patch.max_per_customer.flatten(),
        patch.low_stock_threshold.flatten(),
    )
    .map_err(NaiveError::Invalid)?;
    let mut session = state.store.begin(Document::Inventory).await?;
    let mut file = session.load_inventory().await?;
    let item = find_item(&mut file.inventory, &product)?;
    if let Some(limit) = patch.max_per_customer {
        item.max_per_customer = limit;
    }
    if let Some(threshold) = patch.low_stock_threshold {
        item.low_stock_threshold = threshold;
    }
    let item = item.clone();
    session.save_inventory(file).await?;
    session.commit().await?;
    Ok(Json(InventoryItemDocument { item }))
}

/// The stale adjustment: reads the figures, checks the request against
/// them, pauses, and saves what it read plus the delta over whatever was
/// written meanwhile.
pub(super) async fn adjust(
    State(state): State<DataState>,
    Path(product): Path<String>,
    JsonBody(request): JsonBody<AdjustmentRequest>,
) -> Result<(StatusCode, Json<InventoryItemDocument>), NaiveError> {
    request.check().map_err(NaiveError::Invalid)?;
    let mut session = state.store.begin(Document::Inventory).await?;
    let mut file = session.load_inventory().await?;
    let item = find_item(&mut file.inventory, &product)?;
    if let Some(expected) = request.expected_on_hand
        && i64::try_from(expected).ok() != Some(item.quantity)
    {
        return Err(NaiveError::Conflict(format!(
            "{} has {} on hand, not the {expected} expected",
            item.product_name, item.quantity
        )));
    }
    let available = item.quantity - item.reserved_quantity;
    if request.delta < 0 && -request.delta > available {
        return Err(NaiveError::InsufficientStock(format!(
            "insufficient stock: {}: writing off {}, available {available}",
            item.product_name, -request.delta
        )));
    }
    tokio::time::sleep(Duration::from_millis(state.windows.adjustment_ms)).await;
    // The copy read before the pause is the one written back.
    item.quantity += request.delta;
    item.received += request.delta;
    item.available = item.quantity - item.reserved_quantity;
    let item = item.clone();
    session.save_inventory(file).await?;
    session.commit().await?;
    Ok((StatusCode::CREATED, Json(InventoryItemDocument { item })))
}
