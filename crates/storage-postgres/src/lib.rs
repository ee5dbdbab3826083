//! Stockroom's PostgreSQL storage backend, for running several data-service
//! instances against one database.
//!
//! Unlike the SQLite backend, which funnels every change through one writer
//! thread, here many connections write at once, from many processes. So every
//! guarantee comes from the database itself, never from an in-process lock:
//! - a reservation holds stock with a conditional `UPDATE ... WHERE quantity -
//!   reserved >= $1` per item, in the global order of product keys (the order
//!   [`stockroom_domain::OrderItems`] keeps), so concurrent reservations can
//!   neither oversell nor deadlock each other;
//! - an order's row is locked (`FOR UPDATE`) before its status changes, and the
//!   change is still conditional on its version;
//! - an idempotency key is claimed by inserting it first, so a concurrent
//!   request with the same key waits on the unique index until the first one
//!   commits and then replays its result;
//! - events are leased with `FOR UPDATE SKIP LOCKED`, so concurrent leasers
//!   never hand out the same delivery twice.
//!
//! Concurrent `reserve` calls are group-committed by default (see [`group`]):
//! one collector task applies whatever calls are queued in one transaction
//! with one commit, the guarantee the SQLite writer gives.
//!
//! Every method runs in one transaction and returns `Ok` only after the commit
//! (`synchronous_commit` is left on, so the commit is durable). A transaction
//! that PostgreSQL aborts as a serialization failure or a deadlock victim is
//! retried up to [`MAX_TRANSACTION_ATTEMPTS`] times. This crate is the only
//! place in Stockroom that knows PostgreSQL's SQL.

pub mod baseline;
pub mod group;
mod migrate;
mod read;
mod sql;
mod write;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use stockroom_contract::{
    Delivery, EffectResult, InventoryItem, Order, OrderList, PaymentRecord, ReserveRequest,
    ReserveResult, Settlement, StockLine,
};
use stockroom_domain::{ProductName, ReleaseReason};
use stockroom_storage::{OrderFilter, ReleaseOutcome, Storage, StorageError};
use tokio_postgres::NoTls;

use crate::group::GroupCommit;
pub use crate::group::GroupCommitConfig;
use tokio_postgres::error::SqlState;

/// How many connections a [`PostgresStorage`] keeps at most when the caller
/// does not say. Each data-service instance holds this many backend processes
/// of PostgreSQL's default `max_connections = 100`, so several instances fit
/// with room left for administration, and a reservation storm on one hot
/// product gains nothing from more (its transactions queue on one row lock).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long opening one connection may take before the database counts as
/// unreachable.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// How long a call waits for a free pooled connection before it gives up.
pub const POOL_WAIT_TIMEOUT_MS: u64 = 10_000;

/// How many times one call runs its transaction when PostgreSQL aborts it as a
/// serialization failure or a deadlock victim, the first run included.
pub const MAX_TRANSACTION_ATTEMPTS: u32 = 5;

/// The pause before the second run of an aborted transaction; each later run
/// waits this much longer again, so colliding callers drift apart.
pub const RETRY_BACKOFF_MS: u64 = 10;

/// The longest schema name PostgreSQL keeps without truncating it.
pub const MAX_SCHEMA_NAME_LENGTH: usize = 63;

/// The application name the connections report in `pg_stat_activity`, unless
/// the URL names one.
const APPLICATION_NAME: &str = "stockroom";

/// How to connect.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// The schema holding Stockroom's tables, created if missing and put on
    /// every connection's `search_path`. `None` uses the URL's default
    /// (normally `public`). Lower-case letters, digits and `_` only, so that
    /// the name never needs quoting rules to agree between tools.
    pub schema: Option<String>,
    /// The most connections kept open at once; at least 1.
    pub pool_size: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
}

