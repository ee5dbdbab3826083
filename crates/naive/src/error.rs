//! The naive services' errors and their mapping to HTTP. Even the naive
//! system answers JSON errors in the contract's shape; only its logic is
//! wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_http_kit::{BindError, ClientError, ErrorChain, HealthWait, error_response};

use crate::redis_lock::LOCK_WAIT_MS;

#[derive(Debug, thiserror::Error)]
pub enum NaiveError {
    /// A data file does not parse: the symptom of a torn write. The message
    /// is the parser's, as the original system showed it.
    #[error("{file} is corrupted: {message}")]
    Corrupted { file: String, message: String },
    #[error("cannot access {file}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A data file could not be encoded.
    #[error("cannot encode a data file")]
    Encode(#[source] serde_json::Error),
    /// The SQLite fix's database refused or failed ("database is locked").
    #[error("the database failed")]
    Database(#[source] rusqlite::Error),
    /// The task that ran the database work panicked or was cancelled.
    #[error("the database task failed")]
    DatabaseTask(#[source] tokio::task::JoinError),
    /// A transaction was used after it ended: a bug in this crate.
    #[error("the transaction already ended")]
    TransactionEnded,
    /// Redis, which the Redis fixes need, is unreachable at `url`.
    #[error("cannot reach redis at {url}")]
    RedisUnreachable {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    /// Redis failed a command.
    #[error("redis failed")]
    Redis(#[source] redis::RedisError),
    /// A Redis fix was chosen without a Redis.
    #[error("the {fix} fix needs a Redis and none was given")]
    RedisNotGiven { fix: &'static str },
    /// Another worker held the lock for longer than a worker waits.
    #[error("the lock on {resource} stayed busy for {LOCK_WAIT_MS} ms")]
    LockBusy { resource: String },
    /// A service could not take its port.
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A service did not answer `/health` after it started.
    #[error(transparent)]
    NotHealthy(#[from] HealthWait),
    /// A service's task panicked.
    #[error("{service} panicked")]
    Panicked { service: &'static str },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InsufficientStock(String),
    #[error("{0}")]
    Conflict(String),
    /// The order would take the customer past the product's purchase limit.
    #[error("{0}")]
    LimitExceeded(String),
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
        // The caller sees no log: the message is the whole chain.
        let message = ErrorChain(&self).to_string();
        match self {
            NaiveError::Corrupted { .. } => {
                tracing::error!(%message, "naive data file unreadable");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "data_corrupted",
                    &message,
                )
            }
            NaiveError::Io { .. } | NaiveError::Encode(_) => {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", &message)
            }
            NaiveError::Database(_)
            | NaiveError::DatabaseTask(_)
            | NaiveError::TransactionEnded => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "database_error",
                &message,
            ),
            NaiveError::RedisUnreachable { .. }
            | NaiveError::Redis(_)
            | NaiveError::RedisNotGiven { .. }
            | NaiveError::LockBusy { .. } => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "redis_error", &message)
            }
            // Only start-up fails these ways, before any request is served.
            NaiveError::Bind(_)
            | NaiveError::Client(_)
            | NaiveError::NotHealthy(_)
            | NaiveError::Panicked { .. } => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                &message,
            ),
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
            NaiveError::LimitExceeded(_) => {
                error_response(StatusCode::CONFLICT, "limit_exceeded", &message)
            }
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
