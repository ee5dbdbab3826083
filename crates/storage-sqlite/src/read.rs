//! Queries. Each function works on any connection, so the writer uses the same
//! code to read inside its transaction as the read pool uses outside it.

use rusqlite::{Connection, OptionalExtension, params};
use stockroom_contract::{HistoryEntry, InventoryItem, Order, OrderLine, OrderList, ProductRef};
use stockroom_storage::{MAX_ORDERS_PER_PAGE, OrderFilter, StorageError};

use crate::{format_time, unavailable};

const INVENTORY_COLUMNS: &str = "product_name, quantity, reserved, sold, received";

fn inventory_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<InventoryItem> {
    let quantity: i64 = row.get(1)?;
    let reserved: i64 = row.get(2)?;
    Ok(InventoryItem {
        product_name: row.get(0)?,
        quantity,
        reserved_quantity: reserved,
        available: quantity - reserved,
        sold: row.get(3)?,
        received: row.get(4)?,
    })
}

pub fn inventory(connection: &Connection) -> Result<Vec<InventoryItem>, StorageError> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {INVENTORY_COLUMNS} FROM inventory ORDER BY product_key"
        ))
        .map_err(unavailable)?;
    let rows = statement
        .query_map([], inventory_row)
        .map_err(unavailable)?;
    rows.collect::<Result<_, _>>().map_err(unavailable)
}

pub fn inventory_item(
    connection: &Connection,
    product_key: &str,
) -> Result<Option<InventoryItem>, StorageError> {
    connection
        .prepare_cached(&format!(
            "SELECT {INVENTORY_COLUMNS} FROM inventory WHERE product_key = ?1"
        ))
        .map_err(unavailable)?
        .query_row([product_key], inventory_row)
        .optional()
        .map_err(unavailable)
}

fn parse<T: std::str::FromStr<Err = String>>(text: String) -> Result<T, StorageError> {
    text.parse().map_err(StorageError::Inconsistent)
}

pub fn order(connection: &Connection, order_id: &str) -> Result<Option<Order>, StorageError> {
    let row = connection
        .prepare_cached(
            "SELECT id, customer_id, status, reason, payment_status, version, created_at_ms,
                    updated_at_ms
             FROM orders WHERE id = ?1",
        )
        .map_err(unavailable)?
        .query_row([order_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
            ))
        })
        .optional()
        .map_err(unavailable)?;
    let Some((id, customer_id, status, reason, payment_status, version, created, updated)) = row
    else {
        return Ok(None);
    };
    let items = connection
        .prepare_cached(
            "SELECT product_name, quantity FROM order_items WHERE order_id = ?1
             ORDER BY product_key",
        )
        .map_err(unavailable)?
        .query_map([order_id], |row| {
            Ok(OrderLine {
                product: ProductRef { name: row.get(0)? },
                quantity: row.get(1)?,
            })
        })
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    let history_rows = connection
        .prepare_cached(
            "SELECT version, status, reason, at_ms FROM order_history WHERE order_id = ?1
             ORDER BY version",
        )
        .map_err(unavailable)?
        .query_map([order_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    let mut history = Vec::with_capacity(history_rows.len());
    for (version, status, reason, at_ms) in history_rows {
        history.push(HistoryEntry {
            version,
            status: parse(status)?,
            reason,
            at: format_time(at_ms),
        });
    }
    Ok(Some(Order {
        id,
        customer_id,
        status: parse(status)?,
        reason,
        payment_status: parse(payment_status)?,
        version,
        created_at: format_time(created),
        updated_at: format_time(updated),
        items,
        history,
    }))
}

pub fn orders(connection: &Connection, filter: &OrderFilter) -> Result<OrderList, StorageError> {
    let limit = filter.limit.clamp(1, MAX_ORDERS_PER_PAGE);
    // Fetch one more than asked to learn whether a next page exists.
    let mut statement = connection
        .prepare_cached(
            "SELECT id FROM orders
             WHERE (?1 IS NULL OR status = ?1)
               AND (?2 IS NULL OR customer_id = ?2)
               AND (?3 IS NULL OR id > ?3)
             ORDER BY id LIMIT ?4",
        )
        .map_err(unavailable)?;
    let ids = statement
        .query_map(
            params![
                filter.status.map(|status| status.as_str()),
                filter.customer_id,
                filter.after,
                i64::from(limit) + 1
            ],
            |row| row.get::<_, String>(0),
        )
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    let has_more = ids.len() > limit as usize;
    let mut orders = Vec::with_capacity(ids.len().min(limit as usize));
    for id in ids.iter().take(limit as usize) {
        if let Some(found) = order(connection, id)? {
            orders.push(found);
        }
    }
    let next_cursor = if has_more {
        orders.last().map(|last| last.id.clone())
    } else {
        None
    };
    Ok(OrderList {
        orders,
        next_cursor,
    })
}

pub fn dead_letter_count(connection: &Connection, consumer: &str) -> Result<u64, StorageError> {
    connection
        .prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE consumer = ?1")
        .map_err(unavailable)?
        .query_row([consumer], |row| row.get::<_, i64>(0))
        .map(|count| count as u64)
        .map_err(unavailable)
}
