//! The live monitor: inventory-service's `/invariants` and every service's
//! `/metrics`, on the fixed system and on the naive one.

use std::time::{Duration, Instant};

use serde_json::Value;
use stockroom_contract::StockLine;
use stockroom_domain::ProductName;
use stockroom_lab::{StormConfig, run_storm};
use stockroom_launcher::system::{self, Ports, SystemConfig};
use stockroom_naive::{NaiveConfig, NaiveFlow, RaceWindows};

/// The longest a test waits for the auditor's verdict.
const AUDIT_WAIT_MS: u64 = 5_000;

fn laptops(quantity: u64) -> Vec<StockLine> {
    vec![StockLine {
        product_name: ProductName::new("Laptop").unwrap(),
        quantity,
    }]
}

/// Polls `/invariants` until `accept` is satisfied by a report from an audit
/// that started after the load ended.
/// `token` is the system's internal token (`/invariants` is internal on the
/// fixed system, open on the naive one).
async fn wait_for_report(
    inventory_url: &str,
    token: Option<&stockroom_http_kit::InternalToken>,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_millis(AUDIT_WAIT_MS);
    let mut first_audits = None;
    loop {
        let mut request = client.get(format!("{inventory_url}/invariants"));
        if let Some(token) = token {
            request = request.header(reqwest::header::AUTHORIZATION, token.header_value());
        }
        let report: Value = request.send().await.unwrap().json().await.unwrap();
        let audits = report["audits"].as_u64().unwrap_or(0);
        let baseline = *first_audits.get_or_insert(audits);
        if (audits > baseline + 1 && accept(&report)) || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixed_system_audits_clean_and_exposes_metrics() {
    let directory = tempfile::tempdir().unwrap();
    let mut config = SystemConfig::new(directory.path());
    config.ports = Ports::EPHEMERAL;
    config.stock = Some(laptops(5));
    let running = system::start(config).await.unwrap();
    let mut storm = StormConfig::new(&running.urls.order, 20);
    storm.concurrency = 20;
    let report = run_storm(storm).await.unwrap();
    assert_eq!(report.summary.reserved, 5);
    let invariants = wait_for_report(
        &running.urls.inventory,
        Some(&running.internal_token),
        |report| report["healthy"] == true,
    )
    .await;
    assert_eq!(invariants["healthy"], true, "{invariants}");
    assert_eq!(invariants["totalViolations"], 0, "{invariants}");
    let metrics = reqwest::get(format!("{}/metrics", running.urls.order))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stockroom_reservations_total{service=\"order-service\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stockroom_rejections_total{service=\"order-service\"} 15"),
        "{metrics}"
    );
    assert!(metrics.contains("stockroom_http_request_duration_seconds_bucket"));
    for url in [
        &running.urls.data,
        &running.urls.inventory,
        &running.urls.payment,
    ] {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("stockroom_invariant_violations_total"),
            "{url}: {text}"
        );
    }
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_naive_inventory_service_catches_an_oversell() {
    let directory = tempfile::tempdir().unwrap();
    let mut config = NaiveConfig::new(directory.path(), laptops(5));
    config.fresh = true;
    config.flow = NaiveFlow::StorageCheck;
    config.windows = RaceWindows::CLOSED;
    config.windows.toctou_ms = stockroom_naive::DEFAULT_RACE_WINDOW_MS;
    let running = stockroom_naive::start(config).await.unwrap();
    let mut storm = StormConfig::new(&running.urls.order, 20);
    storm.concurrency = 20;
    run_storm(storm).await.unwrap();
    let invariants = wait_for_report(&running.urls.inventory, None, |report| {
        report["violations"]
            .as_array()
            .is_some_and(|violations| !violations.is_empty())
    })
    .await;
    let violations = invariants["violations"].as_array().unwrap();
    assert!(
        violations.iter().any(
            |violation| violation["invariant"] == "available_non_negative"
                || violation["invariant"] == "reserved_within_on_hand"
        ),
        "{invariants}"
    );
    let metrics = reqwest::get(format!("{}/metrics", running.urls.inventory))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains(
            "stockroom_invariant_violations_total{service=\"naive-inventory-service\"} 0"
        ),
        "{metrics}"
    );
    running.stop().await.unwrap();
}
