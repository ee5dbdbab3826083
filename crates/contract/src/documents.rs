//! Documents built from domain records: an order with its history, a
//! product's stock, an event, and the one time format every document uses.
//! Storage returns records; the services make documents of them here.

use std::time::{Duration, UNIX_EPOCH};

use stockroom_domain::rules::{EventRecord, HistoryRecord, OrderRecord, StockRecord, StoredOrder};
use stockroom_domain::{ProductName, Quantity, Stock};

use crate::{Event, HistoryEntry, InventoryItem, Order, OrderLine, ProductRef};

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
            max_per_customer: None,
            low_stock_threshold: None,
            movement_seq: None,
        }
    }
}

impl InventoryItem {
    /// The document of a stored product.
    pub fn from_record(record: &StockRecord) -> InventoryItem {
        InventoryItem {
            max_per_customer: record.settings.max_per_customer,
            low_stock_threshold: record.settings.low_stock_threshold,
            movement_seq: Some(record.movement_seq),
            ..InventoryItem::from_stock(&record.product_name, &record.stock)
        }
    }
}

impl HistoryEntry {
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
            extended_until: order.extended_until_ms.map(format_time),
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

    /// The document of a stored order with its history.
    pub fn from_stored(stored: &StoredOrder) -> Order {
        let history = stored
            .history
            .iter()
            .map(HistoryEntry::from_record)
            .collect();
        Order::from_record(&stored.order, history)
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

impl Event {
    /// The document of an event as the bus carries it.
    pub fn from_record(event: &EventRecord) -> Event {
        Event {
            event_id: event.event_id.clone(),
            kind: event.kind,
            order_id: event.order_id.clone(),
            order_version: event.order_version,
            occurred_at: format_time(event.occurred_at_ms),
            total_units: event.total_units,
            trace_parent: event.trace_parent.clone(),
        }
    }

    /// The record of an event document, or why it is not one: its time must
    /// be an RFC 3339 time after the epoch.
    pub fn to_record(&self) -> Result<EventRecord, EventTimeError> {
        let occurred_at_ms = parse_time(&self.occurred_at).ok_or_else(|| EventTimeError {
            event_id: self.event_id.clone(),
            occurred_at: self.occurred_at.clone(),
        })?;
        Ok(EventRecord {
            event_id: self.event_id.clone(),
            kind: self.kind,
            order_id: self.order_id.clone(),
            order_version: self.order_version,
            total_units: self.total_units,
            occurred_at_ms,
            trace_parent: self.trace_parent.clone(),
            // Notices go to other systems by webhook, never over the bus.
            notice: None,
        })
    }
}

/// An event document whose time is not an RFC 3339 time after the epoch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event_id} has occurredAt {occurred_at:?}, not an RFC 3339 time")]
pub struct EventTimeError {
    pub event_id: String,
    pub occurred_at: String,
}
