//! Filling a database with a long history of finished orders, for the
//! benchmark that shows reads cost the same with ten thousand orders stored as
//! with a million. Never used by the system itself.

use stockroom_domain::ProductName;
use stockroom_storage::{StorageError, history};

use crate::sql::{Tx, count_transaction_control};
use crate::{Failure, MAX_TRANSACTION_ATTEMPTS, PostgresStorage, RETRY_BACKOFF_MS};

impl PostgresStorage {
    /// Adds `finished` fulfilled orders (one unit each, spread over 1,000
    /// customers) and `reserved` open reservations of `product`, with their
    /// histories and the stock that matches them, in one transaction, then
    /// refreshes the planner's statistics. The database must hold no other
    /// orders of `product`.
    #[doc(hidden)]
    pub async fn seed_orders(
        &self,
        product: &ProductName,
        finished: u64,
        reserved: u64,
    ) -> Result<(), StorageError> {
        let (key, name) = (product.key(), product.as_str().to_owned());
        let lines = format!(r#"[["{key}","{name}",1]]"#);
        let (finished_history, reserved_history) =
            (history::SEEDED_FULFILLED, history::SEEDED_RESERVED);
        let (total, finished, reserved) = (
            (finished + reserved) as i64,
            finished as i64,
            reserved as i64,
        );
        transaction!(self, write, |tx| {
            tx.execute(
                "INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                                     created_at_ms, updated_at_ms, lines, history)
                 SELECT '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), 'c' || (i % 1000),
                        CASE WHEN i <= $2::bigint THEN 'fulfilled' ELSE 'reserved' END, NULL,
                        CASE WHEN i <= $2::bigint THEN 'charged' ELSE 'none' END,
                        CASE WHEN i <= $2::bigint THEN 3 ELSE 1 END, i, i, $3,
                        replace(CASE WHEN i <= $2::bigint THEN $4 ELSE $5 END, 'AT', i::text)
                 FROM generate_series(1, $1::bigint) AS i",
                &[
                    &total,
                    &finished,
                    &lines,
                    &finished_history,
                    &reserved_history,
                ],
            )
            .await?;
            tx.execute(
                "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
                 VALUES ($1, $2, $3::bigint + 1000, $3::bigint, $4::bigint, $3::bigint + $4::bigint + 1000)
                 ON CONFLICT (product_key) DO UPDATE SET
                     quantity = inventory.quantity + excluded.quantity,
                     reserved = inventory.reserved + excluded.reserved,
                     sold = inventory.sold + excluded.sold,
                     received = inventory.received + excluded.received",
                &[&key, &name, &reserved, &finished],
            )
            .await?
        })?;
        self.execute_analyze().await
    }

    async fn execute_analyze(&self) -> Result<(), StorageError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| Failure::from(error).into_storage_error(1))?;
        client
            .batch_execute("ANALYZE")
            .await
            .map_err(|error| Failure::from(error).into_storage_error(1))
    }
}
