//! The rules of the order flow, decided in memory.
//!
//! A storage backend loads the rows a batch of calls touches into a [`Book`]
//! (stock rows, orders, the events already processed, the idempotency keys
//! already used), asks the book to decide each call in arrival order, and
//! writes the [`Changes`] the book collected with as few statements as the
//! batch allows. Every decision of the flow is made here and only here:
//! which reservation holds or is rejected and why, which payment applies,
//! which settlement commits or releases, which reservation expires, what a
//! cancel does. Backends only load and store, so they cannot disagree.
//!
//! Each decision is atomic in memory: it either changes the book completely
//! or not at all, so a later decision of the same batch sees exactly the
//! state an earlier one left, as if each call had its own transaction.

mod payment;
mod records;
mod release;
mod reserve;
mod settle;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::order::{Consumer, EventKind, OrderStatus, PaymentStatus, Reason};
use crate::stock::{Stock, StockError};
use crate::values::ProductName;

pub use payment::{Effect, payment_applies};
pub use records::{
    Changes, EventRecord, HistoryRecord, KeptAnswer, KeyClaim, OrderChange, OrderLine, OrderRecord,
    ProcessedRecord, StockChange, StockRecord, StoredKey, StoredOrder, event_id,
};
pub use release::{ReleaseDecision, SweepDecision};
pub use reserve::{ReserveAnswer, ReserveDecision, ReserveInput, Shortage};
pub use settle::{Settle, settlement_applies};

/// Stored data that breaks what the rules rely on: never a client's doing,
/// always a bug or a damaged database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("order {order_id} holds {product_key}, which is not in stock")]
    MissingStock {
        order_id: String,
        product_key: String,
    },
    #[error("order {order_id}: {source}")]
    Stock {
        order_id: String,
        #[source]
        source: StockError,
    },
    #[error(transparent)]
    Restock(StockError),
}

struct StockSlot {
    name: String,
    loaded: Option<Stock>,
    current: Option<Stock>,
}

struct OrderSlot {
    /// The version and status it was loaded with; `None` for an order
    /// created by this batch.
    loaded: Option<(i64, OrderStatus)>,
    record: OrderRecord,
}

enum KeySlot {
    /// Answered by an earlier batch.
    Stored(StoredKey),
    /// Answered by a request of this batch.
    Claimed(StoredKey),
}

/// The rows a batch touches, and every decision made on them so far.
pub struct Book {
    now_ms: i64,
    stock: BTreeMap<String, StockSlot>,
    orders: HashMap<String, OrderSlot>,
    new_order_ids: Vec<String>,
    processed: HashSet<(Consumer, String)>,
    keys: HashMap<(String, String), KeySlot>,
    history: Vec<HistoryRecord>,
    events: Vec<EventRecord>,
    new_processed: Vec<ProcessedRecord>,
    new_keys: Vec<KeyClaim>,
}

