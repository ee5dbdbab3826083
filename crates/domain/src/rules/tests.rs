//! Tests of the rules: examples of each decision, and property tests that run
//! random batches through a book, write the changes to an in-memory store the
//! way a backend would, and check every invariant after each batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use crate::invariants::{self, OrderFigures, StockFigures};
use crate::rules::*;
use crate::{
    Consumer, CustomerId, EventKind, OrderItem, OrderItems, OrderStatus, PaymentStatus,
    ProductName, Quantity, Reason, ReleaseReason, Stock,
};

fn items(lines: &[(&str, u32)]) -> OrderItems {
    OrderItems::new(
        lines
            .iter()
            .map(|(name, units)| OrderItem {
                product: ProductName::new(name).unwrap(),
                quantity: Quantity::new(i128::from(*units)).unwrap(),
            })
            .collect(),
    )
    .unwrap()
}

fn customer() -> CustomerId {
    CustomerId::new("c1").unwrap()
}

fn input<'a>(
    order_id: &'a str,
    customer: &'a CustomerId,
    items: &'a OrderItems,
) -> ReserveInput<'a> {
    ReserveInput {
        order_id,
        customer_id: customer,
        items,
        idempotency_key: None,
        fingerprint: None,
    }
}

fn book_with(stock: &[(&str, u64)]) -> Book {
    let mut book = Book::new(1_000);
    for (name, units) in stock {
        book.load_stock(
            name.to_lowercase(),
            (*name).into(),
            Stock::received(*units).unwrap(),
        );
    }
    book
}

