//! Helpers the tests share: building requests, running many tasks at once
//! under a deadline, and the invariants checked at the end of every test.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stockroom_domain::invariants::{self, MovementFigures, OrderFigures, StockFigures};
use stockroom_domain::rules::{
    Effect, Movement, MovementKind, OrderRecord, ReserveAnswer, ReserveDecision, RuleError, Settle,
    StockRecord, StoredOrder,
};
use stockroom_domain::{CustomerId, OrderItem, OrderItems, OrderStatus, ProductName, Quantity};
use stockroom_storage::batch::{PaymentVerdict, Reservation, SettlementCall};
use stockroom_storage::testing::TestStorage;
use stockroom_storage::{InitialStock, MAX_MOVEMENTS_PER_PAGE, MAX_ORDERS_PER_PAGE, OrderFilter};

/// A backend under test: a fresh store, and raw access to it.
pub type Store = Arc<dyn TestStorage>;

/// How long one concurrent phase of a test may take. Far more than any
/// healthy backend needs on a small machine, so reaching it means a deadlock
/// or a lost wakeup, not a slow disk.
pub const PHASE_DEADLINE_MS: u64 = 30_000;

/// A product name the tests know is valid.
pub fn product(name: &str) -> ProductName {
    ProductName::new(name).expect("test product names are valid")
}

/// The items of an order, in the order given (the domain type sorts them).
pub fn items(lines: &[(&str, u32)]) -> OrderItems {
    OrderItems::new(
        lines
            .iter()
            .map(|(name, quantity)| OrderItem {
                product: product(name),
                quantity: Quantity::new(i128::from(*quantity)).expect("test quantities are valid"),
            })
            .collect(),
    )
    .expect("test orders are valid")
}

/// A fresh, time-ordered order id, as order-service makes them.
pub fn new_order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A reservation request without an idempotency key.
pub fn request(customer: &str, lines: &[(&str, u32)]) -> Reservation {
    Reservation {
        order_id: new_order_id(),
        customer_id: CustomerId::new(customer).expect("test customer ids are valid"),
        items: items(lines),
        idempotency_key: None,
        fingerprint: None,
        trace_parent: None,
    }
}

/// A reservation request carrying an idempotency key and fingerprint.
pub fn keyed_request(
    customer: &str,
    lines: &[(&str, u32)],
    key: &str,
    fingerprint: Option<&str>,
) -> Reservation {
    Reservation {
        idempotency_key: Some(key.to_owned()),
        fingerprint: fingerprint.map(str::to_owned),
        ..request(customer, lines)
    }
}

/// Loads the initial stock of a fresh database.
pub async fn stock(storage: &Store, lines: &[(&str, u64)]) {
    let loaded = storage
        .initialize_stock(
            lines
                .iter()
                .map(|(name, quantity)| InitialStock {
                    product: product(name),
                    quantity: *quantity,
                })
                .collect(),
        )
        .await
        .expect("initialize_stock");
    assert!(loaded, "a fresh database must accept the initial stock");
}

/// Reserves one request on its own and returns its decision.
pub async fn reserve_one(storage: &Store, request: Reservation) -> ReserveDecision {
    let mut results = storage.reserve(vec![request]).await.expect("reserve");
    assert_eq!(results.len(), 1, "one request gives one result");
    results.remove(0)
}

