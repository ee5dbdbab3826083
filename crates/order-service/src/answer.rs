//! What order-service answers to each outcome of a reservation: the one
//! place where an outcome becomes a status and a document.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use stockroom_contract::{Order, Shortage};
use stockroom_http_kit::Metrics;
use utoipa::ToSchema;

use crate::OrderError;
use crate::reply::Outcome;

/// The answer to a rejected order: the error, plus the order and what was short.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RejectedOrder {
    pub error: String,
    pub message: String,
    pub order: Order,
    pub shortages: Vec<Shortage>,
}

/// [`stockroom_contract::OrderDocument`] with the order as data-service
/// wrote it.
#[derive(Serialize)]
struct ReservedBody<'a> {
    order: &'a RawValue,
}

/// [`RejectedOrder`] with the order as data-service wrote it.
#[derive(Serialize)]
struct RejectedBody<'a> {
    error: &'static str,
    message: String,
    order: &'a RawValue,
    shortages: &'a [Shortage],
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
pub(crate) fn answer(outcome: Outcome, metrics: &Metrics) -> Result<Response, OrderError> {
    let response = match outcome {
        Outcome::Reserved { order } => {
            metrics.record_reservations(1);
            (StatusCode::CREATED, Json(ReservedBody { order: &order })).into_response()
        }
        Outcome::Rejected { order, shortages } => {
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
                Json(RejectedBody {
                    error: "insufficient_stock",
                    message: format!("insufficient stock: {message}"),
                    order: &order,
                    shortages: &shortages,
                }),
            )
                .into_response()
        }
        Outcome::LimitExceeded {
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
        Outcome::UnknownProduct { product_name } => {
            return Err(OrderError::UnknownProduct(product_name));
        }
        Outcome::IdempotencyKeyReused => return Err(OrderError::IdempotencyKeyReused),
        Outcome::AnswerGone { order_id } => return Err(OrderError::AnswerGone(order_id)),
        // Ids are fresh UUIDv7s, so a taken one means a broken dependency.
        Outcome::OrderIdTaken { order_id } => {
            return Err(OrderError::Protocol(format!(
                "storage reports the new order id {order_id} as taken"
            )));
        }
    };
    Ok(response)
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use stockroom_contract::{OrderDocument, ReserveOutcome, ReserveResult};

    use super::*;
    use crate::reply::Reply;
    use crate::reply::tests::order;

    /// The outcome as data-service writes it, read as order-service reads it.
    fn read(outcome: ReserveOutcome) -> Outcome {
        let written = serde_json::to_vec(&ReserveResult {
            replayed: false,
            outcome,
        })
        .unwrap();
        serde_json::from_slice::<Reply>(&written).unwrap().outcome
    }

    async fn body(response: Response) -> (StatusCode, Vec<u8>) {
        let status = response.status();
        (
            status,
            to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap()
                .to_vec(),
        )
    }

    #[tokio::test]
    async fn answers_carry_the_order_byte_for_byte_as_the_documents_do() {
        let metrics = Metrics::new("order-service");
        let reserved = answer(read(ReserveOutcome::Reserved { order: order() }), &metrics).unwrap();
        assert_eq!(
            body(reserved).await,
            (
                StatusCode::CREATED,
                serde_json::to_vec(&OrderDocument { order: order() }).unwrap()
            )
        );
        let shortages = vec![Shortage {
            product_name: "Hot".into(),
            requested: 2,
            available: 1,
        }];
        let rejected = answer(
            read(ReserveOutcome::Rejected {
                order: order(),
                shortages: shortages.clone(),
            }),
            &metrics,
        )
        .unwrap();
        let document = RejectedOrder {
            error: "insufficient_stock".into(),
            message: "insufficient stock: Hot: requested 2, available 1".into(),
            order: order(),
            shortages,
        };
        assert_eq!(
            body(rejected).await,
            (StatusCode::CONFLICT, serde_json::to_vec(&document).unwrap())
        );
    }
}
