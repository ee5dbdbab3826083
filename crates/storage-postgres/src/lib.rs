//! Stockroom's PostgreSQL storage backend, for running several data-service
//! instances against one database.
//!
//! Unlike the SQLite backend, which funnels every change through one writer
//! thread, here many connections write at once, from many processes. So every
//! guarantee comes from the database itself, never from an in-process lock:
//! - a batch locks the stock rows the rules will check before they decide
//!   (`FOR UPDATE`, by product key: one global order, so batches never
//!   deadlock on them) and reads its orders again under those locks; every
//!   write of an existing row is conditional on the figures or version it was
//!   loaded with, and an order changed meanwhile runs the batch again (see
//!   [`load`]);
//! - an idempotency key is stored with `ON CONFLICT DO NOTHING`, so of two
//!   processes answering one key at once, the second waits for the first and
//!   runs its batch again, replaying the stored answer;
//! - events are leased with `FOR UPDATE SKIP LOCKED`, so concurrent leasers
//!   never hand out the same delivery twice.
//!
//! Every call the rules decide is group-committed by default (see [`group`]):
//! collector tasks apply whatever calls are queued as one batch of the rules
//! in one transaction with one commit: loaded with a fixed number of
//! queries ([`load`]), decided by [`stockroom_domain::rules`], written with
//! one `unnest` statement per table ([`apply`]).
//!
//! Every method runs in one transaction and returns `Ok` only after the commit
//! (`synchronous_commit` is left on, so the commit is durable). A transaction
//! that PostgreSQL aborts for a concurrent one is retried up to
//! [`MAX_TRANSACTION_ATTEMPTS`] times. This crate is the only place in
//! Stockroom that knows PostgreSQL's SQL.

mod ahead;
mod apply;
mod bus;
mod failure;
pub mod group;
mod ledger;
mod load;
mod migrate;
mod open;
mod provider;
mod prune;
mod read;
mod sql;
mod vacuum;

pub(crate) use self::failure::{Failure, database_error};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use stockroom_domain::Consumer;
use stockroom_domain::outbox::DeadLetter;
use stockroom_domain::rules::{StockRecord, StoredOrder};
use stockroom_storage::batch::{Command, Reply};
use stockroom_storage::bus::{OutboxCommand, OutboxReply};
use stockroom_storage::{
    Charge, EventOutbox, InitialStock, LedgerStats, MAX_MOVEMENTS_PER_PAGE, Maintenance,
    MovementPage, OrderFilter, OrderFlow, OrderPage, OutboxCounts, ProviderLedger, Prune, Pruned,
    StatusCount, StorageError, Verdict, WriteStats, cause,
};
use tokio_postgres::NoTls;

use crate::group::GroupCommit;
pub use crate::group::GroupCommitConfig;
use crate::sql::{Tx, count_transaction_control};

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
    /// Whether the rules raise notices for other systems (webhooks are
    /// configured); without, nothing is written for them.
    pub notify: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            notify: false,
        }
    }
}

/// A PostgreSQL database used as Stockroom's storage.
pub struct PostgresStorage {
    pool: Pool,
    schema: Option<String>,
    statements: Arc<AtomicU64>,
    /// `None` when group commit is off: each call is then its own
    /// transaction, concurrently with the others.
    group_commit: Option<GroupCommit>,
    /// Whether the rules raise notices for other systems.
    notify: bool,
    /// Outbox rows deleted since the last vacuum.
    deleted_rows: Arc<AtomicU64>,
    vacuum: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        self.vacuum.abort();
    }
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

/// The planner's cost of reading a page out of order, relative to reading
/// the next one (1.0), on Stockroom's sessions: the value commonly used for
/// data on SSDs or in memory. A `-c random_page_cost=...` in the URL's
/// `options` takes precedence.
const RANDOM_PAGE_COST: f64 = 1.1;

