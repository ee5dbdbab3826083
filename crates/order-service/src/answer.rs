//! What order-service answers to each outcome of a reservation: the one
//! place where an outcome becomes a status and a document.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use stockroom_contract::{Order, OrderDocument, ReserveOutcome, Shortage};
use stockroom_http_kit::Metrics;
use utoipa::ToSchema;

use crate::OrderError;

/// The answer to a rejected order: the error, plus the order and what was short.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RejectedOrder {
    pub error: String,
    pub message: String,
    pub order: Order,
    pub shortages: Vec<Shortage>,
}

/// The answer to an order past a product's purchase limit: nothing was
/// created.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitExceededBody {
    pub error: String,
    pub message: String,
    pub product_name: String,
    pub max_per_customer: u32,
    /// What the customer already holds in reserved and fulfilled orders.
    pub already_held: u64,
}

/// The answer to one reservation's outcome; errors for the outcomes that
/// are the client's mistake or a broken dependency.
pub(crate) fn answer(outcome: ReserveOutcome, metrics: &Metrics) -> Result<Response, OrderError> {
    let response = match outcome {
        ReserveOutcome::Reserved { order } => {
            metrics.record_reservations(1);
            (StatusCode::CREATED, Json(OrderDocument { order })).into_response()
        }
        ReserveOutcome::Rejected { order, shortages } => {
            metrics.record_rejections(1);
            let message = shortages
                .iter()
                .map(|shortage| {
                    format!(
                        "{}: requested {}, available {}",
                        shortage.product_name, shortage.requested, shortage.available
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            (
                StatusCode::CONFLICT,
                Json(RejectedOrder {
                    error: "insufficient_stock".into(),
                    message: format!("insufficient stock: {message}"),
                    order,
                    shortages,
                }),
            )
                .into_response()
        }
        ReserveOutcome::LimitExceeded {
            product_name,
            max_per_customer,
            already_held,
        } => {
            metrics.record_rejections(1);
            (
                StatusCode::CONFLICT,
                Json(LimitExceededBody {
                    error: "limit_exceeded".into(),
                    message: format!(
                        "at most {max_per_customer} of {product_name} per customer; {already_held} already held"
                    ),
                    product_name,
                    max_per_customer,
                    already_held,
                }),
            )
                .into_response()
        }
        ReserveOutcome::UnknownProduct { product_name } => {
            return Err(OrderError::UnknownProduct(product_name));
        }
        ReserveOutcome::IdempotencyKeyReused => return Err(OrderError::IdempotencyKeyReused),
        ReserveOutcome::AnswerGone { order_id } => return Err(OrderError::AnswerGone(order_id)),
        // Ids are fresh UUIDv7s, so a taken one means a broken dependency.
        ReserveOutcome::OrderIdTaken { order_id } => {
            return Err(OrderError::Protocol(format!(
                "storage reports the new order id {order_id} as taken"
            )));
        }
    };
    Ok(response)
}
