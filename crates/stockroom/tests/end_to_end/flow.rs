//! The order flow after the reservation: payment, commit, release, expiry,
//! cancel, and what each service documents about itself.

use serde_json::Value;

use crate::harness::{TestSystem, get, laptops, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_order_is_fulfilled_with_its_history() {
    let test = TestSystem::start(|_| {}).await;
    let (_, body) = test.place(laptops(3)).await;
    let id = body["order"]["id"].as_str().unwrap().to_owned();
    let order = test
        .wait_for_order(&id, |order| order["status"] == "fulfilled")
        .await;
    assert_eq!(order["paymentStatus"], "charged");
    let versions: Vec<i64> = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(order["version"], 3);
    let item = test.item("Laptop").await;
    assert_eq!(
        (
            item["quantity"].as_i64(),
            item["reservedQuantity"].as_i64(),
            item["sold"].as_i64()
        ),
        (Some(22), Some(0), Some(3))
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_payment_releases_the_stock() {
    let test = TestSystem::start(|config| config.payment_decline_rate = 1.0).await;
    let (status, body) = test.place(laptops(4)).await;
    assert_eq!(status, 201);
    let id = body["order"]["id"].as_str().unwrap().to_owned();
    let order = test
        .wait_for_order(&id, |order| order["status"] == "cancelled")
        .await;
    assert_eq!(order["reason"], "payment_declined");
    assert_eq!(order["paymentStatus"], "declined");
    let item = test.item("Laptop").await;
    assert_eq!(
        (item["quantity"].as_i64(), item["reservedQuantity"].as_i64()),
        (Some(25), Some(0))
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpaid_reservation_expires_and_a_late_payment_charges_nothing() {
    let test = TestSystem::start(|config| {
        config.payment_latency_ms = 1_500;
        config.reservation_ttl_ms = 200;
        config.sweep_interval_ms = 50;
    })
    .await;
    let (_, body) = test.place(laptops(5)).await;
    let id = body["order"]["id"].as_str().unwrap().to_owned();
    let order = test
        .wait_for_order(&id, |order| order["status"] == "cancelled")
        .await;
    assert_eq!(order["reason"], "reservation_expired");
    assert_eq!(test.item("Laptop").await["reservedQuantity"], 0);
    // The payment finishes after the expiry: it must be voided, not charged.
    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    let order = test.order(&id).await;
    assert_eq!(
        (order["status"].as_str(), order["paymentStatus"].as_str()),
        (Some("cancelled"), Some("none"))
    );
    let stats = get(&test.client, &format!("{}/stats", test.system.urls.payment))
        .await
        .1;
    assert_eq!(
        (stats["charged"].as_u64(), stats["voided"].as_u64()),
        (Some(0), Some(1)),
        "{stats}"
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_releases_once_and_refuses_what_is_sold() {
    let test = TestSystem::start(|config| config.payment_latency_ms = 60_000).await;
    let (_, body) = test.place(laptops(6)).await;
    let id = body["order"]["id"].as_str().unwrap().to_owned();
    let cancel_url = test.order_url(&format!("/api/orders/{id}/cancel"));
    let (status, body) = post(&test.client, &cancel_url, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"]["status"], "cancelled");
    assert_eq!(body["order"]["reason"], "cancelled_by_customer");
    assert_eq!(test.item("Laptop").await["reservedQuantity"], 0);
    // Twice is harmless: same answer, stock unchanged, no new history entry.
    let (status, again) = post(&test.client, &cancel_url, Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(again["order"]["version"], body["order"]["version"]);
    assert_eq!(test.item("Laptop").await["available"], 25);

    let (status, body) = post(
        &test.client,
        &test.order_url("/api/orders/01a20055-94a2-72f6-8701-0ae7fa1bb592/cancel"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fulfilled_order_cannot_be_cancelled() {
    let test = TestSystem::start(|_| {}).await;
    let (_, body) = test.place(laptops(1)).await;
    let id = body["order"]["id"].as_str().unwrap().to_owned();
    test.wait_for_order(&id, |order| order["status"] == "fulfilled")
        .await;
    let (status, body) = post(
        &test.client,
        &test.order_url(&format!("/api/orders/{id}/cancel")),
        Value::Null,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(test.order(&id).await["status"], "fulfilled");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_can_be_listed_filtered_and_paged() {
    let test = TestSystem::start(|config| config.payment_latency_ms = 60_000).await;
    for customer in ["a", "b", "a"] {
        let (status, _) = test
            .place(
                serde_json::json!({"productName": "Phone", "quantity": 1, "customerId": customer}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (_, page) = get(&test.client, &test.order_url("/api/orders?customerId=a")).await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 2);
    let (_, first) = get(&test.client, &test.order_url("/api/orders?limit=2")).await;
    assert_eq!(first["orders"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = get(
        &test.client,
        &test.order_url(&format!("/api/orders?limit=2&after={cursor}")),
    )
    .await;
    assert_eq!(second["orders"].as_array().unwrap().len(), 1);
    assert!(second["nextCursor"].is_null());
    let (status, body) = get(&test.client, &test.order_url("/api/orders?status=lost")).await;
    assert_eq!(status, 422, "{body}");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_serves_health_and_its_openapi_document() {
    let test = TestSystem::start(|_| {}).await;
    let urls = &test.system.urls;
    for (base, path) in [
        (&urls.order, "/api/orders"),
        (&urls.data, "/inventory/{productName}"),
        (&urls.inventory, "/reservations"),
        (&urls.payment, "/stats"),
    ] {
        let (status, health) = get(&test.client, &format!("{base}/health")).await;
        assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
        let (status, document) = get(&test.client, &format!("{base}/openapi.json")).await;
        assert_eq!(status, 200);
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        assert!(
            document["paths"][path].is_object(),
            "{base} documents {path}"
        );
    }
    let (status, body) = get(&test.client, &test.data_url("/inventory/LAPTOP")).await;
    assert_eq!(
        (status, body["item"]["productName"].as_str()),
        (200, Some("Laptop"))
    );
    // Each service names its parts and what each of them found.
    for (base, parts) in [
        (&urls.data, &["storage", "outbox", "deadLetters"][..]),
        (&urls.inventory, &["dependencies", "consumer"][..]),
        (&urls.payment, &["dependencies", "consumer"][..]),
        (&urls.order, &["dependencies"][..]),
    ] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (_, health) = get(&test.client, &format!("{base}/health")).await;
            let reported = parts
                .iter()
                .all(|part| health["parts"][part]["status"] == "ok");
            if reported {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{base}/health lacks one of {parts:?}: {health}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let (_, health) = get(&test.client, &test.data_url("/health")).await;
    assert_eq!(
        health["parts"]["storage"]["detail"]["writable"], true,
        "{health}"
    );
    test.stop().await;
}