/// Reserves one request that must succeed and returns its order.
pub async fn reserve_ok(storage: &Store, request: Reservation) -> OrderRecord {
    match reserve_one(storage, request).await {
        ReserveDecision::Created(ReserveAnswer::Reserved(order)) => order,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

/// The order a decision created or replays, if any.
pub fn answered_order(decision: &ReserveDecision) -> Option<&OrderRecord> {
    match decision {
        ReserveDecision::Created(answer) | ReserveDecision::Replay(answer) => Some(answer.order()),
        _ => None,
    }
}

/// One product's stock, which must exist.
pub async fn item(storage: &Store, name: &str) -> StockRecord {
    storage
        .inventory_item(name)
        .await
        .expect("inventory_item")
        .unwrap_or_else(|| panic!("product {name} must exist"))
}

/// One order with its history, which must exist.
pub async fn order(storage: &Store, order_id: &str) -> StoredOrder {
    storage
        .order(order_id)
        .await
        .expect("order")
        .unwrap_or_else(|| panic!("order {order_id} must exist"))
}

/// Every order, read page by page.
pub async fn all_orders(storage: &Store, status: Option<OrderStatus>) -> Vec<StoredOrder> {
    let mut orders = Vec::new();
    let mut after = None;
    loop {
        let page = storage
            .orders(OrderFilter {
                status,
                customer_id: None,
                after: after.take(),
                limit: MAX_ORDERS_PER_PAGE,
            })
            .await
            .expect("orders");
        orders.extend(page.orders);
        match page.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => return orders,
        }
    }
}

/// Runs `work` and fails the test if it takes longer than
/// [`PHASE_DEADLINE_MS`].
pub async fn within_deadline<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_millis(PHASE_DEADLINE_MS), work)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what} did not finish within {PHASE_DEADLINE_MS} ms: a deadlock or a lost wakeup"
            )
        })
}

/// Runs `count` copies of `task` as separate tokio tasks, all started before
/// any is awaited, and returns their results in index order. A panic in any
/// task fails the test with that task's message.
pub async fn run_concurrently<T, F, Fut>(what: &str, count: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..count).map(|index| tokio::spawn(task(index))).collect();
    within_deadline(what, async move {
        let mut results = Vec::with_capacity(count);
        for handle in handles {
            match handle.await {
                Ok(result) => results.push(result),
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => panic!("{what}: a task was cancelled: {error}"),
            }
        }
        results
    })
    .await
}

/// Checks an order's own consistency: its history runs through versions 1 to
/// `version` without a gap, ends in its current status, never moves a status
/// backwards, and its times never run backwards.
pub fn assert_order_consistent(stored: &StoredOrder) {
    let order = &stored.order;
    assert_eq!(
        stored.history.len() as i64,
        order.version,
        "order {} at version {} must have one history entry per version",
        order.id,
        order.version
    );
    for (index, entry) in stored.history.iter().enumerate() {
        assert_eq!(
            (entry.order_id.as_str(), entry.version),
            (order.id.as_str(), index as i64 + 1),
            "order {} history versions must be 1, 2, 3…",
            order.id
        );
    }
    for pair in stored.history.windows(2) {
        let (earlier, later) = (pair[0].status, pair[1].status);
        assert!(
            earlier == later || earlier.transition_to(later).is_ok(),
            "order {} moved backwards from {earlier} to {later}",
            order.id
        );
        assert!(
            pair[0].at_ms <= pair[1].at_ms,
            "order {} history runs backwards",
            order.id
        );
    }
    let last = stored.history.last().expect("an order has history");
    assert_eq!(
        last.status, order.status,
        "order {} history must end in its status",
        order.id
    );
    assert!(order.created_at_ms <= order.updated_at_ms);
    assert_eq!(stored.history[0].at_ms, order.created_at_ms);
}

/// Checks order `a` of the version-1 database both backends' migration tests
/// build (two lines, one history entry at 1,000 ms) after it was migrated to
/// the current schema: its lines in key order, its history moved with it.
pub fn assert_migrated_order(stored: &StoredOrder) {
    let lines: Vec<(&str, u32)> = stored
        .order
        .lines
        .iter()
        .map(|line| (line.product_name.as_str(), line.quantity.get()))
        .collect();
    assert_eq!(
        lines,
        [("Laptop", 2), ("Phone", 1)],
        "its lines, in key order"
    );
    let history: Vec<(i64, OrderStatus, i64)> = stored
        .history
        .iter()
        .map(|entry| (entry.version, entry.status, entry.at_ms))
        .collect();
    assert_eq!(
        history,
        [(1, OrderStatus::Reserved, 1_000)],
        "its history, moved into its row"
    );
}

