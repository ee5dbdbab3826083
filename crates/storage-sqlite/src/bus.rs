//! The embedded event bus's writes: leasing a consumer's next events,
//! acknowledging them, and moving poison aside.

use stockroom_contract::{Delivery, Event, format_time};
use stockroom_storage::{MAX_DELIVERY_ATTEMPTS, StorageError};

use crate::records::json_list;
use crate::sql::Sql;

/// Leases up to `max_events` of `consumer`'s events whose lease ran out (or
/// that were never leased) until `now_ms + lease_ms`. An event handed out
/// [`MAX_DELIVERY_ATTEMPTS`] times without an acknowledgement is poison: it is
/// moved to the dead letters instead of being handed out again.
pub(crate) fn lease(
    sql: Sql<'_>,
    consumer: &str,
    max_events: u32,
    lease_ms: u64,
    now_ms: i64,
) -> Result<Vec<Delivery>, StorageError> {
    let leased_until = now_ms.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
    let leased = sql.rows(
        "UPDATE deliveries SET attempts = attempts + 1, leased_until_ms = ?1
         WHERE consumer = ?2 AND seq IN (
             SELECT seq FROM deliveries
             WHERE consumer = ?2 AND leased_until_ms <= ?3
             ORDER BY seq LIMIT ?4)
         RETURNING seq, attempts",
        rusqlite::params![leased_until, consumer, now_ms, max_events],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, u32>(1)?)),
    )?;
    let (poison, mut live): (Vec<_>, Vec<_>) = leased
        .into_iter()
        .partition(|(_, attempts)| *attempts > MAX_DELIVERY_ATTEMPTS);
    if !poison.is_empty() {
        dead_letter(sql, consumer, &poison, now_ms)?;
    }
    if live.is_empty() {
        return Ok(Vec::new());
    }
    live.sort_by_key(|(seq, _)| *seq);
    let seqs: Vec<i64> = live.iter().map(|(seq, _)| *seq).collect();
    let mut events = sql.rows(
        "SELECT seq, event_id, kind, order_id, order_version, total_units, occurred_at_ms
         FROM outbox WHERE seq IN (SELECT value FROM json_each(?1))",
        [json_list(&seqs)],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
            ))
        },
    )?;
    events.sort_by_key(|event| event.0);
    if events.len() != live.len() {
        return Err(StorageError::Inconsistent(format!(
            "{} deliveries of {consumer} have no event in the outbox",
            live.len() - events.len()
        )));
    }
    let mut deliveries = Vec::with_capacity(events.len());
    for ((seq, attempt), event) in live.into_iter().zip(events) {
        let (event_seq, event_id, kind, order_id, order_version, total_units, occurred) = event;
        if event_seq != seq {
            return Err(StorageError::Inconsistent(format!(
                "delivery {seq} of {consumer} has no event in the outbox"
            )));
        }
        deliveries.push(Delivery {
            delivery_id: seq,
            attempt,
            event: Event {
                event_id,
                kind: kind.parse().map_err(StorageError::Inconsistent)?,
                order_id,
                order_version,
                occurred_at: format_time(occurred),
                total_units: total_units as u64,
            },
        });
    }
    Ok(deliveries)
}

fn dead_letter(
    sql: Sql<'_>,
    consumer: &str,
    poison: &[(i64, u32)],
    now_ms: i64,
) -> Result<(), StorageError> {
    let seqs: Vec<i64> = poison.iter().map(|(seq, _)| *seq).collect();
    sql.execute(
        "INSERT OR IGNORE INTO dead_letters (consumer, seq, attempts, at_ms)
         SELECT consumer, seq, attempts - 1, ?3 FROM deliveries
         WHERE consumer = ?1 AND seq IN (SELECT value FROM json_each(?2))",
        rusqlite::params![consumer, json_list(&seqs), now_ms],
    )?;
    sql.execute(
        "DELETE FROM deliveries WHERE consumer = ?1 AND seq IN (SELECT value FROM json_each(?2))",
        rusqlite::params![consumer, json_list(&seqs)],
    )?;
    tracing::warn!(
        consumer,
        count = poison.len(),
        "events dead-lettered after too many attempts"
    );
    Ok(())
}

/// Marks deliveries as done so they are never handed out again.
pub(crate) fn acknowledge(
    sql: Sql<'_>,
    consumer: &str,
    delivery_ids: &[i64],
) -> Result<(), StorageError> {
    sql.execute(
        "DELETE FROM deliveries
         WHERE consumer = ?1 AND seq IN (SELECT value FROM json_each(?2))",
        rusqlite::params![consumer, json_list(delivery_ids)],
    )?;
    Ok(())
}
