//! Filling a database with a long history of finished orders, for the
//! benchmark that shows reads cost the same with ten thousand orders stored as
//! with a million. Never used by the system itself.

use stockroom_domain::ProductName;
use stockroom_storage::{StorageError, history};

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
                                         created_at_ms, updated_at_ms, lines, history)
                     SELECT printf('00000000-0000-7000-8000-%012d', i), 'c' || (i % 1000),
                            CASE WHEN i <= ?2 THEN 'fulfilled' ELSE 'reserved' END, NULL,
                            CASE WHEN i <= ?2 THEN 'charged' ELSE 'none' END,
                            CASE WHEN i <= ?2 THEN 3 ELSE 1 END, i, i, ?3,
                            replace(CASE WHEN i <= ?2 THEN ?4 ELSE ?5 END, 'AT', i)
                     FROM n",
                    rusqlite::params![
                        finished + reserved,
                        finished,
                        lines,
                        history::SEEDED_FULFILLED,
                        history::SEEDED_RESERVED
                    ],
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
