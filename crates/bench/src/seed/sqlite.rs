//! Seeding a SQLite database for the growth benchmark, through a connection
//! of its own beside the storage's writer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};
use stockroom_domain::ProductName;

use super::{
    SEEDED_CUSTOMERS, SEEDED_FULFILLED, SEEDED_RESERVED, SEEDED_SPARE_UNITS, seeded_lines,
};

/// How long the seeding connection waits for the storage's writer to let go
/// of the database: the writer is idle while a benchmark seeds, so this is
/// only ever a short wait.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Adds `finished` fulfilled orders (one unit each, spread over
/// [`SEEDED_CUSTOMERS`] customers) and `reserved` open reservations of
/// `product`, with their histories and the stock that matches them, in one
/// transaction, to the database file at `database` (which
/// `SqliteStorage::open_in_directory` created and migrated). The database
/// must hold no other orders of `product`.
pub async fn seed_orders(
    database: &Path,
    product: &ProductName,
    finished: u64,
    reserved: u64,
) -> anyhow::Result<()> {
    let database: PathBuf = database.to_owned();
    let (key, name, lines) = (
        product.key(),
        product.as_str().to_owned(),
        seeded_lines(product),
    );
    tokio::task::spawn_blocking(move || {
        let mut connection = open(&database)?;
        let transaction = connection.transaction()?;
        transaction.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                                 created_at_ms, updated_at_ms, lines, history)
             SELECT printf('00000000-0000-7000-8000-%012d', i), 'c' || (i % ?6),
                    CASE WHEN i <= ?2 THEN 'fulfilled' ELSE 'reserved' END, NULL,
                    CASE WHEN i <= ?2 THEN 'charged' ELSE 'none' END,
                    CASE WHEN i <= ?2 THEN 3 ELSE 1 END, i, i, ?3,
                    replace(CASE WHEN i <= ?2 THEN ?4 ELSE ?5 END, 'AT', i)
             FROM n",
            rusqlite::params![
                finished + reserved,
                finished,
                lines,
                SEEDED_FULFILLED,
                SEEDED_RESERVED,
                SEEDED_CUSTOMERS
            ],
        )?;
        transaction.execute(
            "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
             VALUES (?1, ?2, ?3 + ?5, ?3, ?4, ?3 + ?4 + ?5)
             ON CONFLICT (product_key) DO UPDATE SET
                 quantity = quantity + excluded.quantity,
                 reserved = reserved + excluded.reserved,
                 sold = sold + excluded.sold,
                 received = received + excluded.received",
            rusqlite::params![
                key,
                name,
                reserved as i64,
                finished as i64,
                SEEDED_SPARE_UNITS
            ],
        )?;
        transaction.commit()?;
        Ok::<(), rusqlite::Error>(())
    })
    .await
    .context("seeding SQLite stopped before it finished")?
    .context("cannot seed the SQLite database")
}

fn open(database: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    Ok(connection)
}
