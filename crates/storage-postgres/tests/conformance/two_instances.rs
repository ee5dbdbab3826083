//! Batches decided ahead of their stock locks, under what moves their stock
//! behind them: two storages on one schema, as two data-service processes
//! run them, each deciding on figures the other keeps moving; and one
//! storage whose busy sessions are cut one at a time, so that a batch dies
//! while the one decided on its figures lives on. Either way a batch finds
//! its stock moved under the lock and runs again with it locked first, and
//! the stock held is exactly what the reserved orders hold.

use std::collections::HashMap;
use std::sync::Arc;

use stockroom_domain::rules::{ReserveAnswer, ReserveDecision};
use stockroom_domain::{OrderStatus, ReleaseReason};
use stockroom_storage::StorageError;
use stockroom_storage::testing::TestStorage;
use stockroom_storage_conformance::support::{
    self, Store, assert_invariants, item, request, run_concurrently,
};
use stockroom_storage_postgres::{GroupCommitConfig, PostgresConfig, PostgresStorage};

use super::{Admin, test_url, unique_schema};

/// Units of each product on sale.
const UNITS_PER_PRODUCT: u64 = 40;

/// The products both instances sell.
const PRODUCTS: [&str; 3] = ["Laptop", "Phone", "Tablet"];

/// Single-unit orders in each wave, spread over both instances and every
/// product: twice what is on sale.
const ORDERS_PER_WAVE: usize = 240;

/// Connections of each instance.
const POOL_SIZE: usize = 5;

