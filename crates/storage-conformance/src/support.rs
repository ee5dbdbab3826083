//! Helpers the tests share: building requests, running many tasks at once
//! under a deadline, and the invariants checked at the end of every test.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stockroom_contract::{
    InventoryItem, Order, ReserveOutcome, ReserveRequest, ReserveResult, StockLine,
};
use stockroom_domain::invariants::{self, OrderFigures, StockFigures};
use stockroom_domain::{CustomerId, OrderItem, OrderItems, OrderStatus, ProductName, Quantity};
use stockroom_storage::{MAX_ORDERS_PER_PAGE, OrderFilter, Storage};

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
pub fn request(customer: &str, lines: &[(&str, u32)]) -> ReserveRequest {
    ReserveRequest {
        order_id: new_order_id(),
        customer_id: CustomerId::new(customer).expect("test customer ids are valid"),
        items: items(lines),
        idempotency_key: None,
        request_fingerprint: None,
        trace_parent: None,
    }
}

/// A reservation request carrying an idempotency key and fingerprint.
pub fn keyed_request(
    customer: &str,
    lines: &[(&str, u32)],
    key: &str,
    fingerprint: Option<&str>,
) -> ReserveRequest {
    ReserveRequest {
        idempotency_key: Some(key.to_owned()),
        request_fingerprint: fingerprint.map(str::to_owned),
        ..request(customer, lines)
    }
}

/// Loads the initial stock of a fresh database.
pub async fn stock(storage: &Arc<dyn Storage>, lines: &[(&str, u64)]) {
    let loaded = storage
        .initialize_stock(
            lines
                .iter()
                .map(|(name, quantity)| StockLine {
                    product_name: product(name),
                    quantity: *quantity,
                })
                .collect(),
        )
        .await
        .expect("initialize_stock");
    assert!(loaded, "a fresh database must accept the initial stock");
}

/// Reserves one request on its own and returns its result.
pub async fn reserve_one(storage: &Arc<dyn Storage>, request: ReserveRequest) -> ReserveResult {
    let mut results = storage.reserve(vec![request]).await.expect("reserve");
    assert_eq!(results.len(), 1, "one request gives one result");
    results.remove(0)
}

/// Reserves one request that must succeed and returns its order.
pub async fn reserve_ok(storage: &Arc<dyn Storage>, request: ReserveRequest) -> Order {
    match reserve_one(storage, request).await.outcome {
        ReserveOutcome::Reserved { order } => order,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

/// One product's stock, which must exist.
pub async fn item(storage: &Arc<dyn Storage>, name: &str) -> InventoryItem {
    storage
        .inventory_item(name)
        .await
        .expect("inventory_item")
        .unwrap_or_else(|| panic!("product {name} must exist"))
}

/// One order, which must exist.
pub async fn order(storage: &Arc<dyn Storage>, order_id: &str) -> Order {
    storage
        .order(order_id)
        .await
        .expect("order")
        .unwrap_or_else(|| panic!("order {order_id} must exist"))
}

/// Every order, read page by page.
pub async fn all_orders(storage: &Arc<dyn Storage>, status: Option<OrderStatus>) -> Vec<Order> {
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

/// Checks that a timestamp has the backend-independent form: RFC 3339, UTC,
/// milliseconds, such as `2025-01-31T12:00:00.123Z`.
pub fn assert_timestamp(text: &str) {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 24
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes[19] == b'.'
        && bytes[23] == b'Z'
        && text
            .char_indices()
            .filter(|(index, _)| ![4, 7, 10, 13, 16, 19, 23].contains(index))
            .all(|(_, character)| character.is_ascii_digit());
    assert!(
        well_formed,
        "timestamp {text:?} is not RFC 3339 with milliseconds in UTC"
    );
}

/// Checks an order's own consistency: its history runs through versions 1 to
/// `version` without a gap, ends in its current status, and never moves a
/// status backwards.
pub fn assert_order_consistent(order: &Order) {
    assert_eq!(
        order.history.len() as i64,
        order.version,
        "order {} at version {} must have one history entry per version",
        order.id,
        order.version
    );
    for (index, entry) in order.history.iter().enumerate() {
        assert_eq!(
            entry.version,
            index as i64 + 1,
            "order {} history versions must be 1, 2, 3…",
            order.id
        );
        assert_timestamp(&entry.at);
    }
    for pair in order.history.windows(2) {
        let (earlier, later) = (pair[0].status, pair[1].status);
        assert!(
            earlier == later || earlier.transition_to(later).is_ok(),
            "order {} moved backwards from {earlier} to {later}",
            order.id
        );
    }
    let last = order.history.last().expect("an order has history");
    assert_eq!(
        last.status, order.status,
        "order {} history must end in its status",
        order.id
    );
    assert_timestamp(&order.created_at);
    assert_timestamp(&order.updated_at);
}

/// Checks order `a` of the version-1 database both backends' migration tests
/// build (two lines, one history entry at 1,000 ms) after it was migrated to
/// the current schema: its lines in key order, its history moved with it.
pub fn assert_migrated_order(order: &Order) {
    let lines: Vec<(&str, u32)> = order
        .items
        .iter()
        .map(|line| (line.product.name.as_str(), line.quantity))
        .collect();
    assert_eq!(
        lines,
        [("Laptop", 2), ("Phone", 1)],
        "its lines, in key order"
    );
    let history: Vec<(i64, &str, &str)> = order
        .history
        .iter()
        .map(|entry| (entry.version, entry.status.as_str(), entry.at.as_str()))
        .collect();
    assert_eq!(
        history,
        [(1, "reserved", "1970-01-01T00:00:01.000Z")],
        "its history, moved into its row"
    );
}

/// The invariants that hold after any sequence of calls, checked at the end of
/// every test with the one definition the auditor and `stockroom check` use
/// ([`stockroom_domain::invariants`]): nothing oversold, conservation, the
/// units held and sold equal those of the reserved and fulfilled orders,
/// histories only move forward, no double effects. Each order's own record is
/// checked too (see [`assert_order_consistent`]).
pub async fn assert_invariants(storage: &Arc<dyn Storage>) {
    let inventory = storage.inventory().await.expect("inventory");
    let orders = all_orders(storage, None).await;
    for order in &orders {
        assert_order_consistent(order);
    }
    for product in &inventory {
        assert_eq!(
            product.available,
            product.quantity - product.reserved_quantity,
            "available is not on hand minus reserved for {}: {product:?}",
            product.product_name
        );
    }
    let violations =
        invariants::check_snapshot(&stock_figures(&inventory), &order_figures(&orders));
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

/// Stock documents as the invariants read them.
pub fn stock_figures(inventory: &[InventoryItem]) -> Vec<StockFigures> {
    inventory
        .iter()
        .map(|item| StockFigures {
            product: item.product_name.clone(),
            on_hand: item.quantity,
            reserved: item.reserved_quantity,
            available: Some(item.available),
            sold: Some(item.sold),
            received: Some(item.received),
        })
        .collect()
}

/// Order documents as the invariants read them.
pub fn order_figures(orders: &[Order]) -> Vec<OrderFigures> {
    orders
        .iter()
        .map(|order| OrderFigures {
            id: order.id.clone(),
            status: order.status.as_str().to_owned(),
            lines: order
                .items
                .iter()
                .map(|line| (line.product.name.clone(), i64::from(line.quantity)))
                .collect(),
            history: order
                .history
                .iter()
                .map(|entry| (entry.status.as_str().to_owned(), entry.reason.clone()))
                .collect(),
        })
        .collect()
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
