//! The embedded event bus's writes: leasing a consumer's next events,
//! acknowledging them, and moving poison aside. Rows are picked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent leasers never hand out the same
//! delivery while it is leased and never wait for each other.

use stockroom_contract::{Delivery, Event, format_time};
use stockroom_storage::MAX_DELIVERY_ATTEMPTS;

use crate::Failure;
use crate::load::inconsistent;
use crate::sql::Tx;

pub(crate) async fn lease_events(
    tx: Tx<'_>,
    consumer: &str,
    max_events: u32,
    lease_ms: u64,
    now: i64,
) -> Result<Vec<Delivery>, Failure> {
    let max_attempts = MAX_DELIVERY_ATTEMPTS as i32;
    // Events handed out too often without an acknowledgement are poison:
    // move them aside so they stop blocking the rest. SKIP LOCKED keeps two
    // leasers from waiting on each other's rows in opposite orders.
    let dead = tx
        .execute(
            "WITH doomed AS (
             SELECT consumer, seq FROM deliveries
             WHERE consumer = $1 AND attempts >= $2 AND leased_until_ms <= $3
             FOR UPDATE SKIP LOCKED
         ), removed AS (
             DELETE FROM deliveries
             USING doomed
             WHERE deliveries.consumer = doomed.consumer AND deliveries.seq = doomed.seq
             RETURNING deliveries.consumer, deliveries.seq, deliveries.attempts
         )
         INSERT INTO dead_letters (consumer, seq, attempts, at_ms)
         SELECT consumer, seq, attempts, $3 FROM removed
         ON CONFLICT DO NOTHING",
            &[&consumer, &max_attempts, &now],
        )
        .await?;
    if dead > 0 {
        tracing::warn!(
            consumer,
            count = dead,
            "events dead-lettered after too many attempts"
        );
    }
    let leased_until = now.saturating_add(lease_ms.min(i64::MAX as u64) as i64);
    // Pick and lease in one statement. A row another leaser has locked is
    // skipped, not waited for, so concurrent leasers never receive the same
    // delivery while it is leased.
    let rows = tx
        .query(
            "WITH picked AS (
             SELECT consumer, seq FROM deliveries
             WHERE consumer = $1 AND leased_until_ms <= $2 AND attempts < $3
             ORDER BY seq LIMIT $4
             FOR UPDATE SKIP LOCKED
         ), leased AS (
             UPDATE deliveries SET attempts = deliveries.attempts + 1, leased_until_ms = $5
             FROM picked
             WHERE deliveries.consumer = picked.consumer AND deliveries.seq = picked.seq
             RETURNING deliveries.seq, deliveries.attempts
         )
         SELECT leased.seq, leased.attempts, outbox.event_id, outbox.kind, outbox.order_id,
                outbox.order_version, outbox.total_units, outbox.occurred_at_ms
         FROM leased JOIN outbox ON outbox.seq = leased.seq
         ORDER BY leased.seq",
            &[
                &consumer,
                &now,
                &max_attempts,
                &i64::from(max_events),
                &leased_until,
            ],
        )
        .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        let attempt: i32 = row.try_get(1)?;
        let kind: String = row.try_get(3)?;
        let total_units: i64 = row.try_get(6)?;
        deliveries.push(Delivery {
            delivery_id: row.try_get(0)?,
            attempt: attempt as u32,
            event: Event {
                event_id: row.try_get(2)?,
                kind: kind.parse().map_err(inconsistent)?,
                order_id: row.try_get(4)?,
                order_version: row.try_get(5)?,
                occurred_at: format_time(row.try_get(7)?),
                total_units: total_units as u64,
            },
        });
    }
    Ok(deliveries)
}

pub(crate) async fn acknowledge_events(
    tx: Tx<'_>,
    consumer: &str,
    delivery_ids: &[i64],
) -> Result<(), Failure> {
    tx.execute(
        "DELETE FROM deliveries WHERE consumer = $1 AND seq = ANY($2)",
        &[&consumer, &delivery_ids],
    )
    .await?;
    Ok(())
}