/// A PostgreSQL database used as Stockroom's storage.
pub struct PostgresStorage {
    pool: Pool,
    schema: Option<String>,
    /// `None` when group commit is off: each `reserve` call is then its own
    /// transaction.
    group_commit: Option<GroupCommit>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresStorage")
            .field("schema", &self.schema)
            .field("pool", &self.pool.status())
            .field("group_commit", &self.group_commit.is_some())
            .finish()
    }
}

impl PostgresStorage {
    /// Connects to the database at `url` (a `postgres://` URL or a libpq
    /// key-value string), creates the schema if asked to, and applies every
    /// migration the database does not have yet.
    ///
    /// Connections are made without TLS. Reservations are group-committed
    /// with the default [`GroupCommitConfig`].
    pub async fn connect(
        url: &str,
        config: PostgresConfig,
    ) -> Result<PostgresStorage, StorageError> {
        PostgresStorage::connect_with_group_commit(url, config, GroupCommitConfig::default()).await
    }

    /// [`PostgresStorage::connect`], with group commit of reservations as
    /// `group_commit` says ([`GroupCommitConfig::OFF`] runs one transaction
    /// per call, which a benchmark may compare against).
    pub async fn connect_with_group_commit(
        url: &str,
        config: PostgresConfig,
        group_commit: GroupCommitConfig,
    ) -> Result<PostgresStorage, StorageError> {
        if config.pool_size == 0 {
            return Err(StorageError::Invalid(
                "the postgres pool size must be at least 1".into(),
            ));
        }
        let mut pg_config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| StorageError::Invalid(format!("invalid postgres url: {error}")))?;
        pg_config.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
        if pg_config.get_application_name().is_none() {
            pg_config.application_name(APPLICATION_NAME);
        }
        if let Some(schema) = &config.schema {
            check_schema_name(schema)?;
            // A startup option applies to every connection the pool opens,
            // including ones reopened after a failure, which a `SET` issued
            // after connecting would not.
            // Quoted, so that a name that happens to be a keyword still works.
            let search_path = format!("-c search_path=\"{schema}\"");
            let options = match pg_config.get_options() {
                Some(existing) if !existing.trim().is_empty() => {
                    format!("{existing} {search_path}")
                }
                _ => search_path,
            };
            pg_config.options(options);
        }
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_millis(POOL_WAIT_TIMEOUT_MS)))
            .create_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
            .build()
            .map_err(|error| {
                StorageError::Unavailable(format!("cannot build the postgres pool: {error}"))
            })?;
        let group_commit = group_commit
            .enabled
            .then(|| GroupCommit::start(pool.clone(), group_commit));
        let storage = PostgresStorage {
            pool,
            schema: config.schema,
            group_commit,
        };
        let mut client = storage
            .pool
            .get()
            .await
            .map_err(|error| Failure::from(error).into_storage_error(1))?;
        migrate::apply(&mut client, storage.schema.as_deref())
            .await
            .map_err(|failure| failure.into_storage_error(1))?;
        Ok(storage)
    }

    /// The schema this storage works in, when one was configured.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Closes the pool: idle connections are closed now, busy ones when they
    /// are returned, and every later call fails as unavailable. The same as
    /// [`Storage::close`], callable without awaiting.
    pub fn close_pool(&self) {
        self.pool.close();
    }
}

fn check_schema_name(schema: &str) -> Result<(), StorageError> {
    let mut characters = schema.chars();
    let starts_well = characters
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_');
    let rest_ok = characters.all(|character| {
        character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
    });
    if !starts_well || !rest_ok || schema.len() > MAX_SCHEMA_NAME_LENGTH {
        return Err(StorageError::Invalid(format!(
            "schema name {schema:?} must be 1 to {MAX_SCHEMA_NAME_LENGTH} lower-case letters, digits or underscores, not starting with a digit"
        )));
    }
    Ok(())
}

