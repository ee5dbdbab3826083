//! The checker against hand-made states served by a tiny stub: it passes a
//! good state and fails on each bad one, and refuses wrong input.

use std::time::SystemTime;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use stockroom_lab::{
    CheckConfig, CheckError, CheckReport, EventType, HistoryEvent, HistorySource, OpValue,
    run_check,
};

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn item(quantity: i64, reserved: i64, sold: i64, received: i64) -> Value {
    json!({
        "productName": "Laptop",
        "quantity": quantity,
        "reservedQuantity": reserved,
        "available": quantity - reserved,
        "sold": sold,
        "received": received,
    })
}

fn order(id: &str, status: &str, quantity: i64, history: &[(&str, Option<&str>)]) -> Value {
    let at = now();
    json!({
        "id": id,
        "customerId": "c1",
        "status": status,
        "reason": null,
        "paymentStatus": "none",
        "version": history.len(),
        "createdAt": at,
        "updatedAt": at,
        "items": [{"product": {"name": "Laptop"}, "quantity": quantity}],
        "history": history.iter().enumerate().map(|(index, (status, reason))| json!({
            "version": index + 1, "status": status, "reason": reason, "at": at,
        })).collect::<Vec<_>>(),
    })
}

const FULFILLED: &[(&str, Option<&str>)] = &[
    ("reserved", None),
    ("reserved", Some("payment_charged")),
    ("fulfilled", None),
];

/// A consistent state: 15 received, 5 sold, 2 reserved by order a.
fn good_orders() -> Vec<Value> {
    vec![
        order("a", "reserved", 2, &[("reserved", None)]),
        order("b", "fulfilled", 5, FULFILLED),
    ]
}

fn good_inventory() -> Vec<Value> {
    vec![item(10, 2, 5, 15)]
}

/// Serves `/health`, `/inventory` and `/orders` with the given answers.
async fn stub(inventory: (StatusCode, Value), orders: (StatusCode, Value)) -> String {
    let router = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/inventory",
            get(move || async move { (inventory.0, axum::Json(inventory.1)).into_response() }),
        )
        .route(
            "/orders",
            get(move || async move { (orders.0, axum::Json(orders.1)).into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

async fn check_state(inventory: Vec<Value>, orders: Vec<Value>) -> CheckReport {
    let url = stub(
        (StatusCode::OK, json!({"inventory": inventory})),
        (
            StatusCode::OK,
            json!({"orders": orders, "nextCursor": null}),
        ),
    )
    .await;
    run_check(&CheckConfig::new(&url, &url)).await.unwrap()
}

fn assert_fails(report: &CheckReport, name: &str) {
    let outcome = report
        .outcome(name)
        .unwrap_or_else(|| panic!("no check named {name}: {report:?}"));
    assert!(!outcome.passed, "{name} should fail:\n{}", report.render());
    assert!(!report.passed);
}

#[tokio::test]
async fn a_consistent_state_passes() {
    let report = check_state(good_inventory(), good_orders()).await;
    assert!(report.passed, "{}", report.render());
    assert_eq!(report.orders, 2);
}

#[tokio::test]
async fn negative_available_and_overbooking_fail() {
    let report = check_state(vec![item(10, 12, 5, 15)], good_orders()).await;
    assert_fails(&report, "available_non_negative");
    assert_fails(&report, "reserved_within_on_hand");
}

#[tokio::test]
async fn reserved_stock_not_held_by_orders_fails() {
    let report = check_state(vec![item(10, 3, 5, 15)], good_orders()).await;
    assert_fails(&report, "reserved_matches_orders");
}

#[tokio::test]
async fn broken_conservation_fails() {
    let report = check_state(vec![item(10, 2, 5, 20)], good_orders()).await;
    assert_fails(&report, "conservation");
}

#[tokio::test]
async fn conservation_from_initial_stock_when_fields_are_missing() {
    let inventory = vec![
        json!({"productName": "Laptop", "quantity": 10, "reservedQuantity": 2, "available": 8}),
    ];
    let url = stub(
        (StatusCode::OK, json!({"inventory": inventory})),
        (StatusCode::OK, json!({"orders": good_orders()})),
    )
    .await;
    let mut config = CheckConfig::new(&url, &url);
    config.initial_stock = Some([("laptop".to_owned(), 15)].into());
    assert!(run_check(&config).await.unwrap().passed);
    config.initial_stock = Some([("laptop".to_owned(), 16)].into());
    assert_fails(&run_check(&config).await.unwrap(), "conservation");
}

#[tokio::test]
async fn sold_units_without_fulfilled_orders_fail() {
    let mut orders = good_orders();
    orders[1] = order(
        "b",
        "cancelled",
        5,
        &[("reserved", None), ("cancelled", None)],
    );
    let report = check_state(good_inventory(), orders).await;
    assert_fails(&report, "sold_matches_fulfilled");
}

#[tokio::test]
async fn a_status_moving_backwards_fails() {
    let mut orders = good_orders();
    orders[1] = order(
        "b",
        "reserved",
        5,
        &[("reserved", None), ("fulfilled", None), ("reserved", None)],
    );
    let report = check_state(vec![item(10, 7, 5, 15)], orders).await;
    assert_fails(&report, "statuses_move_forward");
}

#[tokio::test]
async fn an_order_fulfilled_or_charged_twice_fails() {
    let mut orders = good_orders();
    orders[1] = order(
        "b",
        "fulfilled",
        5,
        &[
            ("reserved", None),
            ("reserved", Some("payment_charged")),
            ("fulfilled", None),
            ("fulfilled", Some("payment_charged")),
        ],
    );
    let report = check_state(good_inventory(), orders).await;
    assert_fails(&report, "no_double_effects");
}

#[tokio::test]
async fn a_stuck_order_fails() {
    let mut orders = good_orders();
    orders[0]["updatedAt"] = json!("2020-01-01T00:00:00.000Z");
    let report = check_state(good_inventory(), orders).await;
    assert_fails(&report, "no_stuck_orders");
}

#[tokio::test]
async fn a_duplicated_order_fails() {
    let mut orders = good_orders();
    orders.push(order("b", "fulfilled", 0, FULFILLED));
    let report = check_state(good_inventory(), orders).await;
    assert_fails(&report, "orders_unique");
}

fn completion(kind: EventType, order_id: Option<&str>) -> HistoryEvent {
    HistoryEvent {
        kind,
        process: 0,
        time: 0,
        f: "order".into(),
        value: OpValue {
            order_id: order_id.map(str::to_owned),
            ..OpValue::default()
        },
    }
}

#[tokio::test]
async fn lost_and_unknown_orders_fail_against_a_history() {
    let url = stub(
        (StatusCode::OK, json!({"inventory": good_inventory()})),
        (StatusCode::OK, json!({"orders": good_orders()})),
    )
    .await;
    let mut config = CheckConfig::new(&url, &url);
    config.history = HistorySource::Events(vec![
        completion(EventType::Ok, Some("a")),
        completion(EventType::Ok, Some("b")),
    ]);
    assert!(run_check(&config).await.unwrap().passed);
    // An acknowledged order the service lost, and order b never acknowledged.
    config.history = HistorySource::Events(vec![
        completion(EventType::Ok, Some("a")),
        completion(EventType::Ok, Some("lost")),
    ]);
    let report = run_check(&config).await.unwrap();
    assert_fails(&report, "acknowledged_orders_exist");
    assert_fails(&report, "no_unknown_orders");
    // A request with an unknown outcome may explain one unseen order.
    config.history = HistorySource::Events(vec![
        completion(EventType::Ok, Some("a")),
        completion(EventType::Info, None),
    ]);
    assert!(run_check(&config).await.unwrap().passed);
}

#[tokio::test]
async fn unreadable_data_fails() {
    let url = stub(
        (StatusCode::OK, json!({"inventory": good_inventory()})),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "data_corrupted", "message": "orders.json is corrupted"}),
        ),
    )
    .await;
    let report = run_check(&CheckConfig::new(&url, &url)).await.unwrap();
    assert_fails(&report, "data_readable");
}