/// Checks the ledger that the migration to the ledger began for the
/// version-1 databases' Laptop (5 on hand, 2 of them reserved): one opening
/// movement holding its figures.
pub async fn assert_migrated_ledger<S: stockroom_storage::OrderFlow + ?Sized>(storage: &S) {
    let page = storage
        .movements("Laptop", 0, 10)
        .await
        .expect("movements")
        .expect("the product exists");
    let movements: Vec<(MovementKind, u64, (i64, i64, i64))> = page
        .movements
        .iter()
        .map(|movement| {
            let delta = movement.delta;
            (
                movement.kind,
                movement.seq,
                (delta.on_hand, delta.reserved, delta.sold),
            )
        })
        .collect();
    assert_eq!(movements, [(MovementKind::Opening, 1, (5, 2, 0))]);
    let item = storage
        .inventory_item("laptop")
        .await
        .expect("inventory_item")
        .expect("the product exists");
    assert_eq!(item.movement_seq, 1);
    assert_eq!(item.settings, Default::default());
}

/// Checks the replay, after the migration, of key `k1` that the version-1
/// databases of both backends' migration tests kept for order `a`: the
/// answer its first request got, rebuilt from the order.
pub fn assert_migrated_replay(decisions: &[ReserveDecision]) {
    match decisions {
        [ReserveDecision::Replay(ReserveAnswer::Reserved(order))] => {
            assert_eq!(
                (order.id.as_str(), order.version, order.status),
                ("a", 1, OrderStatus::Reserved)
            );
            assert_eq!(order.created_at_ms, 1_000);
        }
        other => panic!("a key kept by the previous schema must replay, got {other:?}"),
    }
}

