//! Property tests of the rules: random batches through a book, the changes
//! written to an in-memory store the way a backend would, and every invariant
//! checked after each batch.

use super::*;
use crate::invariants::MovementFigures;

const PRODUCTS: [&str; 3] = ["Laptop", "Phone", "Tablet"];

/// The customers of the random orders.
const CUSTOMERS: [&str; 3] = ["c0", "c1", "c2"];

/// Tablet is limited from its creation on: no customer ever holds more.
const TABLET_LIMIT: u32 = 3;

/// What a backend stores, kept in memory.
#[derive(Default)]
struct Store {
    stock: BTreeMap<String, (String, ProductState)>,
    movements: BTreeMap<String, Vec<Movement>>,
    holdings: BTreeMap<(String, String), u64>,
    orders: BTreeMap<String, OrderRecord>,
    history: Vec<HistoryRecord>,
    events: Vec<EventRecord>,
    /// Every event that took effect, with what it did: each may appear
    /// once, and the order's state must recognise it ever after.
    applied: HashSet<Applied>,
    keys: HashMap<(String, String), StoredKey>,
    /// Orders per status, kept up by each batch's status deltas, as the
    /// backends keep their counters.
    counts: HashMap<OrderStatus, i64>,
}

impl Store {
    /// Loads everything into a book: a backend loads only what a batch
    /// touches, and the rules must not care.
    fn book(&self, now_ms: i64) -> Book {
        let mut book = Book::new(now_ms).notifying(true);
        for (key, (name, state)) in &self.stock {
            book.load_product(key.clone(), name.clone(), *state);
            for customer in CUSTOMERS {
                let stored = self
                    .holdings
                    .get(&(customer.to_owned(), key.clone()))
                    .copied();
                book.load_holding(customer.to_owned(), key.clone(), stored);
            }
        }
        for order in self.orders.values() {
            book.load_order(order.clone());
        }
        for ((customer, key), stored) in &self.keys {
            book.load_key(customer.clone(), key.clone(), stored.clone());
        }
        book
    }

