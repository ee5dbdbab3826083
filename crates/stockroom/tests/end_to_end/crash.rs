//! Durability: `kill -9` in the middle of a storm loses no acknowledged order,
//! and the events not yet delivered go out after the restart.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{
    SETTLE_TIMEOUT_MS, UpProcess, all_orders, assert_stock_reconciles, get, ready_url, spawn_up,
};

/// How long the storm runs before the process is killed.
const STORM_BEFORE_KILL_MS: u64 = 1_500;
const STORM_CLIENTS: usize = 16;

struct Child9 {
    child: UpProcess,
    order_url: String,
    data_url: String,
}

/// Starts `stockroom up` as a child process on free ports and waits for its
/// ready line.
fn start(data_dir: &std::path::Path, payment_latency_ms: u64) -> Child9 {
    let latency = payment_latency_ms.to_string();
    let (child, line) = spawn_up(data_dir, &["--payment-latency-ms", &latency], &[]);
    Child9 {
        order_url: ready_url(&line, "order"),
        data_url: ready_url(&line, "data"),
        child,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_mid_storm_loses_no_acknowledged_order() {
    let directory = tempfile::tempdir().unwrap();
    // Slow payments keep many orders in flight (reserved, events pending)
    // at the moment of the kill.
    let mut first = start(directory.path(), 200);
    let client = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..STORM_CLIENTS)
        .map(|index| {
            let client = client.clone();
            let url = format!("{}/api/orders", first.order_url);
            let acknowledged = Arc::clone(&acknowledged);
            let running = Arc::clone(&running);
            tokio::spawn(async move {
                let products = ["Headphones", "Keyboard", "Phone"];
                let mut sent = 0usize;
                while running.load(Ordering::SeqCst) {
                    let body = json!({"productName": products[(index + sent) % 3], "quantity": 1, "customerId": format!("c{index}")});
                    sent += 1;
                    match client.post(&url).json(&body).timeout(Duration::from_secs(5)).send().await {
                        Ok(response) if response.status().as_u16() == 201 => {
                            let body: serde_json::Value = response.json().await.unwrap();
                            acknowledged.lock().unwrap().push(body["order"]["id"].as_str().unwrap().to_owned());
                        }
                        Ok(_) => {}
                        // The kill cuts requests in flight: those were never
                        // acknowledged, so they may or may not exist.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(STORM_BEFORE_KILL_MS)).await;
    first.child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    first.child.wait().unwrap();
    running.store(false, Ordering::SeqCst);
    for task in clients {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 20,
        "the storm acknowledged too few orders to mean anything: {}",
        acknowledged.len()
    );

    let mut second = start(directory.path(), 0);
    for id in &acknowledged {
        let (status, body) = get(&client, &format!("{}/orders/{id}", second.data_url)).await;
        assert_eq!(status, 200, "acknowledged order {id} was lost: {body}");
    }
    let orders = all_orders(&client, &second.data_url).await;
    let mut ids: Vec<&str> = orders
        .iter()
        .map(|order| order["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), orders.len(), "an order is listed twice");
    let inventory = get(&client, &format!("{}/inventory", second.data_url))
        .await
        .1;
    assert_stock_reconciles(inventory["inventory"].as_array().unwrap(), &orders);

    // The events that were not delivered before the kill go out now: every
    // reservation is paid and fulfilled.
    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    loop {
        let (_, page) = get(
            &client,
            &format!("{}/orders?status=reserved&limit=1", second.data_url),
        )
        .await;
        if page["orders"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reservations were never settled after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let orders = all_orders(&client, &second.data_url).await;
    let inventory = get(&client, &format!("{}/inventory", second.data_url))
        .await
        .1;
    assert_stock_reconciles(inventory["inventory"].as_array().unwrap(), &orders);
    for id in &acknowledged {
        let order = orders
            .iter()
            .find(|order| order["id"] == id.as_str())
            .unwrap();
        assert_eq!(order["status"], "fulfilled", "{order}");
    }
    eprintln!(
        "kill -9 after {} acknowledged orders; all found and settled after restart",
        acknowledged.len()
    );

    // SIGTERM: a clean stop.
    let pid = second.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = second.child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM must stop stockroom cleanly, got {status}"
    );
}

#[test]
fn a_taken_port_is_a_one_line_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let directory = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_stockroom"))
        .args(["up", "--data-dir"])
        .arg(directory.path())
        // Order-service's port taken, the others as `spawn_up` picks them
        // (`EPHEMERAL_UP_PORTS` names the order port first).
        .args(["--order-port", &port])
        .args(&crate::harness::EPHEMERAL_UP_PORTS[2..])
        .env("STOCKROOM_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is already in use")),
        "{stderr}"
    );
}