/// The invariants that hold after any sequence of calls, checked at the end of
/// every test with the one definition the auditor and `stockroom check` use
/// ([`stockroom_domain::invariants`]): nothing oversold, conservation, the
/// units held and sold equal those of the reserved and fulfilled orders,
/// histories only move forward, no double effects, every ledger replays to
/// its figures and no reservation passed a purchase limit. Each order's own record is
/// checked too (see [`assert_order_consistent`]).
pub async fn assert_invariants(storage: &Store) {
    let inventory = storage.inventory().await.expect("inventory");
    let orders = all_orders(storage, None).await;
    for order in &orders {
        assert_order_consistent(order);
    }
    // The counters every write keeps agree with the orders themselves.
    for count in storage.order_counts().await.expect("order_counts") {
        let listed = orders
            .iter()
            .filter(|stored| stored.order.status == count.status)
            .count() as u64;
        assert_eq!(count.count, listed, "the {} counter drifted", count.status);
    }
    let stock = stock_figures(&inventory);
    assert_ledgers(storage, &stock, &inventory, &orders).await;
    let violations = invariants::check_snapshot(&stock, &order_figures(&orders));
    assert!(
        violations.is_empty(),
        "invariants broken:\n{}",
        violations
            .iter()
            .map(|violation| format!("{}: {violation}", violation.invariant))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Stock records as the invariants read them.
pub fn stock_figures(inventory: &[StockRecord]) -> Vec<StockFigures> {
    // Stock never exceeds MAX_STOCK_PER_PRODUCT, far inside i64.
    let figure = |units: u64| units as i64;
    inventory
        .iter()
        .map(|item| StockFigures {
            product: item.product_name.clone(),
            on_hand: figure(item.stock.on_hand()),
            reserved: figure(item.stock.reserved()),
            available: Some(figure(item.stock.available())),
            sold: Some(figure(item.stock.sold())),
            received: Some(figure(item.stock.received_total())),
            movement_seq: Some(figure(item.movement_seq)),
        })
        .collect()
}

/// Every movement of a product's ledger, read page by page.
pub async fn all_movements(storage: &Store, product: &str) -> Vec<Movement> {
    let mut movements = Vec::new();
    let mut after = 0;
    loop {
        let page = storage
            .movements(product, after, MAX_MOVEMENTS_PER_PAGE)
            .await
            .expect("movements")
            .expect("the product exists");
        movements.extend(page.movements);
        match page.next_cursor {
            Some(cursor) => after = cursor,
            None => return movements,
        }
    }
}

/// Replaying each product's ledger gives its figures, and no reservation in
/// it took a customer past the limit then in force.
async fn assert_ledgers(
    storage: &Store,
    stock: &[StockFigures],
    inventory: &[StockRecord],
    orders: &[StoredOrder],
) {
    let customer_of: BTreeMap<String, String> = orders
        .iter()
        .map(|stored| (stored.order.id.clone(), stored.order.customer_id.clone()))
        .collect();
    for (figures, item) in stock.iter().zip(inventory) {
        let movements: Vec<MovementFigures> = all_movements(storage, &item.product_key)
            .await
            .iter()
            .map(MovementFigures::from)
            .collect();
        let violations = invariants::check_ledger(figures, &movements, &customer_of);
        assert!(
            violations.is_empty(),
            "the ledger of {} is broken:\n{violations:#?}",
            item.product_name
        );
    }
}

/// Orders as the invariants read them.
pub fn order_figures(orders: &[StoredOrder]) -> Vec<OrderFigures> {
    orders
        .iter()
        .map(|stored| OrderFigures {
            id: stored.order.id.clone(),
            status: stored.order.status.as_str().to_owned(),
            lines: stored
                .order
                .lines
                .iter()
                .map(|line| (line.product_name.clone(), i64::from(line.quantity.get())))
                .collect(),
            history: stored
                .history
                .iter()
                .map(|entry| {
                    (
                        entry.status.as_str().to_owned(),
                        entry.reason.map(|reason| reason.as_str().to_owned()),
                    )
                })
                .collect(),
        })
        .collect()
}

/// A product's figures as plain numbers: (on hand, reserved, available).
pub fn figures(item: &StockRecord) -> (u64, u64, u64) {
    (
        item.stock.on_hand(),
        item.stock.reserved(),
        item.stock.available(),
    )
}

/// The messages of an error's causes, each after ": ", outermost first. A
/// plain function, so that no borrowed cause lives across an await.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}

/// What became of one event, as the tests compare it: the effect's kind and
/// the order's status after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    NotApplicable,
    UnknownOrder,
    Inconsistent,
}

/// The kind of an effect and the order's status after it.
pub fn outcome(effect: &Result<Effect, RuleError>) -> (Outcome, Option<OrderStatus>) {
    match effect {
        Ok(Effect::Applied(status)) => (Outcome::Applied, Some(*status)),
        Ok(Effect::Duplicate(status)) => (Outcome::Duplicate, Some(*status)),
        Ok(Effect::NotApplicable(status)) => (Outcome::NotApplicable, Some(*status)),
        Ok(Effect::UnknownOrder) => (Outcome::UnknownOrder, None),
        Err(_) => (Outcome::Inconsistent, None),
    }
}

/// A payment verdict for `order_id`, answering `event_id`.
pub fn payment(order_id: &str, event_id: &str, approved: bool) -> PaymentVerdict {
    PaymentVerdict {
        order_id: order_id.to_owned(),
        event_id: event_id.to_owned(),
        approved,
        trace_parent: None,
    }
}

/// A settlement of `order_id`, answering `event_id`.
pub fn settlement(order_id: &str, event_id: &str, action: Settle) -> SettlementCall {
    SettlementCall {
        order_id: order_id.to_owned(),
        event_id: event_id.to_owned(),
        action,
    }
}

/// Outbox rows as schema version 9 stored them, one per event, on either
/// backend: `a` leased once under a lease that ran out and traced, `b`
/// waiting, `c` dead-lettered after one rejection, and a stock notice for
/// the webhooks. [`assert_migrated_outbox`] checks what a migrated store
/// makes of them.
pub const VERSION_NINE_OUTBOX: &str = "
    INSERT INTO outbox (seq, event_id, kind, order_id, order_version, total_units,
                        occurred_at_ms, consumer, deliveries, rejections, leased_until_ms,
                        lease_token, dead_at_ms, trace_parent, notice)
    VALUES (5, '', 'OrderReserved', 'a', 1, 2, 1000, 'payment', 1, 0, 500, 'old-token', NULL,
            '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', NULL),
           (6, '', 'OrderReserved', 'b', 1, 1, 1100, 'payment', 0, 0, 0, NULL, NULL, NULL, NULL),
           (7, 'OrderReserved:c:1', 'OrderReserved', 'c', 1, 1, 1200, 'payment', 2, 1, 0, NULL,
            2000, NULL, NULL),
           (8, '', 'StockLow', 'laptop', 3, 0, 1300, 'webhooks', 0, 0, 0, NULL, NULL, NULL,
            '[\"stock\",\"Laptop\",2,5]');";

/// The highest outbox number the version-9 store of [`VERSION_NINE_OUTBOX`]
/// handed out (events up to it were acknowledged and deleted): a migrated
/// store numbers new rows after it.
pub const VERSION_NINE_LAST_SEQ: i64 = 20;

/// What a store migrated from [`VERSION_NINE_OUTBOX`] must hold: every event
/// with its deliveries, rejections, trace context and notice, each in a row
/// of its own (its delivery id its old number times 1,024), and a new event
/// numbered after every one stored before.
pub async fn assert_migrated_outbox(storage: &Store) {
    use stockroom_domain::Consumer;
    use stockroom_storage::outbox_rows::{SLOTS_PER_ROW, delivery_id};

    let counts = storage.outbox_counts().await.expect("counts");
    let of = |consumer: Consumer| {
        counts
            .iter()
            .find(|counts| counts.consumer == consumer)
            .map(|counts| (counts.pending, counts.oldest_pending_at_ms, counts.dead))
            .expect("every consumer's counts")
    };
    assert_eq!(of(Consumer::Payment), (2, Some(1000), 1));
    assert_eq!(of(Consumer::Webhooks), (1, Some(1300), 0));

    let leased = storage
        .lease_events(Consumer::Payment, 10, 60_000)
        .await
        .expect("lease");
    let seen: Vec<(i64, &str, u32)> = leased
        .iter()
        .map(|delivery| {
            (
                delivery.seq,
                delivery.event.order_id.as_str(),
                delivery.attempt,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(delivery_id(5, 0), "a", 2), (delivery_id(6, 0), "b", 1)],
        "the waiting events, their deliveries remembered"
    );
    assert_eq!(
        leased[0].event.trace_parent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(leased[0].event.event_id, "OrderReserved:a:1");

    let dead = storage
        .dead_letters(Consumer::Payment, 10)
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].seq, dead[0].event.event_id.as_str()),
        (delivery_id(7, 0), "OrderReserved:c:1")
    );
    assert_eq!(
        (dead[0].deliveries, dead[0].rejections, dead[0].dead_at_ms),
        (2, 1, 2000)
    );

    assert_migrated_notice(storage).await;
    stock(storage, &[("Gadget", 1)]).await;
    reserve_ok(storage, request("c9", &[("Gadget", 1)])).await;
    let new = storage
        .lease_events(Consumer::Payment, 10, 60_000)
        .await
        .expect("lease the new event");
    assert_eq!(new.len(), 1);
    assert!(
        new[0].seq >= (VERSION_NINE_LAST_SEQ + 1) * SLOTS_PER_ROW,
        "a new event is numbered after every one stored before: {}",
        new[0].seq
    );
}

/// The stock notice of [`VERSION_NINE_OUTBOX`], leased with what it says.
async fn assert_migrated_notice(storage: &Store) {
    let notices = storage
        .lease_events(stockroom_domain::Consumer::Webhooks, 10, 60_000)
        .await
        .expect("lease the notice");
    assert_eq!(notices.len(), 1);
    assert_eq!(
        notices[0].event.notice,
        Some(stockroom_domain::rules::Notice::Stock {
            product_name: "Laptop".into(),
            available: 2,
            low_stock_threshold: Some(5),
        })
    );
}

/// [`assert_migrated_outbox`] on a store it owns, to run as a task of its
/// own (so that a failure still lets the caller clean up).
pub async fn assert_migrated_outbox_owned(storage: Store) {
    assert_migrated_outbox(&storage).await;
}
