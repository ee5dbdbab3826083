//! The records the rules read and write: what storage keeps of orders,
//! stock, events and idempotency keys, and the changes a batch makes to
//! them. Plain data, with no behaviour beyond a few derived figures.

use crate::order::{Consumer, EventKind, OrderStatus, PaymentStatus, Reason};
use crate::rules::Shortage;
use crate::stock::Stock;
use crate::values::Quantity;

/// One line of a stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// The product's lower-case key, by which stock is found and locked.
    pub product_key: String,
    /// The product's name as the stock spells it.
    pub product_name: String,
    pub quantity: Quantity,
}

/// An order as storage keeps it, without its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    /// Why the order ended, once it was rejected or cancelled.
    pub reason: Option<Reason>,
    pub payment: PaymentStatus,
    /// 1 when created; every change adds one (optimistic locking).
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Sorted by product key, the one global lock order.
    pub lines: Vec<OrderLine>,
}

impl OrderRecord {
    pub fn total_units(&self) -> u64 {
        self.lines
            .iter()
            .map(|line| u64::from(line.quantity.get()))
            .sum()
    }
}

/// One entry of an order's history: the status it had at a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub order_id: String,
    pub version: i64,
    pub status: OrderStatus,
    pub reason: Option<Reason>,
    pub at_ms: i64,
}

/// An event to write to the outbox with the change it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event_id: String,
    pub kind: EventKind,
    pub order_id: String,
    /// The order's version right after the change.
    pub order_version: i64,
    pub total_units: u64,
    pub occurred_at_ms: i64,
    /// The W3C trace context of the call that caused the event, so that its
    /// consumer continues the same trace. The rules never set or read it;
    /// the storage layer fills it in from the call.
    pub trace_parent: Option<String>,
}

/// The id of the event reporting that `order_id` reached `order_version`
/// through a change of `kind`. A version is reached once, so the id is unique.
pub fn event_id(kind: EventKind, order_id: &str, order_version: i64) -> String {
    format!("{}:{order_id}:{order_version}", kind.as_str())
}

/// A consumer's record that it applied an event, written with the effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessedRecord {
    pub consumer: Consumer,
    pub event_id: String,
}

/// What an idempotency key's first request was answered, as storage keeps
/// it: the order it created, and what was short if it was rejected. The
/// whole answer is rebuilt from the order ([`ReserveAnswer::first`]), so a
/// replay answers exactly as the first request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptAnswer {
    Reserved {
        order_id: String,
    },
    Rejected {
        order_id: String,
        shortages: Vec<Shortage>,
    },
}

impl KeptAnswer {
    /// The order the answer created.
    pub fn order_id(&self) -> &str {
        match self {
            KeptAnswer::Reserved { order_id } | KeptAnswer::Rejected { order_id, .. } => order_id,
        }
    }
}

/// An idempotency key already answered: the request's fingerprint and its
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub fingerprint: Option<String>,
    pub answer: KeptAnswer,
}

/// An idempotency key to store with the answer its request was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    pub customer_id: String,
    pub key: String,
    pub fingerprint: Option<String>,
    pub answer: KeptAnswer,
}

/// A product's stock before and after the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    pub product_key: String,
    pub product_name: String,
    /// `None` for a product the batch created.
    pub before: Option<Stock>,
    pub after: Stock,
}

/// An existing order's state after the batch, and the version and status it
/// was loaded with: the write is conditional on that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    pub loaded_version: i64,
    pub loaded_status: OrderStatus,
    pub order: OrderRecord,
}

/// Everything a batch writes. Each list is in a stable order (creation order,
/// or key order for stock and orders), so backends write rows in one global
/// order and concurrent batches cannot deadlock on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub new_orders: Vec<OrderRecord>,
    pub changed_orders: Vec<OrderChange>,
    pub history: Vec<HistoryRecord>,
    pub events: Vec<EventRecord>,
    pub processed: Vec<ProcessedRecord>,
    pub stock: Vec<StockChange>,
    pub keys: Vec<KeyClaim>,
}

impl Changes {
    /// How many orders each status gains (or loses) with this batch: new
    /// orders count in their status, a changed order moves from the status
    /// it was loaded in to its new one. Statuses that do not change are left
    /// out; the others come in [`OrderStatus::ALL`] order.
    pub fn status_deltas(&self) -> Vec<(OrderStatus, i64)> {
        let mut deltas = OrderStatus::ALL.map(|status| (status, 0_i64));
        let mut add = |status: OrderStatus, delta: i64| {
            if let Some(entry) = deltas.iter_mut().find(|(each, _)| *each == status) {
                entry.1 += delta;
            }
        };
        for order in &self.new_orders {
            add(order.status, 1);
        }
        for change in &self.changed_orders {
            if change.loaded_status != change.order.status {
                add(change.loaded_status, -1);
                add(change.order.status, 1);
            }
        }
        deltas
            .into_iter()
            .filter(|(_, delta)| *delta != 0)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.new_orders.is_empty()
            && self.changed_orders.is_empty()
            && self.history.is_empty()
            && self.events.is_empty()
            && self.processed.is_empty()
            && self.stock.is_empty()
            && self.keys.is_empty()
    }
}

/// A product's stock as storage keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRecord {
    /// The product's lower-case key, by which stock is found and locked.
    pub product_key: String,
    /// The product's name as it was first stocked.
    pub product_name: String,
    pub stock: Stock,
}

/// An order with its history, oldest entry first, as readers get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    pub order: OrderRecord,
    pub history: Vec<HistoryRecord>,
}
