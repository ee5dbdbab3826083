//! Rows to domain records: the one place that reads the order and stock
//! tables' columns, for loading a batch and for serving reads alike.

use rusqlite::Row;
use stockroom_domain::rules::{OrderRecord, ProductSettings, ProductState, StockRecord};
use stockroom_domain::{OrderStatus, PaymentStatus, Reason, Stock, UnknownName};
use stockroom_storage::{StorageError, lines};

/// The columns [`order_row`] reads, in its order.
pub(crate) const ORDER_COLUMNS: &str = "id, customer_id, status, reason, payment_status, version, created_at_ms, updated_at_ms, lines, extended_until_ms";

/// How many columns [`ORDER_COLUMNS`] names: a query that reads more
/// columns after them finds the first at this index.
pub(crate) const ORDER_COLUMN_COUNT: usize = 10;

/// The columns [`stock_row`] reads, in its order.
pub(crate) const STOCK_COLUMNS: &str = "product_key, product_name, quantity, reserved, sold, received, max_per_customer, low_stock_threshold, movements";

/// A `WITH` clause naming `name` the rows of the JSON list `parameter` (as
/// [`json_list`] writes it), each row's JSON array in column `v`, read as
/// `name.v ->> 0` and so on.
///
/// Why not `json_each` in the statement itself: SQLite renders a row's
/// array to text anew at every mention of `value`, so a statement that reads
/// eleven columns rendered and parsed each row eleven times, about half of a
/// statement's time (`sqlite3` measured 2.3 µs a row against 1.3 µs here).
/// Materialised, each row is rendered once and its parsed text is reused by
/// every `->>`.
pub(crate) fn json_rows(name: &str, parameter: &str) -> String {
    format!("WITH {name} AS MATERIALIZED (SELECT value AS v FROM json_each({parameter}))")
}

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
    extended_until_ms: Option<i64>,
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
        extended_until_ms: row.get(9)?,
    })
}

fn inconsistent(message: String) -> StorageError {
    StorageError::Inconsistent(message)
}

/// The records of stored order rows, checked, in the rows' order.
pub(crate) fn order_records(orders: Vec<OrderRow>) -> Result<Vec<OrderRecord>, StorageError> {
    orders.into_iter().map(order_record).collect()
}

fn order_record(row: OrderRow) -> Result<OrderRecord, StorageError> {
    let parse_error = |error: UnknownName| inconsistent(format!("order {}: {error}", row.id));
    Ok(OrderRecord {
        status: row.status.parse::<OrderStatus>().map_err(parse_error)?,
        reason: row
            .reason
            .as_deref()
            .map(str::parse::<Reason>)
            .transpose()
            .map_err(parse_error)?,
        payment: row.payment.parse::<PaymentStatus>().map_err(parse_error)?,
        lines: lines::decode(&row.id, &row.lines)?,
        id: row.id,
        customer_id: row.customer_id,
        version: row.version,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
        extended_until_ms: row.extended_until_ms,
    })
}

/// A product's row, as stored.
pub(crate) struct StockRow {
    pub product_key: String,
    pub product_name: String,
    figures: [i64; 4],
    max_per_customer: Option<i64>,
    low_stock_threshold: Option<i64>,
    movements: i64,
}

pub(crate) fn stock_row(row: &Row<'_>) -> rusqlite::Result<StockRow> {
    Ok(StockRow {
        product_key: row.get(0)?,
        product_name: row.get(1)?,
        figures: [row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?],
        max_per_customer: row.get(6)?,
        low_stock_threshold: row.get(7)?,
        movements: row.get(8)?,
    })
}

impl StockRow {
    /// The row's figures, settings and ledger length, checked.
    pub(crate) fn state(&self) -> Result<ProductState, StorageError> {
        let damaged = |what: &str| inconsistent(format!("{what} of {}", self.product_name));
        let [on_hand, reserved, sold, received] = self.figures;
        let stock = Stock::from_row(on_hand, reserved, sold, received)
            .map_err(|error| inconsistent(format!("stock of {}: {error}", self.product_name)))?;
        Ok(ProductState {
            stock,
            settings: ProductSettings {
                max_per_customer: self
                    .max_per_customer
                    .map(u32::try_from)
                    .transpose()
                    .map_err(|_| damaged("the limit"))?,
                low_stock_threshold: self
                    .low_stock_threshold
                    .map(u64::try_from)
                    .transpose()
                    .map_err(|_| damaged("the threshold"))?,
            },
            movements: u64::try_from(self.movements).map_err(|_| damaged("the ledger length"))?,
        })
    }

    /// The record readers get.
    pub(crate) fn record(self) -> Result<StockRecord, StorageError> {
        let state = self.state()?;
        Ok(StockRecord {
            product_key: self.product_key,
            product_name: self.product_name,
            stock: state.stock,
            settings: state.settings,
            movement_seq: state.movements,
        })
    }
}

/// A list of values as the JSON array that `json_each(?)` unpacks: one
/// parameter, and so one statement, for any number of rows.
///
/// A list of rows (each a JSON array of its columns) is read through
/// [`json_rows`], not by naming `json_each`'s `value` once per column.
pub(crate) fn json_list<T: serde::Serialize>(values: &[T]) -> String {
    serde_json::to_string(values).expect("plain values always serialise")
}
