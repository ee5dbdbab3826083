//! The flash-sale baseline Stockroom is measured against: one durable
//! transaction per request, a single conditional `UPDATE … WHERE available >=
//! q` on a stock row, as most order APIs do it. It is correct (it cannot
//! oversell) but every order waits for its own commit flush, so a hot row is
//! limited by the disk. Used only by `stockroom bench`; not part of the order
//! flow.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use stockroom_storage::StorageError;
use tokio_postgres::NoTls;

/// Connections of the baseline's pool: enough for the database to be the
/// limit, not the pool.
pub const BASELINE_POOL_SIZE: usize = 32;

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    StorageError::Unavailable {
        context: "the per-request baseline failed".into(),
        source: Some(stockroom_storage::cause(error)),
    }
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
    ) -> Result<PerRequestStock, StorageError> {
        if !schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(StorageError::Invalid(format!(
                "invalid schema name {schema}"
            )));
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(unavailable)?;
        config.options(format!("-c search_path={schema} -c synchronous_commit=on"));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(BASELINE_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(unavailable)?;
        let client = pool.get().await.map_err(unavailable)?;
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
            .map_err(unavailable)?;
        let insert = client
            .prepare(&format!(
                "INSERT INTO {schema}.stock (product, available) VALUES ($1, $2)"
            ))
            .await
            .map_err(unavailable)?;
        for (product, available) in products {
            client
                .execute(&insert, &[product, available])
                .await
                .map_err(unavailable)?;
        }
        drop(client);
        Ok(PerRequestStock {
            pool,
            schema: schema.to_owned(),
        })
    }

    /// Takes `quantity` units in one autocommitted conditional update.
    /// Returns whether there were enough.
    pub async fn reserve(&self, product: &str, quantity: i64) -> Result<bool, StorageError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let statement = client
            .prepare_cached(&format!(
                "UPDATE {}.stock SET available = available - $2
                 WHERE product = $1 AND available >= $2",
                self.schema
            ))
            .await
            .map_err(unavailable)?;
        let changed = client
            .execute(&statement, &[&product, &quantity])
            .await
            .map_err(unavailable)?;
        Ok(changed == 1)
    }

    /// Units left of every product, summed.
    pub async fn total_available(&self) -> Result<i64, StorageError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = client
            .query_one(
                &format!(
                    "SELECT COALESCE(SUM(available), 0)::BIGINT FROM {}.stock",
                    self.schema
                ),
                &[],
            )
            .await
            .map_err(unavailable)?;
        Ok(row.get(0))
    }

    /// Drops the schema.
    pub async fn drop_schema(&self) -> Result<(), StorageError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await
            .map_err(unavailable)
    }
}
