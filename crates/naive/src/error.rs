//! The naive services' errors and their mapping to HTTP. Even the naive
//! system answers JSON errors in the contract's shape; only its logic is
//! wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_http_kit::{ClientError, error_response};

#[derive(Debug, thiserror::Error)]
pub enum NaiveError {
    /// A data file does not parse: the symptom of a torn write.
    #[error("{file} is corrupted: {message}")]
    Corrupted { file: String, message: String },
    #[error("cannot access {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    /// The SQLite fix's database refused or failed ("database is locked").
    #[error("database: {0}")]
    Database(String),
    /// Redis, which the Redis fixes need, failed or is unreachable.
    #[error("redis: {0}")]
    Redis(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InsufficientStock(String),
    #[error("{0}")]
    Conflict(String),
    /// The processed-events fix: this event's effect is already written.
    #[error("{0}")]
    Duplicate(String),
    /// The inventory worker's queue of events is full: the bus cannot take
    /// another until the worker catches up.
    #[error("the inventory worker's event queue is full")]
    WorkerQueueFull,
    #[error(transparent)]
    Dependency(#[from] ClientError),
}

impl IntoResponse for NaiveError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            NaiveError::Corrupted { .. } => {
                tracing::error!(%message, "naive data file unreadable");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "data_corrupted",
                    &message,
                )
            }
            NaiveError::Io { .. } => {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", &message)
            }
            NaiveError::Database(_) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "database_error",
                &message,
            ),
            NaiveError::Redis(_) => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "redis_error", &message)
            }
            NaiveError::NotFound(_) => error_response(StatusCode::NOT_FOUND, "not_found", &message),
            NaiveError::Invalid(_) => error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &message,
            ),
            NaiveError::InsufficientStock(_) => {
                error_response(StatusCode::CONFLICT, "insufficient_stock", &message)
            }
            NaiveError::Conflict(_) => error_response(StatusCode::CONFLICT, "conflict", &message),
            NaiveError::Duplicate(_) => {
                error_response(StatusCode::CONFLICT, "duplicate_event", &message)
            }
            NaiveError::WorkerQueueFull => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "dependency_unavailable",
                &message,
            ),
            NaiveError::Dependency(error) => error.relay(),
        }
    }
}
