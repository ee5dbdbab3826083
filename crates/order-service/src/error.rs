//! order-service's errors and their one mapping to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_http_kit::{ClientError, error_response};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidHeader(String),
    #[error("unknown product {0}")]
    UnknownProduct(String),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Protocol(String),
    /// The first answer to the request's Idempotency-Key cannot be rebuilt:
    /// the order it created is no longer stored. Retention keeps orders
    /// longer than keys, so this is damaged data, never the client's doing.
    #[error("the first answer to this Idempotency-Key is lost: order {0} is no longer stored")]
    AnswerGone(String),
    /// The queue of orders waiting for a batch is full.
    #[error("too many orders are waiting to be reserved, retry later")]
    Overloaded,
    /// The task that sends batches is gone, which only happens while the
    /// service shuts down.
    #[error("order-service is shutting down")]
    Stopped,
    #[error(transparent)]
    Dependency(#[from] ClientError),
}

impl IntoResponse for OrderError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            OrderError::Invalid(_) => error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &message,
            ),
            OrderError::InvalidHeader(_) => {
                error_response(StatusCode::BAD_REQUEST, "invalid_header", &message)
            }
            OrderError::UnknownProduct(_) => error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_product",
                &message,
            ),
            OrderError::IdempotencyKeyReused => error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                &message,
            ),
            OrderError::NotFound(_) => error_response(StatusCode::NOT_FOUND, "not_found", &message),
            OrderError::Overloaded => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "overloaded", &message)
            }
            OrderError::Stopped => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &message)
            }
            OrderError::AnswerGone(_) => {
                tracing::error!(%message, "an idempotent answer cannot be replayed");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "answer_lost", &message)
            }
            OrderError::Protocol(_) => {
                tracing::error!(%message, "unexpected answer from a dependency");
                error_response(StatusCode::BAD_GATEWAY, "bad_gateway", &message)
            }
            OrderError::Dependency(error) => error.relay(),
        }
    }
}
