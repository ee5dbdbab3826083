//! Reservations: check and hold in one step, all items or none, no oversell
//! and no deadlock under any interleaving.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stockroom_domain::rules::{ReserveAnswer, ReserveDecision, Settle};
use stockroom_domain::{Consumer, OrderStatus, Reason, ReleaseReason};
use stockroom_storage::ReleaseOutcome;

use crate::support::{
    Store, assert_invariants, item, order, outcome, payment, request, reserve_one,
    run_concurrently, settlement, stock, within_deadline,
};

/// The stock of the hot product in the oversell tests.
const HOT_STOCK_UNITS: u64 = 25;

/// How many single-unit orders race for the hot product.
const SINGLE_UNIT_ORDERS: usize = 200;

/// A lease that outlasts the test.
const LONG_LEASE_MS: u64 = 60_000;

/// How often the watcher samples the hot product while orders race.
const WATCH_INTERVAL_MS: u64 = 1;

/// Samples one product until `done`, failing on any reading that shows
/// negative availability or more reserved than on hand. Returns how many
/// readings it took.
fn watch_stock(
    storage: &Store,
    product: &'static str,
    done: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let storage = Arc::clone(storage);
    let done = Arc::clone(done);
    tokio::spawn(async move {
        let mut readings = 0;
        while !done.load(Ordering::Acquire) {
            let stock = item(&storage, product).await;
            assert!(
                stock.stock.reserved() <= stock.stock.on_hand(),
                "a reader saw an oversold state: {stock:?}"
            );
            readings += 1;
            tokio::time::sleep(Duration::from_millis(WATCH_INTERVAL_MS)).await;
        }
        readings
    })
}

