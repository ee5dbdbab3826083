//! Scale-out: two processes of every service over PostgreSQL and RabbitMQ,
//! started by `stockroom cluster`, keep every guarantee, also when an
//! inventory-service and a payment-service instance are killed mid-storm.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bus::rabbit_url;
use crate::harness::{
    all_orders, assert_stock_reconciles, get, postgres_url, unique_name, using_shared_servers,
};

/// Units of the one hot product on sale.
const STOCK_UNITS: usize = 500;
/// Single-unit orders fired at it.
const ORDERS: usize = 2_000;
/// Concurrent buyers.
const BUYERS: usize = 64;
/// Retries of one order after a 5xx or a cut connection (same idempotency key).
const MAX_RETRIES_PER_ORDER: usize = 20;
/// How long the orders may take to settle after the storm.
const SETTLE_TIMEOUT_MS: u64 = 60_000;
/// Ports of this test's cluster: the defaults shifted by this much, so the
/// test does not collide with a `stockroom up` on 3001-3004.
const PORT_OFFSET: u16 = 21_000;

/// A running `stockroom cluster`, stopped (SIGTERM) when dropped.
pub struct ClusterProcess {
    pub child: std::process::Child,
    pub urls: BTreeMap<String, Vec<String>>,
    /// Each child's process id, by service and instance.
    pub pids: BTreeMap<(String, u32), u32>,
}

impl Drop for ClusterProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start_cluster(
    database_url: &str,
    bus_url: &str,
    prefix: &str,
    stock_file: &std::path::Path,
    operator_token: &str,
) -> ClusterProcess {
    let offset = PORT_OFFSET.to_string();
    let stock_file = stock_file.display().to_string();
    let cluster = spawn_cluster(
        &[
            "--instances",
            "2",
            "--database-url",
            database_url,
            "--bus-url",
            bus_url,
            "--port-offset",
            &offset,
            "--inventory",
            &stock_file,
            "--payment-latency-ms",
            "20",
        ],
        &[
            ("STOCKROOM_BUS_PREFIX", prefix),
            (stockroom_http_kit::OPERATOR_TOKEN_ENV, operator_token),
        ],
    );
    assert_eq!(
        cluster.urls.get("order").map(Vec::len),
        Some(2),
        "the cluster never said it was ready"
    );
    cluster
}