#[test]
fn a_reservation_holds_every_item_or_none() {
    let mut book = book_with(&[("Laptop", 2), ("Phone", 1)]);
    let customer = customer();
    let both = items(&[("laptop", 2), ("Phone", 1)]);
    let too_many = items(&[("Laptop", 1), ("Phone", 1)]);
    assert!(matches!(
        book.reserve(0, input("a", &customer, &both)),
        ReserveDecision::Reserved(order) if order.lines[0].product_name == "Laptop"
    ));
    match book.reserve(1, input("b", &customer, &too_many)) {
        ReserveDecision::Rejected { order, shortages } => {
            assert_eq!(order.reason, Some(Reason::InsufficientStock));
            assert_eq!(shortages.len(), 2);
            assert_eq!(shortages[0].available, 0);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let changes = book.into_changes();
    assert_eq!(changes.new_orders.len(), 2);
    assert_eq!(changes.events.len(), 1, "only the reservation is an event");
    assert_eq!(changes.history.len(), 2);
    let laptop = &changes.stock[0];
    assert_eq!((laptop.after.reserved(), laptop.after.available()), (2, 0));
}

#[test]
fn unknown_products_and_taken_ids_create_nothing() {
    let mut book = book_with(&[("Laptop", 2)]);
    let customer = customer();
    let unknown = items(&[("Laptop", 1), ("Tablet", 1)]);
    assert_eq!(
        book.reserve(0, input("a", &customer, &unknown)),
        ReserveDecision::UnknownProduct("Tablet".into())
    );
    let known = items(&[("Laptop", 1)]);
    assert!(matches!(
        book.reserve(1, input("b", &customer, &known)),
        ReserveDecision::Reserved(_)
    ));
    assert_eq!(
        book.reserve(2, input("b", &customer, &known)),
        ReserveDecision::OrderIdTaken
    );
    let changes = book.into_changes();
    assert_eq!(changes.new_orders.len(), 1);
    assert_eq!(changes.stock[0].after.reserved(), 1);
}

#[test]
fn idempotency_keys_replay_within_and_across_batches() {
    let mut book = book_with(&[("Laptop", 5)]);
    let customer = customer();
    let one = items(&[("Laptop", 1)]);
    let keyed = |order_id, fingerprint| ReserveInput {
        idempotency_key: Some("k"),
        fingerprint: Some(fingerprint),
        ..input(order_id, &customer, &one)
    };
    assert!(matches!(
        book.reserve(0, keyed("a", "f1")),
        ReserveDecision::Reserved(_)
    ));
    assert_eq!(
        book.reserve(1, keyed("b", "f1")),
        ReserveDecision::SameAs(0)
    );
    assert_eq!(
        book.reserve(2, keyed("c", "f2")),
        ReserveDecision::KeyReused
    );
    let other_customer = CustomerId::new("c2").unwrap();
    let theirs = ReserveInput {
        idempotency_key: Some("k"),
        fingerprint: Some("f1"),
        ..input("d", &other_customer, &one)
    };
    assert!(
        matches!(book.reserve(3, theirs), ReserveDecision::Reserved(_)),
        "keys are scoped to their customer"
    );
    let changes = book.into_changes();
    assert_eq!(changes.keys.len(), 2);
    assert_eq!(changes.stock[0].after.reserved(), 2);

    let mut next = book_with(&[("Laptop", 5)]);
    next.load_key(
        "c1".into(),
        "k".into(),
        StoredKey {
            fingerprint: Some("f1".into()),
            answer: "stored".into(),
        },
    );
    assert_eq!(
        next.reserve(0, keyed("e", "f1")),
        ReserveDecision::Replay("stored".into())
    );
    assert_eq!(
        next.reserve(1, keyed("f", "f2")),
        ReserveDecision::KeyReused
    );
    assert!(next.into_changes().is_empty());
}

fn reserved_book() -> Book {
    let mut book = book_with(&[("Laptop", 3)]);
    let customer = customer();
    let two = items(&[("Laptop", 2)]);
    assert!(matches!(
        book.reserve(0, input("a", &customer, &two)),
        ReserveDecision::Reserved(_)
    ));
    book
}

#[test]
fn a_paid_order_is_fulfilled_once() {
    let mut book = reserved_book();
    let reserved_event = event_id(EventKind::OrderReserved, "a", 1);
    assert_eq!(
        book.record_payment("a", &reserved_event, true),
        Effect::Applied(OrderStatus::Reserved)
    );
    assert_eq!(
        book.record_payment("a", &reserved_event, true),
        Effect::Duplicate(OrderStatus::Reserved)
    );
    assert_eq!(book.order("a").unwrap().payment, PaymentStatus::Charged);
    let paid_event = event_id(EventKind::PaymentSucceeded, "a", 2);
    assert_eq!(
        book.release("a", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::NotCancellable),
        "a charged order cannot be cancelled"
    );
    assert_eq!(
        book.settle("a", &paid_event, Settle::Release),
        Ok(Effect::NotApplicable(OrderStatus::Reserved)),
        "a charged order is never released"
    );
    assert_eq!(
        book.settle("a", &paid_event, Settle::Commit),
        Ok(Effect::Applied(OrderStatus::Fulfilled))
    );
    assert_eq!(
        book.settle("a", &paid_event, Settle::Commit),
        Ok(Effect::Duplicate(OrderStatus::Fulfilled))
    );
    let (_, stock) = book.stock("laptop").unwrap();
    assert_eq!((stock.on_hand(), stock.reserved(), stock.sold()), (1, 0, 2));
    let changes = book.into_changes();
    assert_eq!(changes.processed.len(), 2);
    assert_eq!(
        changes.changed_orders.len(),
        0,
        "the order is new in this batch"
    );
    let order = &changes.new_orders[0];
    assert_eq!((order.status, order.version), (OrderStatus::Fulfilled, 3));
    let kinds: Vec<EventKind> = changes.events.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::OrderReserved, EventKind::PaymentSucceeded]
    );
}

