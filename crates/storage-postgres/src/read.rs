//! Queries. Each function takes a transaction, so the writes use the same
//! code to read inside their transaction as the read-only calls use in their
//! own snapshot.

use deadpool_postgres::Transaction;
use stockroom_contract::{HistoryEntry, InventoryItem, Order, OrderLine, OrderList, ProductRef};
use stockroom_storage::{MAX_ORDERS_PER_PAGE, OrderFilter, StorageError};
use tokio_postgres::Row;

use crate::sql::{Params, query, query_one, query_opt};
use crate::{Failure, format_time};

/// The columns [`inventory_row`] reads, in its order.
pub(crate) const INVENTORY_COLUMNS: &str = "product_name, quantity, reserved, sold, received";

pub(crate) fn inventory_row(row: &Row) -> Result<InventoryItem, Failure> {
    let quantity: i64 = row.try_get(1)?;
    let reserved: i64 = row.try_get(2)?;
    Ok(InventoryItem {
        product_name: row.try_get(0)?,
        quantity,
        reserved_quantity: reserved,
        available: quantity - reserved,
        sold: row.try_get(3)?,
        received: row.try_get(4)?,
    })
}

pub(crate) async fn inventory(tx: &Transaction<'_>) -> Result<Vec<InventoryItem>, Failure> {
    query(
        tx,
        &format!("SELECT {INVENTORY_COLUMNS} FROM inventory ORDER BY product_key"),
        &[],
    )
    .await?
    .iter()
    .map(inventory_row)
    .collect()
}

pub(crate) async fn inventory_item(
    tx: &Transaction<'_>,
    product_key: &str,
) -> Result<Option<InventoryItem>, Failure> {
    query_opt(
        tx,
        &format!("SELECT {INVENTORY_COLUMNS} FROM inventory WHERE product_key = $1"),
        &[&product_key],
    )
    .await?
    .as_ref()
    .map(inventory_row)
    .transpose()
}

fn parse<T: std::str::FromStr<Err = String>>(text: String) -> Result<T, Failure> {
    text.parse()
        .map_err(|message| Failure::Storage(StorageError::Inconsistent(message)))
}

pub(crate) async fn order(tx: &Transaction<'_>, order_id: &str) -> Result<Option<Order>, Failure> {
    // The three queries are independent, so they are sent together: the
    // driver pipelines them on the one connection.
    let params: Params<'_> = &[&order_id];
    let (row, item_rows, history_rows) = tokio::try_join!(
        query_opt(
            tx,
            "SELECT id, customer_id, status, reason, payment_status, version, created_at_ms,
                    updated_at_ms
             FROM orders WHERE id = $1",
            params,
        ),
        query(
            tx,
            "SELECT product_name, quantity FROM order_items WHERE order_id = $1
             ORDER BY product_key",
            params,
        ),
        query(
            tx,
            "SELECT version, status, reason, at_ms FROM order_history WHERE order_id = $1
             ORDER BY version",
            params,
        ),
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut items = Vec::with_capacity(item_rows.len());
    for item in &item_rows {
        let quantity: i64 = item.try_get(1)?;
        items.push(OrderLine {
            product: ProductRef {
                name: item.try_get(0)?,
            },
            quantity: u32::try_from(quantity).map_err(|_| {
                Failure::Storage(StorageError::Inconsistent(format!(
                    "order {order_id} has an item of {quantity} units"
                )))
            })?,
        });
    }
    let mut history = Vec::with_capacity(history_rows.len());
    for entry in &history_rows {
        history.push(HistoryEntry {
            version: entry.try_get(0)?,
            status: parse(entry.try_get(1)?)?,
            reason: entry.try_get(2)?,
            at: format_time(entry.try_get(3)?),
        });
    }
    Ok(Some(Order {
        id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        status: parse(row.try_get(2)?)?,
        reason: row.try_get(3)?,
        payment_status: parse(row.try_get(4)?)?,
        version: row.try_get(5)?,
        created_at: format_time(row.try_get(6)?),
        updated_at: format_time(row.try_get(7)?),
        items,
        history,
    }))
}

pub(crate) async fn orders(
    tx: &Transaction<'_>,
    filter: &OrderFilter,
) -> Result<OrderList, Failure> {
    let limit = filter.limit.clamp(1, MAX_ORDERS_PER_PAGE);
    // Fetch one more than asked to learn whether a next page exists.
    let ids: Vec<String> = query(
        tx,
        "SELECT id FROM orders
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::text IS NULL OR customer_id = $2)
           AND ($3::text IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
        &[
            &filter.status.map(|status| status.as_str()),
            &filter.customer_id,
            &filter.after,
            &(i64::from(limit) + 1),
        ],
    )
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<Result<_, _>>()?;
    let has_more = ids.len() > limit as usize;
    let mut orders = Vec::with_capacity(ids.len().min(limit as usize));
    for id in ids.iter().take(limit as usize) {
        if let Some(found) = order(tx, id).await? {
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

pub(crate) async fn dead_letter_count(
    tx: &Transaction<'_>,
    consumer: &str,
) -> Result<u64, Failure> {
    let count: i64 = query_one(
        tx,
        "SELECT COUNT(*) FROM dead_letters WHERE consumer = $1",
        &[&consumer],
    )
    .await?
    .try_get(0)?;
    Ok(count as u64)
}
