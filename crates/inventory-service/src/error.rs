//! inventory-service's errors and their one mapping to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_http_kit::{ClientError, error_response};

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Data(#[from] ClientError),
}

impl IntoResponse for InventoryError {
    fn into_response(self) -> Response {
        match self {
            // data-service's own answer (404, 409, 422, 503 …) passes through.
            InventoryError::Data(ClientError::Status {
                status,
                code,
                message,
                ..
            }) => error_response(
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                &code,
                &message,
            ),
            InventoryError::Data(error) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "dependency_unavailable",
                &error.to_string(),
            ),
        }
    }
}
