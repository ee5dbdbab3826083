//! The embedded event bus's writes: leasing a consumer's next events, and
//! settling them (acknowledged, released, or rejected as poison), listing
//! and redriving dead letters. Each is one statement. Rows are picked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent leasers never hand out the same
//! event while it is leased and never wait for each other.

use stockroom_contract::{DeadLetter, Delivery, Event, Receipt, format_time, parse_time};
use stockroom_domain::Consumer;
use stockroom_storage::{DeliveryOutcome, MAX_REJECTIONS, OutboxCounts};
use tokio_postgres::Row;

use crate::Failure;
use crate::load::inconsistent;
use crate::sql::Tx;

/// The columns [`event`] reads, in its order.
const EVENT_COLUMNS: &str = "seq, deliveries, rejections, event_id, kind, order_id, order_version, total_units, occurred_at_ms, trace_parent";

/// How many columns [`EVENT_COLUMNS`] names: the index of the first column
/// a query selects after them.
const EVENT_COLUMN_COUNT: usize = 10;

/// The event of a row of [`EVENT_COLUMNS`].
fn event(row: &Row) -> Result<Event, Failure> {
    let kind: String = row.try_get(4)?;
    let total_units: i64 = row.try_get(7)?;
    Ok(Event {
        event_id: row.try_get(3)?,
        kind: kind.parse().map_err(inconsistent)?,
        order_id: row.try_get(5)?,
        order_version: row.try_get(6)?,
        total_units: total_units as u64,
        occurred_at: format_time(row.try_get(8)?),
        trace_parent: row.try_get(9)?,
    })
}

fn count(row: &Row, index: usize) -> Result<u32, Failure> {
    let value: i32 = row.try_get(index)?;
    Ok(value.max(0) as u32)
}

/// Leases up to `max_events` of `consumer`'s events whose lease ran out (or
/// that were never leased) until `now + lease_ms`, under `token`, and returns
/// them: one statement that picks, leases and reads.
pub(crate) async fn lease_events(
    tx: Tx<'_>,
    consumer: Consumer,
    max_events: u32,
    lease_ms: u64,
    token: &str,
    now: i64,
) -> Result<Vec<Delivery>, Failure> {
    let leased_until = now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
    let rows = tx
        .query(
            "WITH picked AS (
                 SELECT seq FROM outbox
                 WHERE consumer = $1 AND dead_at_ms IS NULL AND leased_until_ms <= $2
                 ORDER BY seq LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE outbox
             SET deliveries = outbox.deliveries + 1, leased_until_ms = $4, lease_token = $5
             FROM picked WHERE outbox.seq = picked.seq
             RETURNING outbox.seq, outbox.deliveries, outbox.rejections, outbox.event_id,
                       outbox.kind, outbox.order_id, outbox.order_version, outbox.total_units,
                       outbox.occurred_at_ms, outbox.trace_parent",
            &[
                &consumer.as_str(),
                &now,
                &i64::from(max_events),
                &leased_until,
                &token,
            ],
        )
        .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        deliveries.push(Delivery {
            delivery_id: row.try_get(0)?,
            lease_token: token.to_owned(),
            attempt: count(row, 1)?,
            event: event(row)?,
        });
    }
    deliveries.sort_by_key(|delivery| delivery.delivery_id);
    Ok(deliveries)
}

/// Settles deliveries whose lease the receipts prove.
pub(crate) async fn finish(
    tx: Tx<'_>,
    consumer: Consumer,
    outcome: DeliveryOutcome,
    receipts: &[Receipt],
    now: i64,
) -> Result<u64, Failure> {
    let seqs: Vec<i64> = receipts.iter().map(|receipt| receipt.delivery_id).collect();
    let tokens: Vec<&str> = receipts
        .iter()
        .map(|receipt| receipt.lease_token.as_str())
        .collect();
    // Each receipt finds its row through the primary key.
    let receipts = "unnest($2::bigint[], $3::text[]) AS receipt (seq, lease_token)";
    let matching = "outbox.seq = receipt.seq AND outbox.lease_token = receipt.lease_token
                    AND outbox.consumer = $1 AND outbox.dead_at_ms IS NULL";
    let changed = match outcome {
        DeliveryOutcome::Acknowledge => {
            tx.execute(
                &format!("DELETE FROM outbox USING {receipts} WHERE {matching}"),
                &[&consumer.as_str(), &seqs, &tokens],
            )
            .await?
        }
        DeliveryOutcome::Release => {
            tx.execute(
                &format!(
                    "UPDATE outbox SET leased_until_ms = 0, lease_token = NULL
                     FROM {receipts} WHERE {matching}"
                ),
                &[&consumer.as_str(), &seqs, &tokens],
            )
            .await?
        }
        DeliveryOutcome::Reject => {
            let changed = tx
                .execute(
                    &format!(
                        "UPDATE outbox
                         SET rejections = outbox.rejections + 1, leased_until_ms = 0,
                             lease_token = NULL,
                             dead_at_ms = CASE WHEN outbox.rejections + 1 >= $4
                                               THEN $5::bigint END
                         FROM {receipts} WHERE {matching}"
                    ),
                    &[
                        &consumer.as_str(),
                        &seqs,
                        &tokens,
                        &(MAX_REJECTIONS as i32),
                        &now,
                    ],
                )
                .await?;
            tracing::warn!(
                consumer = consumer.as_str(),
                count = changed,
                "events rejected as poison"
            );
            changed
        }
    };
    Ok(changed)
}

