//! Retention: deleting, oldest first and a bounded number at a time, the
//! rows the system no longer needs.

use stockroom_domain::OrderStatus;
use stockroom_storage::{Prune, Pruned, StorageError};

use crate::sql::Sql;

/// Rejected orders in id order, which is creation order: the (status, id)
/// index hands out the oldest first. It leaves fulfilled orders out, and
/// SQLite uses it only for a query that states so itself (checked by
/// `read::tests::the_status_index_serves_every_query_by_status`).
pub(crate) const OLDEST_REJECTED: &str = "SELECT id FROM orders
     WHERE status = 'rejected' AND status <> 'fulfilled' AND created_at_ms < ?1
     ORDER BY id LIMIT ?2";

pub(crate) fn prune(sql: Sql<'_>, prune: Prune) -> Result<Pruned, StorageError> {
    let idempotency_keys = sql.execute(
        "DELETE FROM idempotency_keys WHERE rowid IN (
             SELECT rowid FROM idempotency_keys WHERE created_at_ms < ?1
             ORDER BY created_at_ms LIMIT ?2)",
        rusqlite::params![prune.idempotency_keys_before_ms, prune.limit],
    )?;
    let processed_events = sql.execute(
        "DELETE FROM processed_events WHERE rowid IN (
             SELECT rowid FROM processed_events WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)",
        rusqlite::params![prune.processed_events_before_ms, prune.limit],
    )?;
    let rejected: Vec<String> = sql.rows(
        OLDEST_REJECTED,
        rusqlite::params![prune.rejected_orders_before_ms, prune.limit],
        |row| row.get(0),
    )?;
    if !rejected.is_empty() {
        let ids = crate::records::json_list(&rejected);
        sql.execute(
            "DELETE FROM orders WHERE id IN (SELECT value FROM json_each(?1))",
            [&ids],
        )?;
        let gone = i64::try_from(rejected.len()).unwrap_or(i64::MAX);
        crate::apply::count_statuses(sql, &[(OrderStatus::Rejected, -gone)])?;
    }
    let provider_charges = sql.execute(
        "DELETE FROM provider_charges WHERE rowid IN (
             SELECT rowid FROM provider_charges WHERE charged_at_ms < ?1
             ORDER BY charged_at_ms LIMIT ?2)",
        rusqlite::params![prune.provider_charges_before_ms, prune.limit],
    )?;
    let dead_letters = sql.execute(
        "DELETE FROM outbox WHERE seq IN (
             SELECT seq FROM outbox WHERE dead_at_ms < ?1 ORDER BY dead_at_ms LIMIT ?2)",
        rusqlite::params![prune.dead_letters_before_ms, prune.limit],
    )?;
    Ok(Pruned {
        idempotency_keys: idempotency_keys as u64,
        processed_events: processed_events as u64,
        rejected_orders: rejected.len() as u64,
        provider_charges: provider_charges as u64,
        dead_letters: dead_letters as u64,
    })
}
