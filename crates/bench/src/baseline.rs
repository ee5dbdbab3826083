//! The flash-sale baseline Stockroom is measured against: one durable
//! transaction per request, a single conditional `UPDATE … WHERE available >=
//! q` on a stock row, as most order APIs do it. It is correct (it cannot
//! oversell) but every order waits for its own commit flush, so a hot row is
//! limited by the disk. It is the benchmark's own table in the benchmark's
//! own schema, written with its own connections: nothing of it is part of
//! the order flow or of Stockroom's storage backends.

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Connections of the baseline's pool: enough for the database to be the
/// limit, not the pool.
pub const BASELINE_POOL_SIZE: usize = 32;

/// What every failure of the baseline says it was doing.
const BASELINE_FAILED: &str = "the per-request baseline failed";

/// Checks that a schema name needs no quoting: it is written into SQL as it
/// is.
pub(crate) fn valid_schema(schema: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "invalid schema name {schema}"
    );
    Ok(())
}

/// A pool of [`BASELINE_POOL_SIZE`] connections whose sessions work in
/// `schema` and commit synchronously.
pub(crate) fn connect_pool(url: &str, schema: &str) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.options(format!("-c search_path={schema} -c synchronous_commit=on"));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(BASELINE_POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// A stock table with one row per product, in its own schema.
pub struct PerRequestStock {
    pool: Pool,
    schema: String,
}

impl PerRequestStock {
    /// Creates (or empties) `schema.stock` and fills it with `products`.
    pub async fn create(
        url: &str,
        schema: &str,
        products: &[(String, i64)],
    ) -> anyhow::Result<PerRequestStock> {
        valid_schema(schema)?;
        let pool = connect_pool(url, schema).context(BASELINE_FAILED)?;
        let client = pool.get().await.context(BASELINE_FAILED)?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 DROP TABLE IF EXISTS {schema}.stock;
                 CREATE TABLE {schema}.stock (
                     product TEXT PRIMARY KEY,
                     available BIGINT NOT NULL CHECK (available >= 0)
                 );"
            ))
            .await
            .context(BASELINE_FAILED)?;
        let insert = client
            .prepare(&format!(
                "INSERT INTO {schema}.stock (product, available) VALUES ($1, $2)"
            ))
            .await
            .context(BASELINE_FAILED)?;
        for (product, available) in products {
            client
                .execute(&insert, &[product, available])
                .await
                .context(BASELINE_FAILED)?;
        }
        drop(client);
        Ok(PerRequestStock {
            pool,
            schema: schema.to_owned(),
        })
    }

    /// Takes `quantity` units in one autocommitted conditional update.
    /// Returns whether there were enough.
    pub async fn reserve(&self, product: &str, quantity: i64) -> anyhow::Result<bool> {
        let client = self.pool.get().await.context(BASELINE_FAILED)?;
        let statement = client
            .prepare_cached(&format!(
                "UPDATE {}.stock SET available = available - $2
                 WHERE product = $1 AND available >= $2",
                self.schema
            ))
            .await
            .context(BASELINE_FAILED)?;
        let changed = client
            .execute(&statement, &[&product, &quantity])
            .await
            .context(BASELINE_FAILED)?;
        Ok(changed == 1)
    }

    /// Units left of every product, summed.
    pub async fn total_available(&self) -> anyhow::Result<i64> {
        total_available(&self.pool, &self.schema)
            .await
            .context(BASELINE_FAILED)
    }

    /// Drops the schema.
    pub async fn drop_schema(&self) -> anyhow::Result<()> {
        drop_schema(&self.pool, &self.schema)
            .await
            .context(BASELINE_FAILED)
    }
}

/// Units left of every product in a baseline's `schema`, summed: what its
/// oversold and undersold are counted from.
pub(crate) async fn total_available(pool: &Pool, schema: &str) -> anyhow::Result<i64> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            &format!("SELECT COALESCE(SUM(available), 0)::BIGINT FROM {schema}.stock"),
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Drops a baseline's `schema` and everything in it.
pub(crate) async fn drop_schema(pool: &Pool, schema: &str) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    Ok(())
}
