//! Two storages on one schema, as two data-service processes would be: the
//! races between processes that one storage's collectors cannot show.

use std::sync::Arc;

use stockroom_storage::testing::TestStorage;
use stockroom_storage_postgres::{PostgresConfig, PostgresStorage};

use super::{Admin, test_url, unique_schema};

/// Two storages on one schema, as two data-service processes, each
/// group-committing calls whose requests name two products in opposite
/// orders, neither oversell nor fail: their batch transactions lock the
/// products in one global order before reserving, so they never deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_group_committing_instances_share_products_safely() {
    use stockroom_domain::rules::{ReserveAnswer, ReserveDecision};
    use stockroom_storage_conformance::support::{
        assert_invariants, item, request, run_concurrently, stock,
    };

    /// Units of each product: fewer than the orders want, so some are
    /// rejected and the limit is really tested.
    const UNITS: u64 = 150;
    /// Concurrent calls, each of two single-unit requests.
    const CALLS: usize = 200;
    with_two_instances("two_instances", |instances| async move {
        stock(&instances[0], &[("Alpha", UNITS), ("Omega", UNITS)]).await;
        let reserved = run_concurrently("two instances", CALLS, |index| {
            let storage = Arc::clone(&instances[index % 2]);
            async move {
                // Two requests per call, in opposite orders on
                // alternate calls.
                let (first, second) = if index % 4 < 2 {
                    ("Alpha", "Omega")
                } else {
                    ("Omega", "Alpha")
                };
                let results = storage
                    .reserve(vec![
                        request(&format!("c{index}"), &[(first, 1)]),
                        request(&format!("c{index}"), &[(second, 1)]),
                    ])
                    .await
                    .expect("a group-committed call never fails");
                results
                    .iter()
                    .filter(|result| {
                        matches!(result, ReserveDecision::Created(ReserveAnswer::Reserved(_)))
                    })
                    .count()
            }
        })
        .await;
        let reserved: usize = reserved.into_iter().sum();
        assert_eq!(reserved as u64, 2 * UNITS, "every unit sold exactly once");
        for name in ["Alpha", "Omega"] {
            let stock = item(&instances[1], name).await;
            assert_eq!(stock.stock.reserved(), UNITS, "{name}: {stock:?}");
            assert_eq!(stock.stock.available(), 0, "{name}: {stock:?}");
        }
        assert_invariants(&instances[1]).await;
    })
    .await;
}

/// Two storages on one schema, as two data-service processes, race payment
/// verdicts, cancellations and expiry sweeps on the same reservations. Orders
/// are read without a lock and written only if unchanged, so a batch that
/// loses a race runs again: no call fails, each reservation ends once, and
/// the stock agrees with the orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_racing_verdicts_cancels_and_sweeps_end_each_order_once() {
    use stockroom_domain::{EventKind, OrderStatus, ReleaseReason};
    use stockroom_storage_conformance::support::{
        all_orders, assert_invariants, assert_order_consistent, item, payment, request, reserve_ok,
        run_concurrently, stock,
    };

    /// Reservations raced over, one unit each.
    const ORDERS: usize = 60;
    /// Racers per reservation: a verdict, a cancellation, a sweep.
    const RACERS: usize = 3;
    with_two_instances("racing_instances", |instances| async move {
        stock(&instances[0], &[("Laptop", ORDERS as u64)]).await;
        let mut ids = Vec::with_capacity(ORDERS);
        for index in 0..ORDERS {
            let order = reserve_ok(
                &instances[index % 2],
                request(&format!("c{index}"), &[("Laptop", 1)]),
            )
            .await;
            ids.push(order.id);
        }
        let ids = Arc::new(ids);
        run_concurrently("racing instances", ORDERS * RACERS, |index| {
            // Verdicts from one instance, cancellations and sweeps from
            // the other, so that every race is between two processes.
            let racer = (index / ORDERS) % RACERS;
            let storage = Arc::clone(&instances[usize::from(racer == 0)]);
            let ids = Arc::clone(&ids);
            async move {
                let id = &ids[index % ORDERS];
                match racer {
                    0 => {
                        let reserved =
                            stockroom_domain::rules::event_id(EventKind::OrderReserved, id, 1);
                        storage
                            .record_payments(vec![payment(id, &reserved, true)])
                            .await
                            .expect("a verdict never fails for a race");
                    }
                    1 => {
                        storage
                            .release(id, ReleaseReason::CancelledByCustomer)
                            .await
                            .expect("a cancellation never fails for a race");
                    }
                    _ => {
                        storage
                            .sweep(0, ORDERS as u32)
                            .await
                            .expect("a sweep never fails for a race");
                    }
                }
            }
        })
        .await;
        // Whatever is still reserved (charged, or missed by every
        // sweep) is ended by one last sweep: charged orders are
        // fulfilled, the others expire.
        instances[1]
            .sweep(0, ORDERS as u32)
            .await
            .expect("the last sweep");
        let orders = all_orders(&instances[0], None).await;
        assert_eq!(orders.len(), ORDERS);
        for stored in &orders {
            assert_order_consistent(stored);
            assert!(
                matches!(
                    stored.order.status,
                    OrderStatus::Fulfilled | OrderStatus::Cancelled
                ),
                "{stored:?}"
            );
        }
        let fulfilled = orders
            .iter()
            .filter(|stored| stored.order.status == OrderStatus::Fulfilled)
            .count() as u64;
        let laptop = item(&instances[1], "Laptop").await;
        assert_eq!(laptop.stock.reserved(), 0, "{laptop:?}");
        assert_eq!(laptop.stock.sold(), fulfilled, "{laptop:?}");
        assert_eq!(
            laptop.stock.available(),
            ORDERS as u64 - fulfilled,
            "{laptop:?}"
        );
        assert_invariants(&instances[0]).await;
    })
    .await;
}

/// Runs `checks` against two storages connected to one fresh schema, as two
/// data-service processes would be, and drops the schema afterwards, even
/// when the checks panic (the panic is raised again once it is dropped).
async fn with_two_instances<F, Checks>(name: &str, checks: F)
where
    F: FnOnce(Vec<Arc<dyn TestStorage>>) -> Checks,
    Checks: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema(name);
    let config = PostgresConfig {
        schema: Some(schema.clone()),
        pool_size: 4,
        ..PostgresConfig::default()
    };
    let mut instances: Vec<Arc<dyn TestStorage>> = Vec::new();
    for _ in 0..2 {
        let storage = PostgresStorage::connect(&url, config.clone())
            .await
            .expect("connect an instance");
        instances.push(Arc::new(storage));
    }
    let checked = tokio::spawn(checks(instances.clone())).await;
    for storage in &instances {
        storage.close().await;
    }
    drop(instances);
    admin.drop_schema(&schema).await;
    admin.close().await;
    if let Err(error) = checked {
        std::panic::resume_unwind(error.into_panic());
    }
}
