//! Writing what a batch decided: one statement per table, whatever the
//! batch's size. Each statement takes its rows as one JSON array, which
//! SQLite's `json_each` unpacks once per row (see
//! [`crate::records::json_rows`]). Every write of an existing row is
//! conditional on the row being as the batch loaded it, and checked: a
//! mismatch means the rows changed under the rules, which the single writer
//! makes impossible, so it is reported as a bug rather than written.

use std::collections::HashMap;

use stockroom_domain::outbox::NewEntry;
use stockroom_domain::rules::{Changes, OrderRecord, ProductState};
use stockroom_storage::batch::Writes;
use stockroom_storage::{StorageError, history, keys, lines};

use crate::bus;
use crate::records::{json_list, json_rows};
use crate::sql::Sql;

pub(crate) fn apply(sql: Sql<'_>, writes: &Writes) -> Result<(), StorageError> {
    let changes = &writes.changes;
    let histories = history::encode_by_order(&changes.history);
    apply_stock(sql, changes)?;
    insert_orders(sql, &changes.new_orders, &histories)?;
    update_orders(sql, changes, &histories)?;
    let entries: Vec<NewEntry> = changes
        .events
        .iter()
        .cloned()
        .map(NewEntry::routed)
        .collect();
    bus::insert(sql, &entries)?;
    count_statuses(sql, &changes.status_deltas())?;
    crate::ledger::apply(sql, changes, writes.created_at_ms)?;
    if !changes.keys.is_empty() {
        let rows: Vec<_> = changes
            .keys
            .iter()
            .map(|claim| {
                (
                    &claim.customer_id,
                    &claim.key,
                    &claim.fingerprint,
                    claim.answer.order_id(),
                    keys::encode_shortages(&claim.answer),
                )
            })
            .collect();
        sql.execute(
            &format!(
                "{} INSERT INTO idempotency_keys (customer_id, key, fingerprint, order_id,
                                                  shortages, created_at_ms)
                 SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3, v ->> 4, ?2 FROM claim",
                json_rows("claim", "?1")
            ),
            rusqlite::params![json_list(&rows), writes.created_at_ms],
        )?;
    }
    Ok(())
}

fn expect_rows(what: &str, changed: usize, expected: usize) -> Result<(), StorageError> {
    if changed != expected {
        return Err(StorageError::Inconsistent(format!(
            "{what}: {changed} rows matched the loaded state, {expected} expected"
        )));
    }
    Ok(())
}

/// A product's state as the inventory row's columns store it: quantity,
/// reserved, sold, received, limit, threshold, movements.
fn columns(state: &ProductState) -> (i64, i64, i64, i64, Option<u32>, Option<u64>, u64) {
    // Stock never exceeds MAX_STOCK_PER_PRODUCT, far inside i64.
    let stock = &state.stock;
    (
        stock.on_hand() as i64,
        stock.reserved() as i64,
        stock.sold() as i64,
        stock.received_total() as i64,
        state.settings.max_per_customer,
        state.settings.low_stock_threshold,
        state.movements,
    )
}

