//! The embedded event bus's writes: leasing a consumer's next events, and
//! settling them (acknowledged, released, or rejected as poison), listing
//! and redriving dead letters. Each is one statement.

use stockroom_contract::{DeadLetter, Delivery, Event, Receipt, format_time, parse_time};
use stockroom_domain::Consumer;
use stockroom_storage::{DeliveryOutcome, MAX_REJECTIONS, OutboxCounts, StorageError};

use crate::records::json_list;
use crate::sql::Sql;

/// The event columns [`event_row`] reads, after the delivery's own three.
const EVENT_COLUMNS: &str = "seq, deliveries, rejections, event_id, kind, order_id, order_version, total_units, occurred_at_ms, trace_parent";

/// How many columns [`EVENT_COLUMNS`] names: the index of the first column
/// a query selects after them.
const EVENT_COLUMN_COUNT: usize = 10;

/// An outbox row as [`EVENT_COLUMNS`] reads it.
struct EventRow {
    seq: i64,
    deliveries: u32,
    rejections: u32,
    event_id: String,
    kind: String,
    order_id: String,
    order_version: i64,
    total_units: i64,
    occurred_at_ms: i64,
    trace_parent: Option<String>,
}

fn event_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: row.get(0)?,
        deliveries: row.get(1)?,
        rejections: row.get(2)?,
        event_id: row.get(3)?,
        kind: row.get(4)?,
        order_id: row.get(5)?,
        order_version: row.get(6)?,
        total_units: row.get(7)?,
        occurred_at_ms: row.get(8)?,
        trace_parent: row.get(9)?,
    })
}

impl EventRow {
    fn event(self) -> Result<Event, StorageError> {
        Ok(Event {
            event_id: self.event_id,
            kind: self.kind.parse().map_err(StorageError::Inconsistent)?,
            order_id: self.order_id,
            order_version: self.order_version,
            total_units: self.total_units as u64,
            occurred_at: format_time(self.occurred_at_ms),
            trace_parent: self.trace_parent,
        })
    }
}

/// Leases up to `max_events` of `consumer`'s events whose lease ran out (or
/// that were never leased) until `now_ms + lease_ms`, under `token`, and
/// returns them: one statement that picks, leases and reads.
pub(crate) fn lease(
    sql: Sql<'_>,
    consumer: Consumer,
    max_events: u32,
    lease_ms: u64,
    token: &str,
    now_ms: i64,
) -> Result<Vec<Delivery>, StorageError> {
    let leased_until = now_ms.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
    let rows = sql.rows(
        &format!(
            "UPDATE outbox
             SET deliveries = deliveries + 1, leased_until_ms = ?1, lease_token = ?2
             WHERE seq IN (
                 SELECT seq FROM outbox
                 WHERE consumer = ?3 AND dead_at_ms IS NULL AND leased_until_ms <= ?4
                 ORDER BY seq LIMIT ?5)
             RETURNING {EVENT_COLUMNS}"
        ),
        rusqlite::params![leased_until, token, consumer.as_str(), now_ms, max_events],
        event_row,
    )?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        deliveries.push(Delivery {
            delivery_id: row.seq,
            lease_token: token.to_owned(),
            attempt: row.deliveries,
            event: row.event()?,
        });
    }
    deliveries.sort_by_key(|delivery| delivery.delivery_id);
    Ok(deliveries)
}

/// Settles deliveries whose lease the receipts prove.
pub(crate) fn finish(
    sql: Sql<'_>,
    consumer: Consumer,
    outcome: DeliveryOutcome,
    receipts: &[Receipt],
    now_ms: i64,
) -> Result<u64, StorageError> {
    let receipts: Vec<(i64, &str)> = receipts
        .iter()
        .map(|receipt| (receipt.delivery_id, receipt.lease_token.as_str()))
        .collect();
    let matching = "consumer = ?1 AND dead_at_ms IS NULL
                    AND (seq, lease_token) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?2))";
    let changed = match outcome {
        DeliveryOutcome::Acknowledge => sql.execute(
            &format!("DELETE FROM outbox WHERE {matching}"),
            rusqlite::params![consumer.as_str(), json_list(&receipts)],
        )?,
        DeliveryOutcome::Release => sql.execute(
            &format!("UPDATE outbox SET leased_until_ms = 0, lease_token = NULL WHERE {matching}"),
            rusqlite::params![consumer.as_str(), json_list(&receipts)],
        )?,
        DeliveryOutcome::Reject => {
            let changed = sql.execute(
                &format!(
                    "UPDATE outbox
                     SET rejections = rejections + 1, leased_until_ms = 0, lease_token = NULL,
                         dead_at_ms = CASE WHEN rejections + 1 >= ?3 THEN ?4 END
                     WHERE {matching}"
                ),
                rusqlite::params![
                    consumer.as_str(),
                    json_list(&receipts),
                    MAX_REJECTIONS,
                    now_ms
                ],
            )?;
            tracing::warn!(
                consumer = consumer.as_str(),
                count = changed,
                "events rejected as poison"
            );
            changed
        }
    };
    Ok(changed as u64)
}

