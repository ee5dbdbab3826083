//! The second PostgreSQL baseline: an order's whole life as a per-request
//! web application writes it. In the request, one transaction decrements the
//! stock conditionally (`UPDATE … WHERE available >= q`) and inserts the
//! order, a second marks it paid, a third moves its units from reserved to
//! sold and the order to fulfilled; each commits with
//! `synchronous_commit=on` before the next begins, and the client hears the
//! answer after the last. It does the work Stockroom does for an order
//! (reservation, an order row, payment, settlement) without batching, so
//! `postgres-per-request` stays the floor and this is the fair comparison.
//! Its tables live in the benchmark's own schema, written with its own
//! connections; nothing of it is part of Stockroom.

use anyhow::Context;
use deadpool_postgres::Pool;
use tokio_postgres::Statement;

use crate::baseline::{connect_pool, valid_schema};

/// What every failure of this baseline says it was doing.
const FULL_FLOW_FAILED: &str = "the full-flow per-request baseline failed";

/// A stock table with one row per product and an orders table, in their
/// own schema.
pub struct FullFlowStock {
    pool: Pool,
    schema: String,
}

/// What the schema holds: the stock with its reserved and sold units, and
/// the orders with what a listing by customer needs (its index), as an
/// ordinary order API keeps them.
fn schema_sql(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         DROP TABLE IF EXISTS {schema}.orders;
         DROP TABLE IF EXISTS {schema}.stock;
         CREATE TABLE {schema}.stock (
             product TEXT PRIMARY KEY,
             available BIGINT NOT NULL CHECK (available >= 0),
             reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
             sold BIGINT NOT NULL DEFAULT 0 CHECK (sold >= 0)
         );
         CREATE TABLE {schema}.orders (
             id BIGSERIAL PRIMARY KEY,
             customer_id TEXT NOT NULL,
             product TEXT NOT NULL REFERENCES {schema}.stock (product),
             quantity BIGINT NOT NULL CHECK (quantity > 0),
             status TEXT NOT NULL,
             created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
             updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );
         CREATE INDEX orders_by_customer ON {schema}.orders (customer_id, id);"
    )
}

impl FullFlowStock {
    /// Creates (or empties) the schema's tables and fills the stock with
    /// `products`.
    pub async fn create(
        url: &str,
        schema: &str,
        products: &[(String, i64)],
    ) -> anyhow::Result<FullFlowStock> {
        valid_schema(schema)?;
        let pool = connect_pool(url, schema).context(FULL_FLOW_FAILED)?;
        let client = pool.get().await.context(FULL_FLOW_FAILED)?;
        client
            .batch_execute(&schema_sql(schema))
            .await
            .context(FULL_FLOW_FAILED)?;
        let insert = client
            .prepare(&format!(
                "INSERT INTO {schema}.stock (product, available) VALUES ($1, $2)"
            ))
            .await
            .context(FULL_FLOW_FAILED)?;
        for (product, available) in products {
            client
                .execute(&insert, &[product, available])
                .await
                .context(FULL_FLOW_FAILED)?;
        }
        drop(client);
        Ok(FullFlowStock {
            pool,
            schema: schema.to_owned(),
        })
    }

    /// Places, pays and fulfils one order in three committed transactions.
    /// Returns whether there was stock (no order is written when not).
    pub async fn place(
        &self,
        customer: &str,
        product: &str,
        quantity: i64,
    ) -> anyhow::Result<bool> {
        let mut client = self.pool.get().await.context(FULL_FLOW_FAILED)?;
        let statements = Statements::prepare(&client, &self.schema)
            .await
            .context(FULL_FLOW_FAILED)?;

        let transaction = client.transaction().await.context(FULL_FLOW_FAILED)?;
        if transaction
            .execute(&statements.take, &[&product, &quantity])
            .await
            .context(FULL_FLOW_FAILED)?
            != 1
        {
            transaction.rollback().await.context(FULL_FLOW_FAILED)?;
            return Ok(false);
        }
        let id: i64 = transaction
            .query_one(&statements.insert, &[&customer, &product, &quantity])
            .await
            .context(FULL_FLOW_FAILED)?
            .get(0);
        transaction.commit().await.context(FULL_FLOW_FAILED)?;

        // Paying is one statement, so its transaction is the autocommit.
        let paid = client
            .execute(&statements.pay, &[&id])
            .await
            .context(FULL_FLOW_FAILED)?;
        anyhow::ensure!(paid == 1, "order {id} was not reserved when paid");

        let transaction = client.transaction().await.context(FULL_FLOW_FAILED)?;
        transaction
            .execute(&statements.sell, &[&product, &quantity])
            .await
            .context(FULL_FLOW_FAILED)?;
        let fulfilled = transaction
            .execute(&statements.fulfil, &[&id])
            .await
            .context(FULL_FLOW_FAILED)?;
        anyhow::ensure!(fulfilled == 1, "order {id} was not paid when fulfilled");
        transaction.commit().await.context(FULL_FLOW_FAILED)?;
        Ok(true)
    }

    /// Units left of every product, summed.
    pub async fn total_available(&self) -> anyhow::Result<i64> {
        crate::baseline::total_available(&self.pool, &self.schema)
            .await
            .context(FULL_FLOW_FAILED)
    }

    /// Drops the schema.
    pub async fn drop_schema(&self) -> anyhow::Result<()> {
        crate::baseline::drop_schema(&self.pool, &self.schema)
            .await
            .context(FULL_FLOW_FAILED)
    }
}

/// The statements of one order's life, prepared once per connection.
struct Statements {
    /// Reserves: takes the units if enough are available.
    take: Statement,
    insert: Statement,
    pay: Statement,
    /// Settles the stock: the reserved units become sold.
    sell: Statement,
    fulfil: Statement,
}

impl Statements {
    async fn prepare(
        client: &deadpool_postgres::Client,
        schema: &str,
    ) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            take: client
                .prepare_cached(&format!(
                    "UPDATE {schema}.stock
                     SET available = available - $2, reserved = reserved + $2
                     WHERE product = $1 AND available >= $2"
                ))
                .await?,
            insert: client
                .prepare_cached(&format!(
                    "INSERT INTO {schema}.orders (customer_id, product, quantity, status)
                     VALUES ($1, $2, $3, 'reserved') RETURNING id"
                ))
                .await?,
            pay: client
                .prepare_cached(&format!(
                    "UPDATE {schema}.orders SET status = 'paid', updated_at = now()
                     WHERE id = $1 AND status = 'reserved'"
                ))
                .await?,
            sell: client
                .prepare_cached(&format!(
                    "UPDATE {schema}.stock SET reserved = reserved - $2, sold = sold + $2
                     WHERE product = $1"
                ))
                .await?,
            fulfil: client
                .prepare_cached(&format!(
                    "UPDATE {schema}.orders SET status = 'fulfilled', updated_at = now()
                     WHERE id = $1 AND status = 'paid'"
                ))
                .await?,
        })
    }
}
