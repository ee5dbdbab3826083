//! Queries. Each function takes a transaction, so the writes use the same
//! code to read inside their transaction as the read-only calls use in their
//! own snapshot.
//!
//! Every list filter is served by an index (`orders_by_customer`,
//! `orders_by_other_status`, the primary key for the plain cursor and for
//! fulfilled orders, or the primary key of the orders the open-orders rows
//! name for reserved ones), and a page
//! of orders is assembled from two queries (its ids, then its documents)
//! whatever its size, so a read costs the same with ten thousand orders
//! stored as with ten million.

use std::collections::HashMap;

use stockroom_domain::OrderStatus;
use stockroom_domain::rules::{StockRecord, StoredOrder};
use stockroom_storage::{MAX_ORDERS_PER_PAGE, OrderFilter, OrderPage, StatusCount, history};
use tokio_postgres::types::ToSql;

use crate::Failure;
use crate::load::{ORDER_COLUMN_COUNT, ORDER_COLUMNS, STOCK_COLUMNS, order_records, stock_row};
use crate::sql::Tx;

fn item(row: &tokio_postgres::Row) -> Result<StockRecord, Failure> {
    let (product_key, product_name, state) = stock_row(row)?;
    Ok(StockRecord {
        product_key,
        product_name,
        stock: state.stock,
        settings: state.settings,
        movement_seq: state.movements,
    })
}

pub(crate) async fn inventory(tx: Tx<'_>) -> Result<Vec<StockRecord>, Failure> {
    tx.query(
        &format!("SELECT {STOCK_COLUMNS} FROM inventory ORDER BY product_key"),
        &[],
    )
    .await?
    .iter()
    .map(item)
    .collect()
}

pub(crate) async fn inventory_item(
    tx: Tx<'_>,
    product_key: &str,
) -> Result<Option<StockRecord>, Failure> {
    tx.query_opt(
        &format!("SELECT {STOCK_COLUMNS} FROM inventory WHERE product_key = $1"),
        &[&product_key],
    )
    .await?
    .as_ref()
    .map(item)
    .transpose()
}

pub(crate) async fn order(tx: Tx<'_>, order_id: &str) -> Result<Option<StoredOrder>, Failure> {
    Ok(with_history(tx, &[order_id.to_owned()]).await?.pop())
}

/// The orders with these ids and their histories, in the order given (ids
/// of no order are left out): one query for any number of orders.
async fn with_history(tx: Tx<'_>, ids: &[String]) -> Result<Vec<StoredOrder>, Failure> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // The history follows the columns `order_records` reads.
    let rows = tx
        .query(
            &format!("SELECT {ORDER_COLUMNS}, history FROM orders WHERE id = ANY($1)"),
            &[&ids],
        )
        .await?;
    let mut by_id: HashMap<String, StoredOrder> = HashMap::with_capacity(ids.len());
    for (row, order) in rows.iter().zip(order_records(&rows)?) {
        let text: String = row.try_get(ORDER_COLUMN_COUNT)?;
        let history = history::decode(&order.id, &text).map_err(Failure::Storage)?;
        by_id.insert(order.id.clone(), StoredOrder { order, history });
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// The query listing order ids for a filter, with its parameters numbered
/// in the order customer, cursor, limit (absent ones skipped). Each
/// combination gets its own statement, so that each can use its index; a
/// single statement with optional conditions would scan the table. The
/// status is written into the statement (it is one of a few fixed names),
/// and indexed nowhere (see migration 11): a customer's orders are listed
/// through the customer index, reserved ones through the open-orders rows
/// that name them, rejected and cancelled ones through `other_status`'s
/// partial index (PostgreSQL uses a partial index only for a condition it
/// can see implies the index's, which a parameter in a statement planned
/// once for every value does not), and fulfilled ones through the primary
/// key, skipping the others.
pub(crate) fn list_sql(filter: &OrderFilter) -> String {
    let mut conditions = Vec::new();
    match filter.status {
        None => {}
        Some(status @ (OrderStatus::Reserved | OrderStatus::Fulfilled)) => {
            if status == OrderStatus::Reserved && filter.customer_id.is_none() {
                // The cursor is the first parameter here: there is no
                // customer.
                let after = filter.after.as_ref().map(|_| "$1");
                conditions.push(crate::open::named(after));
            }
            conditions.push(format!("status = '{}'", status.as_str()));
        }
        Some(status) => conditions.push(format!("other_status = '{}'", status.as_str())),
    }
    let mut next = 1;
    for (present, condition) in [
        (filter.customer_id.is_some(), "customer_id = $"),
        (filter.after.is_some(), "id > $"),
    ] {
        if present {
            conditions.push(format!("{condition}{next}"));
            next += 1;
        }
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!("SELECT id FROM orders {filter} ORDER BY id LIMIT ${next}")
}

pub(crate) async fn orders(tx: Tx<'_>, filter: &OrderFilter) -> Result<OrderPage, Failure> {
    let limit = filter.limit.clamp(1, MAX_ORDERS_PER_PAGE);
    // One more than asked, to learn whether a next page exists.
    let fetch = i64::from(limit) + 1;
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(3);
    if let Some(customer) = &filter.customer_id {
        params.push(customer);
    }
    if let Some(after) = &filter.after {
        params.push(after);
    }
    params.push(&fetch);
    let mut ids: Vec<String> = tx
        .query(&list_sql(filter), &params)
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let has_more = ids.len() > limit as usize;
    ids.truncate(limit as usize);
    let orders = with_history(tx, &ids).await?;
    let next_cursor = if has_more {
        orders.last().map(|last| last.order.id.clone())
    } else {
        None
    };
    Ok(OrderPage {
        orders,
        next_cursor,
    })
}

/// How many orders are in each status: the sums of the counters' shards.
pub(crate) async fn order_counts(tx: Tx<'_>) -> Result<Vec<StatusCount>, Failure> {
    let rows = tx
        .query(
            "SELECT status, SUM(count)::bigint FROM order_counts GROUP BY status",
            &[],
        )
        .await?;
    let mut counted = Vec::with_capacity(rows.len());
    for row in &rows {
        counted.push((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?));
    }
    Ok(OrderStatus::ALL
        .into_iter()
        .map(|status| StatusCount {
            status,
            count: counted
                .iter()
                .find(|(name, _)| name == status.as_str())
                .map_or(0, |(_, count)| u64::try_from(*count).unwrap_or(0)),
        })
        .collect())
}
