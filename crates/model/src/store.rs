//! data-service's committed state, kept as a backend keeps it: rows of
//! stock, orders, history, processed events, idempotency keys, the outbox
//! and the provider's ledger.
//!
//! Every call loads the rows into a [`Book`] or an [`Outbox`] (all of them:
//! a backend loads only what a call touches, and the rules must not care),
//! the rules decide, and the changes are written back with the writes a
//! backend makes: each write of an existing row conditional on the row being
//! as it was loaded, all of a call's writes or none. This is the property
//! tests' in-memory store, with rows that are plain, ordered and hashable, so
//! that the model checker can tell two states apart.

use std::collections::BTreeMap;

use stockroom_domain::outbox::{Entry, Lease, NewEntry, Outbox, OutboxChanges};
use stockroom_domain::rules::{
    Book, Changes, EventRecord, KeptAnswer, OrderLine, OrderRecord, Shortage, StoredKey,
};
use stockroom_domain::{
    Consumer, EventKind, OrderStatus, PaymentStatus, Quantity, Reason, Stock, StockError,
};

use crate::clock::{FLOOR_MS, NOW_MS, aged};

/// One product's stock row. Signed, as a database column is: a write that
/// breaks the figures (only a broken variant makes one) shows in the row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StockRow {
    pub name: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub sold: i64,
    pub received: i64,
}

impl StockRow {
    fn of(name: &str, stock: Stock) -> StockRow {
        StockRow {
            name: name.to_owned(),
            on_hand: stock.on_hand() as i64,
            reserved: stock.reserved() as i64,
            sold: stock.sold() as i64,
            received: stock.received_total() as i64,
        }
    }

    fn stock(&self) -> Result<Stock, StockError> {
        Stock::from_row(self.on_hand, self.reserved, self.sold, self.received)
    }
}

/// One line of an order row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LineRow {
    pub product_key: String,
    pub product_name: String,
    pub quantity: u32,
}

/// An order row, without its history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OrderRow {
    pub id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub reason: Option<Reason>,
    pub payment: PaymentStatus,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub lines: Vec<LineRow>,
}

impl OrderRow {
    /// The row of `order`. A final order's times are not kept (no rule
    /// reads them), so that two final orders that differ only in when they
    /// ended are one state.
    fn of(order: &OrderRecord) -> OrderRow {
        let (created_at_ms, updated_at_ms) = if order.status.is_final() {
            (FLOOR_MS, FLOOR_MS)
        } else {
            (order.created_at_ms, order.updated_at_ms)
        };
        OrderRow {
            id: order.id.clone(),
            customer_id: order.customer_id.clone(),
            status: order.status,
            reason: order.reason,
            payment: order.payment,
            version: order.version,
            created_at_ms,
            updated_at_ms,
            lines: order
                .lines
                .iter()
                .map(|line| LineRow {
                    product_key: line.product_key.clone(),
                    product_name: line.product_name.clone(),
                    quantity: line.quantity.get(),
                })
                .collect(),
        }
    }

    pub(crate) fn record(&self) -> OrderRecord {
        OrderRecord {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            status: self.status,
            reason: self.reason,
            payment: self.payment,
            version: self.version,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            // Extension is not modelled: the model's clock only ages rows.
            extended_until_ms: None,
            lines: self
                .lines
                .iter()
                .map(|line| OrderLine {
                    product_key: line.product_key.clone(),
                    product_name: line.product_name.clone(),
                    quantity: Quantity::new(i128::from(line.quantity))
                        .expect("stored quantities were checked when the order was made"),
                })
                .collect(),
        }
    }
}

/// One entry of an order's history. Its time is not kept: no rule reads it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HistoryRow {
    pub version: i64,
    pub status: OrderStatus,
    pub reason: Option<Reason>,
}

/// What an idempotency key's first request was answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRow {
    pub fingerprint: Option<String>,
    pub order_id: String,
    /// `None` when the first request reserved; else what was short, as
    /// (product, requested, available).
    pub shortages: Option<Vec<(String, u32, u64)>>,
}

impl KeyRow {
    fn stored(&self) -> StoredKey {
        let order_id = self.order_id.clone();
        StoredKey {
            fingerprint: self.fingerprint.clone(),
            answer: match &self.shortages {
                None => KeptAnswer::Reserved { order_id },
                Some(shortages) => KeptAnswer::Rejected {
                    order_id,
                    shortages: shortages
                        .iter()
                        .map(|(product_name, requested, available)| Shortage {
                            product_name: product_name.clone(),
                            requested: *requested,
                            available: *available,
                        })
                        .collect(),
                },
            },
        }
    }
}

/// An event as the outbox keeps it. Its time is not kept: no rule reads it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventRow {
    pub event_id: String,
    pub kind: EventKind,
    pub order_id: String,
    pub order_version: i64,
    pub total_units: u64,
}

impl EventRow {
    pub fn of(event: &EventRecord) -> EventRow {
        EventRow {
            event_id: event.event_id.clone(),
            kind: event.kind,
            order_id: event.order_id.clone(),
            order_version: event.order_version,
            total_units: event.total_units,
        }
    }

