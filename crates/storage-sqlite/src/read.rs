//! Queries. Each function works on any connection, so the writer uses the same
//! code to read inside its transaction as the read pool uses outside it.
//!
//! Every list filter is served by an index (`orders_by_status`,
//! `orders_by_customer`, or the primary key for the plain cursor and for
//! fulfilled orders, which the status index leaves out), and a page
//! of orders is assembled from two queries (its ids, then its documents)
//! whatever its size, so a read costs the same with ten thousand orders
//! stored as with ten million.

use std::collections::HashMap;

use stockroom_domain::OrderStatus;
use stockroom_domain::rules::{StockRecord, StoredOrder};
use stockroom_storage::{
    MAX_ORDERS_PER_PAGE, OrderFilter, OrderPage, StatusCount, StorageError, history,
};

use crate::records::{
    ORDER_COLUMN_COUNT, ORDER_COLUMNS, STOCK_COLUMNS, json_list, order_records, order_row,
    stock_row,
};
use crate::sql::Sql;

fn item(row: crate::records::StockRow) -> Result<StockRecord, StorageError> {
    row.record()
}

pub(crate) fn inventory(sql: Sql<'_>) -> Result<Vec<StockRecord>, StorageError> {
    sql.rows(
        &format!("SELECT {STOCK_COLUMNS} FROM inventory ORDER BY product_key"),
        [],
        stock_row,
    )?
    .into_iter()
    .map(item)
    .collect()
}

pub(crate) fn inventory_item(
    sql: Sql<'_>,
    product_key: &str,
) -> Result<Option<StockRecord>, StorageError> {
    sql.row(
        &format!("SELECT {STOCK_COLUMNS} FROM inventory WHERE product_key = ?1"),
        [product_key],
        stock_row,
    )?
    .map(item)
    .transpose()
}

pub(crate) fn order(sql: Sql<'_>, order_id: &str) -> Result<Option<StoredOrder>, StorageError> {
    Ok(with_history(sql, &[order_id.to_owned()])?.pop())
}

/// The orders with these ids and their histories, in the order given (ids
/// of no order are left out): one query for any number of orders.
fn with_history(sql: Sql<'_>, ids: &[String]) -> Result<Vec<StoredOrder>, StorageError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // The history follows the columns `order_row` reads.
    let rows = sql.rows(
        &format!(
            "SELECT {ORDER_COLUMNS}, history FROM orders
             WHERE id IN (SELECT value FROM json_each(?1))"
        ),
        [json_list(ids)],
        |row| Ok((order_row(row)?, row.get::<_, String>(ORDER_COLUMN_COUNT)?)),
    )?;
    let (rows, texts): (Vec<_>, Vec<String>) = rows.into_iter().unzip();
    let mut by_id: HashMap<String, StoredOrder> = HashMap::with_capacity(ids.len());
    for (order, text) in order_records(rows)?.into_iter().zip(&texts) {
        let history = history::decode(&order.id, text)?;
        by_id.insert(order.id.clone(), StoredOrder { order, history });
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// The query listing order ids for a filter. Each combination gets its own
/// statement, so that each can use its index; a single statement with
/// optional conditions (`?1 IS NULL OR status = ?1`) would scan the table.
/// The status is written into the statement (it is one of a few fixed
/// names): `orders_by_status` leaves fulfilled orders out, and SQLite uses a
/// partial index only for a query that states the index's condition itself,
/// which a bound parameter cannot. Fulfilled orders are listed through the
/// primary key, skipping the others.
fn list_sql(filter: &OrderFilter) -> String {
    let mut conditions = Vec::new();
    match filter.status {
        Some(OrderStatus::Fulfilled) => conditions.push("status = 'fulfilled'".to_owned()),
        Some(status) => conditions.push(format!(
            "status = '{}' AND status <> 'fulfilled'",
            status.as_str()
        )),
        None => {}
    }
    if filter.customer_id.is_some() {
        conditions.push("customer_id = :customer".to_owned());
    }
    if filter.after.is_some() {
        conditions.push("id > :after".to_owned());
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!("SELECT id FROM orders {filter} ORDER BY id LIMIT :limit")
}

pub(crate) fn orders(sql: Sql<'_>, filter: &OrderFilter) -> Result<OrderPage, StorageError> {
    let limit = filter.limit.clamp(1, MAX_ORDERS_PER_PAGE);
    let text = list_sql(filter);
    let mut named: Vec<(&str, &dyn rusqlite::ToSql)> = Vec::with_capacity(3);
    if let Some(customer) = &filter.customer_id {
        named.push((":customer", customer));
    }
    if let Some(after) = &filter.after {
        named.push((":after", after));
    }
    // One more than asked, to learn whether a next page exists.
    let fetch = i64::from(limit) + 1;
    named.push((":limit", &fetch));
    let mut ids = sql.rows(&text, named.as_slice(), |row| row.get::<_, String>(0))?;
    let has_more = ids.len() > limit as usize;
    ids.truncate(limit as usize);
    let orders = with_history(sql, &ids)?;
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

/// How many orders are in each status, from the counters every write keeps.
pub(crate) fn order_counts(sql: Sql<'_>) -> Result<Vec<StatusCount>, StorageError> {
    let counted = sql.rows(
        "SELECT status, SUM(count) FROM order_counts GROUP BY status",
        [],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for `query`, its steps joined.
    fn plan(connection: &rusqlite::Connection, query: &str) -> String {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .unwrap();
        let unbound = statement.parameter_count();
        let plan: Vec<String> = statement
            .query_map(
                rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Null, unbound)),
                |row| row.get::<_, String>(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        plan.join("; ")
    }

    fn migrated(directory: &tempfile::TempDir) -> rusqlite::Connection {
        let mut connection =
            crate::open_connection(&directory.path().join("plan.db"), false).unwrap();
        crate::migrate(&mut connection).unwrap();
        connection
    }

    /// The sweep and retention read the partial status index: a query that
    /// no longer stated the index's condition would scan the orders.
    #[test]
    fn the_status_index_serves_every_query_by_status() {
        let directory = tempfile::tempdir().unwrap();
        let connection = migrated(&directory);
        for query in [crate::load::SWEEP_CANDIDATES, crate::prune::OLDEST_REJECTED] {
            let plan = plan(&connection, query);
            assert!(plan.contains("orders_by_status"), "{query}: {plan}");
        }
    }

    /// Every list filter's plan uses an index, never a scan of the orders.
    #[test]
    fn every_list_filter_uses_an_index() {
        let directory = tempfile::tempdir().unwrap();
        let connection = migrated(&directory);
        for filter in OrderFilter::every_shape() {
            let plan = plan(&connection, &list_sql(&filter));
            assert!(
                !plan.contains("SCAN orders") || plan.contains("USING"),
                "{filter:?} scans the orders: {plan}"
            );
            if filter.status.is_some() || filter.customer_id.is_some() {
                assert!(plan.contains("INDEX"), "{filter:?}: {plan}");
            }
            if filter.status == Some(OrderStatus::Reserved) && filter.customer_id.is_none() {
                assert!(plan.contains("orders_by_status"), "{filter:?}: {plan}");
            }
        }
    }
}