    /// Writes a batch's changes as a backend does, with its conditional
    /// writes: each one must find the row as the batch loaded it.
    fn apply(&mut self, changes: Changes) {
        for (status, delta) in changes.status_deltas() {
            *self.counts.entry(status).or_default() += delta;
        }
        for change in changes.stock {
            let current = self.stock.get(&change.product_key).map(|(_, state)| *state);
            assert_eq!(current, change.before, "stock changed under the batch");
            self.stock
                .insert(change.product_key, (change.product_name, change.after));
        }
        for movement in changes.movements {
            let ledger = self
                .movements
                .entry(movement.product_key.clone())
                .or_default();
            assert_eq!(
                movement.seq,
                ledger.len() as u64 + 1,
                "movements numbered in order"
            );
            ledger.push(movement);
        }
        for reset in changes.holdings_resets {
            self.holdings
                .retain(|(_, key), _| *key != reset.product_key);
            for (customer, units) in reset.holdings {
                self.holdings
                    .insert((customer, reset.product_key.clone()), units);
            }
        }
        for change in changes.holdings {
            let pair = (change.customer_id, change.product_key);
            assert_eq!(
                self.holdings.get(&pair).copied(),
                change.before,
                "a holding changed under the batch"
            );
            self.holdings.insert(pair, change.after);
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
        for claim in changes.keys {
            let stored = StoredKey {
                fingerprint: claim.fingerprint,
                answer: claim.answer,
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

    /// Records the events a batch applied: none a second time.
    fn applied(&mut self, applied: Vec<Applied>) {
        for event in applied {
            assert!(self.applied.insert(event), "an event was applied twice");
        }
    }

    fn check(&self) {
        self.check_ledger();
        self.check_limits();
        self.check_applied();
        for status in OrderStatus::ALL {
            let counted = self
                .orders
                .values()
                .filter(|order| order.status == status)
                .count() as i64;
            assert_eq!(
                self.counts.get(&status).copied().unwrap_or(0),
                counted,
                "the {status} counter drifted from the orders"
            );
        }
        let stock: Vec<StockFigures> = self
            .stock
            .values()
            .map(|(name, state)| figures(name, state))
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

/// A product's figures as a service reports them.
/// An event that took effect: a payment verdict or a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Applied {
    Payment {
        order_id: String,
        event_id: String,
    },
    Settlement {
        order_id: String,
        event_id: String,
        action: Settle,
    },
}

impl Store {
    /// No record of processed events is kept: the order's state must tell
    /// every event that took effect from one that did not, for as long as
    /// the order is kept, so a redelivery is answered `duplicate`.
    fn check_applied(&self) {
        for event in &self.applied {
            let recognised = match event {
                Applied::Payment { order_id, event_id } => {
                    payment_recorded(&self.orders[order_id], event_id)
                }
                Applied::Settlement {
                    order_id,
                    event_id,
                    action,
                } => settlement_recorded(&self.orders[order_id], event_id, *action),
            };
            assert!(recognised, "{event:?} is no longer recognised as applied");
        }
    }
}

fn figures(name: &str, state: &ProductState) -> StockFigures {
    let stock = state.stock;
    StockFigures {
        product: name.to_owned(),
        on_hand: stock.on_hand() as i64,
        reserved: stock.reserved() as i64,
        available: Some(stock.available() as i64),
        sold: Some(stock.sold() as i64),
        received: Some(stock.received_total() as i64),
        movement_seq: Some(state.movements as i64),
    }
}

impl Store {
    /// Replaying each product's movements from zero gives its figures, and
    /// no reservation took a customer past the limit then in force (the
    /// shared checker, which `stockroom check` and the auditor use too).
    fn check_ledger(&self) {
        let customer_of: BTreeMap<String, String> = self
            .orders
            .values()
            .map(|order| (order.id.clone(), order.customer_id.clone()))
            .collect();
        for (key, (name, state)) in &self.stock {
            let ledger: Vec<MovementFigures> = self
                .movements
                .get(key)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(MovementFigures::from)
                .collect();
            let violations = invariants::check_ledger(&figures(name, state), &ledger, &customer_of);
            assert!(violations.is_empty(), "{violations:#?}");
        }
    }

    /// Holdings of limited products are exactly what the orders hold, and
    /// nobody holds more Tablets than its limit, which was there from the
    /// start.
    fn check_limits(&self) {
        for (key, (name, state)) in &self.stock {
            let Some(max) = state.settings.max_per_customer else {
                assert!(
                    self.holdings.keys().all(|(_, product)| product != key),
                    "{name} has no limit but keeps holdings"
                );
                continue;
            };
            let computed: BTreeMap<String, u64> =
                holdings_of(key, self.orders.values()).into_iter().collect();
            for customer in CUSTOMERS {
                let stored = self
                    .holdings
                    .get(&(customer.to_owned(), key.clone()))
                    .copied()
                    .unwrap_or(0);
                let held = computed.get(customer).copied().unwrap_or(0);
                assert_eq!(stored, held, "{name}: {customer}'s holding drifted");
                if key == "tablet" {
                    assert!(held <= u64::from(max), "{customer} holds {held} tablets");
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Reserve {
        lines: Vec<(usize, u32)>,
        key: Option<(u8, u8)>,
        customer: usize,
    },
    /// An operator's adjustment of a product, with or without the
    /// compare-and-swap on the figure.
    Adjust {
        product: usize,
        delta: i64,
        stale: bool,
    },
    /// A limit on Phone set or removed.
    LimitPhone(Option<u32>),
    Extend {
        order: usize,
        by_ms: i64,
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
            0..CUSTOMERS.len(),
        )
            .prop_map(|(lines, key, customer)| Step::Reserve { lines: lines.into_iter().collect(), key, customer }),
        1 => (0..PRODUCTS.len(), -4..6i64, proptest::bool::weighted(0.3))
            .prop_map(|(product, delta, stale)| Step::Adjust { product, delta, stale }),
        1 => proptest::option::of(1..4u32).prop_map(Step::LimitPhone),
        1 => (any::<usize>(), 0..4_000i64).prop_map(|(order, by_ms)| Step::Extend { order, by_ms }),
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
    let mut applied = Vec::new();
    let mut pay = |book: &mut Book, order_id: &str, event_id: &str, approved: bool| {
        if let Effect::Applied(_) = book.record_payment(order_id, event_id, approved) {
            applied.push(Applied::Payment {
                order_id: order_id.to_owned(),
                event_id: event_id.to_owned(),
            });
        }
    };
    let mut settled = Vec::new();
    let mut settle = |book: &mut Book, order_id: &str, event_id: &str, action: Settle| {
        let effect = book
            .settle(order_id, event_id, action)
            .expect("stored data is consistent");
        if let Effect::Applied(_) = effect {
            settled.push(Applied::Settlement {
                order_id: order_id.to_owned(),
                event_id: event_id.to_owned(),
                action,
            });
        }
    };
    let order_ids: Vec<String> = store.orders.keys().cloned().collect();
    let pick = |index: usize| order_ids.get(index % order_ids.len().max(1)).cloned();
    let mut answered: HashMap<String, String> = store
        .keys
        .iter()
        .map(|((customer, key), stored)| {
            let customer = CustomerId::new(customer).unwrap();
            (
                format!("{customer:?}/{key}"),
                stored.answer.order_id().to_owned(),
            )
        })
        .collect();
    for (position, step) in steps.iter().enumerate() {
        match step {
            Step::Reserve {
                lines,
                key,
                customer,
            } => {
                let customer = CustomerId::new(CUSTOMERS[*customer]).unwrap();
                let names: Vec<(&str, u32)> = lines
                    .iter()
                    .map(|(product, units)| (PRODUCTS[*product], *units))
                    .collect();
                let order_items = items(&names);
                *next_id += 1;
                let order_id = format!("o{next_id:05}");
                let key_text = key.map(|(key, _)| format!("k{key}"));
                let fingerprint = key.map(|(_, fingerprint)| format!("f{fingerprint}"));
                let decision = book.reserve(ReserveInput {
                    order_id: &order_id,
                    customer_id: &customer,
                    items: &order_items,
                    idempotency_key: key_text.as_deref(),
                    fingerprint: fingerprint.as_deref(),
                });
                // An idempotency key never yields two orders: every later
                // request with it replays the order of the first. Keys are
                // the customer's own.
                if let Some(key) = key_text.map(|key| format!("{customer:?}/{key}")) {
                    match &decision {
                        ReserveDecision::Created(answer) => assert!(
                            answered.insert(key, answer.order().id.clone()).is_none(),
                            "a key created a second order"
                        ),
                        ReserveDecision::Replay(answer) => assert_eq!(
                            answered.get(&key),
                            Some(&answer.order().id),
                            "a replay named another order"
                        ),
                        _ => {}
                    }
                }
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
                    pay(&mut book, &id, &event, *approved);
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
                    settle(&mut book, &id, &event, action);
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
            Step::Adjust {
                product,
                delta,
                stale,
            } => {
                let Some(delta) = std::num::NonZeroI64::new(*delta) else {
                    continue;
                };
                let key = PRODUCTS[*product].to_lowercase();
                let on_hand = book.stock(&key).map_or(0, |(_, stock)| stock.on_hand());
                let expected = stale.then_some(on_hand + 1);
                let decision = book.adjust(AdjustInput {
                    product_key: &key,
                    delta,
                    reason: AdjustReason::Correction,
                    reference: None,
                    expected_on_hand: expected,
                    idempotency_key: None,
                    fingerprint: None,
                });
                if *stale {
                    assert_eq!(decision, AdjustDecision::StaleQuantity { on_hand });
                }
            }
            Step::LimitPhone(limit) => {
                let orders: Vec<OrderRecord> = store.orders.values().cloned().collect();
                let change = SettingsChange {
                    max_per_customer: Some(*limit),
                    low_stock_threshold: None,
                };
                book.change_settings("phone", change, &orders);
            }
            Step::Extend { order, by_ms } => {
                if let Some(id) = pick(*order) {
                    let customer = book.order(&id).map(|order| order.customer_id.clone());
                    if let Some(customer) = customer {
                        book.extend(&id, &customer, now_ms + by_ms);
                    }
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
                        pay(&mut book, &event.order_id, &event.event_id, true);
                    }
                    EventKind::PaymentSucceeded => {
                        settle(&mut book, &event.order_id, &event.event_id, Settle::Commit);
                    }
                    EventKind::PaymentFailed => {
                        settle(&mut book, &event.order_id, &event.event_id, Settle::Release);
                    }
                    // Notices have no effect on the flow.
                    _ => {}
                }
            }
        }
    }
    store.apply(book.into_changes());
    applied.extend(settled);
    store.applied(applied);
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
        let mut book = Book::new(0);
        for (name, units) in PRODUCTS.iter().zip(&initial) {
            let settings = ProductSettings {
                max_per_customer: (*name == "Tablet").then_some(TABLET_LIMIT),
                low_stock_threshold: Some(2),
            };
            book.create_product(&ProductName::new(name).unwrap(), *units, settings).unwrap();
        }
        store.apply(book.into_changes());
        let mut next_id = 0;
        for (round, steps) in batches.iter().enumerate() {
            run_batch(&mut store, steps, 1_000 * (round as i64 + 1), &mut next_id);
            store.check();
        }
    }
}