    fn record(&self) -> EventRecord {
        EventRecord {
            event_id: self.event_id.clone(),
            kind: self.kind,
            order_id: self.order_id.clone(),
            order_version: self.order_version,
            total_units: self.total_units,
            occurred_at_ms: NOW_MS,
            trace_parent: None,
            // The model's rules raise no notices (no webhooks).
            notice: None,
        }
    }
}

/// A lease on an outbox entry: its token and when it runs out.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseRow {
    pub token: String,
    pub until_ms: i64,
}

/// One outbox entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryRow {
    pub consumer: Consumer,
    pub event: EventRow,
    pub deliveries: u32,
    pub rejections: u32,
    pub lease: Option<LeaseRow>,
    pub dead: bool,
}

impl EntryRow {
    fn of(entry: &Entry) -> EntryRow {
        EntryRow {
            consumer: entry.consumer,
            event: EventRow::of(&entry.event),
            deliveries: entry.deliveries,
            rejections: entry.rejections,
            lease: entry.lease.as_ref().map(|lease| LeaseRow {
                token: lease.token.clone(),
                until_ms: lease.until_ms,
            }),
            dead: entry.dead_at_ms.is_some(),
        }
    }

    fn new(entry: NewEntry) -> EntryRow {
        EntryRow {
            consumer: entry.consumer,
            event: EventRow::of(&entry.event),
            deliveries: 0,
            rejections: entry.rejections,
            lease: None,
            dead: entry.dead_at_ms.is_some(),
        }
    }

    fn entry(&self, seq: i64) -> Entry {
        Entry {
            seq,
            consumer: self.consumer,
            event: self.event.record(),
            deliveries: self.deliveries,
            rejections: self.rejections,
            lease: self.lease.as_ref().map(|lease| Lease {
                token: lease.token.clone(),
                until_ms: lease.until_ms,
            }),
            dead_at_ms: self.dead.then_some(FLOOR_MS),
        }
    }
}

/// The provider's record of one charge key: the first verdict stands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChargeRow {
    pub order_id: String,
    pub approved: bool,
    pub requests: u32,
}

/// How the store writes a call's changes. Stockroom's backends make every
/// write conditional and write every column the rules changed; a broken
/// variant of the model turns one of these off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WriteDiscipline {
    /// Stock written only if still as loaded, orders only at the version
    /// loaded; a mismatch aborts the call's writes.
    pub conditional: bool,
    /// Stock written as a change to the current figures (`reserved =
    /// reserved - 1`) rather than as the figures the rules computed.
    pub stock_as_deltas: bool,
    /// An order's payment status written with its other changes. It is the
    /// record that the order's payment event took effect.
    pub write_payment: bool,
}

impl WriteDiscipline {
    pub const STOCKROOM: WriteDiscipline = WriteDiscipline {
        conditional: true,
        stock_as_deltas: false,
        write_payment: true,
    };
}

/// A conditional write found its row changed since it was loaded: the
/// call's writes are not made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict(pub String);

/// Everything data-service has committed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Store {
    pub stock: BTreeMap<String, StockRow>,
    pub orders: BTreeMap<String, OrderRow>,
    pub history: BTreeMap<String, Vec<HistoryRow>>,
    pub keys: BTreeMap<(String, String), KeyRow>,
    pub outbox: BTreeMap<i64, EntryRow>,
    pub next_seq: i64,
    /// Leases granted so far: each lease's token is drawn from it, so no two
    /// leases share a token.
    pub leases_granted: u32,
    /// The provider's ledger, by charge key. It lives in the system's
    /// database, as the simulated provider's does.
    pub ledger: BTreeMap<String, ChargeRow>,
}

impl Store {
    /// A store holding `units` of one product.
    pub fn stocked(product_key: &str, product_name: &str, units: u64) -> Store {
        let stock = Stock::received(units).expect("the model's stock is small");
        let mut store = Store::default();
        store
            .stock
            .insert(product_key.to_owned(), StockRow::of(product_name, stock));
        store
    }

    /// Every row loaded into a book, as of now.
    pub fn book(&self) -> Result<Book, StockError> {
        let mut book = Book::new(NOW_MS);
        for (key, row) in &self.stock {
            book.load_stock(key.clone(), row.name.clone(), row.stock()?);
        }
        for order in self.orders.values() {
            book.load_order(order.record());
        }
        for ((customer, key), row) in &self.keys {
            book.load_key(customer.clone(), key.clone(), row.stored());
        }
        Ok(book)
    }

    /// Every outbox entry loaded, as of now.
    pub fn outbox(&self) -> Outbox {
        let mut outbox = Outbox::new(NOW_MS);
        for (seq, row) in &self.outbox {
            outbox.load(row.entry(*seq));
        }
        outbox
    }

