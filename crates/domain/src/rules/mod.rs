//! The rules of the order flow, decided in memory.
//!
//! A storage backend loads the rows a batch of calls touches into a [`Book`]
//! (stock rows, orders, the idempotency keys already used), asks the book to decide each call in arrival order, and
//! writes the [`Changes`] the book collected with as few statements as the
//! batch allows. Every decision of the flow is made here and only here:
//! which reservation holds or is rejected and why, which payment applies,
//! which settlement commits or releases, which reservation expires, what a
//! cancel does. Backends only load and store, so they cannot disagree.
//!
//! Each decision is atomic in memory: it either changes the book completely
//! or not at all, so a later decision of the same batch sees exactly the
//! state an earlier one left, as if each call had its own transaction.

mod extend;
mod limits;
mod notices;
mod payment;
mod products;
mod records;
mod release;
mod reserve;
mod settle;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use crate::order::{EventKind, OrderStatus, PaymentStatus, Reason};
use crate::stock::{Stock, StockError};

pub use extend::ExtendDecision;
pub use limits::{LimitExceeded, holdings_of};
pub use payment::{Effect, payment_applies, payment_recorded};
pub use products::{
    AdjustDecision, AdjustInput, CreateDecision, MAX_ADJUSTMENT_UNITS, MAX_PER_CUSTOMER_LIMIT,
    MAX_REFERENCE_LENGTH, SettingsChange, SettingsDecision,
};
pub use records::{
    AdjustAnswer, AdjustReason, Changes, EventRecord, FiguresDelta, HistoryRecord, HoldingChange,
    HoldingsReset, KeptAnswer, KeyClaim, Movement, MovementKind, MovementReason, Notice,
    OperatorKeyClaim, OrderChange, OrderLine, OrderRecord, ProductSettings, ProductState,
    StockChange, StockRecord, StoredKey, StoredOrder, event_id, is_event_id,
};
pub use release::{ReleaseDecision, SweepDecision};
pub use reserve::{ReserveAnswer, ReserveDecision, ReserveInput, Shortage};
pub use settle::{Settle, settlement_applies, settlement_recorded};

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
    /// `None` for a product this batch created.
    loaded: Option<ProductState>,
    /// `None` until a product this batch is creating exists.
    current: Option<ProductState>,
}

/// One customer's units of one limited product.
struct HoldingSlot {
    loaded: Option<u64>,
    current: u64,
}

struct OrderSlot {
    /// The version and status it was loaded with; `None` for an order
    /// created by this batch.
    loaded: Option<(i64, OrderStatus)>,
    record: OrderRecord,
}

/// An operator's idempotency key, answered by an earlier batch or this one.
struct OperatorKeySlot {
    fingerprint: Option<String>,
    answer: AdjustAnswer,
}

/// What a movement records besides the figures: filled in by each step.
struct MovementOf {
    kind: MovementKind,
    reason: Option<MovementReason>,
    reference: Option<String>,
    order_id: Option<String>,
}

impl MovementOf {
    fn order(kind: MovementKind, order_id: &str, reason: Option<MovementReason>) -> MovementOf {
        MovementOf {
            kind,
            reason,
            reference: None,
            order_id: Some(order_id.to_owned()),
        }
    }
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
    /// Whether to raise notices for other systems (webhooks are configured).
    notify: bool,
    stock: BTreeMap<String, StockSlot>,
    /// Holdings of (customer id, product key), loaded for the pairs the
    /// batch touches (zero when no row exists).
    holdings: BTreeMap<(String, String), HoldingSlot>,
    holdings_resets: Vec<HoldingsReset>,
    movements: Vec<Movement>,
    operator_keys: HashMap<String, OperatorKeySlot>,
    new_operator_keys: Vec<OperatorKeyClaim>,
    orders: HashMap<String, OrderSlot>,
    new_order_ids: Vec<String>,
    keys: HashMap<(String, String), KeySlot>,
    history: Vec<HistoryRecord>,
    events: Vec<EventRecord>,
    new_keys: Vec<KeyClaim>,
}

impl Book {
    /// An empty book; `now_ms` stamps every change the batch makes.
    pub fn new(now_ms: i64) -> Book {
        Book {
            now_ms,
            notify: false,
            stock: BTreeMap::new(),
            holdings: BTreeMap::new(),
            holdings_resets: Vec::new(),
            movements: Vec::new(),
            operator_keys: HashMap::new(),
            new_operator_keys: Vec::new(),
            orders: HashMap::new(),
            new_order_ids: Vec::new(),
            keys: HashMap::new(),
            history: Vec::new(),
            events: Vec::new(),
            new_keys: Vec::new(),
        }
    }

