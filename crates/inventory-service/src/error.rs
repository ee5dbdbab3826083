//! inventory-service's errors and their one mapping to HTTP.

use axum::response::{IntoResponse, Response};
use stockroom_http_kit::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Data(#[from] ClientError),
}

impl IntoResponse for InventoryError {
    fn into_response(self) -> Response {
        match self {
            // data-service's own answer (404, 409, 422, 503 …) passes through.
            InventoryError::Data(error) => error.relay(),
        }
    }
}