#[tokio::test]
async fn a_torn_data_file_fails() {
    let url = stub(
        (StatusCode::OK, json!({"inventory": good_inventory()})),
        (StatusCode::OK, json!({"orders": good_orders()})),
    )
    .await;
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("orders.json"),
        "{\"orders\": [{\"id\":",
    )
    .unwrap();
    std::fs::write(
        directory.path().join("inventory.json"),
        "{\"inventory\": []}",
    )
    .unwrap();
    let mut config = CheckConfig::new(&url, &url);
    config.data_dir = Some(directory.path().to_owned());
    let report = run_check(&config).await.unwrap();
    assert_fails(&report, "data_files_parse");
}

#[tokio::test]
async fn a_service_off_contract_is_an_error_not_a_pass() {
    let url = stub(
        (StatusCode::OK, json!({"items": []})),
        (StatusCode::OK, json!({"orders": []})),
    )
    .await;
    let error = run_check(&CheckConfig::new(&url, &url)).await.unwrap_err();
    assert!(matches!(error, CheckError::Incompatible { .. }), "{error}");
}

#[tokio::test]
async fn an_unreachable_service_is_an_error_not_a_pass() {
    // Bind and drop a listener to find a port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = run_check(&CheckConfig::new(&url, &url)).await.unwrap_err();
    assert!(matches!(error, CheckError::Unreachable { .. }), "{error}");
}

/// `check --json` names every invariant with a verdict and its evidence:
/// those it could not check (no history, no data directory, an unreadable
/// inventory) say why instead of being left out.
#[tokio::test]
async fn every_invariant_has_a_verdict_and_evidence() {
    use stockroom_lab::check::CheckVerdict;

    let report = check_state(vec![item(10, 12, 5, 15)], good_orders()).await;
    let document = serde_json::to_value(&report).unwrap();
    let checks = document["checks"].as_array().unwrap();
    let names: Vec<&str> = checks
        .iter()
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    for invariant in stockroom_domain::invariants::Invariant::ALL {
        assert!(names.contains(&invariant.name()), "{names:?}");
    }
    for check in checks {
        assert!(check["verdict"].is_string(), "{check}");
        assert!(
            !check["evidence"].as_str().unwrap_or_default().is_empty(),
            "{check}"
        );
    }
    let verdict = |name: &str| report.outcome(name).map(|check| check.verdict);
    assert_eq!(
        verdict("available_non_negative"),
        Some(CheckVerdict::Violated)
    );
    assert_eq!(verdict("orders_unique"), Some(CheckVerdict::Holds));
    assert_eq!(
        verdict("acknowledged_orders_exist"),
        Some(CheckVerdict::NotChecked)
    );
    assert_eq!(verdict("data_files_parse"), Some(CheckVerdict::NotChecked));

    let unreadable = stub(
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "data_corrupted", "message": "torn"}),
        ),
        (
            StatusCode::OK,
            json!({"orders": good_orders(), "nextCursor": null}),
        ),
    )
    .await;
    let report = run_check(&CheckConfig::new(&unreadable, &unreadable))
        .await
        .unwrap();
    assert_eq!(
        report
            .outcome("available_non_negative")
            .map(|check| check.verdict),
        Some(CheckVerdict::NotChecked),
        "{}",
        report.render()
    );
    assert!(!report.passed, "{}", report.render());
}
