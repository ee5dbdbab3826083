//! Seeding a PostgreSQL schema for the growth benchmark, through a
//! connection of its own.

use anyhow::Context;
use stockroom_domain::ProductName;
use tokio_postgres::NoTls;

use super::{
    SEEDED_CUSTOMERS, SEEDED_FULFILLED, SEEDED_RESERVED, SEEDED_SPARE_UNITS, seeded_lines,
};

/// Adds `finished` fulfilled orders (one unit each, spread over
/// [`SEEDED_CUSTOMERS`] customers) and `reserved` open reservations of
/// `product`, with their histories and the stock that matches them, in one
/// transaction, to the tables in `schema` of the database at `url` (which
/// `PostgresStorage::connect` created and migrated), then refreshes the
/// planner's statistics so the reads are timed with the plans a long-running
/// database would have. The schema must hold no other orders of `product`.
pub async fn seed_orders(
    url: &str,
    schema: &str,
    product: &ProductName,
    finished: u64,
    reserved: u64,
) -> anyhow::Result<()> {
    let mut config: tokio_postgres::Config = url.parse().context("an invalid PostgreSQL URL")?;
    config.options(format!("-c search_path=\"{schema}\""));
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .context("cannot connect to PostgreSQL to seed it")?;
    let connection = tokio::spawn(connection);
    let seeded = insert(&mut client, product, finished, reserved).await;
    let analyzed = match seeded {
        Ok(()) => client.batch_execute("ANALYZE").await.map_err(Into::into),
        Err(error) => Err(error),
    };
    drop(client);
    let _ = connection.await;
    analyzed.context("cannot seed the PostgreSQL database")
}

async fn insert(
    client: &mut tokio_postgres::Client,
    product: &ProductName,
    finished: u64,
    reserved: u64,
) -> anyhow::Result<()> {
    let (key, name, lines) = (
        product.key(),
        product.as_str().to_owned(),
        seeded_lines(product),
    );
    let (total, finished, reserved) = (
        (finished + reserved) as i64,
        finished as i64,
        reserved as i64,
    );
    let customers = SEEDED_CUSTOMERS as i64;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                                 created_at_ms, updated_at_ms, lines, history)
             SELECT '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), 'c' || (i % $6::bigint),
                    CASE WHEN i <= $2::bigint THEN 'fulfilled' ELSE 'reserved' END, NULL,
                    CASE WHEN i <= $2::bigint THEN 'charged' ELSE 'none' END,
                    CASE WHEN i <= $2::bigint THEN 3 ELSE 1 END, i, i, $3,
                    replace(CASE WHEN i <= $2::bigint THEN $4 ELSE $5 END, 'AT', i::text)
             FROM generate_series(1, $1::bigint) AS i",
            &[
                &total,
                &finished,
                &lines,
                &SEEDED_FULFILLED,
                &SEEDED_RESERVED,
                &customers,
            ],
        )
        .await?;
    // The reservations are named where the sweep and the listing of
    // reserved orders find them, as a batch that reserves names its orders,
    // with the oldest one's creation time.
    transaction
        .execute(
            "INSERT INTO open_orders (due_at_ms, ids, oldest_created_at_ms)
             SELECT 0, array_agg(id ORDER BY id), MIN(created_at_ms) FROM orders
             WHERE status = 'reserved' HAVING count(*) > 0",
            &[],
        )
        .await?;
    transaction
        .execute(
            "INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
             VALUES ($1, $2, $3::bigint + $5::bigint, $3::bigint, $4::bigint,
                     $3::bigint + $4::bigint + $5::bigint)
             ON CONFLICT (product_key) DO UPDATE SET
                 quantity = inventory.quantity + excluded.quantity,
                 reserved = inventory.reserved + excluded.reserved,
                 sold = inventory.sold + excluded.sold,
                 received = inventory.received + excluded.received",
            &[&key, &name, &reserved, &finished, &SEEDED_SPARE_UNITS],
        )
        .await?;
    transaction.commit().await?;
    Ok(())
}
