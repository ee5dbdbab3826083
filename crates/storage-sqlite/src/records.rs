//! Rows to domain records: the one place that reads the order and stock
//! tables' columns, for loading a batch and for serving reads alike.

use rusqlite::Row;
use stockroom_domain::Stock;
use stockroom_domain::rules::OrderRecord;
use stockroom_storage::{StorageError, lines};

/// The columns [`order_row`] reads, in its order.
pub(crate) const ORDER_COLUMNS: &str =
    "id, customer_id, status, reason, payment_status, version, created_at_ms, updated_at_ms, lines";

/// How many columns [`ORDER_COLUMNS`] names: a query that reads more
/// columns after them finds the first at this index.
pub(crate) const ORDER_COLUMN_COUNT: usize = 9;

/// The columns [`stock_row`] reads, in its order.
pub(crate) const STOCK_COLUMNS: &str =
    "product_key, product_name, quantity, reserved, sold, received";

/// An order's row, as stored.
pub(crate) struct OrderRow {
    id: String,
    customer_id: String,
    status: String,
    reason: Option<String>,
    payment: String,
    version: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    lines: String,
}

pub(crate) fn order_row(row: &Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        status: row.get(2)?,
        reason: row.get(3)?,
        payment: row.get(4)?,
        version: row.get(5)?,
        created_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
        lines: row.get(8)?,
    })
}

fn inconsistent(message: String) -> StorageError {
    StorageError::Inconsistent(message)
}

/// The records of stored order rows, checked, in the rows' order.
pub(crate) fn order_records(orders: Vec<OrderRow>) -> Result<Vec<OrderRecord>, StorageError> {
    orders
        .into_iter()
        .map(|row| {
            let parse_error = |error: String| inconsistent(format!("order {}: {error}", row.id));
            Ok(OrderRecord {
                status: row
                    .status
                    .parse()
                    .map_err(|error: stockroom_domain::UnknownName| {
                        parse_error(error.to_string())
                    })?,
                reason: row.reason.as_deref().map(str::parse).transpose().map_err(
                    |error: stockroom_domain::UnknownName| parse_error(error.to_string()),
                )?,
                payment: row
                    .payment
                    .parse()
                    .map_err(|error: stockroom_domain::UnknownName| {
                        parse_error(error.to_string())
                    })?,
                lines: lines::decode(&row.id, &row.lines)?,
                id: row.id,
                customer_id: row.customer_id,
                version: row.version,
                created_at_ms: row.created_at_ms,
                updated_at_ms: row.updated_at_ms,
            })
        })
        .collect()
}

/// (product key, product name, figures).
pub(crate) type StockRow = (String, String, i64, i64, i64, i64);

pub(crate) fn stock_row(row: &Row<'_>) -> rusqlite::Result<StockRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

/// Checks a stock row's figures.
pub(crate) fn stock(row: &StockRow) -> Result<Stock, StorageError> {
    let (_, name, on_hand, reserved, sold, received) = row;
    Stock::from_row(*on_hand, *reserved, *sold, *received)
        .map_err(|error| inconsistent(format!("stock of {name}: {error}")))
}

/// A list of values as the JSON array that `json_each(?)` unpacks: one
/// parameter, and so one statement, for any number of rows.
pub(crate) fn json_list<T: serde::Serialize>(values: &[T]) -> String {
    serde_json::to_string(values).expect("plain values always serialise")
}