    /// The same book, raising notices for other systems (order ended, stock
    /// low, sold out, back in stock) when `notify`.
    pub fn notifying(mut self, notify: bool) -> Book {
        self.notify = notify;
        self
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Adds a stock row read from storage, with no settings and an empty
    /// ledger (see [`Book::load_product`]).
    pub fn load_stock(&mut self, product_key: String, product_name: String, stock: Stock) {
        let state = ProductState {
            stock,
            settings: ProductSettings::default(),
            movements: 0,
        };
        self.load_product(product_key, product_name, state);
    }

    /// Adds a product's row read from storage.
    pub fn load_product(&mut self, product_key: String, product_name: String, state: ProductState) {
        self.stock.insert(
            product_key,
            StockSlot {
                name: product_name,
                loaded: Some(state),
                current: Some(state),
            },
        );
    }

    /// Adds a customer's holding of a product, as stored (0 when no row
    /// exists). Every pair whose customer reserves or releases a limited
    /// product in the batch must be loaded.
    pub fn load_holding(&mut self, customer_id: String, product_key: String, stored: Option<u64>) {
        self.holdings.insert(
            (customer_id, product_key),
            HoldingSlot {
                loaded: stored,
                current: stored.unwrap_or(0),
            },
        );
    }

    /// Adds an operator's idempotency key already answered.
    pub fn load_operator_key(
        &mut self,
        key: String,
        fingerprint: Option<String>,
        answer: AdjustAnswer,
    ) {
        self.operator_keys.insert(
            key,
            OperatorKeySlot {
                fingerprint,
                answer,
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

    /// Adds an idempotency key already answered.
    pub fn load_key(&mut self, customer_id: String, key: String, stored: StoredKey) {
        self.keys
            .insert((customer_id, key), KeySlot::Stored(stored));
    }

    /// A product's current figures and name, as the batch has left them.
    pub fn stock(&self, product_key: &str) -> Option<(&str, Stock)> {
        let slot = self.stock.get(product_key)?;
        Some((slot.name.as_str(), slot.current?.stock))
    }

    /// A product as the batch has left it.
    pub fn product(&self, product_key: &str) -> Option<StockRecord> {
        let slot = self.stock.get(product_key)?;
        let state = slot.current?;
        Some(StockRecord {
            product_key: product_key.to_owned(),
            product_name: slot.name.clone(),
            stock: state.stock,
            settings: state.settings,
            movement_seq: state.movements,
        })
    }

    /// An order as the batch has left it.
    pub fn order(&self, order_id: &str) -> Option<&OrderRecord> {
        self.orders.get(order_id).map(|slot| &slot.record)
    }

    /// Replaces a product's figures (already checked to exist) and records
    /// the movement, and any notice its availability crossing a line raises.
    fn change_stock(&mut self, product_key: &str, after: Stock, movement: MovementOf) {
        let now_ms = self.now_ms;
        let Some(slot) = self.stock.get_mut(product_key) else {
            return;
        };
        let Some(state) = slot.current.as_mut() else {
            return;
        };
        let before = state.stock;
        // A creation and a change of settings are recorded even when no
        // figure moves: they start the ledger, or change the limit that the
        // ledger's later reservations are checked against.
        let kind = movement.kind;
        let records_settings = matches!(kind, MovementKind::Created | MovementKind::Settings);
        if before == after && !records_settings {
            return;
        }
        state.stock = after;
        state.movements += 1;
        let seq = state.movements;
        let settings = state.settings;
        let name = slot.name.clone();
        self.movements.push(Movement {
            product_key: product_key.to_owned(),
            seq,
            kind: movement.kind,
            reason: movement.reason,
            reference: movement.reference,
            order_id: movement.order_id,
            delta: FiguresDelta::between(&before, &after),
            settings: records_settings.then_some(settings),
            at_ms: now_ms,
        });
        // A product's first units are not "back" in stock: only a product
        // that existed before can cross a line.
        if kind != MovementKind::Created {
            self.notice_stock(product_key, &name, seq, settings, &before, &after);
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
        self.emit_with(kind, order, None);
    }

    /// Records an event of `order` at its current version, with what it
    /// tells other systems, if anything.
    fn emit_with(&mut self, kind: EventKind, order: &OrderRecord, notice: Option<Notice>) {
        self.events.push(EventRecord {
            event_id: event_id(kind, &order.id, order.version),
            kind,
            order_id: order.id.clone(),
            order_version: order.version,
            total_units: order.total_units(),
            occurred_at_ms: self.now_ms,
            trace_parent: None,
            notice,
        });
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
        let holdings = self
            .holdings
            .into_iter()
            .filter(|(_, slot)| {
                slot.loaded != Some(slot.current) && !(slot.loaded.is_none() && slot.current == 0)
            })
            .map(|((customer_id, product_key), slot)| HoldingChange {
                customer_id,
                product_key,
                before: slot.loaded,
                after: slot.current,
            })
            .collect();
        Changes {
            new_orders,
            changed_orders,
            history: self.history,
            events: self.events,
            stock,
            keys: self.new_keys,
            movements: self.movements,
            holdings,
            holdings_resets: self.holdings_resets,
            operator_keys: self.new_operator_keys,
        }
    }
}
