//! Webhooks against receivers that misbehave on purpose: one that fails and
//! times out before it takes events, and one that never does until an
//! operator redrives what was dead-lettered. Every event arrives signed,
//! none is lost, and orders never wait for a receiver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use stockroom_data_service::webhooks::{WebhookConfig, verify};
use stockroom_http_kit::OperatorToken;

use crate::harness::{TestSystem, get, post, stock};

const SECRET: &str = "a-webhook-secret-for-tests";

/// How long a test waits for the webhooks to arrive.
const DELIVERY_DEADLINE_MS: u64 = 30_000;

/// What the receiver answers its n-th request (from 0), and what it took.
#[derive(Default)]
struct Receiver {
    requests: usize,
    /// The answer to each request by its number; requests past the script
    /// answer `after`.
    script: Vec<Behaviour>,
    after: Option<Behaviour>,
    /// Bodies of the events answered 200, by event id, with every delivery.
    taken: BTreeMap<String, Vec<Value>>,
    /// Signature failures seen.
    forged: Vec<String>,
}

#[derive(Clone, Copy)]
enum Behaviour {
    Fail,
    Hang,
    Take,
}

async fn receive(receiver: Arc<Mutex<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let behaviour = {
        let mut receiver = receiver.lock().unwrap();
        let index = receiver.requests;
        receiver.requests += 1;
        receiver
            .script
            .get(index)
            .copied()
            .or(receiver.after)
            .unwrap_or(Behaviour::Take)
    };
    match behaviour {
        Behaviour::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK
        }
        Behaviour::Take => {
            let signature = headers
                .get("stockroom-signature")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            let now_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let mut receiver = receiver.lock().unwrap();
            if let Err(error) = verify(SECRET, signature, &body, now_s, 300) {
                receiver.forged.push(error.to_string());
                return StatusCode::UNAUTHORIZED;
            }
            let event: Value = serde_json::from_slice(&body).unwrap();
            let id = event["id"].as_str().unwrap().to_owned();
            receiver.taken.entry(id).or_default().push(event);
            StatusCode::OK
        }
    }
}

/// A receiver on an ephemeral port; its URL.
async fn start_receiver(receiver: Arc<Mutex<Receiver>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            receive(Arc::clone(&receiver), headers, body)
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/hooks")
}

async fn shop_with_webhooks(url: &str, max_attempts: u32) -> (TestSystem, reqwest::Client) {
    let token = OperatorToken::generate();
    let mut webhooks = WebhookConfig::parse(&[url.to_owned()], Some(SECRET))
        .unwrap()
        .unwrap();
    webhooks.timeout_ms = 300;
    webhooks.backoff_ms = 100;
    webhooks.max_attempts = max_attempts;
    let test = TestSystem::start(|config| {
        config.stock = Some(stock(&[("Laptop", 10)]));
        config.operator_token = Some(token.clone());
        config.webhooks = Some(webhooks);
        config.payment_latency_ms = 0;
    })
    .await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, token.header_value());
    let operator = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    (test, operator)
}

