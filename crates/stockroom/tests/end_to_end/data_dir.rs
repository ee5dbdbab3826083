//! One data directory, one process: a second `stockroom up` (with or without
//! `--fresh`) on a directory another process serves is refused with one line
//! naming that process, and the first keeps serving and keeps every order.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{EPHEMERAL_UP_PORTS, all_orders, ready_url, spawn_up};

/// How long the refused process may take to say so and exit.
const REFUSAL_TIMEOUT_MS: u64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_data_directory_is_refused_and_the_first_keeps_every_order() {
    let directory = tempfile::tempdir().unwrap();
    let (mut first, line) = spawn_up(directory.path(), &[], &[]);
    let order_url = ready_url(&line, "order");
    let data_url = ready_url(&line, "data");
    let client = reqwest::Client::new();
    let mut placed = Vec::new();
    for customer in ["c1", "c2", "c3"] {
        let response = client
            .post(format!("{order_url}/api/orders"))
            .json(&json!({"productName": "Laptop", "quantity": 1, "customerId": customer}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        placed.push(body["order"]["id"].as_str().unwrap().to_owned());
    }

    for extra in [&[][..], &["--fresh"][..]] {
        let second = Command::new(env!("CARGO_BIN_EXE_stockroom"))
            .args(["up", "--data-dir"])
            .arg(directory.path())
            .args(EPHEMERAL_UP_PORTS)
            .args(extra)
            .env("STOCKROOM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = tokio::time::timeout(
            Duration::from_millis(REFUSAL_TIMEOUT_MS),
            tokio::task::spawn_blocking(move || second.wait_with_output().unwrap()),
        )
        .await
        .expect("the second process exits")
        .unwrap();
        assert!(!output.status.success(), "a second process was let in");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let refusal = stderr.lines().find(|line| line.contains("is in use by"));
        let refusal = refusal.unwrap_or_else(|| panic!("no one-line refusal: {stderr}"));
        assert!(
            refusal.contains(&format!("process {}", first.id())),
            "the refusal names the holder: {refusal}"
        );
    }

    // The first still serves, with every order, and the database was never
    // deleted under it: a restart finds them all.
    let response = client
        .post(format!("{order_url}/api/orders"))
        .json(&json!({"productName": "Laptop", "quantity": 1, "customerId": "c4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201, "the first stopped serving");
    let orders = all_orders(&client, &data_url).await;
    for id in &placed {
        assert!(
            orders.iter().any(|order| order["id"] == json!(id)),
            "{id} lost"
        );
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut restarted, line) = spawn_up(directory.path(), &[], &[]);
    let orders = all_orders(&client, &ready_url(&line, "data")).await;
    assert_eq!(
        orders.len(),
        placed.len() + 1,
        "a restart keeps every order"
    );
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}