/// Up to `limit` dead letters of `consumer`, oldest first.
pub(crate) async fn dead_letters(
    tx: Tx<'_>,
    consumer: Consumer,
    limit: u32,
) -> Result<Vec<DeadLetter>, Failure> {
    let rows = tx
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS}, dead_at_ms FROM outbox
                 WHERE consumer = $1 AND dead_at_ms IS NOT NULL ORDER BY seq LIMIT $2"
            ),
            &[&consumer.as_str(), &i64::from(limit)],
        )
        .await?;
    let mut letters = Vec::with_capacity(rows.len());
    for row in &rows {
        letters.push(DeadLetter {
            delivery_id: row.try_get(0)?,
            consumer: consumer.as_str().to_owned(),
            deliveries: count(row, 1)?,
            rejections: count(row, 2)?,
            dead_at: format_time(row.try_get(EVENT_COLUMN_COUNT)?),
            event: event(row)?,
        });
    }
    Ok(letters)
}

/// Puts dead letters back in line with a clean slate.
pub(crate) async fn redrive(
    tx: Tx<'_>,
    consumer: Consumer,
    delivery_ids: &[i64],
) -> Result<u64, Failure> {
    tx.execute(
        "UPDATE outbox
         SET dead_at_ms = NULL, rejections = 0, leased_until_ms = 0, lease_token = NULL
         WHERE consumer = $1 AND dead_at_ms IS NOT NULL AND seq = ANY($2)",
        &[&consumer.as_str(), &delivery_ids],
    )
    .await
}

pub(crate) async fn dead_letter_count(tx: Tx<'_>, consumer: Consumer) -> Result<u64, Failure> {
    let count: i64 = tx
        .query_opt(
            "SELECT COUNT(*) FROM outbox WHERE consumer = $1 AND dead_at_ms IS NOT NULL",
            &[&consumer.as_str()],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(0);
    Ok(count as u64)
}

/// Keeps refused events as dead letters.
pub(crate) async fn bury(
    tx: Tx<'_>,
    consumer: Consumer,
    events: &[Event],
    now: i64,
) -> Result<u64, Failure> {
    let ids: Vec<&str> = events.iter().map(|event| event.event_id.as_str()).collect();
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    let orders: Vec<&str> = events.iter().map(|event| event.order_id.as_str()).collect();
    let versions: Vec<i64> = events.iter().map(|event| event.order_version).collect();
    let units: Vec<i64> = events
        .iter()
        .map(|event| event.total_units as i64)
        .collect();
    let at: Vec<i64> = events
        .iter()
        .map(|event| parse_time(&event.occurred_at).unwrap_or(0))
        .collect();
    let traces: Vec<Option<&str>> = events
        .iter()
        .map(|event| event.trace_parent.as_deref())
        .collect();
    tx.execute(
        "INSERT INTO outbox (event_id, kind, order_id, order_version, total_units,
                             occurred_at_ms, trace_parent, consumer, rejections, dead_at_ms)
         SELECT event_id, kind, order_id, order_version, total_units, occurred_at_ms,
                trace_parent, $7, 1, $8
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $9::text[])
              AS event (event_id, kind, order_id, order_version, total_units, occurred_at_ms,
                        trace_parent)",
        &[
            &ids,
            &kinds,
            &orders,
            &versions,
            &units,
            &at,
            &consumer.as_str(),
            &now,
            &traces,
        ],
    )
    .await
}

/// Per consumer: waiting events, the oldest one's time, dead letters.
pub(crate) async fn counts(tx: Tx<'_>) -> Result<Vec<OutboxCounts>, Failure> {
    let rows = tx
        .query(
            "SELECT consumer,
                    COUNT(*) FILTER (WHERE dead_at_ms IS NULL),
                    MIN(occurred_at_ms) FILTER (WHERE dead_at_ms IS NULL),
                    COUNT(*) FILTER (WHERE dead_at_ms IS NOT NULL)
             FROM outbox GROUP BY consumer",
            &[],
        )
        .await?;
    let mut counts: Vec<OutboxCounts> = Consumer::ALL
        .iter()
        .map(|&consumer| OutboxCounts {
            consumer,
            pending: 0,
            oldest_pending_at_ms: None,
            dead: 0,
        })
        .collect();
    for row in &rows {
        let consumer: String = row.try_get(0)?;
        let Some(entry) = counts
            .iter_mut()
            .find(|entry| entry.consumer.as_str() == consumer)
        else {
            continue;
        };
        let pending: i64 = row.try_get(1)?;
        let dead: i64 = row.try_get(3)?;
        entry.pending = pending as u64;
        entry.oldest_pending_at_ms = row.try_get(2)?;
        entry.dead = dead as u64;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_count_matches_the_columns() {
        assert_eq!(EVENT_COLUMNS.split(',').count(), EVENT_COLUMN_COUNT);
    }
}
