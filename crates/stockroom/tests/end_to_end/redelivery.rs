//! Delivery is at least once; every event's effect happens exactly once.
//!
//! These tests drive data-service's bus and effect endpoints by hand, playing
//! the consumers, so that each event can be delivered twice on purpose.

use std::sync::Arc;

use serde_json::{Value, json};
use stockroom_launcher::system;

use crate::harness::{get, post};

struct DataOnly {
    url: String,
    client: reqwest::Client,
    token: stockroom_http_kit::InternalToken,
    service: system::RunningService,
    storage: Arc<dyn stockroom_storage::Storage>,
    _directory: tempfile::TempDir,
}

async fn data_only() -> DataOnly {
    let directory = tempfile::tempdir().unwrap();
    let storage = crate::harness::open_sqlite_storage(directory.path()).await;
    let (listener, url) = system::bind("data-service", [127, 0, 0, 1].into(), 0)
        .await
        .unwrap();
    let token = stockroom_http_kit::InternalToken::generate();
    let service = system::data_service(listener, storage.clone(), token.clone());
    DataOnly {
        url,
        client: crate::harness::authorized_client(&token),
        token,
        service,
        storage,
        _directory: directory,
    }
}

impl DataOnly {
    async fn reserve(&self, order_id: &str, quantity: u32) {
        let (status, body) = post(
            &self.client,
            &format!("{}/reservations", self.url),
            json!({"requests": [{"orderId": order_id, "customerId": "c1",
                "items": [{"product": "Laptop", "quantity": quantity}]}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["results"][0]["outcome"]["outcome"], "reserved",
            "{body}"
        );
    }

    async fn lease(&self, consumer: &str, lease_ms: u64) -> Vec<Value> {
        let (status, body) = post(
            &self.client,
            &format!("{}/events/{consumer}/lease", self.url),
            json!({"maxEvents": 100, "waitMs": 0, "leaseMs": lease_ms}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["deliveries"].as_array().unwrap().clone()
    }

    async fn effect(&self, path: &str, body: Value) -> String {
        let (status, answer) = post(&self.client, &format!("{}{path}", self.url), body).await;
        assert_eq!(status, 200, "{answer}");
        answer["results"][0]["outcome"].as_str().unwrap().to_owned()
    }

    async fn laptop(&self) -> Value {
        get(&self.client, &format!("{}/inventory/Laptop", self.url))
            .await
            .1["item"]
            .clone()
    }

    async fn stop(self) {
        self.service.stop().await.unwrap();
        self.storage.close().await;
    }
}

const ORDER_A: &str = "01a20055-0000-7000-8000-00000000000a";
const ORDER_B: &str = "01a20055-0000-7000-8000-00000000000b";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unacknowledged_event_is_delivered_again() {
    let data = data_only().await;
    data.reserve(ORDER_A, 1).await;
    let first = data.lease("payment", 100).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["event"]["kind"], "OrderReserved");
    assert!(
        data.lease("payment", 100).await.is_empty(),
        "leased events are not handed out twice at once"
    );
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let again = data.lease("payment", 10_000).await;
    assert_eq!(
        again.len(),
        1,
        "the consumer 'crashed': the event comes back"
    );
    assert_eq!(again[0]["event"]["eventId"], first[0]["event"]["eventId"]);
    assert_eq!(again[0]["attempt"], 2);
    let (status, _) = post(
        &data.client,
        &format!("{}/events/payment/ack", data.url),
        json!({"deliveries": [{
            "deliveryId": again[0]["deliveryId"], "leaseToken": again[0]["leaseToken"]
        }]}),
    )
    .await;
    assert_eq!(status, 204);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        data.lease("payment", 100).await.is_empty(),
        "acknowledged events never come back"
    );
    data.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_event_type_delivered_twice_has_one_effect() {
    let data = data_only().await;
    data.reserve(ORDER_A, 2).await;
    data.reserve(ORDER_B, 3).await;
    let reserved = data.lease("payment", 60_000).await;
    assert_eq!(reserved.len(), 2);

    // OrderReserved twice: one charge, one PaymentSucceeded.
    for (delivery, approved) in reserved.iter().zip([true, false]) {
        let payment = json!({"payments": [{
            "orderId": delivery["event"]["orderId"], "eventId": delivery["event"]["eventId"], "approved": approved
        }]});
        assert_eq!(data.effect("/payments", payment.clone()).await, "applied");
        assert_eq!(data.effect("/payments", payment).await, "duplicate");
    }
    let payments = data.lease("inventory", 60_000).await;
    let kinds: Vec<&str> = payments
        .iter()
        .map(|delivery| delivery["event"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["PaymentSucceeded", "PaymentFailed"],
        "one payment event per order"
    );

    // PaymentSucceeded twice: sold once.
    let commit = json!({"settlements": [{
        "orderId": ORDER_A, "eventId": payments[0]["event"]["eventId"], "action": "commit"
    }]});
    assert_eq!(data.effect("/settlements", commit.clone()).await, "applied");
    assert_eq!(data.effect("/settlements", commit).await, "duplicate");

    // PaymentFailed twice: released once.
    let release = json!({"settlements": [{
        "orderId": ORDER_B, "eventId": payments[1]["event"]["eventId"], "action": "release"
    }]});
    assert_eq!(
        data.effect("/settlements", release.clone()).await,
        "applied"
    );
    assert_eq!(data.effect("/settlements", release).await, "duplicate");

    let laptop = data.laptop().await;
    assert_eq!(laptop["quantity"], 23);
    assert_eq!(laptop["sold"], 2);
    assert_eq!(laptop["reservedQuantity"], 0);
    let order_a = get(&data.client, &format!("{}/orders/{ORDER_A}", data.url))
        .await
        .1;
    assert_eq!(order_a["order"]["status"], "fulfilled");
    assert_eq!(order_a["order"]["history"].as_array().unwrap().len(), 3);
    let order_b = get(&data.client, &format!("{}/orders/{ORDER_B}", data.url))
        .await
        .1;
    assert_eq!(order_b["order"]["status"], "cancelled");
    assert_eq!(order_b["order"]["reason"], "payment_declined");
    data.stop().await;
}

/// Runs `stockroom dead-letters …` against `data_url` and returns its output.
fn dead_letters_command(
    data_url: &str,
    token: &stockroom_http_kit::InternalToken,
    arguments: &[&str],
) -> std::process::Output {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stockroom"))
        .env(stockroom_http_kit::INTERNAL_TOKEN_ENV, token.expose())
        .arg("dead-letters")
        .args(arguments)
        .args(["--data-url", data_url])
        .output()
        .expect("stockroom dead-letters runs");
    assert!(
        output.status.success(),
        "dead-letters {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dead_letters_command_lists_and_redrives_what_a_consumer_refused() {
    const ORDER_C: &str = "01a20055-0000-7000-8000-00000000000c";
    let data = data_only().await;
    data.reserve(ORDER_C, 1).await;
    let leased = data.lease("payment", 10_000).await;
    assert_eq!(leased.len(), 1);
    let (status, body) = post(
        &data.client,
        &format!("{}/events/payment/reject", data.url),
        json!({"deliveries": [{
            "deliveryId": leased[0]["deliveryId"], "leaseToken": leased[0]["leaseToken"]
        }]}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, health) = get(&data.client, &format!("{}/health", data.url)).await;
    assert_eq!(
        status, 200,
        "dead letters degrade, they do not take down: {health}"
    );
    // The monitor reports dead letters within a second or so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, health) = get(&data.client, &format!("{}/health", data.url)).await;
        if health["parts"]["deadLetters"]["status"] == "degraded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let url = data.url.clone();
    let token = data.token.clone();
    let listed = tokio::task::spawn_blocking(move || {
        dead_letters_command(&url, &token, &["list", "--json", "--consumer", "payment"])
    })
    .await
    .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let letters = listed["deadLetters"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(letters.len(), 1, "{listed}");
    assert_eq!(letters[0]["event"]["orderId"], ORDER_C);

    let url = data.url.clone();
    let token = data.token.clone();
    tokio::task::spawn_blocking(move || dead_letters_command(&url, &token, &["redrive", "--all"]))
        .await
        .unwrap();
    let again = data.lease("payment", 10_000).await;
    assert_eq!(again.len(), 1, "the redriven event is delivered again");
    assert_eq!(again[0]["event"]["eventId"], leased[0]["event"]["eventId"]);
    assert_eq!(
        data.storage
            .dead_letter_count(stockroom_domain::Consumer::Payment)
            .await
            .unwrap(),
        0
    );
    data.stop().await;
}