#[test]
fn a_declined_order_is_released_and_a_late_payment_voided() {
    let mut book = reserved_book();
    assert_eq!(
        book.record_payment("a", &event_id(EventKind::OrderReserved, "a", 1), false),
        Effect::Applied(OrderStatus::Reserved)
    );
    assert_eq!(
        book.settle(
            "a",
            &event_id(EventKind::PaymentFailed, "a", 2),
            Settle::Commit
        ),
        Ok(Effect::NotApplicable(OrderStatus::Reserved))
    );
    assert_eq!(
        book.settle(
            "a",
            &event_id(EventKind::PaymentFailed, "a", 2),
            Settle::Release
        ),
        Ok(Effect::Applied(OrderStatus::Cancelled))
    );
    assert_eq!(
        book.order("a").unwrap().reason,
        Some(Reason::PaymentDeclined)
    );
    // A late approval of the same reservation is the event already
    // answered: it changes nothing.
    assert_eq!(
        book.record_payment("a", &event_id(EventKind::OrderReserved, "a", 1), true),
        Effect::Duplicate(OrderStatus::Cancelled)
    );
    assert_eq!(book.stock("laptop").unwrap().1.available(), 3);
    assert_eq!(book.record_payment("zzz", "e4", true), Effect::UnknownOrder);
}

#[test]
fn a_verdict_or_settlement_naming_another_event_changes_nothing() {
    let mut book = reserved_book();
    for forged in ["anything", "OrderReserved:a:7", "OrderReserved:b:1"] {
        assert_eq!(
            book.record_payment("a", forged, true),
            Effect::NotApplicable(OrderStatus::Reserved),
            "{forged}"
        );
    }
    assert_eq!(
        book.record_payment("a", &event_id(EventKind::OrderReserved, "a", 1), true),
        Effect::Applied(OrderStatus::Reserved)
    );
    assert_eq!(
        book.settle("a", "PaymentSucceeded:a:9", Settle::Commit),
        Ok(Effect::NotApplicable(OrderStatus::Reserved))
    );
    let changes = book.into_changes();
    assert_eq!(
        changes.processed.len(),
        1,
        "only the genuine verdict is recorded"
    );
}

#[test]
fn cancel_is_idempotent() {
    let mut book = reserved_book();
    assert_eq!(
        book.release("a", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::Released)
    );
    assert_eq!(
        book.release("a", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::AlreadyCancelled)
    );
    assert_eq!(
        book.release("nope", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::UnknownOrder)
    );
    assert_eq!(
        book.order("a").unwrap().reason,
        Some(Reason::CancelledByCustomer)
    );
}

#[test]
fn the_sweep_ends_every_overdue_reservation() {
    let customer = customer();
    let one = items(&[("Laptop", 1)]);
    let mut book = book_with(&[("Laptop", 10)]);
    for id in ["unpaid", "declined", "charged", "young"] {
        assert!(matches!(
            book.reserve(0, input(id, &customer, &one)),
            ReserveDecision::Reserved(_)
        ));
    }
    book.record_payment(
        "declined",
        &event_id(EventKind::OrderReserved, "declined", 1),
        false,
    );
    book.record_payment(
        "charged",
        &event_id(EventKind::OrderReserved, "charged", 1),
        true,
    );
    let now = book.now_ms();
    assert_eq!(
        book.sweep("unpaid", now - 1),
        Ok(SweepDecision::Kept),
        "not due yet"
    );
    assert_eq!(book.sweep("unpaid", now), Ok(SweepDecision::Expired));
    assert_eq!(book.sweep("declined", now), Ok(SweepDecision::Declined));
    assert_eq!(book.sweep("charged", now), Ok(SweepDecision::Fulfilled));
    assert_eq!(
        book.sweep("charged", now),
        Ok(SweepDecision::Kept),
        "already fulfilled"
    );
    assert_eq!(
        book.order("unpaid").unwrap().reason,
        Some(Reason::ReservationExpired)
    );
    let (_, stock) = book.stock("laptop").unwrap();
    assert_eq!((stock.on_hand(), stock.reserved(), stock.sold()), (9, 1, 1));
}