/// Starts `stockroom cluster` with `arguments` and `environment`, and waits
/// for its ready line.
pub fn spawn_cluster(arguments: &[&str], environment: &[(&str, &str)]) -> ClusterProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockroom"))
        .arg("cluster")
        .args(arguments)
        .env("STOCKROOM_LOG", "warn")
        .envs(environment.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("stockroom cluster starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = BTreeMap::new();
    let mut pids = BTreeMap::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("instance ") {
            // instance <service> <index> pid <pid> <url>
            let fields: Vec<&str> = rest.split_whitespace().collect();
            pids.insert(
                (fields[0].to_owned(), fields[1].parse().unwrap()),
                fields[3].parse().unwrap(),
            );
        }
        if let Some(rest) = line.strip_prefix("stockroom cluster ready:") {
            for field in rest.split_whitespace() {
                let (service, list) = field.split_once('=').unwrap();
                urls.insert(
                    service.to_owned(),
                    list.split(',').map(str::to_owned).collect(),
                );
            }
            break;
        }
    }
    // Keep draining stdout so the launcher never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    ClusterProcess { child, urls, pids }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_of_everything_sell_exactly_the_stock_and_survive_kills() {
    let (Some(postgres), Some(rabbit)) = (postgres_url(), rabbit_url()) else {
        return;
    };
    let _servers = using_shared_servers().await;
    let name = unique_name("scale_out");
    let separator = if postgres.contains('?') { '&' } else { '?' };
    let database_url = format!("{postgres}{separator}schema={name}");
    let directory = tempfile::tempdir().unwrap();
    let stock_file = directory.path().join("stock.json");
    std::fs::write(
        &stock_file,
        json!({"inventory": [{"productName": "Console", "quantity": STOCK_UNITS}]}).to_string(),
    )
    .unwrap();
    let operator_token = stockroom_http_kit::OperatorToken::generate();
    let cluster = start_cluster(
        &database_url,
        &rabbit,
        &name,
        &stock_file,
        operator_token.expose(),
    );
    let order_urls = cluster.urls["order"].clone();
    let data_url = cluster.urls["data"][0].clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(BUYERS)
        .build()
        .unwrap();

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let buyers: Vec<_> = (0..BUYERS)
        .map(|_| {
            let client = client.clone();
            let next = Arc::clone(&next);
            let order_urls = order_urls.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= ORDERS {
                        return outcomes;
                    }
                    let body = json!({"productName": "Console", "quantity": 1, "customerId": format!("c{index}")});
                    let key = format!("order-{index}");
                    let mut outcome = None;
                    for attempt in 0..MAX_RETRIES_PER_ORDER {
                        // Spread buyers over both order-services, as a load
                        // balancer would; a retry goes to the other one.
                        let url = &order_urls[(index + attempt) % order_urls.len()];
                        let sent = client
                            .post(format!("{url}/api/orders"))
                            .header("Idempotency-Key", &key)
                            .json(&body)
                            .timeout(Duration::from_secs(15))
                            .send()
                            .await;
                        match sent {
                            Ok(response) if response.status().as_u16() < 500 => {
                                let status = response.status().as_u16();
                                let body: Value = response.json().await.unwrap();
                                outcome = Some((status, body["order"]["id"].as_str().map(str::to_owned)));
                                break;
                            }
                            _ => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                    outcomes.push(outcome.unwrap_or_else(|| panic!("order {index} never got an answer")));
                }
            })
        })
        .collect();

    // Mid-storm, kill -9 one inventory-service and one payment-service.
    while next.load(Ordering::SeqCst) < ORDERS / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for service in ["inventory", "payment"] {
        let pid = cluster.pids[&(service.to_owned(), 1)];
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    let mut reserved_ids = BTreeSet::new();
    let mut rejected = 0;
    for buyer in buyers {
        for (status, id) in buyer.await.unwrap() {
            match status {
                201 => assert!(
                    reserved_ids.insert(id.unwrap()),
                    "one order acknowledged twice"
                ),
                409 => rejected += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    let storm = started.elapsed();
    assert_eq!(
        (reserved_ids.len(), rejected),
        (STOCK_UNITS, ORDERS - STOCK_UNITS)
    );

    // Every reservation settles, each exactly once, with half the consumers dead.
    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    loop {
        let (_, page) = get(
            &client,
            &format!("{data_url}/orders?status=reserved&limit=1"),
        )
        .await;
        if page["orders"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reservations never settled: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = started.elapsed();
    let orders = all_orders(&client, &data_url).await;
    assert_eq!(orders.len(), ORDERS, "every order exists exactly once");
    for order in &orders {
        let id = order["id"].as_str().unwrap();
        let fulfilled = order["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["status"] == "fulfilled")
            .count();
        let charged = order["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["reason"] == "payment_charged")
            .count();
        if reserved_ids.contains(id) {
            assert_eq!(
                (order["status"].as_str(), fulfilled, charged),
                (Some("fulfilled"), 1, 1),
                "{order}"
            );
        } else {
            assert_eq!(order["status"], "rejected", "{order}");
        }
    }
    let inventory = get(&client, &format!("{data_url}/inventory")).await.1;
    assert_stock_reconciles(inventory["inventory"].as_array().unwrap(), &orders);
    let console = &inventory["inventory"][0];
    assert_eq!(
        (console["quantity"].as_i64(), console["sold"].as_i64()),
        (Some(0), Some(STOCK_UNITS as i64))
    );

    limit_storm(&client, &order_urls, &cluster.urls["data"], &operator_token).await;

    // The independent checker agrees, ledger and limits included.
    let check = Command::new(env!("CARGO_BIN_EXE_stockroom"))
        .args([
            "check",
            "--order-url",
            &order_urls[0],
            "--data-url",
            &data_url,
        ])
        .env("STOCKROOM_LOG", "off")
        .env(
            stockroom_http_kit::OPERATOR_TOKEN_ENV,
            operator_token.expose(),
        )
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains("PASS  ledger_matches_stock")
            && report.contains("PASS  within_purchase_limit"),
        "the ledger was not checked:\n{report}"
    );
    assert!(
        check.status.success(),
        "check failed:\n{}",
        String::from_utf8_lossy(&check.stdout)
    );

    eprintln!(
        "scale-out storm: {ORDERS} orders in {storm:?} ({:.0} orders/s), all settled after {settled:?}",
        ORDERS as f64 / storm.as_secs_f64()
    );
    drop(cluster);
    drop_cluster_state(&postgres, &rabbit, &name).await;
}

/// Drops what a cluster named `name` left on the shared servers: its
/// PostgreSQL schema and its RabbitMQ queues and exchanges.
pub async fn drop_cluster_state(postgres: &str, rabbit: &str, name: &str) {
    let cleanup = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
    let _ = Command::new("psql")
        .args([postgres, "-c", &cleanup])
        .output();
    let admin = stockroom_bus_rabbitmq::RabbitAdmin::connect(rabbit)
        .await
        .unwrap();
    let _ = admin
        .delete(&stockroom_bus_rabbitmq::Topology::with_prefix(name))
        .await;
}

/// Units of the limited product, far more than the limit lets one customer
/// take.
const LIMITED_UNITS: u64 = 200;
/// What one customer may hold of it.
const LIMIT: u64 = 5;
/// One customer's concurrent orders at it, over both instances of
/// everything.
const LIMIT_STORM_ORDERS: usize = 100;

/// One customer's storm against a purchase limit, spread over both
/// order-services and so both data-services: exactly the limit is
/// reserved, every other order is refused as past it.
async fn limit_storm(
    client: &reqwest::Client,
    order_urls: &[String],
    data_urls: &[String],
    token: &stockroom_http_kit::OperatorToken,
) {
    let (status, created) = {
        let response = client
            .post(format!("{}/inventory", data_urls[1]))
            .header("authorization", token.header_value())
            .json(&json!({"productName": "Limited", "quantity": LIMITED_UNITS, "maxPerCustomer": LIMIT}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 201, "{created}");
    let orders: Vec<_> = (0..LIMIT_STORM_ORDERS)
        .map(|index| {
            let client = client.clone();
            let url = format!("{}/api/orders", order_urls[index % order_urls.len()]);
            tokio::spawn(async move {
                let body =
                    json!({"productName": "Limited", "quantity": 1, "customerId": "one-customer"});
                let response = client.post(url).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut reserved = 0;
    for order in orders {
        let (status, body) = order.await.unwrap();
        match status {
            201 => reserved += 1,
            409 => assert_eq!(body["error"], "limit_exceeded", "{body}"),
            other => panic!("an order answered {other}: {body}"),
        }
    }
    assert_eq!(
        reserved, LIMIT,
        "one customer holds exactly the limit, across instances"
    );
    // Settled before the checker reads stock and orders apart.
    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    loop {
        let (_, page) = get(
            client,
            &format!("{}/orders?status=reserved&limit=1", data_urls[0]),
        )
        .await;
        if page["orders"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reservations never settled: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
