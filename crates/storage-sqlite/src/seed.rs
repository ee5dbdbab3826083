//! Filling a database with a long history of finished orders, for the
//! benchmark that shows reads cost the same with ten thousand orders stored as
//! with a million. Never used by the system itself.

use stockroom_domain::ProductName;
use stockroom_storage::StorageError;

use crate::SqliteStorage;
use crate::sql::storage_error;

impl SqliteStorage {
    /// Adds `finished` fulfilled orders (one unit each, spread over 1,000
    /// customers) and `reserved` open reservations of `product`, with their
    /// histories and the stock that matches them, in one transaction. The
    /// database must hold no other orders of `product`.
    #[doc(hidden)]
    pub async fn seed_orders(
        &self,
        product: &ProductName,
        finished: u64,
        reserved: u64,
    ) -> Result<(), StorageError> {
        let path = self.path().to_owned();
        let (key, name) = (product.key(), product.as_str().to_owned());
        tokio::task::spawn_blocking(move || {
            let mut connection = crate::open_connection(&path, false)?;
            let transaction = connection.transaction().map_err(storage_error)?;
            let lines = format!(r#"[["{key}","{name}",1]]"#);
            transaction
                .execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                     INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                                         created_at_ms, updated_at_ms, lines)
                     SELECT printf('00000000-0000-7000-8000-%012d', i), 'c' || (i % 1000),
                            CASE WHEN i <= ?2 THEN 'fulfilled' ELSE 'reserved' END, NULL,
                            CASE WHEN i <= ?2 THEN 'charged' ELSE 'none' END,
                            CASE WHEN i <= ?2 THEN 3 ELSE 1 END, i, i, ?3
                     FROM n",
                    rusqlite::params![finished + reserved, finished, lines],
                )
                .map_err(storage_error)?;
            transaction
                .execute(
                    "INSERT INTO order_history (order_id, version, status, reason, at_ms)
                     SELECT id, v.version, v.status, v.reason, created_at_ms FROM orders
                     JOIN (SELECT 1 AS version, 'reserved' AS status, NULL AS reason
                           UNION ALL SELECT 2, 'reserved', 'payment_charged'
                           UNION ALL SELECT 3, 'fulfilled', NULL) AS v
                       ON v.version <= orders.version",
                    [],
                )
                .map_err(storage_error)?;
            transaction
                .execute(
                    "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
                     VALUES (?1, ?2, ?3 + 1000, ?3, ?4, ?3 + ?4 + 1000)
                     ON CONFLICT (product_key) DO UPDATE SET
                         quantity = quantity + excluded.quantity,
                         reserved = reserved + excluded.reserved,
                         sold = sold + excluded.sold,
                         received = received + excluded.received",
                    rusqlite::params![key, name, reserved as i64, finished as i64],
                )
                .map_err(storage_error)?;
            transaction.commit().map_err(storage_error)
        })
        .await
        .map_err(|error| StorageError::unavailable(format!("seeding failed: {error}")))?
    }
}
