//! Running statements: every statement goes through [`Tx`], which prepares
//! it once per connection (the statement cache), counts it, and turns its
//! failure into a [`Failure`]. Statements sent without awaiting each other
//! are pipelined by the driver: they cost one round trip together.

use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::Failure;

/// The parameters of one statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A transaction and the counter of statements run in it.
#[derive(Clone, Copy)]
pub(crate) struct Tx<'a> {
    pub tx: &'a Transaction<'a>,
    statements: &'a AtomicU64,
}

impl<'a> Tx<'a> {
    pub fn new(tx: &'a Transaction<'a>, statements: &'a AtomicU64) -> Tx<'a> {
        Tx { tx, statements }
    }

    fn count(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    pub async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Failure> {
        self.count();
        let statement = self.tx.prepare_cached(sql).await?;
        Ok(self.tx.query(&statement, params).await?)
    }

    pub async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Failure> {
        self.count();
        let statement = self.tx.prepare_cached(sql).await?;
        Ok(self.tx.query_opt(&statement, params).await?)
    }

    /// Prepares a statement (once per connection) to be run by
    /// [`Tx::query_prepared`]. A statement prepared beforehand is sent the
    /// moment its query is first polled, so that of several pipelined
    /// statements it runs before any polled after it.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, Failure> {
        Ok(self.tx.prepare_cached(sql).await?)
    }

    pub async fn query_prepared(
        &self,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Vec<Row>, Failure> {
        self.count();
        Ok(self.tx.query(statement, params).await?)
    }

    /// Runs a statement and returns how many rows it changed.
    pub async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, Failure> {
        self.count();
        let statement = self.tx.prepare_cached(sql).await?;
        Ok(self.tx.execute(&statement, params).await?)
    }
}

/// Counts the statements that open and close a transaction, which the
/// driver sends itself.
pub(crate) fn count_transaction_control(statements: &AtomicU64) {
    statements.fetch_add(2, Ordering::Relaxed);
}
