//! data-service's errors and their one mapping to HTTP.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_contract::stock_operations::StockConflict;
use stockroom_http_kit::error_response;
use stockroom_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// An operator's request the stock as it stands refuses, with the
    /// figure that explains it.
    #[error("{}", .0.message)]
    Stock(Box<StockConflict>),
    /// The request's header is missing or malformed.
    #[error("{1}")]
    Header(&'static str, String),
    /// The idempotency key was used before for another request.
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    /// The order is another customer's.
    #[error("{0}")]
    Forbidden(String),
    /// The order is not an unpaid reservation.
    #[error("{0}")]
    NotExtendable(String),
}

impl IntoResponse for DataError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let unavailable =
            |code: &str| error_response(StatusCode::SERVICE_UNAVAILABLE, code, &message);
        match &self {
            DataError::Storage(error) => match error {
                StorageError::Overloaded => unavailable("overloaded"),
                StorageError::Unavailable { .. } => {
                    tracing::error!(
                        error = error as &dyn std::error::Error,
                        "storage unavailable"
                    );
                    unavailable("storage_unavailable")
                }
                StorageError::Contention { .. } => {
                    tracing::warn!(
                        error = error as &dyn std::error::Error,
                        "storage contention"
                    );
                    unavailable("storage_contention")
                }
                // The change may be stored: a client must retry with the same
                // Idempotency-Key, never without one.
                StorageError::OutcomeUnknown { .. } => {
                    tracing::error!(
                        error = error as &dyn std::error::Error,
                        "commit outcome unknown"
                    );
                    unavailable("outcome_unknown")
                }
                StorageError::UnknownProduct(_) => {
                    error_response(StatusCode::NOT_FOUND, "unknown_product", &message)
                }
                StorageError::Invalid(_) => error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    &message,
                ),
                // Valid, but not with the stock as it stands: a conflict.
                StorageError::Refused(_) => {
                    error_response(StatusCode::CONFLICT, "stock_limit", &message)
                }
                StorageError::ConstraintViolated { .. } | StorageError::Inconsistent(_) => {
                    tracing::error!(
                        error = error as &dyn std::error::Error,
                        "storage invariant broken"
                    );
                    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", &message)
                }
            },
            DataError::Invalid(_) => error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &message,
            ),
            DataError::NotFound(_) => error_response(StatusCode::NOT_FOUND, "not_found", &message),
            DataError::Conflict(_) => {
                error_response(StatusCode::CONFLICT, "order_not_cancellable", &message)
            }
            DataError::Stock(conflict) => {
                (StatusCode::CONFLICT, Json(conflict.as_ref().clone())).into_response()
            }
            DataError::Header(code, _) => error_response(StatusCode::BAD_REQUEST, code, &message),
            DataError::KeyReused => error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                &message,
            ),
            DataError::Forbidden(_) => {
                error_response(StatusCode::FORBIDDEN, "not_your_order", &message)
            }
            DataError::NotExtendable(_) => {
                error_response(StatusCode::CONFLICT, "not_extendable", &message)
            }
        }
    }
}
