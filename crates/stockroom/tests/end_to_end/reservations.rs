//! The reservation is atomic: no oversell under concurrency, all items or none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use serde_json::json;

use crate::harness::{TestSystem, assert_stock_reconciles, get, laptops, stock};

/// The original system's own smoke test, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_orders_of_two_laptops_leave_five() {
    let test = Arc::new(TestSystem::start(|_| {}).await);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let test = Arc::clone(&test);
            tokio::spawn(async move { test.place(laptops(2)).await })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["order"]["status"], "reserved");
    }
    let item = test.item("Laptop").await;
    assert_eq!(
        item["quantity"].as_i64().unwrap() - item["reservedQuantity"].as_i64().unwrap(),
        5
    );
    test.wait_until_settled().await;
    let item = test.item("Laptop").await;
    assert_eq!(
        item["quantity"].as_i64().unwrap() - item["reservedQuantity"].as_i64().unwrap(),
        5
    );
    assert_eq!(item["sold"], 20);
    let orders = test.all_orders().await;
    assert!(orders.iter().all(|order| order["status"] == "fulfilled"));
    let inventory = get(&test.client, &test.data_url("/inventory")).await.1;
    assert_stock_reconciles(inventory["inventory"].as_array().unwrap(), &orders);
    Arc::into_inner(test).unwrap().stop().await;
}

/// 200 buyers, 25 laptops: exactly 25 win, and nobody ever sees negative stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_orders_on_twenty_five_sell_exactly_twenty_five() {
    // A slow payment keeps reservations open while the storm runs, so the
    // sampler watches reserved stock, not only sold stock.
    let test = Arc::new(TestSystem::start(|config| config.payment_latency_ms = 300).await);
    let storming = Arc::new(AtomicBool::new(true));
    let lowest_available = Arc::new(AtomicI64::new(i64::MAX));
    let sampler = {
        let test = Arc::clone(&test);
        let storming = Arc::clone(&storming);
        let lowest = Arc::clone(&lowest_available);
        tokio::spawn(async move {
            let mut samples = 0;
            while storming.load(Ordering::SeqCst) || samples == 0 {
                let item = test.item("Laptop").await;
                lowest.fetch_min(item["available"].as_i64().unwrap(), Ordering::SeqCst);
                assert!(
                    item["reservedQuantity"].as_i64().unwrap()
                        <= item["quantity"].as_i64().unwrap(),
                    "{item}"
                );
                samples += 1;
            }
            samples
        })
    };
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|index| {
            let test = Arc::clone(&test);
            tokio::spawn(async move {
                test.place(json!({"productName": "Laptop", "quantity": 1, "customerId": format!("c{index}")}))
                    .await
            })
        })
        .collect();
    let mut reserved = 0;
    let mut rejected = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => reserved += 1,
            409 => {
                assert_eq!(body["error"], "insufficient_stock");
                assert_eq!(body["order"]["status"], "rejected");
                rejected += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    let elapsed = started.elapsed();
    storming.store(false, Ordering::SeqCst);
    let samples = sampler.await.unwrap();
    eprintln!("200-order storm took {elapsed:?}; the sampler read the stock {samples} times");
    assert_eq!((reserved, rejected), (25, 175));
    assert!(lowest_available.load(Ordering::SeqCst) >= 0);

    // Right after the storm: reserved equals what open reservations hold.
    let orders = test.all_orders().await;
    let inventory = get(&test.client, &test.data_url("/inventory")).await.1;
    assert_stock_reconciles(inventory["inventory"].as_array().unwrap(), &orders);
    assert_eq!(orders.len(), 200);

    test.wait_until_settled().await;
    let orders = test.all_orders().await;
    let inventory = get(&test.client, &test.data_url("/inventory")).await.1;
    assert_stock_reconciles(inventory["inventory"].as_array().unwrap(), &orders);
    let item = test.item("Laptop").await;
    assert_eq!(
        (item["quantity"].as_i64(), item["sold"].as_i64()),
        (Some(0), Some(25))
    );
    Arc::into_inner(test).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multi_item_order_is_all_or_nothing() {
    let test = TestSystem::start(|config| {
        config.stock = Some(stock(&[("Laptop", 5), ("Mouse", 1)]));
        config.payment_latency_ms = 60_000;
    })
    .await;
    let (status, body) = test
        .place(json!({"customerId": "c1", "items": [
            {"productName": "Laptop", "quantity": 2},
            {"productName": "Mouse", "quantity": 2}
        ]}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["shortages"][0]["productName"], "Mouse");
    assert_eq!(
        test.item("Laptop").await["reservedQuantity"],
        0,
        "the laptops must not stay held"
    );
    assert_eq!(test.item("Mouse").await["reservedQuantity"], 0);

    let (status, body) = test
        .place(json!({"customerId": "c1", "items": [
            {"productName": "mouse", "quantity": 1},
            {"productName": "LAPTOP", "quantity": 2}
        ]}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["order"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(test.item("Laptop").await["reservedQuantity"], 2);
    assert_eq!(test.item("Mouse").await["reservedQuantity"], 1);
    test.stop().await;
}

/// Orders naming the same products in opposite order are locked in one global
/// order, so they never deadlock however they interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_item_orders_never_deadlock() {
    let test = Arc::new(
        TestSystem::start(|config| {
            config.stock = Some(stock(&[("Alpha", 60), ("Beta", 60)]));
            config.payment_latency_ms = 60_000;
        })
        .await,
    );
    let tasks: Vec<_> = (0..80)
        .map(|index| {
            let test = Arc::clone(&test);
            let items = if index % 2 == 0 {
                json!([{"productName": "Alpha", "quantity": 1}, {"productName": "Beta", "quantity": 1}])
            } else {
                json!([{"productName": "Beta", "quantity": 1}, {"productName": "Alpha", "quantity": 1}])
            };
            tokio::spawn(async move {
                tokio::time::timeout(
                    std::time::Duration::from_secs(20),
                    test.place(json!({"customerId": "c", "items": items})),
                )
                .await
                .expect("an order never finished: deadlock")
            })
        })
        .collect();
    let mut reserved = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert!(status == 201 || status == 409, "{status} {body}");
        reserved += usize::from(status == 201);
    }
    assert_eq!(reserved, 60);
    for product in ["Alpha", "Beta"] {
        assert_eq!(test.item(product).await["reservedQuantity"], 60);
    }
    Arc::into_inner(test).unwrap().stop().await;
}
