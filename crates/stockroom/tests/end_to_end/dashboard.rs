//! The dashboard server against a real system: its snapshot follows the
//! orders placed, the stock ledger's movements and the webhook deliveries,
//! its stream sends a snapshot every second, its controls refuse bad input
//! with a JSON error, run one flash sale at a time, and run a race-lab
//! scenario.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockroom_dashboard::{DashboardConfig, Sources};
use stockroom_data_service::webhooks::WebhookConfig;
use stockroom_http_kit::OperatorToken;
use stockroom_launcher::system::{self, RunningService};

use crate::harness::{TestSystem, get, laptops, post, stock};

/// The longest a test waits for the dashboard to show something.
const SHOW_TIMEOUT_MS: u64 = 20_000;

/// A system and its dashboard, on ephemeral ports.
pub struct Watched {
    pub system: TestSystem,
    pub dashboard: RunningService,
    pub dashboard_url: String,
    /// The system's operator token, which the dashboard also holds.
    pub operator_token: OperatorToken,
}

impl Watched {
    pub async fn start(laptops: u64) -> Watched {
        Watched::start_with(laptops, None).await
    }

    /// The same, sending webhooks as `webhooks` says.
    pub async fn start_with(laptops: u64, webhooks: Option<WebhookConfig>) -> Watched {
        let operator_token = OperatorToken::generate();
        let system = TestSystem::start(|config| {
            config.stock = Some(stock(&[("Laptop", laptops), ("Phone", 50)]));
            config.operator_token = Some(operator_token.clone());
            config.webhooks = webhooks;
        })
        .await;
        let urls = &system.system.urls;
        let (listener, dashboard_url) = system::bind("dashboard", [127, 0, 0, 1].into(), 0)
            .await
            .unwrap();
        let config = DashboardConfig {
            sources: Sources {
                order: vec![urls.order.clone()],
                data: vec![urls.data.clone()],
                inventory: vec![urls.inventory.clone()],
                payment: vec![urls.payment.clone()],
            },
            lab: Some(Arc::new(stockroom_launcher::InProcessLauncher)),
            operator_token: Some(operator_token.clone()),
            lab_redis_url: std::env::var("STOCKROOM_TEST_REDIS_URL").ok(),
        };
        let dashboard = system::dashboard(listener, config);
        Watched {
            system,
            dashboard,
            dashboard_url,
            operator_token,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.dashboard_url)
    }

    /// The dashboard's controls token, read as a script reads it.
    pub async fn control_token(&self) -> String {
        let (status, document) = get(&self.system.client, &self.url("/api/csrf-token")).await;
        assert_eq!(status, 200, "{document}");
        assert_eq!(
            document["header"],
            stockroom_dashboard::guard::CSRF_TOKEN_HEADER
        );
        document["token"].as_str().unwrap().to_owned()
    }

    /// A client that sends the dashboard's controls token with every
    /// request, as a script does after reading it from `/api/csrf-token`.
    pub async fn control_client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            stockroom_dashboard::guard::CSRF_TOKEN_HEADER,
            self.control_token().await.parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    pub async fn snapshot(&self) -> Value {
        let (status, snapshot) = get(&self.system.client, &self.url("/api/snapshot")).await;
        assert_eq!(status, 200, "{snapshot}");
        snapshot
    }

