//! The operator's products: creating one with its first units, and changing
//! its purchase limit and low-stock threshold.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use stockroom_contract::stock_operations::{
    CreateProductRequest, SettingsPatch, StockConflict, check_settings,
};
use stockroom_contract::{ErrorBody, InventoryItem, InventoryItemDocument};
use stockroom_domain::rules::{CreateDecision, ProductSettings, SettingsChange, SettingsDecision};
use stockroom_http_kit::JsonBody;

use crate::{DataError, DataState};

/// Creates a product with its first units (0 is allowed), its limit and
/// its threshold. A product of the same name in any case is refused.
#[utoipa::path(
    post,
    path = "/inventory",
    request_body = CreateProductRequest,
    responses(
        (status = 201, body = InventoryItemDocument, description = "created, with its first movement"),
        (status = 409, body = StockConflict, description = "`product_exists` (with the product as it stands) or `stock_limit`"),
        (status = 422, body = ErrorBody)
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn create_product(
    State(state): State<DataState>,
    JsonBody(request): JsonBody<CreateProductRequest>,
) -> Result<(StatusCode, Json<InventoryItemDocument>), DataError> {
    check_settings(request.max_per_customer, request.low_stock_threshold)
        .map_err(DataError::Invalid)?;
    let settings = ProductSettings {
        max_per_customer: request.max_per_customer,
        low_stock_threshold: request.low_stock_threshold,
    };
    match state
        .flow
        .create_product(request.product_name, request.quantity, settings)
        .await?
    {
        CreateDecision::Created(record) => Ok((
            StatusCode::CREATED,
            Json(InventoryItemDocument {
                item: InventoryItem::from_record(&record),
            }),
        )),
        CreateDecision::Exists(record) => Err(DataError::Stock(Box::new(StockConflict {
            error: "product_exists".into(),
            message: format!("a product named {} exists", record.product_name),
            on_hand: None,
            available: None,
            item: Some(InventoryItem::from_record(&record)),
        }))),
    }
}

/// Changes a product's limit and threshold: a field left out stays, a
/// field set to null is removed. Setting a limit below what a customer
/// already holds keeps their units; they may buy no more.
#[utoipa::path(
    patch,
    path = "/inventory/{productName}",
    params(("productName" = String, Path, description = "product name, any case")),
    request_body = SettingsPatch,
    responses(
        (status = 200, body = InventoryItemDocument),
        (status = 404, body = ErrorBody, description = "no such product"),
        (status = 422, body = ErrorBody)
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn change_settings(
    State(state): State<DataState>,
    Path(product_name): Path<String>,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> Result<Json<InventoryItemDocument>, DataError> {
    check_settings(
        patch.max_per_customer.flatten(),
        patch.low_stock_threshold.flatten(),
    )
    .map_err(DataError::Invalid)?;
    let change = SettingsChange {
        max_per_customer: patch.max_per_customer,
        low_stock_threshold: patch.low_stock_threshold,
    };
    match state.flow.change_settings(&product_name, change).await? {
        SettingsDecision::Changed(record) => Ok(Json(InventoryItemDocument {
            item: InventoryItem::from_record(&record),
        })),
        SettingsDecision::UnknownProduct => Err(DataError::NotFound(format!(
            "no product named {product_name}"
        ))),
    }
}