/// Why one run of a transaction failed: the database, the pool, or a
/// decision of the storage logic itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("{}", describe(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("cannot get a postgres connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Failure {
    /// Whether running the whole transaction again may succeed.
    fn is_retryable(&self) -> bool {
        match self {
            Failure::Database(error) => aborted_by_concurrency(error),
            _ => false,
        }
    }

    fn into_storage_error(self, attempts: u32) -> StorageError {
        match self {
            Failure::Storage(error) => error,
            Failure::Pool(deadpool_postgres::PoolError::Backend(error)) => {
                StorageError::Unavailable(format!(
                    "cannot connect to postgres: {}",
                    describe(&error)
                ))
            }
            Failure::Pool(error) => StorageError::Unavailable(format!(
                "cannot get a postgres connection: {}",
                with_causes(&error)
            )),
            Failure::Database(error) if aborted_by_concurrency(&error) => {
                StorageError::Unavailable(format!(
                    "gave up after {attempts} attempts: {}",
                    describe(&error)
                ))
            }
            // A CHECK constraint restates an invariant; tripping one means
            // the code tried to store an impossible state.
            Failure::Database(error) if error.code() == Some(&SqlState::CHECK_VIOLATION) => {
                StorageError::Inconsistent(describe(&error))
            }
            Failure::Database(error) => StorageError::Unavailable(describe(&error)),
        }
    }
}

/// Whether PostgreSQL aborted the transaction only because of a concurrent
/// one, so that running it again may succeed.
fn aborted_by_concurrency(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// The server's own message and SQLSTATE when there is one, which says more
/// than the driver's generic "db error".
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (sqlstate {})", db.message(), db.code().code()),
        None => with_causes(error),
    }
}

/// An error's message followed by its causes', because the driver's own
/// messages ("error connecting to server") leave out the reason.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let message = next.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = next.source();
    }
    text
}

