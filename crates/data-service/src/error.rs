//! data-service's errors and their one mapping to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
        }
    }
}
