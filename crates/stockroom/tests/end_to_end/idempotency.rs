//! `Idempotency-Key`: a retry returns the first answer and creates nothing.

use std::sync::Arc;

use serde_json::Value;

use crate::harness::{TestSystem, laptops};

async fn place_with_key(test: &TestSystem, key: &str, body: Value) -> (u16, Value, bool) {
    let response = test
        .client
        .post(test.order_url("/api/orders"))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (status, response.json().await.unwrap(), replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_returns_the_first_answer_and_another_body_is_refused() {
    let test = TestSystem::start(|config| config.payment_latency_ms = 60_000).await;
    let (status, first, replayed) = place_with_key(&test, "key-1", laptops(2)).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, second, replayed) = place_with_key(&test, "key-1", laptops(2)).await;
    assert_eq!((status, replayed), (201, true), "{second}");
    assert_eq!(first["order"]["id"], second["order"]["id"]);
    assert_eq!(
        test.item("Laptop").await["reservedQuantity"],
        2,
        "the replay reserved nothing"
    );

    let (status, body, _) = place_with_key(&test, "key-1", laptops(3)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "idempotency_key_reused");
    assert_eq!(test.all_orders().await.len(), 1);

    // A rejected order is replayed as rejected, not retried against new stock.
    let (status, _, _) = place_with_key(&test, "key-2", laptops(1000)).await;
    assert_eq!(status, 409);
    let (status, _, replayed) = place_with_key(&test, "key-2", laptops(1000)).await;
    assert_eq!((status, replayed), (409, true));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_create_one_order() {
    let test = Arc::new(TestSystem::start(|config| config.payment_latency_ms = 60_000).await);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let test = Arc::clone(&test);
            tokio::spawn(async move { place_with_key(&test, "same-key", laptops(1)).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let (status, body, _) = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.insert(body["order"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(test.all_orders().await.len(), 1);
    assert_eq!(test.item("Laptop").await["reservedQuantity"], 1);
    Arc::into_inner(test).unwrap().stop().await;
}

/// Keys belong to their customer: another customer's identical key (and
/// even an identical body but for the customer) creates that customer's own
/// order, never replays or refuses someone else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_customers_key_never_collides_with_anothers() {
    let test = TestSystem::start(|config| config.payment_latency_ms = 60_000).await;
    let order_of = |customer: &str, quantity: u32| serde_json::json!({"productName": "Laptop", "quantity": quantity, "customerId": customer});
    let (status, first, replayed) = place_with_key(&test, "shared-key", order_of("alice", 1)).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, second, replayed) = place_with_key(&test, "shared-key", order_of("bob", 1)).await;
    assert_eq!((status, replayed), (201, false), "{second}");
    assert_ne!(first["order"]["id"], second["order"]["id"]);
    assert_eq!(second["order"]["customerId"], "bob");
    // A different body under bob's key is refused for bob only.
    let (status, refused, _) = place_with_key(&test, "shared-key", order_of("bob", 2)).await;
    assert_eq!(status, 422, "{refused}");
    let (status, again, replayed) = place_with_key(&test, "shared-key", order_of("alice", 1)).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again["order"]["id"], first["order"]["id"]);
    assert_eq!(test.all_orders().await.len(), 2);
    test.stop().await;
}
