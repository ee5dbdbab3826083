//! The checker's ledger checks against a stub that keeps a ledger: a ledger
//! that replays to the figures passes, one that does not fails, a
//! reservation past the limit in force fails, and without the operator
//! token the ledger is reported as not checked, never as passing.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use stockroom_http_kit::OperatorToken;
use stockroom_lab::check::CheckVerdict;
use stockroom_lab::{CheckConfig, CheckReport, run_check};

/// Tablet: created with 10 and a limit of 2, ann reserves 2, then 1 more.
fn ledger(second_reservation_by: &str) -> Value {
    let moved = |seq: i64, kind: &str, order: Option<&str>, delta: (i64, i64, i64)| {
        json!({"seq": seq, "kind": kind, "orderId": order,
               "delta": {"onHand": delta.0, "reserved": delta.1, "sold": delta.2}, "atMs": 1})
    };
    let mut created = moved(1, "created", None, (10, 0, 0));
    created["settings"] = json!({"maxPerCustomer": 2, "lowStockThreshold": null});
    json!({"movements": [
        created,
        moved(2, "reserved", Some("a"), (0, 2, 0)),
        moved(3, "reserved", Some(second_reservation_by), (0, 1, 0)),
    ], "nextCursor": null})
}

fn order(id: &str, customer: &str, quantity: i64) -> Value {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    json!({"id": id, "customerId": customer, "status": "reserved", "version": 1,
           "createdAt": now, "updatedAt": now,
           "items": [{"product": {"name": "Tablet"}, "quantity": quantity}],
           "history": [{"version": 1, "status": "reserved", "reason": null}]})
}

/// The orders of the stub: ann's two units in order a, and the second
/// reservation's order (b is ann's, c is bob's).
async fn stub(token: OperatorToken, on_hand: i64, second: &str, movements: Value) -> String {
    let second = if second == "b" {
        order("b", "ann", 1)
    } else {
        order("c", "bob", 1)
    };
    let item = json!({"productName": "Tablet", "quantity": on_hand, "reservedQuantity": 3,
                      "available": on_hand - 3, "sold": 0, "received": on_hand, "movementSeq": 3});
    let orders = json!({"orders": [order("a", "ann", 2), second], "nextCursor": null});
    let router = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/inventory",
            get(move || async move { axum::Json(json!({"inventory": [item]})) }),
        )
        .route("/orders", get(move || async move { axum::Json(orders) }))
        .route(
            "/inventory/{name}/movements",
            get(
                move |Path(name): Path<String>, headers: HeaderMap| async move {
                    let authorized = headers.get("authorization").is_some_and(|value| {
                        value
                            .as_bytes()
                            .strip_prefix(b"Bearer ")
                            .is_some_and(|presented| token.matches(presented))
                    });
                    if !authorized || name != "Tablet" {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    axum::Json(movements).into_response()
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

async fn check(on_hand: i64, second: &str, with_token: bool) -> CheckReport {
    let token = OperatorToken::generate();
    let url = stub(token.clone(), on_hand, second, ledger(second)).await;
    let mut config = CheckConfig::new(&url, &url);
    config.operator_token = with_token.then_some(token);
    run_check(&config).await.unwrap()
}

fn verdict(report: &CheckReport, name: &str) -> CheckVerdict {
    report
        .outcome(name)
        .unwrap_or_else(|| panic!("no check named {name}: {}", report.render()))
        .verdict
}

#[tokio::test]
async fn a_ledger_that_replays_and_keeps_the_limit_passes() {
    let report = check(10, "c", true).await;
    assert!(report.passed, "{}", report.render());
    assert_eq!(
        verdict(&report, "ledger_matches_stock"),
        CheckVerdict::Holds
    );
    assert_eq!(
        verdict(&report, "within_purchase_limit"),
        CheckVerdict::Holds
    );
}

#[tokio::test]
async fn figures_the_ledger_does_not_explain_fail() {
    let report = check(11, "c", true).await;
    assert_eq!(
        verdict(&report, "ledger_matches_stock"),
        CheckVerdict::Violated,
        "{}",
        report.render()
    );
    assert!(!report.passed);
}

#[tokio::test]
async fn a_reservation_past_the_limit_fails() {
    let report = check(10, "b", true).await;
    assert_eq!(
        verdict(&report, "within_purchase_limit"),
        CheckVerdict::Violated,
        "{}",
        report.render()
    );
    assert_eq!(
        verdict(&report, "ledger_matches_stock"),
        CheckVerdict::Holds
    );
}

#[tokio::test]
async fn without_the_operator_token_the_ledger_is_not_checked() {
    let report = check(11, "b", false).await;
    assert_eq!(
        verdict(&report, "ledger_matches_stock"),
        CheckVerdict::NotChecked
    );
    assert_eq!(
        verdict(&report, "within_purchase_limit"),
        CheckVerdict::NotChecked
    );
    assert!(report.render().contains("operator"), "{}", report.render());
}
