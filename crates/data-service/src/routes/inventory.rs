//! Stock: every product's figures, one product's, and restocking.

use axum::Json;
use axum::extract::{Path, State};
use stockroom_contract::{
    ErrorBody, InventoryItem, InventoryItemDocument, InventoryList, RestockRequest,
};
use stockroom_domain::ProductName;
use stockroom_http_kit::JsonBody;

use crate::{DataError, DataState};

/// Every product's stock.
#[utoipa::path(get, path = "/inventory", responses((status = 200, body = InventoryList)))]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn inventory(
    State(state): State<DataState>,
) -> Result<Json<InventoryList>, DataError> {
    let records = state.flow.inventory().await?;
    Ok(Json(InventoryList {
        inventory: records.iter().map(InventoryItem::from_record).collect(),
    }))
}

/// One product's stock; the name is matched without regard to case.
#[utoipa::path(
    get,
    path = "/inventory/{productName}",
    params(("productName" = String, Path, description = "product name, any case")),
    responses(
        (status = 200, body = InventoryItemDocument),
        (status = 404, body = ErrorBody, description = "no such product")
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn inventory_item(
    State(state): State<DataState>,
    Path(product_name): Path<String>,
) -> Result<Json<InventoryItemDocument>, DataError> {
    match state.flow.inventory_item(&product_name).await? {
        Some(record) => Ok(Json(InventoryItemDocument {
            item: InventoryItem::from_record(&record),
        })),
        None => Err(DataError::NotFound(format!(
            "no product named {product_name}"
        ))),
    }
}

/// Adds units to a product, creating it if it is new.
#[utoipa::path(
    post,
    path = "/inventory/{productName}/restock",
    params(("productName" = inline(stockroom_contract::Name), Path)),
    request_body = RestockRequest,
    responses(
        (status = 200, body = InventoryItemDocument),
        (status = 409, body = ErrorBody, description = "the product would exceed the stock limit"),
        (status = 422, body = ErrorBody)
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn restock(
    State(state): State<DataState>,
    Path(product_name): Path<String>,
    JsonBody(request): JsonBody<RestockRequest>,
) -> Result<Json<InventoryItemDocument>, DataError> {
    let product =
        ProductName::new(&product_name).map_err(|error| DataError::Invalid(error.to_string()))?;
    if request.quantity == 0 {
        return Err(DataError::Invalid("quantity must be at least 1".into()));
    }
    let record = state.flow.restock(product, request.quantity).await?;
    Ok(Json(InventoryItemDocument {
        item: InventoryItem::from_record(&record),
    }))
}