#[test]
fn restock_creates_and_limits_products() {
    let mut book = Book::new(0);
    let tablet = ProductName::new("Tablet").unwrap();
    assert_eq!(book.restock(&tablet, 5).unwrap().on_hand(), 5);
    assert_eq!(book.restock(&tablet, 2).unwrap().received_total(), 7);
    assert!(book.restock(&tablet, crate::MAX_STOCK_PER_PRODUCT).is_err());
    let changes = book.into_changes();
    assert_eq!(changes.stock.len(), 1);
    assert_eq!(changes.stock[0].before, None);
    assert_eq!(changes.stock[0].product_name, "Tablet");
}

#[test]
fn a_settlement_of_stock_that_is_not_reserved_changes_nothing() {
    // Damaged data: the order holds two laptops, the stock shows none
    // reserved. The rules refuse instead of storing a negative reservation.
    let mut book = Book::new(0);
    book.load_stock(
        "laptop".into(),
        "Laptop".into(),
        Stock::received(5).unwrap(),
    );
    book.load_order(OrderRecord {
        id: "a".into(),
        customer_id: "c".into(),
        status: OrderStatus::Reserved,
        reason: None,
        payment: PaymentStatus::Charged,
        version: 2,
        created_at_ms: 0,
        updated_at_ms: 0,
        lines: vec![OrderLine {
            product_key: "laptop".into(),
            product_name: "Laptop".into(),
            quantity: Quantity::new(2).unwrap(),
        }],
    });
    assert!(matches!(
        book.settle(
            "a",
            &event_id(EventKind::PaymentSucceeded, "a", 2),
            Settle::Commit
        ),
        Err(RuleError::Stock { .. })
    ));
    assert!(book.into_changes().is_empty());
}

// ---------------------------------------------------------------------------
// Property tests: random batches through a book and an in-memory store.

const PRODUCTS: [&str; 3] = ["Laptop", "Phone", "Tablet"];

/// What a backend stores, kept in memory.
#[derive(Default)]
struct Store {
    stock: BTreeMap<String, (String, Stock)>,
    orders: BTreeMap<String, OrderRecord>,
    history: Vec<HistoryRecord>,
    events: Vec<EventRecord>,
    processed: HashSet<(Consumer, String)>,
    keys: HashMap<(String, String), StoredKey>,
}

impl Store {
    /// Loads everything into a book: a backend loads only what a batch
    /// touches, and the rules must not care.
    fn book(&self, now_ms: i64) -> Book {
        let mut book = Book::new(now_ms);
        for (key, (name, stock)) in &self.stock {
            book.load_stock(key.clone(), name.clone(), *stock);
        }
        for order in self.orders.values() {
            book.load_order(order.clone());
        }
        for (consumer, event_id) in &self.processed {
            book.load_processed(*consumer, event_id.clone());
        }
        for ((customer, key), stored) in &self.keys {
            book.load_key(customer.clone(), key.clone(), stored.clone());
        }
        book
    }

    /// Writes a batch's changes as a backend does, with its conditional
    /// writes: each one must find the row as the batch loaded it.
    fn apply(&mut self, changes: Changes) {
        for change in changes.stock {
            let current = self.stock.get(&change.product_key).map(|(_, stock)| *stock);
            assert_eq!(current, change.before, "stock changed under the batch");
            self.stock
                .insert(change.product_key, (change.product_name, change.after));
        }
        for order in changes.new_orders {
            assert!(order.version >= 1);
            assert!(
                self.orders.insert(order.id.clone(), order).is_none(),
                "an order id was reused"
            );
        }
        for change in changes.changed_orders {
            let stored = self
                .orders
                .get_mut(&change.order.id)
                .expect("changed orders exist");
            assert_eq!(
                stored.version, change.loaded_version,
                "order changed under the batch"
            );
            assert!(change.order.version > stored.version);
            *stored = change.order;
        }
        for record in changes.processed {
            assert!(
                self.processed.insert((record.consumer, record.event_id)),
                "an event was applied twice"
            );
        }
        for claim in changes.keys {
            let stored = StoredKey {
                fingerprint: claim.fingerprint,
                answer: claim.position.to_string(),
            };
            assert!(
                self.keys
                    .insert((claim.customer_id, claim.key), stored)
                    .is_none()
            );
        }
        self.history.extend(changes.history);
        self.events.extend(changes.events);
    }

