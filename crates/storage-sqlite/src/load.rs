//! Loading the rows a batch touches into the rules' book: a fixed number of
//! queries per batch, each unpacking its list of ids from one JSON parameter.

use stockroom_domain::rules::{Book, StoredKey};
use stockroom_storage::batch::Needs;
use stockroom_storage::{StorageError, keys, ledger};

use crate::records::{
    ORDER_COLUMNS, STOCK_COLUMNS, json_list, json_rows, order_records, order_row, stock_row,
};
use crate::sql::Sql;

/// Fills `needs` in (the sweep's candidates, the products of loaded orders)
/// and loads everything it names, in the order each step needs: the sweep's
/// candidates and the idempotency keys name orders, the orders name products,
/// the products say which holdings count.
pub(crate) fn load(
    sql: Sql<'_>,
    needs: &mut Needs,
    now_ms: i64,
    notify: bool,
) -> Result<Book, StorageError> {
    let mut book = Book::new(now_ms).notifying(notify);
    find_sweep_candidates(sql, needs, now_ms)?;
    load_keys(sql, needs, &mut book)?;
    load_orders(sql, needs, &mut book)?;
    load_stock(sql, needs, &mut book)?;
    load_holdings(sql, needs, &mut book)?;
    load_holders(sql, needs)?;
    load_operator_keys(sql, needs, &mut book)?;
    Ok(book)
}

/// The reservations a sweep may end: reserved orders only, through the
/// (status, id) index, so the cost follows the open reservations, not the
/// finished orders. The index leaves fulfilled orders out, and SQLite uses it
/// only for a query that states that condition itself (checked by
/// `read::tests::the_status_index_serves_every_query_by_status`).
pub(crate) const SWEEP_CANDIDATES: &str = "SELECT id FROM orders
     WHERE status = 'reserved' AND status <> 'fulfilled'
       AND ((payment_status = 'none' AND created_at_ms <= ?1
             AND (extended_until_ms IS NULL OR extended_until_ms <= ?3))
            OR (payment_status <> 'none' AND updated_at_ms <= ?1))
     ORDER BY id LIMIT ?2";

fn find_sweep_candidates(sql: Sql<'_>, needs: &mut Needs, now_ms: i64) -> Result<(), StorageError> {
    for index in 0..needs.sweeps.len() {
        let query = &needs.sweeps[index];
        let found = sql.rows(
            SWEEP_CANDIDATES,
            rusqlite::params![query.cutoff_ms, query.limit, now_ms],
            |row| row.get::<_, String>(0),
        )?;
        needs.add_swept(index, found);
    }
    Ok(())
}

fn load_keys(sql: Sql<'_>, needs: &mut Needs, book: &mut Book) -> Result<(), StorageError> {
    if !needs.keys.is_empty() {
        let keys: Vec<&(String, String)> = needs.keys.iter().collect();
        let rows = sql.rows(
            &format!(
                "{} SELECT customer_id, key, fingerprint, order_id, shortages
                 FROM idempotency_keys
                 WHERE (customer_id, key) IN (SELECT v ->> 0, v ->> 1 FROM wanted)",
                json_rows("wanted", "?1")
            ),
            [json_list(&keys)],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            },
        )?;
        let mut stored = Vec::with_capacity(rows.len());
        for (customer_id, key, fingerprint, order_id, shortages) in rows {
            let answer = keys::decode(order_id, shortages.as_deref())?;
            stored.push((
                customer_id,
                key,
                StoredKey {
                    fingerprint,
                    answer,
                },
            ));
        }
        needs.keys_loaded(stored.iter().map(|(_, _, key)| key));
        for (customer_id, key, stored) in stored {
            book.load_key(customer_id, key, stored);
        }
    }
    Ok(())
}

fn load_orders(sql: Sql<'_>, needs: &mut Needs, book: &mut Book) -> Result<(), StorageError> {
    if !needs.order_ids.is_empty() {
        let ids = json_list(&needs.order_ids.iter().collect::<Vec<_>>());
        let rows = sql.rows(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE id IN (SELECT value FROM json_each(?1))"
            ),
            [&ids],
            order_row,
        )?;
        for order in order_records(rows)? {
            needs.add_lines(&order);
            book.load_order(order);
        }
    }
    Ok(())
}

fn load_stock(sql: Sql<'_>, needs: &Needs, book: &mut Book) -> Result<(), StorageError> {
    if !needs.product_keys.is_empty() {
        let rows = sql.rows(
            &format!(
                "SELECT {STOCK_COLUMNS} FROM inventory
                 WHERE product_key IN (SELECT value FROM json_each(?1))"
            ),
            [json_list(&needs.product_keys.iter().collect::<Vec<_>>())],
            stock_row,
        )?;
        for row in rows {
            let state = row.state()?;
            book.load_product(row.product_key, row.product_name, state);
        }
    }
    Ok(())
}

/// The holdings of limited products' pairs, zero for a pair without a row.
fn load_holdings(sql: Sql<'_>, needs: &Needs, book: &mut Book) -> Result<(), StorageError> {
    let pairs = needs.holdings_to_load(book);
    if pairs.is_empty() {
        return Ok(());
    }
    let found = sql.rows(
        &format!(
            "{} SELECT customer_id, product_key, units FROM holdings
             WHERE (customer_id, product_key) IN (SELECT v ->> 0, v ->> 1 FROM wanted)",
            json_rows("wanted", "?1")
        ),
        [json_list(&pairs)],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        },
    )?;
    for (customer, product_key) in pairs {
        let stored = found
            .iter()
            .find(|(holder, key, _)| *holder == customer && *key == product_key)
            .map(|(_, _, units)| u64::try_from(*units).unwrap_or(0));
        book.load_holding(customer, product_key, stored);
    }
    Ok(())
}

/// Every reserved and fulfilled order holding a product whose limit is set
/// or removed: a scan of the orders, an operator's rare call.
fn load_holders(sql: Sql<'_>, needs: &mut Needs) -> Result<(), StorageError> {
    for product_key in needs.limit_changes.clone() {
        let rows = sql.rows(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE status IN ('reserved', 'fulfilled')
                   AND EXISTS (SELECT 1 FROM json_each(orders.lines) AS line
                               WHERE line.value ->> 0 = ?1)"
            ),
            [&product_key],
            order_row,
        )?;
        needs.holders.insert(product_key, order_records(rows)?);
    }
    Ok(())
}

/// Operators' idempotency keys already answered.
fn load_operator_keys(sql: Sql<'_>, needs: &Needs, book: &mut Book) -> Result<(), StorageError> {
    if needs.operator_keys.is_empty() {
        return Ok(());
    }
    let rows = sql.rows(
        "SELECT key, fingerprint, product_key, answer FROM operator_keys
         WHERE key IN (SELECT value FROM json_each(?1))",
        [json_list(&needs.operator_keys.iter().collect::<Vec<_>>())],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        },
    )?;
    for (key, fingerprint, product_key, answer) in rows {
        let answer = ledger::decode_answer(&product_key, &answer)?;
        book.load_operator_key(key, fingerprint, answer);
    }
    Ok(())
}