/// Up to `limit` dead letters of `consumer`, oldest first.
pub(crate) fn dead_letters(
    sql: Sql<'_>,
    consumer: Consumer,
    limit: u32,
) -> Result<Vec<DeadLetter>, StorageError> {
    let rows = sql.rows(
        &format!(
            "SELECT {EVENT_COLUMNS}, dead_at_ms FROM outbox
             WHERE consumer = ?1 AND dead_at_ms IS NOT NULL ORDER BY seq LIMIT ?2"
        ),
        rusqlite::params![consumer.as_str(), limit],
        |row| Ok((event_row(row)?, row.get::<_, i64>(EVENT_COLUMN_COUNT)?)),
    )?;
    let mut letters = Vec::with_capacity(rows.len());
    for (row, dead_at_ms) in rows {
        letters.push(DeadLetter {
            delivery_id: row.seq,
            consumer: consumer.as_str().to_owned(),
            deliveries: row.deliveries,
            rejections: row.rejections,
            dead_at: format_time(dead_at_ms),
            event: row.event()?,
        });
    }
    Ok(letters)
}

/// Puts dead letters back in line with a clean slate.
pub(crate) fn redrive(
    sql: Sql<'_>,
    consumer: Consumer,
    delivery_ids: &[i64],
) -> Result<u64, StorageError> {
    let changed = sql.execute(
        "UPDATE outbox
         SET dead_at_ms = NULL, rejections = 0, leased_until_ms = 0, lease_token = NULL
         WHERE consumer = ?1 AND dead_at_ms IS NOT NULL
           AND seq IN (SELECT value FROM json_each(?2))",
        rusqlite::params![consumer.as_str(), json_list(delivery_ids)],
    )?;
    Ok(changed as u64)
}

pub(crate) fn dead_letter_count(sql: Sql<'_>, consumer: Consumer) -> Result<u64, StorageError> {
    let count = sql.row(
        "SELECT COUNT(*) FROM outbox WHERE consumer = ?1 AND dead_at_ms IS NOT NULL",
        [consumer.as_str()],
        |row| row.get::<_, i64>(0),
    )?;
    Ok(count.unwrap_or(0) as u64)
}

/// Keeps refused events as dead letters.
pub(crate) fn bury(
    sql: Sql<'_>,
    consumer: Consumer,
    events: &[Event],
    now_ms: i64,
) -> Result<u64, StorageError> {
    let rows: Vec<_> = events
        .iter()
        .map(|event| {
            (
                &event.event_id,
                event.kind.as_str(),
                &event.order_id,
                event.order_version,
                event.total_units,
                parse_time(&event.occurred_at).unwrap_or(0),
                &event.trace_parent,
            )
        })
        .collect();
    let buried = sql.execute(
        "INSERT INTO outbox (event_id, kind, order_id, order_version, total_units, occurred_at_ms,
                             trace_parent, consumer, rejections, dead_at_ms)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
                value ->> 6, ?2, 1, ?3
         FROM json_each(?1)",
        rusqlite::params![json_list(&rows), consumer.as_str(), now_ms],
    )?;
    Ok(buried as u64)
}

/// Per consumer: waiting events, the oldest one's time, dead letters.
pub(crate) fn counts(sql: Sql<'_>) -> Result<Vec<OutboxCounts>, StorageError> {
    let mut counts = Vec::with_capacity(Consumer::ALL.len());
    for consumer in Consumer::ALL {
        let (pending, oldest) = sql
            .row(
                "SELECT COUNT(*), MIN(occurred_at_ms) FROM outbox
                 WHERE consumer = ?1 AND dead_at_ms IS NULL",
                [consumer.as_str()],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?)),
            )?
            .unwrap_or((0, None));
        counts.push(OutboxCounts {
            consumer,
            pending: pending as u64,
            oldest_pending_at_ms: oldest,
            dead: dead_letter_count(sql, consumer)?,
        });
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