/// One wave of reservations, alternating instances and products; returns
/// every reserved order's id and product, and how many were refused.
async fn reserve_wave(instances: &[Store; 2], wave: usize) -> (Vec<(String, String)>, usize) {
    let decisions = run_concurrently("reservations on two instances", ORDERS_PER_WAVE, |index| {
        let storage = Arc::clone(&instances[index % 2]);
        let product = PRODUCTS[(index / 2) % PRODUCTS.len()];
        async move {
            let decision = support::reserve_one(
                &storage,
                request(&format!("customer-{wave}-{index}"), &[(product, 1)]),
            )
            .await;
            (decision, product.to_lowercase())
        }
    })
    .await;
    let mut reserved = Vec::new();
    let mut refused = 0;
    for (decision, product) in decisions {
        match decision {
            ReserveDecision::Created(ReserveAnswer::Reserved(order)) => {
                reserved.push((order.id, product));
            }
            ReserveDecision::Created(ReserveAnswer::Rejected { .. }) => refused += 1,
            other => panic!("a single-unit order answered {other:?}"),
        }
    }
    (reserved, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_deciding_ahead_sell_exactly_the_stock() {
    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema("two_instances_ahead");
    let config = PostgresConfig {
        schema: Some(schema.clone()),
        pool_size: POOL_SIZE,
        ..PostgresConfig::default()
    };
    let mut opened = Vec::new();
    for _ in 0..2 {
        let storage = PostgresStorage::connect_with_group_commit(
            &url,
            config.clone(),
            GroupCommitConfig::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot open the storage in schema {schema}: {error}"));
        opened.push(Arc::new(storage));
    }
    let instances: [Store; 2] = [
        Arc::clone(&opened[0]) as Arc<dyn TestStorage>,
        Arc::clone(&opened[1]) as Arc<dyn TestStorage>,
    ];
    let outcome = tokio::spawn(sell_on_two_instances(instances)).await;
    for storage in &opened {
        storage.close_pool();
    }
    drop(opened);
    admin.drop_schema(&schema).await;
    admin.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Sells every product out on both instances at once, cancels half of the
/// orders through the instance that did not take them while a second wave
/// of orders races for the freed units, and checks the figures.
async fn sell_on_two_instances(instances: [Store; 2]) {
    let lines: Vec<(&str, u64)> = PRODUCTS
        .iter()
        .map(|name| (*name, UNITS_PER_PRODUCT))
        .collect();
    support::stock(&instances[0], &lines).await;

    let (first, refused) = reserve_wave(&instances, 0).await;
    let on_sale = UNITS_PER_PRODUCT as usize * PRODUCTS.len();
    assert_eq!(first.len(), on_sale, "every unit sells, and no more");
    assert_eq!(refused, ORDERS_PER_WAVE - on_sale);

    // Every other order is cancelled through the instance that did not take
    // it, while the second wave races for the units it frees.
    let cancelled: Vec<String> = first.iter().step_by(2).map(|(id, _)| id.clone()).collect();
    let cancels = {
        let instances = instances.clone();
        let cancelled = cancelled.clone();
        tokio::spawn(async move {
            run_concurrently("cancels on two instances", cancelled.len(), |index| {
                let storage = Arc::clone(&instances[(index + 1) % 2]);
                let order_id = cancelled[index].clone();
                async move {
                    storage
                        .release(&order_id, ReleaseReason::CancelledByCustomer)
                        .await
                        .expect("release")
                }
            })
            .await
        })
    };
    let (second, _) = reserve_wave(&instances, 1).await;
    cancels.await.expect("the cancels");

    let mut held: HashMap<String, u64> = HashMap::new();
    for (id, product) in first.iter().skip(1).step_by(2).chain(&second) {
        let stored = support::order(&instances[0], id).await;
        assert_eq!(stored.order.status, OrderStatus::Reserved, "order {id}");
        *held.entry(product.clone()).or_default() += 1;
    }
    for name in PRODUCTS {
        let stock = item(&instances[1], name).await;
        let key = name.to_lowercase();
        assert_eq!(
            stock.stock.reserved(),
            held.get(&key).copied().unwrap_or(0),
            "{name}: the units held are the reserved orders' units"
        );
        assert!(
            stock.stock.reserved() <= UNITS_PER_PRODUCT,
            "{name} oversold"
        );
    }
    for storage in &instances {
        assert_invariants(storage).await;
    }
}

/// Units of each product in the storm whose sessions are cut: more than it
/// orders, so that every batch reserves.
const CUT_UNITS_PER_PRODUCT: u64 = 10_000;

/// Waves of the storm whose sessions are cut, one after another.
const CUT_WAVES: usize = 8;

/// How often the storage's sessions are cut while the storm runs.
const CUT_EVERY_MS: u64 = 20;

/// The storage's busy sessions are cut one at a time while batches are
/// decided ahead on each other's figures: a batch whose connection dies
/// fails (or nobody knows whether it committed), and the batch decided on
/// what it would have left finds its stock moved under the lock and runs
/// again, never failing for it. Whatever was
/// answered, the stock held is exactly what the reserved orders hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_cut_under_batches_decided_ahead_leave_the_stock_exact() {
    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema("cut_ahead");
    // A name of its own, so that only this test's sessions are cut.
    let application = schema.clone();
    let separator = if url.contains('?') { '&' } else { '?' };
    let storage_url = format!("{url}{separator}application_name={application}");
    let storage = PostgresStorage::connect_with_group_commit(
        &storage_url,
        PostgresConfig {
            schema: Some(schema.clone()),
            pool_size: POOL_SIZE,
            ..PostgresConfig::default()
        },
        GroupCommitConfig::default(),
    )
    .await
    .unwrap_or_else(|error| panic!("cannot open the storage in schema {schema}: {error}"));
    let storage = Arc::new(storage);
    let store = Arc::clone(&storage) as Arc<dyn TestStorage>;
    let outcome = tokio::spawn(sell_while_sessions_are_cut(store, url.clone(), application)).await;
    storage.close_pool();
    drop(storage);
    admin.drop_schema(&schema).await;
    admin.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn sell_while_sessions_are_cut(storage: Store, url: String, application: String) {
    let lines: Vec<(&str, u64)> = PRODUCTS
        .iter()
        .map(|name| (*name, CUT_UNITS_PER_PRODUCT))
        .collect();
    support::stock(&storage, &lines).await;
    let storming = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cutter = {
        let storming = Arc::clone(&storming);
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("a session to cut the storage's from");
            let connection = tokio::spawn(connection);
            let mut cut = 0;
            while storming.load(std::sync::atomic::Ordering::Acquire) {
                tokio::time::sleep(std::time::Duration::from_millis(CUT_EVERY_MS)).await;
                // One busy session at a time, so that a batch dies while the
                // one decided on its figures lives on.
                let row = client
                    .query_one(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM (
                             SELECT pid FROM pg_stat_activity
                             WHERE application_name = $1 AND state <> 'idle'
                             LIMIT 1) AS busy",
                        &[&application],
                    )
                    .await
                    .expect("cut a session");
                cut += row.get::<_, i64>(0);
            }
            drop(client);
            let _ = connection.await;
            cut
        })
    };
    let mut failed = 0;
    for wave in 0..CUT_WAVES {
        let answers = run_concurrently(
            "reservations while sessions are cut",
            ORDERS_PER_WAVE,
            |index| {
                let storage = Arc::clone(&storage);
                let product = PRODUCTS[index % PRODUCTS.len()];
                async move {
                    storage
                        .reserve(vec![request(
                            &format!("customer-{wave}-{index}"),
                            &[(product, 1)],
                        )])
                        .await
                }
            },
        )
        .await;
        for answer in &answers {
            match answer {
                Ok(_) => {}
                // A cut fails the calls of its batch: the database is gone,
                // or the commit's answer is.
                Err(StorageError::Unavailable { .. } | StorageError::OutcomeUnknown { .. }) => {
                    failed += 1;
                }
                Err(other) => panic!("a cut must fail a call for the cut alone: {other}"),
            }
        }
    }
    storming.store(false, std::sync::atomic::Ordering::Release);
    let cut = cutter.await.expect("the cutter");
    assert!(
        cut > 0 && failed > 0,
        "the cuts must hit batches in flight: {cut} sessions cut, {failed} calls failed"
    );

    // The storage works on after the cuts: a pooled connection that was
    // cut fails the call that takes it, and the pool opens a new one.
    let mut after = Err(StorageError::unavailable("not tried"));
    for _ in 0..=POOL_SIZE {
        after = storage
            .reserve(vec![request("after-the-cuts", &[("Laptop", 1)])])
            .await;
        if after.is_ok() {
            break;
        }
    }
    assert!(after.is_ok(), "a reservation after the cuts: {after:?}");

    // Every reserved order, answered or not, holds its product's units.
    let mut held: HashMap<String, u64> = HashMap::new();
    for stored in support::all_orders(&storage, Some(OrderStatus::Reserved)).await {
        for line in &stored.order.lines {
            *held.entry(line.product_key.clone()).or_default() += u64::from(line.quantity.get());
        }
    }
    for name in PRODUCTS {
        let stock = item(&storage, name).await;
        assert_eq!(
            stock.stock.reserved(),
            held.get(&name.to_lowercase()).copied().unwrap_or(0),
            "{name}: the units held are the reserved orders' units"
        );
    }
    assert_invariants(&storage).await;
}
