//! Every service's `/metrics`: the business series an operator watches, and
//! labels a client cannot multiply (invented methods, raw paths).

use std::time::{Duration, Instant};

use crate::harness::{SETTLE_TIMEOUT_MS, TestSystem, laptops};

async fn metrics(client: &reqwest::Client, base_url: &str) -> String {
    client
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Reads `/metrics` until it contains every one of `wanted`, or fails.
async fn wait_for_series(client: &reqwest::Client, base_url: &str, wanted: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    loop {
        let text = metrics(client, base_url).await;
        if wanted.iter().all(|series| text.contains(series)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{base_url}/metrics lacks {wanted:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invented_methods_and_raw_paths_never_become_labels() {
    let test = TestSystem::start(|_| {}).await;
    let client = &test.client;
    let order_url = &test.system.urls.order;
    for method in ["ANYTHING", "BREW", "GET"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for path in ["/api/orders/6b3c-raw-id", "/nowhere/5f1e-raw-path"] {
            client
                .request(method.clone(), format!("{order_url}{path}"))
                .send()
                .await
                .unwrap();
        }
    }
    let text = metrics(client, order_url).await;
    for raw in ["ANYTHING", "BREW", "6b3c-raw-id", "5f1e-raw-path"] {
        assert!(!text.contains(raw), "{raw} became a label:\n{text}");
    }
    assert!(
        text.contains("method=\"other\",route=\"/api/orders/{id}\""),
        "{text}"
    );
    assert!(
        text.contains("method=\"other\",route=\"unmatched\""),
        "{text}"
    );
    assert!(
        text.contains("method=\"GET\",route=\"unmatched\",status=\"404\""),
        "{text}"
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_shows_in_the_business_metrics() {
    let test = TestSystem::start(|_| {}).await;
    let client = &test.client;
    let (status, _) = test.place(laptops(3)).await;
    assert_eq!(status, 201);
    let urls = &test.system.urls;
    wait_for_series(
        client,
        &urls.order,
        &[
            "stockroom_reservations_total{service=\"order-service\"} 1",
            "stockroom_order_batch_size_count{service=\"order-service\"} 1",
        ],
    )
    .await;
    wait_for_series(
        client,
        &urls.inventory,
        &[
            "stockroom_settlement_lag_seconds_count{service=\"inventory-service\"} 1",
            "stockroom_stock_units{service=\"inventory-service\",product=\"Laptop\",figure=\"on_hand\"} 22",
            "stockroom_invariant_violations_current{service=\"inventory-service\"} 0",
        ],
    )
    .await;
    wait_for_series(
        client,
        &urls.payment,
        &["stockroom_event_batch_size_count{service=\"payment-service\",consumer=\"payment\"} 1"],
    )
    .await;
    wait_for_series(
        client,
        &urls.data,
        &[
            "stockroom_outbox_pending{service=\"data-service\",consumer=",
            "stockroom_write_queue_depth{service=\"data-service\",backend=",
            "stockroom_write_batches_total{service=\"data-service\",backend=",
        ],
    )
    .await;
    test.stop().await;
}