    /// Writes a book's changes and enqueues its events, in one transaction:
    /// all of them, or none when a conditional write finds its row changed.
    pub fn apply(&mut self, changes: Changes, discipline: WriteDiscipline) -> Result<(), Conflict> {
        let mut next = self.clone();
        next.write_stock(&changes, discipline)?;
        next.write_orders(&changes, discipline)?;
        for claim in changes.keys {
            let row = KeyRow {
                fingerprint: claim.fingerprint,
                order_id: claim.answer.order_id().to_owned(),
                shortages: match claim.answer {
                    KeptAnswer::Reserved { .. } => None,
                    KeptAnswer::Rejected { shortages, .. } => Some(
                        shortages
                            .into_iter()
                            .map(|s| (s.product_name, s.requested, s.available))
                            .collect(),
                    ),
                },
            };
            if next
                .keys
                .insert((claim.customer_id, claim.key), row)
                .is_some()
            {
                return Err(Conflict("an idempotency key claimed twice".into()));
            }
        }
        for event in changes.events {
            next.insert_entry(EntryRow::new(NewEntry::routed(event)));
        }
        *self = next;
        Ok(())
    }

    fn write_stock(
        &mut self,
        changes: &Changes,
        discipline: WriteDiscipline,
    ) -> Result<(), Conflict> {
        for change in &changes.stock {
            let after = StockRow::of(&change.product_name, change.after.stock);
            let current = self.stock.get(&change.product_key);
            let before = change
                .before
                .map(|before| StockRow::of(&change.product_name, before.stock));
            let row = match (current, before) {
                (Some(current), Some(before)) if discipline.stock_as_deltas => StockRow {
                    name: current.name.clone(),
                    on_hand: current.on_hand + after.on_hand - before.on_hand,
                    reserved: current.reserved + after.reserved - before.reserved,
                    sold: current.sold + after.sold - before.sold,
                    received: current.received + after.received - before.received,
                },
                (current, before) if discipline.conditional && current != before.as_ref() => {
                    return Err(Conflict(format!(
                        "stock of {} changed under the call",
                        change.product_key
                    )));
                }
                _ => after,
            };
            self.stock.insert(change.product_key.clone(), row);
        }
        Ok(())
    }

    fn write_orders(
        &mut self,
        changes: &Changes,
        discipline: WriteDiscipline,
    ) -> Result<(), Conflict> {
        for order in &changes.new_orders {
            if self
                .orders
                .insert(order.id.clone(), OrderRow::of(order))
                .is_some()
            {
                return Err(Conflict(format!("order id {} taken", order.id)));
            }
        }
        for change in &changes.changed_orders {
            let stored = self.orders.get_mut(&change.order.id).ok_or_else(|| {
                Conflict(format!("order {} vanished under the call", change.order.id))
            })?;
            if discipline.conditional && stored.version != change.loaded_version {
                return Err(Conflict(format!(
                    "order {} changed under the call",
                    change.order.id
                )));
            }
            let payment = stored.payment;
            *stored = OrderRow::of(&change.order);
            if !discipline.write_payment {
                stored.payment = payment;
            }
        }
        for entry in &changes.history {
            self.history
                .entry(entry.order_id.clone())
                .or_default()
                .push(HistoryRow {
                    version: entry.version,
                    status: entry.status,
                    reason: entry.reason,
                });
        }
        Ok(())
    }

    fn insert_entry(&mut self, row: EntryRow) {
        self.next_seq += 1;
        self.outbox.insert(self.next_seq, row);
    }

    /// Writes an outbox batch's changes, each conditional on the entry
    /// being as loaded.
    pub fn apply_outbox(&mut self, changes: OutboxChanges) -> Result<(), Conflict> {
        let mut next = self.clone();
        let unchanged = |store: &Store, entry: &Entry| {
            store.outbox.get(&entry.seq) == Some(&EntryRow::of(entry))
        };
        for entry in &changes.deleted {
            if !unchanged(&next, entry) {
                return Err(Conflict(format!(
                    "entry {} changed under the call",
                    entry.seq
                )));
            }
            next.outbox.remove(&entry.seq);
        }
        for change in &changes.updated {
            if !unchanged(&next, &change.loaded) {
                return Err(Conflict(format!(
                    "entry {} changed under the call",
                    change.loaded.seq
                )));
            }
            next.outbox
                .insert(change.after.seq, EntryRow::of(&change.after));
        }
        for entry in changes.inserted {
            next.insert_entry(EntryRow::new(entry));
        }
        *self = next;
        Ok(())
    }

    /// Adds an event to the outbox as a producer would, outside the flow.
    pub fn enqueue(&mut self, event: EventRow) {
        self.insert_entry(EntryRow::new(NewEntry::routed(event.record())));
    }

    /// One tick of the clock: every stored time ages. Returns whether any
    /// did (at the floor, time passing changes nothing the rules can see).
    pub fn age(&mut self) -> bool {
        let mut changed = false;
        let mut age = |time_ms: &mut i64| {
            let older = aged(*time_ms);
            changed |= older != *time_ms;
            *time_ms = older;
        };
        for order in self
            .orders
            .values_mut()
            .filter(|order| !order.status.is_final())
        {
            age(&mut order.created_at_ms);
            age(&mut order.updated_at_ms);
        }
        for entry in self.outbox.values_mut() {
            if let Some(lease) = &mut entry.lease {
                age(&mut lease.until_ms);
            }
        }
        changed
    }
}
