//! Documents built from domain records and stored values: an order with its
//! history, a product's stock, and the one time format every document uses.

use std::time::{Duration, UNIX_EPOCH};

use stockroom_domain::rules::{HistoryRecord, OrderRecord};
use stockroom_domain::{ProductName, Quantity, Stock};

use crate::{HistoryEntry, InventoryItem, Order, OrderLine, ProductRef};

/// A time stored as milliseconds since the Unix epoch, as every document
/// shows it: RFC 3339, UTC, milliseconds, `Z`.
pub fn format_time(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A document's time as milliseconds since the Unix epoch, if it is one.
pub fn parse_time(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let elapsed = time.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(elapsed.as_millis()).ok()
}

impl InventoryItem {
    /// The document of one product's stock.
    pub fn from_stock(product_name: &str, stock: &Stock) -> InventoryItem {
        // Stock never exceeds MAX_STOCK_PER_PRODUCT, far inside i64.
        let figure = |units: u64| units as i64;
        InventoryItem {
            product_name: product_name.to_owned(),
            quantity: figure(stock.on_hand()),
            reserved_quantity: figure(stock.reserved()),
            available: figure(stock.available()),
            sold: figure(stock.sold()),
            received: figure(stock.received_total()),
        }
    }
}

impl HistoryEntry {
    /// An entry from its stored columns; the status must be one this build
    /// knows.
    pub fn from_columns(
        version: i64,
        status: &str,
        reason: Option<String>,
        at_ms: i64,
    ) -> Result<HistoryEntry, String> {
        Ok(HistoryEntry {
            version,
            status: status.parse()?,
            reason,
            at: format_time(at_ms),
        })
    }

    pub fn from_record(record: &HistoryRecord) -> HistoryEntry {
        HistoryEntry {
            version: record.version,
            status: record.status,
            reason: record.reason.map(|reason| reason.as_str().to_owned()),
            at: format_time(record.at_ms),
        }
    }
}

impl Order {
    /// The document of a stored order with its history.
    pub fn from_record(order: &OrderRecord, history: Vec<HistoryEntry>) -> Order {
        Order {
            id: order.id.clone(),
            customer_id: order.customer_id.clone(),
            status: order.status,
            reason: order.reason.map(|reason| reason.as_str().to_owned()),
            payment_status: order.payment,
            version: order.version,
            created_at: format_time(order.created_at_ms),
            updated_at: format_time(order.updated_at_ms),
            items: order
                .lines
                .iter()
                .map(|line| OrderLine {
                    product: ProductRef {
                        name: line.product_name.clone(),
                    },
                    quantity: line.quantity.get(),
                })
                .collect(),
            history,
        }
    }

    /// The document of an order created by this batch: its history is the
    /// one entry of its creation.
    pub fn created(order: &OrderRecord) -> Order {
        let history = vec![HistoryEntry {
            version: order.version,
            status: order.status,
            reason: order.reason.map(|reason| reason.as_str().to_owned()),
            at: format_time(order.created_at_ms),
        }];
        Order::from_record(order, history)
    }
}

/// A view of an order's line as the domain types see it, used when building
/// an [`Order`] document.
pub fn order_line(product: &ProductName, quantity: Quantity) -> OrderLine {
    OrderLine {
        product: ProductRef {
            name: product.to_string(),
        },
        quantity: quantity.get(),
    }
}