impl Book {
    /// An empty book; `now_ms` stamps every change the batch makes.
    pub fn new(now_ms: i64) -> Book {
        Book {
            now_ms,
            stock: BTreeMap::new(),
            orders: HashMap::new(),
            new_order_ids: Vec::new(),
            processed: HashSet::new(),
            keys: HashMap::new(),
            history: Vec::new(),
            events: Vec::new(),
            new_processed: Vec::new(),
            new_keys: Vec::new(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Adds a stock row read from storage.
    pub fn load_stock(&mut self, product_key: String, product_name: String, stock: Stock) {
        self.stock.insert(
            product_key,
            StockSlot {
                name: product_name,
                loaded: Some(stock),
                current: Some(stock),
            },
        );
    }

    /// Adds an order read from storage (or an order id found taken).
    pub fn load_order(&mut self, order: OrderRecord) {
        self.orders.insert(
            order.id.clone(),
            OrderSlot {
                loaded: Some((order.version, order.status)),
                record: order,
            },
        );
    }

    /// Adds the record that `consumer` already applied `event_id`.
    pub fn load_processed(&mut self, consumer: Consumer, event_id: String) {
        self.processed.insert((consumer, event_id));
    }

    /// Adds an idempotency key already answered.
    pub fn load_key(&mut self, customer_id: String, key: String, stored: StoredKey) {
        self.keys
            .insert((customer_id, key), KeySlot::Stored(stored));
    }

    /// A product's current figures and name, as the batch has left them.
    pub fn stock(&self, product_key: &str) -> Option<(&str, Stock)> {
        let slot = self.stock.get(product_key)?;
        Some((slot.name.as_str(), slot.current?))
    }

    /// An order as the batch has left it.
    pub fn order(&self, order_id: &str) -> Option<&OrderRecord> {
        self.orders.get(order_id).map(|slot| &slot.record)
    }

    /// Adds `units` to a product's stock, creating the product if it is new.
    pub fn restock(&mut self, product: &ProductName, units: u64) -> Result<Stock, RuleError> {
        let key = product.key();
        let after = match self.stock(&key) {
            Some((_, stock)) => stock.restock(units),
            None => Stock::received(units),
        }
        .map_err(RuleError::Restock)?;
        let slot = self.stock.entry(key).or_insert_with(|| StockSlot {
            name: product.as_str().to_owned(),
            loaded: None,
            current: None,
        });
        slot.current = Some(after);
        Ok(after)
    }

    /// Replaces the figures of products already checked to exist.
    fn set_stock(&mut self, figures: Vec<(String, Stock)>) {
        for (key, stock) in figures {
            if let Some(slot) = self.stock.get_mut(&key) {
                slot.current = Some(stock);
            }
        }
    }

    /// Moves an existing order to its next version: the status (which must go
    /// forward, or stay for a note), the payment, the order's reason when it
    /// ends, and one history entry.
    fn advance(
        &mut self,
        order_id: &str,
        status: OrderStatus,
        payment: PaymentStatus,
        reason: Option<Reason>,
    ) -> &OrderRecord {
        let now_ms = self.now_ms;
        let slot = self
            .orders
            .get_mut(order_id)
            .expect("the rules advance only orders they found in the book");
        let order = &mut slot.record;
        assert!(
            order.status.may_be_followed_by(status),
            "the rules never move an order from {} to {status}",
            order.status
        );
        if status != order.status {
            order.reason = reason;
        }
        order.status = status;
        order.payment = payment;
        order.version += 1;
        order.updated_at_ms = now_ms.max(order.updated_at_ms);
        self.history.push(HistoryRecord {
            order_id: order.id.clone(),
            version: order.version,
            status,
            reason,
            at_ms: order.updated_at_ms,
        });
        order
    }

    fn emit(&mut self, kind: EventKind, order: &OrderRecord) {
        self.events.push(EventRecord {
            event_id: event_id(kind, &order.id, order.version),
            kind,
            order_id: order.id.clone(),
            order_version: order.version,
            total_units: order.total_units(),
            occurred_at_ms: self.now_ms,
            trace_parent: None,
        });
    }

    fn mark_processed(&mut self, consumer: Consumer, event_id: &str) {
        self.processed.insert((consumer, event_id.to_owned()));
        self.new_processed.push(ProcessedRecord {
            consumer,
            event_id: event_id.to_owned(),
        });
    }

    fn was_processed(&self, consumer: Consumer, event_id: &str) -> bool {
        self.processed.contains(&(consumer, event_id.to_owned()))
    }

    /// The stock each line of an order would have after `change`, all lines or
    /// none: an order whose lines cannot all change leaves the book as it was.
    fn moved_stock(
        &self,
        order: &OrderRecord,
        change: impl Fn(&Stock, u64) -> Result<Stock, StockError>,
    ) -> Result<Vec<(String, Stock)>, RuleError> {
        let mut moved = Vec::with_capacity(order.lines.len());
        for line in &order.lines {
            let Some((_, stock)) = self.stock(&line.product_key) else {
                return Err(RuleError::MissingStock {
                    order_id: order.id.clone(),
                    product_key: line.product_key.clone(),
                });
            };
            let after = change(&stock, u64::from(line.quantity.get())).map_err(|source| {
                RuleError::Stock {
                    order_id: order.id.clone(),
                    source,
                }
            })?;
            moved.push((line.product_key.clone(), after));
        }
        Ok(moved)
    }

    /// Everything the batch decided, for the backend to write.
    pub fn into_changes(self) -> Changes {
        let mut new_orders = Vec::with_capacity(self.new_order_ids.len());
        let mut changed_orders = Vec::new();
        let mut orders = self.orders;
        for id in &self.new_order_ids {
            if let Some(slot) = orders.remove(id) {
                new_orders.push(slot.record);
            }
        }
        for slot in orders.into_values() {
            if let Some((loaded_version, loaded_status)) = slot.loaded
                && slot.record.version != loaded_version
            {
                changed_orders.push(OrderChange {
                    loaded_version,
                    loaded_status,
                    order: slot.record,
                });
            }
        }
        changed_orders.sort_by(|a, b| a.order.id.cmp(&b.order.id));
        let stock = self
            .stock
            .into_iter()
            .filter_map(|(product_key, slot)| {
                let after = slot.current?;
                (slot.loaded != Some(after)).then_some(StockChange {
                    product_key,
                    product_name: slot.name,
                    before: slot.loaded,
                    after,
                })
            })
            .collect();
        Changes {
            new_orders,
            changed_orders,
            history: self.history,
            events: self.events,
            processed: self.new_processed,
            stock,
            keys: self.new_keys,
        }
    }
}