fn apply_stock(sql: Sql<'_>, changes: &Changes) -> Result<(), StorageError> {
    let updates: Vec<_> = changes
        .stock
        .iter()
        .filter_map(|change| {
            let before = change.before.as_ref()?;
            Some((&change.product_key, columns(&change.after), columns(before)))
        })
        .collect();
    if !updates.is_empty() {
        let changed = sql.execute(
            &format!(
                "{} UPDATE inventory
                 SET quantity = change.v ->> '$[1][0]', reserved = change.v ->> '$[1][1]',
                     sold = change.v ->> '$[1][2]', received = change.v ->> '$[1][3]',
                     max_per_customer = change.v ->> '$[1][4]',
                     low_stock_threshold = change.v ->> '$[1][5]',
                     movements = change.v ->> '$[1][6]'
                 FROM change
                 WHERE inventory.product_key = change.v ->> 0
                   AND inventory.quantity = change.v ->> '$[2][0]'
                   AND inventory.reserved = change.v ->> '$[2][1]'
                   AND inventory.sold = change.v ->> '$[2][2]'
                   AND inventory.received = change.v ->> '$[2][3]'
                   AND inventory.max_per_customer IS change.v ->> '$[2][4]'
                   AND inventory.low_stock_threshold IS change.v ->> '$[2][5]'
                   AND inventory.movements = change.v ->> '$[2][6]'",
                json_rows("change", "?1")
            ),
            [json_list(&updates)],
        )?;
        expect_rows("stock update", changed, updates.len())?;
    }
    let inserts: Vec<_> = changes
        .stock
        .iter()
        .filter(|change| change.before.is_none())
        .map(|change| {
            (
                &change.product_key,
                &change.product_name,
                columns(&change.after),
            )
        })
        .collect();
    if !inserts.is_empty() {
        sql.execute(
            &format!(
                "{} INSERT INTO inventory (product_key, product_name, quantity, reserved, sold,
                                          received, max_per_customer, low_stock_threshold,
                                          movements)
                 SELECT v ->> 0, v ->> 1, v ->> '$[2][0]', v ->> '$[2][1]', v ->> '$[2][2]',
                        v ->> '$[2][3]', v ->> '$[2][4]', v ->> '$[2][5]', v ->> '$[2][6]'
                 FROM product",
                json_rows("product", "?1")
            ),
            [json_list(&inserts)],
        )?;
    }
    Ok(())
}

fn insert_orders(
    sql: Sql<'_>,
    orders: &[OrderRecord],
    histories: &HashMap<&str, String>,
) -> Result<(), StorageError> {
    if orders.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = orders
        .iter()
        .map(|order| {
            (
                &order.id,
                &order.customer_id,
                order.status.as_str(),
                order.reason.map(|reason| reason.as_str()),
                order.payment.as_str(),
                order.version,
                order.created_at_ms,
                order.updated_at_ms,
                lines::encode(&order.lines),
                history::of(histories, &order.id),
                order.extended_until_ms,
            )
        })
        .collect();
    sql.execute(
        &format!(
            "{} INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                                    created_at_ms, updated_at_ms, lines, history,
                                    extended_until_ms)
             SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3, v ->> 4, v ->> 5, v ->> 6, v ->> 7,
                    v ->> 8, v ->> 9, v ->> 10
             FROM new_order",
            json_rows("new_order", "?1")
        ),
        [json_list(&rows)],
    )?;
    Ok(())
}

fn update_orders(
    sql: Sql<'_>,
    changes: &Changes,
    histories: &HashMap<&str, String>,
) -> Result<(), StorageError> {
    if changes.changed_orders.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = changes
        .changed_orders
        .iter()
        .map(|change| {
            let order = &change.order;
            (
                &order.id,
                order.status.as_str(),
                order.reason.map(|reason| reason.as_str()),
                order.payment.as_str(),
                order.version,
                order.updated_at_ms,
                change.loaded_version,
                history::of(histories, &order.id),
                order.extended_until_ms,
            )
        })
        .collect();
    let changed = sql.execute(
        &format!(
            "{} UPDATE orders
             SET status = change.v ->> 1, reason = change.v ->> 2,
                 payment_status = change.v ->> 3, version = change.v ->> 4,
                 updated_at_ms = change.v ->> 5, extended_until_ms = change.v ->> 8,
                 history = {}
             FROM change
             WHERE orders.id = change.v ->> 0 AND orders.version = change.v ->> 6",
            json_rows("change", "?1"),
            history::append_sql("orders.history", "(change.v ->> 7)")
        ),
        [json_list(&rows)],
    )?;
    expect_rows("order update", changed, rows.len())
}

/// Moves the orders-per-status counters by a batch's deltas (one row per
/// status: the single writer never contends for them).
pub(crate) fn count_statuses(
    sql: Sql<'_>,
    deltas: &[(stockroom_domain::OrderStatus, i64)],
) -> Result<(), StorageError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let rows: Vec<(&str, i64)> = deltas
        .iter()
        .map(|(status, delta)| (status.as_str(), *delta))
        .collect();
    sql.execute(
        &format!(
            "{} INSERT INTO order_counts (status, shard, count)
             SELECT v ->> 0, 0, v ->> 1 FROM delta WHERE true
             ON CONFLICT (status, shard) DO UPDATE SET count = count + excluded.count",
            json_rows("delta", "?1")
        ),
        [json_list(&rows)],
    )?;
    Ok(())
}
