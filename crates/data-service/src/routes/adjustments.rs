//! The operator's adjustments of a product's units, and its ledger.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use stockroom_contract::stock_operations::{
    AdjustmentDocument, AdjustmentRequest, DEFAULT_MOVEMENTS_PER_PAGE, MovementDocument,
    MovementList, MovementQuery, StockConflict,
};
use stockroom_contract::{ErrorBody, InventoryItem};
use stockroom_domain::rules::{AdjustAnswer, AdjustDecision, StockRecord};
use stockroom_http_kit::JsonBody;
use stockroom_storage::MAX_MOVEMENTS_PER_PAGE;
use stockroom_storage::batch::Adjustment;

use crate::{DataError, DataState};

/// The adjustment's `Idempotency-Key`, which every adjustment carries, so
/// that a retry after a lost answer never moves the stock twice.
fn idempotency_key(headers: &HeaderMap) -> Result<String, DataError> {
    stockroom_http_kit::idempotency_key(headers)
        .map_err(|error| DataError::Header("invalid_header", error.to_string()))?
        .ok_or_else(|| {
            DataError::Header(
                "idempotency_key_required",
                "an adjustment needs an Idempotency-Key header, so that a retry never moves the stock twice".into(),
            )
        })
}

/// A hash of the request as applied, to tell a retry from another request
/// reusing the key.
fn fingerprint(product_key: &str, request: &AdjustmentRequest) -> String {
    let mut hasher = Sha256::new();
    hasher.update(product_key.as_bytes());
    hasher.update([0]);
    hasher.update(request.delta.to_be_bytes());
    hasher.update(request.reason.as_str().as_bytes());
    hasher.update([0]);
    if let Some(reference) = &request.reference {
        hasher.update([1]);
        hasher.update(reference.as_bytes());
    }
    hasher.update([0]);
    if let Some(expected) = request.expected_on_hand {
        hasher.update([1]);
        hasher.update(expected.to_be_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn answered(product_name: &str, answer: &AdjustAnswer) -> AdjustmentDocument {
    let record = StockRecord {
        product_key: answer.movement.product_key.clone(),
        product_name: product_name.to_owned(),
        stock: answer.stock,
        settings: answer.settings,
        movement_seq: answer.movement.seq,
    };
    AdjustmentDocument {
        movement: MovementDocument::from_record(&answer.movement),
        item: InventoryItem::from_record(&record),
    }
}

/// The answer to an adjustment, first given or replayed (marked
/// `idempotent-replayed: true`, as orders are).
async fn adjusted(
    state: &DataState,
    product_key: &str,
    product_name: String,
    answer: &AdjustAnswer,
    replayed: bool,
) -> Result<axum::response::Response, DataError> {
    use axum::response::IntoResponse;
    // The product's own spelling of its name, not the path's.
    let name = state
        .flow
        .inventory_item(product_key)
        .await?
        .map_or(product_name, |record| record.product_name);
    let mut response = (StatusCode::CREATED, Json(answered(&name, answer))).into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// Receives or writes off units of a product, with a reason. With
/// `expectedOnHand`, only if the figure is still what the operator saw.
/// The same Idempotency-Key and body replays the first answer.
#[utoipa::path(
    post,
    path = "/inventory/{productName}/adjustments",
    params(
        ("productName" = String, Path, description = "product name, any case"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255,
            pattern = "^[\\x21-\\x7E]+$",
            description = "1 to 255 visible ASCII characters; a retry with the same key and body replays the first answer and moves nothing")
    ),
    request_body = AdjustmentRequest,
    responses(
        (status = 201, body = AdjustmentDocument, description = "adjusted (or the first answer, replayed)"),
        (status = 400, body = ErrorBody, description = "the Idempotency-Key header is missing or malformed"),
        (status = 404, body = ErrorBody, description = "no such product"),
        (status = 409, body = StockConflict, description = "`stale_quantity` (with the on-hand figure now), `insufficient_stock` (with what is available) or `stock_limit`"),
        (status = 422, body = ErrorBody, description = "invalid adjustment, or the key reused with another body")
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn adjust(
    State(state): State<DataState>,
    Path(product_name): Path<String>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<AdjustmentRequest>,
) -> Result<axum::response::Response, DataError> {
    let key = idempotency_key(&headers)?;
    request.check().map_err(DataError::Invalid)?;
    let product_key = product_name.trim().to_lowercase();
    let adjustment = Adjustment {
        product_key: product_key.clone(),
        delta: std::num::NonZeroI64::new(request.delta).expect("checked above"),
        reason: request.reason,
        reference: request.reference.clone(),
        expected_on_hand: request.expected_on_hand,
        fingerprint: Some(fingerprint(&product_key, &request)),
        idempotency_key: Some(key),
    };
    let conflict = |error: &str, message: String, on_hand, available| {
        DataError::Stock(Box::new(StockConflict {
            error: error.into(),
            message,
            on_hand,
            available,
            item: None,
        }))
    };
    match state.flow.adjust(adjustment).await? {
        AdjustDecision::Adjusted(answer) => {
            Ok(adjusted(&state, &product_key, product_name, &answer, false).await?)
        }
        AdjustDecision::Replay(answer) => {
            Ok(adjusted(&state, &product_key, product_name, &answer, true).await?)
        }
        AdjustDecision::UnknownProduct => Err(DataError::NotFound(format!(
            "no product named {product_name}"
        ))),
        AdjustDecision::StaleQuantity { on_hand } => Err(conflict(
            "stale_quantity",
            format!(
                "{product_name} has {on_hand} on hand now, not the expectedOnHand given; nothing changed"
            ),
            Some(on_hand),
            None,
        )),
        AdjustDecision::InsufficientStock { available } => Err(conflict(
            "insufficient_stock",
            format!(
                "only {available} of {product_name} are available to write off; the rest are reserved by orders"
            ),
            None,
            Some(available),
        )),
        AdjustDecision::AboveLimit => Err(conflict(
            "stock_limit",
            format!("{product_name} would exceed the stock limit"),
            None,
            None,
        )),
        AdjustDecision::KeyReused => Err(DataError::KeyReused),
    }
}

/// A product's ledger: every change of its figures and settings, oldest
/// first, a page at a time.
#[utoipa::path(
    get,
    path = "/inventory/{productName}/movements",
    params(
        ("productName" = String, Path, description = "product name, any case"),
        MovementQuery
    ),
    responses(
        (status = 200, body = MovementList),
        (status = 404, body = ErrorBody, description = "no such product"),
        (status = 422, body = ErrorBody)
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn movements(
    State(state): State<DataState>,
    Path(product_name): Path<String>,
    query: Result<Query<MovementQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MovementList>, DataError> {
    let Query(query) = query.map_err(|rejection| DataError::Invalid(rejection.body_text()))?;
    let after = query.after.unwrap_or(0);
    if i64::try_from(after).is_err() {
        return Err(DataError::Invalid(
            "after must be a movement's number".into(),
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_MOVEMENTS_PER_PAGE);
    if !(1..=MAX_MOVEMENTS_PER_PAGE).contains(&limit) {
        return Err(DataError::Invalid(format!(
            "limit must be from 1 to {MAX_MOVEMENTS_PER_PAGE}"
        )));
    }
    let page = state
        .flow
        .movements(&product_name, after, limit)
        .await?
        .ok_or_else(|| DataError::NotFound(format!("no product named {product_name}")))?;
    Ok(Json(MovementList {
        movements: page
            .movements
            .iter()
            .map(MovementDocument::from_record)
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
