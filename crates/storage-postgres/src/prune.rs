//! Retention: deleting, oldest first and a bounded number at a time, the
//! rows the system no longer needs. `SKIP LOCKED`, so that pruners of
//! several instances share the work instead of waiting for each other.

use stockroom_domain::OrderStatus;
use stockroom_storage::{Prune, Pruned};

use crate::Failure;
use crate::sql::Tx;

pub(crate) async fn prune(tx: Tx<'_>, prune: Prune) -> Result<Pruned, Failure> {
    let limit = i64::from(prune.limit);
    let idempotency_keys = tx
        .execute(
            "DELETE FROM idempotency_keys WHERE (customer_id, key) IN (
                 SELECT customer_id, key FROM idempotency_keys WHERE created_at_ms < $1
                 ORDER BY created_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&prune.idempotency_keys_before_ms, &limit],
        )
        .await?;
    let processed_events = tx
        .execute(
            "DELETE FROM processed_events WHERE (consumer, event_id) IN (
                 SELECT consumer, event_id FROM processed_events WHERE at_ms < $1
                 ORDER BY at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&prune.processed_events_before_ms, &limit],
        )
        .await?;
    let rejected_orders = tx
        .execute(
            "WITH doomed AS (
                 SELECT id FROM orders WHERE other_status = 'rejected' AND created_at_ms < $1
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
             )
             DELETE FROM orders USING doomed WHERE orders.id = doomed.id",
            &[&prune.rejected_orders_before_ms, &limit],
        )
        .await?;
    if rejected_orders > 0 {
        let gone = i64::try_from(rejected_orders).unwrap_or(i64::MAX);
        crate::apply::count_statuses(tx, &[(OrderStatus::Rejected, -gone)]).await?;
    }
    let provider_charges = tx
        .execute(
            "DELETE FROM provider_charges WHERE charge_key IN (
                 SELECT charge_key FROM provider_charges WHERE charged_at_ms < $1
                 ORDER BY charged_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&prune.provider_charges_before_ms, &limit],
        )
        .await?;
    let dead_letters = tx
        .execute(
            "DELETE FROM outbox WHERE seq IN (
                 SELECT seq FROM outbox WHERE dead_at_ms < $1
                 ORDER BY dead_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&prune.dead_letters_before_ms, &limit],
        )
        .await?;
    Ok(Pruned {
        idempotency_keys,
        processed_events,
        rejected_orders,
        provider_charges,
        dead_letters,
    })
}