/// (a) 200 concurrent single-unit orders on 25 units: exactly 25 are
/// reserved, 175 rejected, and no reader ever sees availability below zero.
pub async fn concurrent_single_unit_orders_never_oversell(storage: Store) {
    stock(&storage, &[("Laptop", HOT_STOCK_UNITS)]).await;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch_stock(&storage, "laptop", &done);

    let results = run_concurrently(
        "200 single-unit reservations",
        SINGLE_UNIT_ORDERS,
        |index| {
            let storage = Arc::clone(&storage);
            async move {
                reserve_one(
                    &storage,
                    request(&format!("customer-{index}"), &[("Laptop", 1)]),
                )
                .await
            }
        },
    )
    .await;
    done.store(true, Ordering::Release);
    let readings = within_deadline("the stock watcher", watcher)
        .await
        .expect("the stock watcher must not fail");
    assert!(readings > 0, "the watcher must have read the stock");

    let mut reserved = HashSet::new();
    let mut rejected = 0;
    for result in &results {
        assert!(
            !matches!(result, ReserveDecision::Replay(_)),
            "no request carried an idempotency key"
        );
        match &result {
            ReserveDecision::Created(ReserveAnswer::Reserved(order)) => {
                assert_eq!(order.status, OrderStatus::Reserved);
                assert_eq!(order.version, 1);
                assert_eq!(order.reason, None);
                reserved.insert(order.id.clone());
            }
            ReserveDecision::Created(ReserveAnswer::Rejected { order, shortages }) => {
                assert_eq!(order.status, OrderStatus::Rejected);
                assert_eq!(order.reason, Some(Reason::InsufficientStock));
                assert_eq!(shortages.len(), 1, "only the laptop can be short");
                assert_eq!(shortages[0].product_name, "Laptop");
                assert_eq!(shortages[0].requested, 1);
                assert_eq!(shortages[0].available, 0);
                rejected += 1;
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        reserved.len(),
        HOT_STOCK_UNITS as usize,
        "exactly the stock is reserved"
    );
    assert_eq!(rejected, SINGLE_UNIT_ORDERS - HOT_STOCK_UNITS as usize);

    let laptop = item(&storage, "Laptop").await;
    assert_eq!(laptop.stock.on_hand(), HOT_STOCK_UNITS);
    assert_eq!(laptop.stock.reserved(), HOT_STOCK_UNITS);
    assert_eq!(laptop.stock.available(), 0);

    // Every reservation, and nothing else, put one OrderReserved event in the
    // outbox for payment-service.
    let deliveries = storage
        .lease_events(Consumer::Payment, SINGLE_UNIT_ORDERS as u32, LONG_LEASE_MS)
        .await
        .expect("lease_events");
    let announced: HashSet<String> = deliveries
        .iter()
        .map(|delivery| delivery.event.order_id.clone())
        .collect();
    assert_eq!(deliveries.len(), HOT_STOCK_UNITS as usize);
    assert_eq!(announced, reserved);
    assert_invariants(&storage).await;
}

/// (a, batched) 40 concurrent calls of 5 requests each on 25 units: still
/// exactly 25 reserved, and every call gets one result per request, in order.
pub async fn concurrent_batches_never_oversell(storage: Store) {
    const CALLS: usize = 40;
    const REQUESTS_PER_CALL: usize = 5;
    stock(&storage, &[("Laptop", HOT_STOCK_UNITS)]).await;
    let batches = run_concurrently("40 batched reservation calls", CALLS, |call| {
        let storage = Arc::clone(&storage);
        async move {
            let requests: Vec<_> = (0..REQUESTS_PER_CALL)
                .map(|index| request(&format!("customer-{call}-{index}"), &[("Laptop", 1)]))
                .collect();
            let ids: Vec<String> = requests.iter().map(|r| r.order_id.clone()).collect();
            let results = storage.reserve(requests).await.expect("reserve");
            (ids, results)
        }
    })
    .await;
    let mut reserved = 0;
    for (ids, results) in &batches {
        assert_eq!(results.len(), ids.len(), "one result per request");
        for (id, result) in ids.iter().zip(results) {
            match &result {
                ReserveDecision::Created(ReserveAnswer::Reserved(order)) => {
                    assert_eq!(&order.id, id, "results come in request order");
                    reserved += 1;
                }
                ReserveDecision::Created(ReserveAnswer::Rejected { order, .. }) => {
                    assert_eq!(&order.id, id, "results come in request order");
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    }
    assert_eq!(reserved, HOT_STOCK_UNITS as usize);
    assert_eq!(item(&storage, "Laptop").await.stock.available(), 0);
    assert_invariants(&storage).await;
}

/// One call with several requests: each gets its own outcome, and one
/// request's rejection or unknown product does not undo the others.
pub async fn batched_requests_each_get_their_own_result(storage: Store) {
    stock(&storage, &[("Laptop", 10)]).await;
    let first = request("c1", &[("Laptop", 2)]);
    let too_big = request("c2", &[("Laptop", 100)]);
    let unknown = request("c3", &[("Laptop", 1), ("Hoverboard", 1)]);
    let last = request("c4", &[("Laptop", 8)]);
    let unknown_id = unknown.order_id.clone();
    let ids = [
        first.order_id.clone(),
        too_big.order_id.clone(),
        last.order_id.clone(),
    ];
    let results = storage
        .reserve(vec![first, too_big, unknown, last])
        .await
        .expect("reserve");
    assert_eq!(results.len(), 4);
    match &results[0] {
        ReserveDecision::Created(ReserveAnswer::Reserved(order)) => assert_eq!(order.id, ids[0]),
        other => panic!("first request: expected reserved, got {other:?}"),
    }
    match &results[1] {
        ReserveDecision::Created(ReserveAnswer::Rejected { order, shortages }) => {
            assert_eq!(order.id, ids[1]);
            assert_eq!(shortages.len(), 1);
            assert_eq!(shortages[0].requested, 100);
            assert_eq!(shortages[0].available, 8);
        }
        other => panic!("second request: expected rejected, got {other:?}"),
    }
    assert_eq!(
        results[2],
        ReserveDecision::UnknownProduct("Hoverboard".into())
    );
    match &results[3] {
        ReserveDecision::Created(ReserveAnswer::Reserved(order)) => assert_eq!(order.id, ids[2]),
        other => panic!("last request: expected reserved, got {other:?}"),
    }
    assert!(
        storage.order(&unknown_id).await.expect("order").is_none(),
        "a request naming an unknown product leaves no order"
    );
    let laptop = item(&storage, "laptop").await;
    assert_eq!(laptop.stock.reserved(), 10);
    assert_eq!(laptop.stock.available(), 0);
    assert_invariants(&storage).await;
}

/// (b) One short item means nothing is held, and an unknown product means
/// nothing is held and no order exists; under concurrency, multi-item orders
/// never leave one product held without the other.
pub async fn multi_item_reservation_is_all_or_nothing(storage: Store) {
    stock(&storage, &[("Laptop", 25), ("Phone", 2), ("Tablet", 10)]).await;

    let result = reserve_one(&storage, request("c1", &[("Laptop", 5), ("Phone", 3)])).await;
    match &result {
        ReserveDecision::Created(ReserveAnswer::Rejected { order, shortages }) => {
            assert_eq!(order.status, OrderStatus::Rejected);
            assert_eq!(
                order.lines.len(),
                2,
                "a rejected order still lists its items"
            );
            assert_eq!(shortages.len(), 1, "only the phone is short: {shortages:?}");
            assert_eq!(shortages[0].product_name, "Phone");
            assert_eq!(shortages[0].requested, 3);
            assert_eq!(shortages[0].available, 2);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 0);
    assert_eq!(item(&storage, "Phone").await.stock.reserved(), 0);

    let unknown = request("c2", &[("Laptop", 5), ("Unicorn", 1)]);
    let unknown_id = unknown.order_id.clone();
    assert_eq!(
        reserve_one(&storage, unknown).await,
        ReserveDecision::UnknownProduct("Unicorn".into())
    );
    assert!(storage.order(&unknown_id).await.expect("order").is_none());
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 0);

    // Phone now has 10 like Tablet; 30 racing three-item orders fit 10 times.
    storage
        .restock(crate::support::product("Phone"), 8)
        .await
        .expect("restock");
    let results = run_concurrently("30 three-item reservations", 30, |index| {
        let storage = Arc::clone(&storage);
        async move {
            reserve_one(
                &storage,
                request(
                    &format!("racer-{index}"),
                    &[("Tablet", 1), ("Phone", 1), ("Laptop", 1)],
                ),
            )
            .await
        }
    })
    .await;
    let reserved = results
        .iter()
        .filter(|result| matches!(result, ReserveDecision::Created(ReserveAnswer::Reserved(_))))
        .count();
    assert_eq!(reserved, 10);
    for result in &results {
        if let ReserveDecision::Created(ReserveAnswer::Rejected { shortages, .. }) = &result {
            assert!(!shortages.is_empty(), "a rejection names what was short");
        }
    }
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 10);
    assert_eq!(item(&storage, "Phone").await.stock.reserved(), 10);
    assert_eq!(item(&storage, "Tablet").await.stock.reserved(), 10);
    assert_invariants(&storage).await;
}

/// (c) Orders naming the same two products in opposite orders, reserved,
/// paid, settled and cancelled all at once, never deadlock and leave the
/// stock consistent.
pub async fn opposite_lock_orders_never_deadlock(storage: Store) {
    const UNITS: u64 = 60;
    const ORDERS: usize = 120;
    stock(&storage, &[("Alpha", UNITS), ("Omega", UNITS)]).await;
    let outcomes = run_concurrently(
        "opposite-order reservations and settlements",
        ORDERS,
        |index| {
            let storage = Arc::clone(&storage);
            async move {
                let lines: &[(&str, u32)] = if index % 2 == 0 {
                    &[("Alpha", 1), ("Omega", 1)]
                } else {
                    &[("Omega", 1), ("Alpha", 1)]
                };
                let order = match reserve_one(&storage, request(&format!("c{index}"), lines)).await
                {
                    ReserveDecision::Created(ReserveAnswer::Reserved(order)) => order,
                    ReserveDecision::Created(ReserveAnswer::Rejected { .. }) => return None,
                    other => panic!("unexpected outcome {other:?}"),
                };
                // Resolve each reservation one of three ways, so that commits,
                // releases and cancels of different orders run at the same time
                // as new reservations of the same products.
                let final_status = match index % 3 {
                    0 => {
                        let outcome = storage
                            .release(&order.id, ReleaseReason::CancelledByCustomer)
                            .await
                            .expect("release");
                        assert!(matches!(outcome, ReleaseOutcome::Released(_)));
                        OrderStatus::Cancelled
                    }
                    branch => {
                        let approved = branch == 1;
                        storage
                            .record_payments(vec![payment(
                                &order.id,
                                &format!("OrderReserved:{}:1", order.id),
                                approved,
                            )])
                            .await
                            .expect("record_payments");
                        let (kind, action, status) = if approved {
                            ("PaymentSucceeded", Settle::Commit, OrderStatus::Fulfilled)
                        } else {
                            ("PaymentFailed", Settle::Release, OrderStatus::Cancelled)
                        };
                        let results = storage
                            .settle(vec![settlement(
                                &order.id,
                                &format!("{kind}:{}:2", order.id),
                                action,
                            )])
                            .await
                            .expect("settle");
                        assert_eq!(outcome(&results[0]).1, Some(status));
                        status
                    }
                };
                Some((order.id, final_status))
            }
        },
    )
    .await;
    let settled: Vec<_> = outcomes.into_iter().flatten().collect();
    assert!(!settled.is_empty(), "some orders must have been reserved");
    let fulfilled = settled
        .iter()
        .filter(|(_, status)| *status == OrderStatus::Fulfilled)
        .count() as u64;
    for (id, status) in &settled {
        assert_eq!(order(&storage, id).await.order.status, *status);
    }
    for name in ["Alpha", "Omega"] {
        let stock = item(&storage, name).await;
        assert_eq!(
            stock.stock.reserved(),
            0,
            "{name}: every reservation was resolved"
        );
        assert_eq!(
            stock.stock.sold(),
            fulfilled,
            "{name}: sold equals fulfilled orders"
        );
        assert_eq!(stock.stock.on_hand(), UNITS - fulfilled);
    }
    assert_invariants(&storage).await;
}