/// The startup options of every session: Stockroom's defaults first, then
/// the URL's own options (which override the defaults, since a later `-c`
/// wins), then the options the storage cannot work without.
///
/// The default: each batch looks rows up by key in tables that live in the
/// buffer cache, and at PostgreSQL's default cost of a random page (4.0, set
/// for spinning disks) the planner preferred hashing the whole orders table
/// for every batch to a few hundred index probes, a cost that grew with the
/// stored orders. At [`RANDOM_PAGE_COST`] PostgreSQL spent a quarter less CPU
/// per order (docs/benchmarks.md, "Second pass").
fn session_options(from_url: Option<&str>, required: &[String]) -> String {
    let mut options = vec![format!("-c random_page_cost={RANDOM_PAGE_COST}")];
    options.extend(
        from_url
            .filter(|existing| !existing.trim().is_empty())
            .map(str::to_owned),
    );
    options.extend(required.iter().cloned());
    options.join(" ")
}

/// The pool of connections to `url`, each opened with the startup options
/// every session of the storage needs (its schema, custom plans).
fn connection_pool(url: &str, config: &PostgresConfig) -> Result<Pool, StorageError> {
    let mut pg_config: tokio_postgres::Config = url
        .parse()
        .map_err(|error| StorageError::Invalid(format!("invalid postgres url: {error}")))?;
    pg_config.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    if pg_config.get_application_name().is_none() {
        pg_config.application_name(APPLICATION_NAME);
    }
    // Startup options apply to every connection the pool opens,
    // including ones reopened after a failure, which a `SET` issued after
    // connecting would not.
    let mut startup = Vec::new();
    if let Some(schema) = &config.schema {
        check_schema_name(schema)?;
        // Quoted, so that a name that happens to be a keyword still works.
        startup.push(format!("-c search_path=\"{schema}\""));
    }
    // Every statement is planned for its actual arguments. A cached
    // generic plan is made from the first executions, when the outbox
    // and the orders may be nearly empty, and a plan fit for an empty
    // table (a scan) is kept when the table holds a backlog of events.
    // The statements are few per batch, so planning each costs little.
    startup.push("-c plan_cache_mode=force_custom_plan".to_owned());
    let options = session_options(pg_config.get_options(), &startup);
    pg_config.options(options);
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_millis(POOL_WAIT_TIMEOUT_MS)))
        .create_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
        .build()
        .map_err(|error| StorageError::Unavailable {
            context: "cannot build the postgres pool".into(),
            source: Some(cause(error)),
        })
}

impl PostgresStorage {
    /// Connects to the database at `url` (a `postgres://` URL or a libpq
    /// key-value string), creates the schema if asked to, and applies every
    /// migration the database does not have yet.
    ///
    /// Connections are made without TLS. Calls are group-committed with the
    /// default [`GroupCommitConfig`].
    pub async fn connect(
        url: &str,
        config: PostgresConfig,
    ) -> Result<PostgresStorage, StorageError> {
        PostgresStorage::connect_with_group_commit(url, config, GroupCommitConfig::default()).await
    }

    /// [`PostgresStorage::connect`], with group commit as `group_commit` says
    /// ([`GroupCommitConfig::OFF`] runs one transaction per call, which a
    /// benchmark may compare against).
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
        let pool = connection_pool(url, &config)?;
        let statements = Arc::new(AtomicU64::new(0));
        let group_commit = group_commit.enabled.then(|| {
            GroupCommit::start(
                pool.clone(),
                Arc::clone(&statements),
                group_commit,
                config.notify,
            )
        });
        let deleted_rows = Arc::new(AtomicU64::new(0));
        let vacuum = vacuum::start(
            pool.clone(),
            Arc::clone(&deleted_rows),
            Arc::clone(&statements),
        );
        let storage = PostgresStorage {
            pool,
            schema: config.schema,
            statements,
            group_commit,
            notify: config.notify,
            deleted_rows,
            vacuum,
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

/// Drops a schema and everything in it, if it exists: for benchmarks and
/// tests that give each run a schema of its own.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StorageError> {
    check_schema_name(schema)?;
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|error| database_error(error, 1))?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .map_err(|error| database_error(error, 1))?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// Terminates every session of the database that reports `application_name`
/// (but not the one asking), as an operator's `pg_terminate_backend` would:
/// for fault campaigns that cut a system's connections without touching
/// other clients of the same server. Returns how many were terminated.
pub async fn terminate_sessions(url: &str, application_name: &str) -> Result<u64, StorageError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|error| database_error(error, 1))?;
    let connection = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
             FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&application_name],
        )
        .await
        .map_err(|error| database_error(error, 1))?;
    drop(client);
    let _ = connection.await;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
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

