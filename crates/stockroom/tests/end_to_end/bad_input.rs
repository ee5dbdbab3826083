//! Bad input gets a JSON error with a fitting 4xx and changes nothing.

use serde_json::Value;

use crate::harness::{TestSystem, get};

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<String>,
    header: Option<(&'static str, String)>,
    status: u16,
    error: &'static str,
}

fn order_post(name: &'static str, body: &str, status: u16, error: &'static str) -> Case {
    Case {
        name,
        method: "POST",
        path: "/api/orders",
        body: Some(body.to_owned()),
        header: None,
        status,
        error,
    }
}

fn cases() -> Vec<Case> {
    let many_items: Vec<String> = (0..51)
        .map(|index| format!(r#"{{"productName":"P{index}","quantity":1}}"#))
        .collect();
    vec![
        order_post(
            "malformed json",
            r#"{"productName":"Laptop","quantity":"#,
            400,
            "malformed_json",
        ),
        order_post("not json", "hello", 400, "malformed_json"),
        order_post("empty body", "", 400, "empty_body"),
        order_post("a json array", "[]", 422, "invalid_request"),
        order_post(
            "quantity as a string",
            r#"{"productName":"Laptop","quantity":"2","customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "quantity as a fraction",
            r#"{"productName":"Laptop","quantity":2.5,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "productName as a number",
            r#"{"productName":7,"quantity":2,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "missing customerId",
            r#"{"productName":"Laptop","quantity":2}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "missing quantity",
            r#"{"productName":"Laptop","customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "missing productName",
            r#"{"quantity":1,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "quantity zero",
            r#"{"productName":"Laptop","quantity":0,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "quantity negative",
            r#"{"productName":"Laptop","quantity":-3,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "quantity above the maximum",
            r#"{"productName":"Laptop","quantity":1001,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "quantity huge",
            r#"{"productName":"Laptop","quantity":99999999999999999999999,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "quantity 1e30",
            r#"{"productName":"Laptop","quantity":1e30,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "blank product name",
            r#"{"productName":"  ","quantity":1,"customerId":"c1"}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "blank customer",
            r#"{"productName":"Laptop","quantity":1,"customerId":""}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "unknown product",
            r#"{"productName":"Teleporter","quantity":1,"customerId":"c1"}"#,
            422,
            "unknown_product",
        ),
        order_post(
            "unknown product among known ones",
            r#"{"customerId":"c1","items":[{"productName":"Laptop","quantity":1},{"productName":"Teleporter","quantity":1}]}"#,
            422,
            "unknown_product",
        ),
        order_post(
            "no items",
            r#"{"customerId":"c1","items":[]}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "both shapes at once",
            r#"{"customerId":"c1","productName":"Laptop","quantity":1,"items":[{"productName":"Laptop","quantity":1}]}"#,
            422,
            "invalid_request",
        ),
        order_post(
            "one product twice",
            r#"{"customerId":"c1","items":[{"productName":"Laptop","quantity":1},{"productName":"laptop","quantity":1}]}"#,
            422,
            "invalid_request",
        ),
        Case {
            name: "too many items",
            body: Some(format!(
                r#"{{"customerId":"c1","items":[{}]}}"#,
                many_items.join(",")
            )),
            ..order_post("", "", 422, "invalid_request")
        },
        Case {
            name: "oversized body",
            body: Some(format!(
                r#"{{"customerId":"{}","productName":"Laptop","quantity":1}}"#,
                "x".repeat(64 * 1024)
            )),
            ..order_post("", "", 413, "body_too_large")
        },
        Case {
            name: "idempotency key too long",
            header: Some(("Idempotency-Key", "k".repeat(300))),
            ..order_post(
                "",
                r#"{"productName":"Laptop","quantity":1,"customerId":"c1"}"#,
                400,
                "invalid_header",
            )
        },
        Case {
            name: "unknown order id",
            method: "GET",
            path: "/api/orders/01a20055-94a2-72f6-8701-0ae7fa1bb592",
            body: None,
            header: None,
            status: 404,
            error: "not_found",
        },
        Case {
            name: "order id that is not an id",
            method: "GET",
            path: "/api/orders/../../etc",
            body: None,
            header: None,
            status: 404,
            error: "not_found",
        },
        Case {
            name: "cancel of an unknown order",
            method: "POST",
            path: "/api/orders/nope/cancel",
            body: None,
            header: None,
            status: 404,
            error: "not_found",
        },
        Case {
            name: "unknown path",
            method: "GET",
            path: "/api/nothing",
            body: None,
            header: None,
            status: 404,
            error: "not_found",
        },
        Case {
            name: "wrong method",
            method: "DELETE",
            path: "/api/orders",
            body: None,
            header: None,
            status: 405,
            error: "method_not_allowed",
        },
        Case {
            name: "limit out of range",
            method: "GET",
            path: "/api/orders?limit=0",
            body: None,
            header: None,
            status: 422,
            error: "invalid_request",
        },
        Case {
            name: "limit not a number",
            method: "GET",
            path: "/api/orders?limit=ten",
            body: None,
            header: None,
            status: 422,
            error: "invalid_request",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_request_gets_a_json_4xx_and_changes_nothing() {
    let test = TestSystem::start(|_| {}).await;
    let inventory_before = get(&test.client, &test.data_url("/inventory")).await.1;
    let mut failures = Vec::new();
    for case in cases() {
        let url = test.order_url(case.path);
        // A connection of its own per case: after refusing an oversized body
        // unread, the server closes the connection, and a pooled client could
        // send the next case on it before noticing (a timing race of the
        // test, not an answer of the service).
        let client = reqwest::Client::new();
        let mut request = match case.method {
            "GET" => client.get(&url),
            "POST" => client.post(&url),
            "DELETE" => client.delete(&url),
            other => panic!("no method {other}"),
        };
        if let Some(body) = case.body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        if let Some((name, value)) = case.header {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{}: {error:?}", case.name));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != case.status || body["error"] != case.error || !body["message"].is_string() {
            failures.push(format!(
                "{}: expected {} {}, got {status} {text}",
                case.name, case.status, case.error
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        test.all_orders().await.is_empty(),
        "bad input created an order"
    );
    let inventory_after = get(&test.client, &test.data_url("/inventory")).await.1;
    assert_eq!(
        inventory_before, inventory_after,
        "bad input changed the stock"
    );
    test.stop().await;
}

/// A body must be declared as JSON: without a content type (a bare
/// `curl -d` declares a form) it is refused with 415, and nothing is placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_not_declared_as_json_is_refused_with_415() {
    let test = TestSystem::start(|_| {}).await;
    let response = test
        .client
        .post(test.order_url("/api/orders"))
        .body(r#"{"productName":"Laptop","quantity":1,"customerId":"c1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "unsupported_media_type");
    assert!(test.all_orders().await.is_empty());
    test.stop().await;
}
