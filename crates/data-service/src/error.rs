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
        match self {
            DataError::Storage(StorageError::Overloaded) => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "overloaded", &message)
            }
            DataError::Storage(StorageError::Unavailable(_)) => {
                tracing::error!(%message, "storage unavailable");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    &message,
                )
            }
            DataError::Storage(StorageError::UnknownProduct(_)) => {
                error_response(StatusCode::NOT_FOUND, "unknown_product", &message)
            }
            DataError::Storage(StorageError::Invalid(_)) | DataError::Invalid(_) => error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &message,
            ),
            DataError::Storage(StorageError::Inconsistent(_)) => {
                tracing::error!(%message, "storage invariant broken");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", &message)
            }
            DataError::NotFound(_) => error_response(StatusCode::NOT_FOUND, "not_found", &message),
            DataError::Conflict(_) => {
                error_response(StatusCode::CONFLICT, "order_not_cancellable", &message)
            }
        }
    }
}