/// Runs `$body` in one transaction on a pooled connection, commits it, and
/// runs it all again when PostgreSQL aborted it as a serialization failure or
/// deadlock victim. `write` transactions are READ COMMITTED; `read`
/// transactions are REPEATABLE READ and read-only, so a document assembled
/// from several queries is one snapshot. `$tx` is the counting [`Tx`].
macro_rules! transaction {
    ($storage:expr, $kind:ident, |$tx:ident| $body:expr) => {{
        let mut attempt: u32 = 1;
        loop {
            let run: Result<_, Failure> = async {
                let mut client = $storage.pool.get().await?;
                let transaction = transaction!(@begin $kind, client);
                count_transaction_control(&$storage.statements);
                let $tx = Tx::new(&transaction, &$storage.statements);
                let value = $body;
                transaction.commit().await.map_err(Failure::commit)?;
                Ok::<_, Failure>(value)
            }
            .await;
            match run {
                Ok(value) => break Ok(value),
                Err(failure) if failure.is_retryable() && attempt < MAX_TRANSACTION_ATTEMPTS => {
                    tracing::warn!(attempt, error = %failure, "postgres transaction aborted, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(
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

#[async_trait]
impl OrderFlow for PostgresStorage {
    async fn initialize_stock(&self, lines: Vec<InitialStock>) -> Result<bool, StorageError> {
        // Claiming the marker first makes concurrent first starts safe: a
        // second instance's insert waits on the primary key until the first
        // commits, then finds the stock loaded.
        let claimed = transaction!(self, write, |tx| tx
            .execute(
                "INSERT INTO meta (key, value) VALUES ('stock_loaded', $1)
                 ON CONFLICT (key) DO NOTHING",
                &[&now_ms().to_string()],
            )
            .await?)?;
        if claimed == 0 {
            return Ok(false);
        }
        for line in lines {
            self.restock(line.product, line.quantity).await?;
        }
        Ok(true)
    }

    async fn inventory(&self) -> Result<Vec<StockRecord>, StorageError> {
        transaction!(self, read, |tx| read::inventory(tx).await?)
    }

    async fn inventory_item(&self, product: &str) -> Result<Option<StockRecord>, StorageError> {
        let key = product.trim().to_lowercase();
        transaction!(self, read, |tx| read::inventory_item(tx, &key).await?)
    }

    async fn order(&self, order_id: &str) -> Result<Option<StoredOrder>, StorageError> {
        transaction!(self, read, |tx| read::order(tx, order_id).await?)
    }

    async fn movements(
        &self,
        product: &str,
        after: u64,
        limit: u32,
    ) -> Result<Option<MovementPage>, StorageError> {
        let key = product.trim().to_lowercase();
        let limit = limit.clamp(1, MAX_MOVEMENTS_PER_PAGE);
        transaction!(self, read, |tx| ledger::movements(tx, &key, after, limit)
            .await?)
    }

    async fn orders(&self, filter: OrderFilter) -> Result<OrderPage, StorageError> {
        transaction!(self, read, |tx| read::orders(tx, &filter).await?)
    }

    async fn order_counts(&self) -> Result<Vec<StatusCount>, StorageError> {
        transaction!(self, read, |tx| read::order_counts(tx).await?)
    }

    #[tracing::instrument(name = "storage", level = "debug", skip_all, fields(backend = "postgres", calls = command.size()))]
    async fn run(&self, command: Command) -> Result<Reply, StorageError> {
        match &self.group_commit {
            Some(group_commit) => group_commit.run(command).await,
            None => group::Batches {
                pool: self.pool.clone(),
                statements: Arc::clone(&self.statements),
                notify: self.notify,
                view: None,
            }
            .run_with_retries(&[command])
            .await
            .pop()
            .unwrap_or_else(|| Err(StorageError::unavailable("the batch gave no answer"))),
        }
    }
}

#[async_trait]
impl EventOutbox for PostgresStorage {
    /// Each bus call is a transaction of its own: a lease locks only the
    /// entries it takes (skipping those others are taking), receipts only
    /// the entries they name, so calls of many processes never wait for
    /// each other in a cycle.
    #[tracing::instrument(
        name = "storage",
        level = "debug",
        skip_all,
        fields(backend = "postgres")
    )]
    async fn run_outbox(&self, command: OutboxCommand) -> Result<OutboxReply, StorageError> {
        let (reply, deleted_rows) =
            transaction!(self, write, |tx| bus::run(tx, command.clone(), now_ms())
                .await?)?;
        self.deleted_rows.fetch_add(deleted_rows, Ordering::Relaxed);
        Ok(reply)
    }

    async fn dead_letters(
        &self,
        consumer: Consumer,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        transaction!(self, read, |tx| bus::dead_letters(tx, consumer, limit)
            .await?)
    }

    async fn outbox_counts(&self) -> Result<Vec<OutboxCounts>, StorageError> {
        transaction!(self, read, |tx| bus::counts(tx).await?)
    }
}

#[async_trait]
impl ProviderLedger for PostgresStorage {
    async fn provider_charge(&self, charges: Vec<Charge>) -> Result<Vec<Verdict>, StorageError> {
        if charges.is_empty() {
            return Ok(Vec::new());
        }
        transaction!(self, write, |tx| provider::charge(tx, &charges, now_ms())
            .await?)
    }

    async fn provider_stats(&self) -> Result<LedgerStats, StorageError> {
        transaction!(self, read, |tx| provider::stats(tx).await?)
    }
}

#[async_trait]
impl Maintenance for PostgresStorage {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn prune(&self, rules: Prune) -> Result<Pruned, StorageError> {
        transaction!(self, write, |tx| prune::prune(tx, rules).await?)
    }

    async fn probe(&self) -> Result<(), StorageError> {
        transaction!(self, write, |tx| tx
            .execute(
                "INSERT INTO meta (key, value) VALUES ('health_probe', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&now_ms().to_string()],
            )
            .await?)
        .map(|_| ())
    }

    fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn write_stats(&self) -> WriteStats {
        // Without group commit every call is its own transaction and nothing
        // queues: there is nothing to report.
        self.group_commit
            .as_ref()
            .map_or_else(WriteStats::default, GroupCommit::stats)
    }

    async fn close(&self) {
        // Calls already queued for group commit are finished first; every
        // other method commits before it returns, so after that closing the
        // pool is all that is left.
        if let Some(group_commit) = &self.group_commit {
            group_commit.flush().await;
        }
        self.vacuum.abort();
        self.close_pool();
    }
}

#[cfg(feature = "testing")]
#[async_trait]
impl stockroom_storage::testing::FaultInjection for PostgresStorage {
    async fn execute_unchecked(&self, statement: &str) -> Result<u64, StorageError> {
        transaction!(self, write, |tx| tx.execute(statement, &[]).await?)
    }
}

#[cfg(test)]
pub(crate) mod tests;
