//! How one run of a transaction fails, and how each failure maps onto the
//! backend-neutral `StorageError` kinds (keeping the driver error as the
//! source), the mapping the conformance suite checks on both backends.

use deadpool_postgres::PoolError;
use stockroom_storage::{StorageError, cause};
use tokio_postgres::error::SqlState;

/// Why one run of a transaction failed: the database, the pool, a race this
/// code detected, or a decision of the storage logic itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("{}", describe(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("cannot get a postgres connection")]
    Pool(#[from] PoolError),
    /// Another process stored an answer for one of the batch's idempotency
    /// keys (a customer's, an operator's, or a charge's at the simulated
    /// provider) after this batch looked for it.
    #[error("an idempotency key was claimed by a concurrent batch")]
    KeyRace,
    /// A row a call loaded without a lock (an outbox entry of a receipt or a
    /// redrive, an order) was changed by another call before this one wrote
    /// it.
    #[error("{what}: {changed} rows were as loaded, {expected} expected")]
    RowRace {
        what: &'static str,
        changed: u64,
        expected: usize,
    },
    /// A batch decided ahead of its stock locks (see `ahead`) found, under
    /// them, a product's stock other than it decided on: it runs again with
    /// its stock locked first.
    #[error("a product's stock moved after the batch decided on it")]
    StockMoved,
    /// The COMMIT was sent but no answer came back.
    #[error("the answer to a commit was lost")]
    CommitLost(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Failure {
    /// A failure of COMMIT: refused by the server (nothing was stored), or
    /// lost on the way (nobody knows).
    pub(crate) fn commit(error: tokio_postgres::Error) -> Failure {
        if error.code().is_some() {
            Failure::Database(error)
        } else {
            Failure::CommitLost(error)
        }
    }

    /// Whether running the whole transaction again may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Failure::Database(error) => aborted_by_concurrency(error),
            Failure::KeyRace | Failure::RowRace { .. } | Failure::StockMoved => true,
            _ => false,
        }
    }

    pub(crate) fn into_storage_error(self, attempts: u32) -> StorageError {
        match self {
            Failure::Storage(error) => error,
            Failure::KeyRace | Failure::RowRace { .. } | Failure::StockMoved => {
                StorageError::Contention {
                    attempts,
                    source: cause(self),
                }
            }
            Failure::CommitLost(error) => StorageError::OutcomeUnknown {
                source: cause(error),
            },
            Failure::Pool(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
                StorageError::Overloaded
            }
            Failure::Pool(PoolError::Backend(error)) => StorageError::Unavailable {
                context: "cannot connect to postgres".into(),
                source: Some(cause(error)),
            },
            Failure::Pool(error) => StorageError::Unavailable {
                context: "cannot get a postgres connection".into(),
                source: Some(cause(error)),
            },
            Failure::Database(error) => database_error(error, attempts),
        }
    }
}

/// The storage error kind of an error PostgreSQL (or the connection to it)
/// reported.
pub(crate) fn database_error(error: tokio_postgres::Error, attempts: u32) -> StorageError {
    let Some(code) = error.code().cloned() else {
        // No SQLSTATE: the connection broke or was closed.
        return StorageError::Unavailable {
            context: "the connection to postgres failed".into(),
            source: Some(cause(error)),
        };
    };
    if aborted_by_concurrency(&error) {
        return StorageError::Contention {
            attempts,
            source: cause(error),
        };
    }
    match code.code().get(..2) {
        // Class 23: integrity constraint violations. A constraint restates
        // an invariant; tripping one means the code tried to store an
        // impossible state.
        Some("23") => StorageError::ConstraintViolated {
            source: cause(error),
        },
        // Class 22 (data exception) and 42 (syntax or access rule): the
        // statement does not fit the schema, a bug or a foreign schema.
        Some("22" | "42") => StorageError::Inconsistent(describe(&error)),
        // Everything else passes: connection exceptions (08), insufficient
        // resources such as a full disk (53), operator intervention such as
        // a restart (57), a read-only transaction (25006).
        _ => StorageError::Unavailable {
            context: format!("postgres refused the operation (sqlstate {})", code.code()),
            source: Some(cause(error)),
        },
    }
}

/// Whether PostgreSQL aborted the transaction only because of a concurrent
/// one, so that running it again may succeed.
pub(crate) fn aborted_by_concurrency(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// The server's own message and SQLSTATE when there is one, which says more
/// than the driver's generic "db error".
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (sqlstate {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that found an unlocked outbox entry changed runs again, and
    /// a race that outlasts every attempt is contention, for the caller to
    /// retry later: never an inconsistency.
    #[test]
    fn an_outbox_race_runs_again_and_ends_as_contention() {
        let race = || Failure::RowRace {
            what: "outbox delete",
            changed: 0,
            expected: 1,
        };
        assert!(race().is_retryable());
        assert!(matches!(
            race().into_storage_error(5),
            StorageError::Contention { attempts: 5, .. }
        ));
    }
}
