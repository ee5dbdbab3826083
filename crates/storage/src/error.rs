//! The one error taxonomy of every storage backend.
//!
//! Each backend maps its driver's errors onto these kinds, keeping the
//! driver error as the `source()`, so that callers decide by kind (retry,
//! refuse, alert) and logs still show the whole chain. The storage
//! conformance suite checks that the same fault gives the same kind on every
//! backend.

use std::error::Error;
use std::sync::Arc;

/// A driver error kept as the cause of a [`StorageError`]. Shared, so that
/// one failed batch can answer each of its callers with the same cause.
pub type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// Wraps any error as a [`Cause`].
pub fn cause(error: impl Error + Send + Sync + 'static) -> Cause {
    Arc::new(error)
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// Too much work is queued; the caller should retry later.
    #[error("storage is overloaded, retry later")]
    Overloaded,
    /// The database cannot be reached, or refused the operation for a reason
    /// that passes (a lost connection, a restart, a full or read-only disk).
    /// Nothing was written. Retryable.
    #[error("storage unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// The transaction kept being aborted in favour of concurrent ones
    /// (serialization failures, deadlock victims). Nothing was written.
    /// Retryable.
    #[error("storage kept aborting the transaction for concurrent ones ({attempts} attempts)")]
    Contention {
        attempts: u32,
        #[source]
        source: Cause,
    },
    /// The commit was sent but its answer was lost: the change may or may
    /// not be stored. A caller must not assume either.
    #[error("storage lost the answer to a commit: the change may or may not be stored")]
    OutcomeUnknown {
        #[source]
        source: Cause,
    },
    /// A constraint of the schema refused a write: the code tried to store a
    /// state the invariants forbid. Always a bug, never a client's doing.
    #[error("the database refused a write that breaks one of its constraints")]
    ConstraintViolated {
        #[source]
        source: Cause,
    },
    /// The stored data breaks an invariant the code relies on. Never caused
    /// by a client; always a bug or a damaged database.
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
    /// The request names a product that does not exist.
    #[error("unknown product {0}")]
    UnknownProduct(String),
    /// The request is well-formed but impossible whatever the state (a
    /// schema name the database cannot have).
    #[error("{0}")]
    Invalid(String),
    /// The request is valid, but the stored state refuses it now: a restock
    /// that would take a product beyond the stock limit.
    #[error("{0}")]
    Refused(String),
}

impl StorageError {
    /// An unavailable storage with no driver error behind it (a stopped
    /// writer, a closed pool).
    pub fn unavailable(context: impl Into<String>) -> StorageError {
        StorageError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// Whether the same call may succeed if made again later, unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Overloaded
                | StorageError::Unavailable { .. }
                | StorageError::Contention { .. }
        )
    }
}