    fn check(&self) {
        let stock: Vec<StockFigures> = self
            .stock
            .values()
            .map(|(name, stock)| StockFigures {
                product: name.clone(),
                on_hand: stock.on_hand() as i64,
                reserved: stock.reserved() as i64,
                available: Some(stock.available() as i64),
                sold: Some(stock.sold() as i64),
                received: Some(stock.received_total() as i64),
            })
            .collect();
        let mut histories: HashMap<&str, Vec<&HistoryRecord>> = HashMap::new();
        for record in &self.history {
            histories
                .entry(record.order_id.as_str())
                .or_default()
                .push(record);
        }
        let orders: Vec<OrderFigures> = self
            .orders
            .values()
            .map(|order| {
                let history = &histories[order.id.as_str()];
                // Versions are consecutive from 1: no change was lost.
                let versions: Vec<i64> = history.iter().map(|record| record.version).collect();
                assert_eq!(versions, (1..=order.version).collect::<Vec<_>>());
                OrderFigures {
                    id: order.id.clone(),
                    status: order.status.as_str().into(),
                    lines: order
                        .lines
                        .iter()
                        .map(|line| (line.product_name.clone(), i64::from(line.quantity.get())))
                        .collect(),
                    history: history
                        .iter()
                        .map(|record| {
                            (
                                record.status.as_str().to_owned(),
                                record.reason.map(|reason| reason.as_str().to_owned()),
                            )
                        })
                        .collect(),
                }
            })
            .collect();
        let violations = invariants::check_snapshot(&stock, &orders);
        assert!(violations.is_empty(), "{violations:#?}");
        let mut event_ids = HashSet::new();
        for event in &self.events {
            assert!(
                event_ids.insert(&event.event_id),
                "event {} written twice",
                event.event_id
            );
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Reserve {
        lines: Vec<(usize, u32)>,
        key: Option<(u8, u8)>,
    },
    Pay {
        order: usize,
        approved: bool,
        /// A verdict under an event id of its own, as a second provider
        /// callback would carry: still at most one charge per order.
        own_event: bool,
    },
    Settle {
        order: usize,
        commit: bool,
    },
    Cancel {
        order: usize,
    },
    Sweep {
        order: usize,
        age_ms: i64,
    },
    Restock {
        product: usize,
        units: u64,
    },
    /// Redeliver a random event already written, to its consumer.
    Redeliver {
        event: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (
            proptest::collection::btree_map(0..PRODUCTS.len(), 1..4u32, 1..=3),
            proptest::option::of((0..3u8, 0..2u8)),
        )
            .prop_map(|(lines, key)| Step::Reserve { lines: lines.into_iter().collect(), key }),
        3 => (any::<usize>(), proptest::bool::weighted(0.8), proptest::bool::weighted(0.2))
            .prop_map(|(order, approved, own_event)| Step::Pay { order, approved, own_event }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(order, commit)| Step::Settle { order, commit }),
        1 => any::<usize>().prop_map(|order| Step::Cancel { order }),
        1 => (any::<usize>(), 0..3_000i64).prop_map(|(order, age_ms)| Step::Sweep { order, age_ms }),
        1 => (0..PRODUCTS.len(), 1..5u64).prop_map(|(product, units)| Step::Restock { product, units }),
        2 => any::<usize>().prop_map(|event| Step::Redeliver { event }),
    ]
}

/// Runs one batch of steps on `store` and writes its changes back.
fn run_batch(store: &mut Store, steps: &[Step], now_ms: i64, next_id: &mut u32) {
    let mut book = store.book(now_ms);
    let order_ids: Vec<String> = store.orders.keys().cloned().collect();
    let pick = |index: usize| order_ids.get(index % order_ids.len().max(1)).cloned();
    let customer = CustomerId::new("c1").unwrap();
    for (position, step) in steps.iter().enumerate() {
        match step {
            Step::Reserve { lines, key } => {
                let names: Vec<(&str, u32)> = lines
                    .iter()
                    .map(|(product, units)| (PRODUCTS[*product], *units))
                    .collect();
                let order_items = items(&names);
                *next_id += 1;
                let order_id = format!("o{next_id:05}");
                let key_text = key.map(|(key, _)| format!("k{key}"));
                let fingerprint = key.map(|(_, fingerprint)| format!("f{fingerprint}"));
                book.reserve(
                    position,
                    ReserveInput {
                        order_id: &order_id,
                        customer_id: &customer,
                        items: &order_items,
                        idempotency_key: key_text.as_deref(),
                        fingerprint: fingerprint.as_deref(),
                    },
                );
            }
            Step::Pay {
                order,
                approved,
                own_event,
            } => {
                if let Some(id) = pick(*order) {
                    let event = if *own_event {
                        format!("callback:{id}:{position}:{now_ms}")
                    } else {
                        event_id(EventKind::OrderReserved, &id, 1)
                    };
                    book.record_payment(&id, &event, *approved);
                }
            }
            Step::Settle { order, commit } => {
                if let Some(id) = pick(*order) {
                    let version = book.order(&id).map_or(0, |order| order.version);
                    let (kind, action) = if *commit {
                        (EventKind::PaymentSucceeded, Settle::Commit)
                    } else {
                        (EventKind::PaymentFailed, Settle::Release)
                    };
                    let event = event_id(kind, &id, version);
                    book.settle(&id, &event, action)
                        .expect("stored data is consistent");
                }
            }
            Step::Cancel { order } => {
                if let Some(id) = pick(*order) {
                    book.release(&id, ReleaseReason::CancelledByCustomer)
                        .expect("stored data is consistent");
                }
            }
            Step::Sweep { order, age_ms } => {
                if let Some(id) = pick(*order) {
                    book.sweep(&id, now_ms - age_ms)
                        .expect("stored data is consistent");
                }
            }
            Step::Restock { product, units } => {
                let name = ProductName::new(PRODUCTS[*product]).unwrap();
                book.restock(&name, *units).expect("far below the limit");
            }
            Step::Redeliver { event } => {
                if store.events.is_empty() {
                    continue;
                }
                let event = &store.events[event % store.events.len()];
                match event.kind {
                    EventKind::OrderReserved => {
                        book.record_payment(&event.order_id, &event.event_id, true);
                    }
                    EventKind::PaymentSucceeded => {
                        book.settle(&event.order_id, &event.event_id, Settle::Commit)
                            .expect("stored data is consistent");
                    }
                    EventKind::PaymentFailed => {
                        book.settle(&event.order_id, &event.event_id, Settle::Release)
                            .expect("stored data is consistent");
                    }
                }
            }
        }
    }
    store.apply(book.into_changes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever arrives in whatever batches: nothing is oversold, every unit
    /// is on hand or sold, reserved and sold units match the orders, statuses
    /// only move forward, and no event has a second effect.
    #[test]
    fn every_batch_keeps_every_invariant(
        initial in proptest::collection::vec(0..8u64, PRODUCTS.len()),
        batches in proptest::collection::vec(proptest::collection::vec(step(), 1..12), 1..8),
    ) {
        let mut store = Store::default();
        for (name, units) in PRODUCTS.iter().zip(&initial) {
            store.stock.insert(name.to_lowercase(), ((*name).into(), Stock::received(*units).unwrap()));
        }
        let mut next_id = 0;
        for (round, steps) in batches.iter().enumerate() {
            run_batch(&mut store, steps, 1_000 * (round as i64 + 1), &mut next_id);
            store.check();
        }
    }
}