/// Waits until the receiver took events of every type in `expected` (with
/// those counts), or fails the test.
async fn wait_for(receiver: &Arc<Mutex<Receiver>>, expected: &BTreeMap<&str, usize>) {
    let deadline = Instant::now() + Duration::from_millis(DELIVERY_DEADLINE_MS);
    loop {
        let counted = {
            let receiver = receiver.lock().unwrap();
            let mut counted: BTreeMap<String, usize> = BTreeMap::new();
            for deliveries in receiver.taken.values() {
                *counted
                    .entry(deliveries[0]["type"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
            counted
        };
        let done = expected
            .iter()
            .all(|(kind, count)| counted.get(*kind).copied().unwrap_or(0) >= *count);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "webhooks missing: expected {expected:?}, received {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sells a product of 3 units with a threshold of 1 out, one unit per
/// order: stock.low, stock.sold_out and three order.fulfilled.
async fn sell_out(test: &TestSystem, operator: &reqwest::Client) -> Vec<String> {
    let (status, created) = post(
        operator,
        &test.data_url("/inventory"),
        json!({"productName": "Tablet", "quantity": 3, "lowStockThreshold": 1}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let mut ids = Vec::new();
    for customer in ["a", "b", "c"] {
        let (status, placed) = test
            .place(json!({"customerId": customer, "productName": "Tablet", "quantity": 1}))
            .await;
        assert_eq!(status, 201, "orders never wait for a receiver: {placed}");
        ids.push(placed["order"]["id"].as_str().unwrap().to_owned());
    }
    test.wait_until_settled().await;
    ids
}

#[tokio::test]
async fn a_receiver_that_fails_and_times_out_still_gets_every_event_signed() {
    let receiver = Arc::new(Mutex::new(Receiver {
        script: vec![
            Behaviour::Fail,
            Behaviour::Hang,
            Behaviour::Fail,
            Behaviour::Hang,
            Behaviour::Fail,
        ],
        ..Receiver::default()
    }));
    let url = start_receiver(Arc::clone(&receiver)).await;
    let (test, operator) = shop_with_webhooks(&url, 20).await;
    let order_ids = sell_out(&test, &operator).await;
    let expected = BTreeMap::from([
        ("stock.low", 1),
        ("stock.sold_out", 1),
        ("order.fulfilled", 3),
    ]);
    wait_for(&receiver, &expected).await;
    check_first_run(&receiver.lock().unwrap(), &order_ids);
    let (status, dead) = get(
        &test.client,
        &test.data_url("/events/webhooks/dead-letters"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(dead["deadLetters"], json!([]));
    test.stop().await;
}

/// What the receiver of the first run must have taken: every event of the
/// sale, once each, signed, with its data.
fn check_first_run(receiver: &Receiver, order_ids: &[String]) {
    assert!(receiver.forged.is_empty(), "{:?}", receiver.forged);
    assert!(receiver.requests > 5, "the failures were retried");
    for id in order_ids {
        let event = receiver
            .taken
            .values()
            .map(|deliveries| &deliveries[0])
            .find(|event| event["data"]["orderId"] == id.as_str())
            .unwrap_or_else(|| panic!("no webhook for order {id}"));
        assert_eq!(event["type"], "order.fulfilled");
        assert_eq!(event["data"]["items"][0]["productName"], "Tablet");
        assert!(event["createdAtMs"].as_i64().unwrap() > 0);
    }
    let sold_out = receiver
        .taken
        .values()
        .map(|deliveries| &deliveries[0])
        .find(|event| event["type"] == "stock.sold_out")
        .unwrap();
    assert_eq!(
        sold_out["data"],
        json!({"productName": "Tablet", "available": 0, "lowStockThreshold": 1})
    );
    // The initial stock is not "back in stock", and nothing else was sent.
    assert_eq!(receiver.taken.len(), 5, "{:?}", receiver.taken.keys());
}

#[tokio::test]
async fn events_a_receiver_keeps_refusing_are_dead_lettered_and_redriven() {
    let receiver = Arc::new(Mutex::new(Receiver {
        after: Some(Behaviour::Fail),
        ..Receiver::default()
    }));
    let url = start_receiver(Arc::clone(&receiver)).await;
    let (test, operator) = shop_with_webhooks(&url, 2).await;
    sell_out(&test, &operator).await;
    // Every event is tried twice, then dead-lettered.
    let deadline = Instant::now() + Duration::from_millis(DELIVERY_DEADLINE_MS);
    let dead = loop {
        let (status, page) = get(
            &test.client,
            &test.data_url("/events/webhooks/dead-letters"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let dead = page["deadLetters"].as_array().unwrap().clone();
        if dead.len() == 5 {
            break dead;
        }
        assert!(Instant::now() < deadline, "dead letters: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        dead.iter().all(|letter| letter["deliveries"] == 2),
        "{dead:?}"
    );
    assert_eq!(receiver.lock().unwrap().requests, 10);
    // The receiver is fixed; the operator redrives.
    receiver.lock().unwrap().after = Some(Behaviour::Take);
    let ids: Vec<i64> = dead
        .iter()
        .map(|letter| letter["deliveryId"].as_i64().unwrap())
        .collect();
    let (status, redriven) = post(
        &test.client,
        &test.data_url("/events/webhooks/redrive"),
        json!({"deliveryIds": ids}),
    )
    .await;
    assert_eq!(status, 200, "{redriven}");
    let expected = BTreeMap::from([
        ("stock.low", 1),
        ("stock.sold_out", 1),
        ("order.fulfilled", 3),
    ]);
    wait_for(&receiver, &expected).await;
    test.stop().await;
}
