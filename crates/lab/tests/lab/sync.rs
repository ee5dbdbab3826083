//! Synchronised storms: last-byte synchronised waves place every order once
//! against the fixed system, and the original system's check-then-reserve
//! race shows with its artificial window shut.

use stockroom_lab::last_byte::parse_response;
use stockroom_lab::{
    FixedLauncher, FixedSpec, Scenario, StormConfig, run_scenario_synced, run_storm,
};
use stockroom_launcher::InProcessLauncher;

#[test]
fn an_answer_is_parsed_plain_or_chunked() {
    let plain = parse_response(
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}",
    )
    .unwrap();
    assert_eq!((plain.status, plain.body.as_str()), (201, "{\"a\":1}"));
    let chunked = parse_response(
        b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!((chunked.status, chunked.body.as_str()), (409, "{\"a\":1}"));
    assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronised_storm_places_every_order_once() {
    let directory = tempfile::tempdir().unwrap();
    let running = InProcessLauncher
        .start(FixedSpec {
            data_dir: directory.path().to_owned(),
            stock: vec![stockroom_contract::StockLine {
                product_name: stockroom_domain::ProductName::new("Laptop").unwrap(),
                quantity: 7,
            }],
            payment_latency_ms: 0,
            hosts: 1,
        })
        .await
        .unwrap();
    let mut storm = StormConfig::new(&running.urls().order, 30);
    storm.concurrency = 10;
    storm.sync = true;
    storm.keep_history = true;
    let report = run_storm(storm).await.unwrap();
    let summary = &report.summary;
    assert_eq!(summary.orders, 30, "{summary:?}");
    assert_eq!(
        (summary.reserved, summary.rejected, summary.errors),
        (7, 23, 0)
    );
    assert_eq!(report.history.len(), 60);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_synchronised_storm_needs_one_plain_http_url() {
    let mut storm = StormConfig::new("https://127.0.0.1:1", 1);
    storm.sync = true;
    assert!(run_storm(storm).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_race_shows_with_its_window_shut() {
    let result = run_scenario_synced(Scenario::Toctou, 0, true, &InProcessLauncher)
        .await
        .unwrap();
    assert!(result.naive_reproduced, "{:?}", result.naive_anomalies);
    assert_eq!(result.fixed_violations, 0, "{:?}", result.fixed_details);
}
