//! Running statements: every statement goes through [`Sql`], which caches
//! its preparation, counts it, and maps SQLite's errors onto the storage
//! error taxonomy with the driver error kept as the source.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, ErrorCode, Params, Row};
use stockroom_storage::{StorageError, cause};

/// A connection and the counter of statements run on it.
#[derive(Clone, Copy)]
pub(crate) struct Sql<'c> {
    pub connection: &'c Connection,
    statements: &'c AtomicU64,
}

impl<'c> Sql<'c> {
    pub fn new(connection: &'c Connection, statements: &'c AtomicU64) -> Sql<'c> {
        Sql {
            connection,
            statements,
        }
    }

    fn count(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs one statement and returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize, StorageError> {
        self.count();
        self.connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(params))
            .map_err(storage_error)
    }

    /// Runs one statement (or several, without parameters), such as a
    /// savepoint's.
    pub fn batch(&self, sql: &str) -> Result<(), StorageError> {
        self.count();
        self.connection.execute_batch(sql).map_err(storage_error)
    }

    /// Runs one query and maps every row.
    pub fn rows<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StorageError> {
        self.count();
        let mut statement = self.connection.prepare_cached(sql).map_err(storage_error)?;
        let mut rows = statement.query(params).map_err(storage_error)?;
        let mut values = Vec::new();
        while let Some(row) = rows.next().map_err(storage_error)? {
            values.push(map(row).map_err(storage_error)?);
        }
        Ok(values)
    }

    /// Runs one query that returns at most one row.
    pub fn row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StorageError> {
        Ok(self.rows(sql, params, map)?.into_iter().next())
    }
}

/// The storage error kind of a SQLite error.
pub(crate) fn storage_error(error: rusqlite::Error) -> StorageError {
    let code = error.sqlite_error_code();
    match code {
        Some(ErrorCode::ConstraintViolation) => StorageError::ConstraintViolated {
            source: cause(error),
        },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StorageError::Inconsistent(format!("the database file is damaged: {error}"))
        }
        Some(code) => StorageError::Unavailable {
            context: describe(code).to_owned(),
            source: Some(cause(error)),
        },
        // Not an error of the database but of reading its answer: a column
        // of the wrong type, a value out of range. The stored data does not
        // match the schema the code expects.
        None => {
            StorageError::Inconsistent(format!("stored data does not match the schema: {error}"))
        }
    }
}

fn describe(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::DiskFull => "the disk is full",
        ErrorCode::ReadOnly => "the database is read-only",
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
            "the database is locked by another process"
        }
        ErrorCode::SystemIoFailure => "the disk failed a read or write",
        ErrorCode::CannotOpen => "the database file cannot be opened",
        ErrorCode::PermissionDenied => "the database file may not be accessed",
        _ => "sqlite refused the operation",
    }
}