/// Runs `$body` in one transaction on a pooled connection, commits it, and
/// runs it all again when PostgreSQL aborted it as a serialization failure or
/// deadlock victim. `write` transactions are READ COMMITTED, where each
/// conditional UPDATE re-checks its condition against the newest committed
/// row after waiting for its lock; `read` transactions are REPEATABLE READ and
/// read-only, so a document assembled from several queries is one snapshot.
macro_rules! transaction {
    ($storage:expr, $kind:ident, |$tx:ident| $body:expr) => {{
        let mut attempt: u32 = 1;
        loop {
            let run: Result<_, Failure> = async {
                let mut client = $storage.pool.get().await?;
                let $tx = transaction!(@begin $kind, client);
                let value = $body;
                $tx.commit().await?;
                Ok::<_, Failure>(value)
            }
            .await;
            match run {
                Ok(value) => break Ok(value),
                Err(failure) if failure.is_retryable() && attempt < MAX_TRANSACTION_ATTEMPTS => {
                    tracing::warn!(attempt, error = %failure, "postgres transaction aborted, retrying");
                    tokio::time::sleep(Duration::from_millis(
                        RETRY_BACKOFF_MS * u64::from(attempt),
                    ))
                    .await;
                    attempt += 1;
                }
                Err(failure) => break Err(failure.into_storage_error(attempt)),
            }
        }
    }};
    (@begin write, $client:ident) => {
        $client.transaction().await?
    };
    (@begin read, $client:ident) => {
        $client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?
    };
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The same RFC 3339 form the SQLite backend writes: UTC, milliseconds, `Z`.
pub(crate) fn format_time(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

#[async_trait]
impl Storage for PostgresStorage {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn initialize_stock(&self, lines: Vec<StockLine>) -> Result<bool, StorageError> {
        transaction!(self, write, |tx| write::initialize_stock(&tx, &lines)
            .await?)
    }

    async fn inventory(&self) -> Result<Vec<InventoryItem>, StorageError> {
        transaction!(self, read, |tx| read::inventory(&tx).await?)
    }

    async fn inventory_item(&self, product: &str) -> Result<Option<InventoryItem>, StorageError> {
        let key = product.trim().to_lowercase();
        transaction!(self, read, |tx| read::inventory_item(&tx, &key).await?)
    }

    async fn restock(
        &self,
        product: ProductName,
        quantity: u64,
    ) -> Result<InventoryItem, StorageError> {
        transaction!(self, write, |tx| write::restock(&tx, &product, quantity)
            .await?)
    }

    async fn reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResult>, StorageError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(group_commit) = &self.group_commit {
            return group_commit.reserve(requests).await;
        }
        transaction!(self, write, |tx| write::reserve_all(&tx, &requests).await?)
    }

    async fn order(&self, order_id: &str) -> Result<Option<Order>, StorageError> {
        transaction!(self, read, |tx| read::order(&tx, order_id).await?)
    }

    async fn orders(&self, filter: OrderFilter) -> Result<OrderList, StorageError> {
        transaction!(self, read, |tx| read::orders(&tx, &filter).await?)
    }

    async fn record_payments(
        &self,
        payments: Vec<PaymentRecord>,
    ) -> Result<Vec<EffectResult>, StorageError> {
        if payments.is_empty() {
            return Ok(Vec::new());
        }
        transaction!(self, write, |tx| {
            let mut results = Vec::with_capacity(payments.len());
            for payment in &payments {
                results.push(write::record_payment(&tx, payment).await?);
            }
            results
        })
    }

    async fn settle(
        &self,
        settlements: Vec<Settlement>,
    ) -> Result<Vec<EffectResult>, StorageError> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        transaction!(self, write, |tx| {
            let mut results = Vec::with_capacity(settlements.len());
            for settlement in &settlements {
                results.push(write::settle(&tx, settlement).await?);
            }
            results
        })
    }

    async fn release(
        &self,
        order_id: &str,
        reason: ReleaseReason,
    ) -> Result<ReleaseOutcome, StorageError> {
        transaction!(self, write, |tx| write::release(&tx, order_id, reason)
            .await?)
    }

    async fn expire(
        &self,
        older_than_ms: u64,
        max_orders: u32,
    ) -> Result<Vec<String>, StorageError> {
        transaction!(self, write, |tx| write::expire(
            &tx,
            older_than_ms,
            max_orders
        )
        .await?)
    }

    async fn lease_events(
        &self,
        consumer: &str,
        max_events: u32,
        lease_ms: u64,
    ) -> Result<Vec<Delivery>, StorageError> {
        transaction!(self, write, |tx| write::lease_events(
            &tx, consumer, max_events, lease_ms
        )
        .await?)
    }

    async fn acknowledge_events(
        &self,
        consumer: &str,
        delivery_ids: Vec<i64>,
    ) -> Result<(), StorageError> {
        if delivery_ids.is_empty() {
            return Ok(());
        }
        transaction!(self, write, |tx| write::acknowledge_events(
            &tx,
            consumer,
            &delivery_ids
        )
        .await?)
    }

    async fn dead_letter_count(&self, consumer: &str) -> Result<u64, StorageError> {
        transaction!(self, read, |tx| read::dead_letter_count(&tx, consumer)
            .await?)
    }

    async fn close(&self) {
        // Reservations already queued for group commit are finished first;
        // every other method commits before it returns, so after that
        // closing the pool is all that is left.
        if let Some(group_commit) = &self.group_commit {
            group_commit.flush().await;
        }
        self.close_pool();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        assert!(check_schema_name("stockroom").is_ok());
        assert!(check_schema_name("_test_1").is_ok());
        assert!(check_schema_name("").is_err());
        assert!(check_schema_name("1abc").is_err());
        assert!(check_schema_name("Upper").is_err());
        assert!(check_schema_name("a b").is_err());
        assert!(check_schema_name("a;drop").is_err());
        assert!(check_schema_name(&"a".repeat(MAX_SCHEMA_NAME_LENGTH + 1)).is_err());
    }

    #[test]
    fn times_are_rfc3339_with_milliseconds() {
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