    /// Waits until the snapshot satisfies `predicate`, or fails the test.
    pub async fn wait_for(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_millis(SHOW_TIMEOUT_MS);
        loop {
            let snapshot = self.snapshot().await;
            if predicate(&snapshot) {
                return snapshot;
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard never showed {what}: {snapshot}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.dashboard.stop().await.expect("the dashboard stops");
        self.system.stop().await;
    }
}

fn product<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["stock"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["product"] == name)
        .unwrap_or_else(|| panic!("no {name} in {snapshot}"))
}

/// A receiver that refuses its first event and takes every other; its URL.
async fn flaky_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move || {
            let requests = Arc::clone(&requests);
            async move {
                match requests.fetch_add(1, Ordering::SeqCst) {
                    0 => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    _ => axum::http::StatusCode::OK,
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/hooks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_snapshot_shows_the_ledger_the_limits_and_webhook_deliveries() {
    let mut webhooks = WebhookConfig::parse(
        &[flaky_receiver().await],
        Some("a-webhook-secret-for-tests"),
    )
    .unwrap()
    .unwrap();
    webhooks.backoff_ms = 100;
    let watched = Watched::start_with(25, Some(webhooks)).await;
    let first = watched
        .wait_for("a first snapshot", |snapshot| {
            snapshot["sequence"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(product(&first, "Laptop")["maxPerCustomer"], Value::Null);
    assert_eq!(first["webhooks"]["configured"], true, "{first}");
    assert_eq!(first["webhooks"]["receivers"], 1);
    assert_eq!(first["movements"]["unavailable"], Value::Null);

    let (status, body) = watched.system.place(laptops(2)).await;
    assert_eq!(status, 201, "{body}");
    let order = body["order"]["id"].as_str().unwrap().to_owned();
    let shown = watched
        .wait_for(
            "the order's sale in the feed, its webhook sent after a retry",
            |snapshot| {
                let sold = snapshot["movements"]["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|entry| {
                        entry["kind"] == "sold" && entry["cause"] == format!("order {order}")
                    });
                sold && snapshot["webhooks"]["sent"].as_u64() >= Some(1)
            },
        )
        .await;
    let webhooks = &shown["webhooks"];
    assert!(webhooks["retrying"].as_u64() >= Some(1), "{webhooks}");
    assert_eq!(webhooks["dead"], 0, "{webhooks}");
    let newest = &shown["movements"]["entries"][0];
    assert_eq!(newest["product"], "Laptop", "{newest}");
    assert_eq!(newest["kind"], "sold");
    assert_eq!(newest["soldDelta"], 2);
    assert_eq!(newest["onHandDelta"], -2);
    watched.stop().await;
}

fn count(snapshot: &Value, status: &str) -> u64 {
    snapshot["orders"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|count| count["status"] == status)
        .unwrap()["count"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_snapshot_follows_the_orders_placed() {
    let watched = Watched::start(25).await;
    let first = watched
        .wait_for("a first snapshot", |snapshot| {
            snapshot["sequence"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(product(&first, "Laptop")["available"], 25);
    assert_eq!(first["orders"]["total"], 0);
    let services: Vec<&str> = first["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|service| service["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "order-service",
            "data-service",
            "inventory-service",
            "payment-service"
        ]
    );

    for _ in 0..3 {
        let (status, body) = watched.system.place(laptops(2)).await;
        assert_eq!(status, 201, "{body}");
    }
    let after = watched
        .wait_for("three settled orders", |snapshot| {
            count(snapshot, "fulfilled") == 3 && product(snapshot, "Laptop")["sold"] == 6
        })
        .await;
    assert_eq!(product(&after, "Laptop")["available"], 19);
    assert_eq!(product(&after, "Laptop")["oversold"], false);
    assert_eq!(after["orders"]["total"], 3);
    let charted = watched
        .wait_for("the orders on the chart", |snapshot| {
            snapshot["traffic"]["points"]
                .as_array()
                .is_some_and(|points| {
                    points
                        .iter()
                        .any(|p| p["ordersPerSecond"].as_f64() > Some(0.0))
                })
        })
        .await;
    let busy = charted["traffic"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|point| point["ordersPerSecond"].as_f64() > Some(0.0))
        .unwrap();
    assert!(busy["p99Ms"].as_f64().unwrap() > 0.0, "{busy}");
    let audited = watched
        .wait_for("an audit", |snapshot| {
            snapshot["audit"]["report"]["audits"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(audited["audit"]["report"]["healthy"], true, "{audited}");
    assert!(
        audited["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|service| service["status"] == "ok"
                && !service["parts"].as_array().unwrap().is_empty()),
        "{audited}"
    );
    watched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_sends_a_snapshot_every_second() {
    let watched = Watched::start(25).await;
    let mut response = watched
        .system
        .client
        .get(watched.url("/api/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let started = Instant::now();
    let mut text = String::new();
    let mut sequences = Vec::new();
    while sequences.len() < 3 {
        assert!(
            started.elapsed() < Duration::from_millis(SHOW_TIMEOUT_MS),
            "too few snapshots: {text}"
        );
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("a snapshot within five seconds")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        // Each event: `event: snapshot`, `data: {...}`, a blank line.
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: ")) {
                assert!(event.contains("event: snapshot"), "{event}");
                let snapshot: Value = serde_json::from_str(data).unwrap();
                if let Some(sequence) = snapshot["sequence"].as_u64() {
                    sequences.push(sequence);
                }
            }
        }
    }
    assert!(
        sequences.windows(2).all(|pair| pair[1] > pair[0]),
        "{sequences:?}"
    );
    // Three snapshots, a second apart (the first is sent at once).
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "{sequences:?}"
    );
    drop(response);
    // The dashboard stops promptly even while a page watches.
    let mut watcher = watched
        .system
        .client
        .get(watched.url("/api/stream"))
        .send()
        .await
        .unwrap();
    let _ = watcher.chunk().await;
    tokio::time::timeout(Duration::from_secs(10), watched.stop())
        .await
        .expect("the dashboard and system stop with a stream open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controls_refuse_bad_input_and_run_one_sale_at_a_time() {
    let watched = Watched::start(25).await;
    let client = &watched.control_client().await;
    watched
        .wait_for("the stock", |snapshot| {
            snapshot["stock"]["products"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        })
        .await;
    let sale = watched.url("/api/sale");
    // Each out of bounds, of the wrong shape, or naming no product.
    for body in [
        json!({"product": "Laptop", "orders": 0, "concurrency": 4}),
        json!({"product": "Laptop", "orders": 20_001, "concurrency": 4}),
        json!({"product": "Laptop", "orders": 10, "concurrency": 257}),
        json!({"product": "Tractor", "orders": 10, "concurrency": 4}),
        json!({"product": "Laptop", "orders": -1, "concurrency": 4}),
        json!({"product": "Laptop", "orders": 10, "concurrency": 4, "extra": 1}),
        json!("not an object"),
    ] {
        let (status, document) = post(client, &sale, body.clone()).await;
        assert_eq!(
            (status, document["error"].as_str()),
            (422, Some("invalid_request")),
            "{body}: {document}"
        );
        assert!(!document["message"].as_str().unwrap().is_empty());
    }
    let malformed = client
        .post(&sale)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let foreign = client
        .post(&sale)
        .header("origin", "http://elsewhere.example")
        .json(&json!({"product": "Laptop", "orders": 10, "concurrency": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let (status, document) = get(client, &sale).await;
    assert_eq!(
        (status, document["state"].as_str()),
        (200, Some("idle")),
        "nothing started"
    );

    let (status, started) = post(
        client,
        &sale,
        json!({"product": "Laptop", "orders": 200, "concurrency": 16}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["state"], "running");
    let (status, busy) = post(
        client,
        &sale,
        json!({"product": "Laptop", "orders": 10, "concurrency": 4}),
    )
    .await;
    // The first sale may already be over on a fast machine.
    assert!(status == 409 || status == 202, "{status} {busy}");
    if status == 409 {
        assert_eq!(busy["error"], "already_running");
    }
    let finished = watched
        .wait_for("the sale's result", |snapshot| {
            snapshot["sale"]["state"] == "finished"
        })
        .await;
    let summary = &finished["sale"]["summary"];
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(
        summary["reserved"].as_u64().unwrap() + summary["rejected"].as_u64().unwrap(),
        summary["orders"].as_u64().unwrap()
    );
    let sold_out = watched
        .wait_for("the laptops sold out", |snapshot| {
            product(snapshot, "Laptop")["available"] == 0 && count(snapshot, "reserved") == 0
        })
        .await;
    assert_eq!(
        product(&sold_out, "Laptop")["sold"],
        25,
        "never more than the stock"
    );
    assert_eq!(product(&sold_out, "Laptop")["oversold"], false);

    let lab = watched.url("/api/lab");
    for body in [
        json!({"scenarios": ["no-such-race"]}),
        json!({"raceWindowMs": 1_000_000}),
        json!({"scenarios": "toctou"}),
        json!({"fixes": ["no-fix"]}),
        json!({"matrix": true, "fixes": ["no-such-fix"]}),
    ] {
        let (status, document) = post(client, &lab, body.clone()).await;
        assert_eq!(
            (status, document["error"].as_str()),
            (422, Some("invalid_request")),
            "{body}: {document}"
        );
    }
    let (status, started) = post(client, &lab, json!({"scenarios": ["toctou"]})).await;
    assert_eq!(status, 202, "{started}");
    let (status, busy) = post(client, &lab, json!({})).await;
    assert_eq!(
        (status, busy["error"].as_str()),
        (409, Some("already_running"))
    );
    let done = wait_for_lab(client, &lab).await;
    assert_eq!(done["state"], "finished", "{done}");
    let row = &done["results"][0];
    assert_eq!(row["name"], "toctou");
    assert_eq!(row["naive_reproduced"], true, "{row}");
    assert_eq!(row["fixed_violations"], 0, "{row}");
    assert_eq!(done["passed"], true);

    // The fix matrix, two rows of one column, filled row by row.
    let (status, started) = post(
        client,
        &lab,
        json!({"matrix": true, "fixes": ["stockroom", "no-fix"], "scenarios": ["toctou"], "throughput": false}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(
        (started["matrix"].as_bool(), started["planned"].as_u64()),
        (Some(true), Some(2))
    );
    let done = wait_for_lab(client, &lab).await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(done["matrixScenarios"], json!(["toctou"]));
    let rows = done["fixRows"].as_array().unwrap();
    let verdicts: Vec<(&str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row["name"].as_str().unwrap(),
                row["cells"][0]["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(verdicts[0].0, "no-fix", "the lab's order: {done}");
    assert_ne!(verdicts[0].1, "holds", "{done}");
    assert_eq!(verdicts[1], ("stockroom", "holds"), "{done}");
    assert_eq!(done["passed"], true);
    watched.stop().await;
}

/// Polls the lab's status until its run is over.
async fn wait_for_lab(client: &reqwest::Client, lab: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, status) = get(client, lab).await;
        if status["state"] != "running" {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the lab never finished: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let watched = Watched::start(25).await;
    let client = &watched.system.client;
    let page = client.get(watched.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("<html lang=\"en\">"));
    for asset in ["dashboard.css", "dashboard.js", "chart.js"] {
        let response = client
            .get(watched.url(&format!("/assets/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let (status, missing) = get(client, &watched.url("/assets/nothing.js")).await;
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("not_found"))
    );
    // Healthy once it has read its sources (starting, 503, before).
    watched
        .wait_for("a first snapshot", |snapshot| {
            snapshot["sequence"].as_u64() >= Some(1)
        })
        .await;
    let (status, health) = get(client, &watched.url("/health")).await;
    assert_eq!(
        (status, health["service"].as_str()),
        (200, Some("dashboard"))
    );
    watched.stop().await;
}
