//! Internal routes need the system's token: every route the OpenAPI
//! documents mark as internal answers 401 without it (or with a wrong one)
//! and changes nothing, the public contract stays open, and `serve` refuses
//! to start without a token.

use serde_json::{Value, json};

use crate::harness::{TestSystem, get, laptops};

/// Every internal operation of a service, as (method, path) with the path's
/// parameters filled in, read from the service's own OpenAPI document.
async fn internal_operations(client: &reqwest::Client, base: &str) -> Vec<(String, String)> {
    let (status, document) = get(client, &format!("{base}/openapi.json")).await;
    assert_eq!(status, 200);
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|requirements| !requirements.is_empty());
            if !secured {
                continue;
            }
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} needs the token but does not document its 401"
            );
            let filled = path
                .replace("{productName}", "Laptop")
                .replace("{consumer}", "payment")
                .replace("{id}", "0190a8e4-6a39-7000-8000-000000000000");
            operations.push((method.to_uppercase(), filled));
        }
    }
    operations
}

/// Stock and orders, to show that refused calls changed nothing.
async fn snapshot(test: &TestSystem) -> (Value, usize) {
    let plain = reqwest::Client::new();
    let (_, inventory) = get(&plain, &test.data_url("/inventory")).await;
    (inventory, test.all_orders().await.len())
}

#[tokio::test]
async fn internal_routes_refuse_calls_without_the_token_and_change_nothing() {
    let test = TestSystem::start(|config| config.payment_latency_ms = 0).await;
    let (status, placed) = test.place(laptops(1)).await;
    assert_eq!(status, 201);
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    test.wait_until_settled().await;
    let before = snapshot(&test).await;

    let plain = reqwest::Client::new();
    let urls = &test.system.urls;
    let mut checked = 0;
    for base in [&urls.data, &urls.inventory, &urls.payment, &urls.order] {
        for (method, path) in internal_operations(&plain, base).await {
            let url = format!("{base}{path}");
            // A forged payment, the attack that matters most, and an empty
            // document for the others: neither may reach a handler.
            let body =
                json!({"payments": [{"orderId": order_id, "eventId": "forged", "approved": true}]});
            for authorization in [
                None,
                Some("Bearer wrong-token-of-a-good-length-0123456789"),
                Some("Basic c3RvY2tyb29tOg=="),
            ] {
                let mut request = plain.request(method.parse().unwrap(), &url).json(&body);
                if let Some(value) = authorization {
                    request = request.header("authorization", value);
                }
                let response = request.send().await.unwrap();
                assert_eq!(
                    response.status(),
                    401,
                    "{method} {path} with {authorization:?}"
                );
                assert_eq!(
                    response.headers()["www-authenticate"],
                    "Bearer",
                    "{method} {path}"
                );
                let error: Value = response.json().await.unwrap();
                assert_eq!(error["error"], "unauthorized", "{method} {path}");
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3 * 20,
        "the documents list too few internal routes: {checked} calls"
    );
    assert_eq!(
        snapshot(&test).await,
        before,
        "a refused call changed state"
    );

    // The public contract needs no token.
    for url in [
        test.data_url("/inventory"),
        test.data_url("/inventory/Laptop"),
        test.data_url("/orders"),
        test.data_url(&format!("/orders/{order_id}")),
        test.order_url("/api/orders"),
        test.order_url(&format!("/api/orders/{order_id}")),
        format!("{}/health", urls.inventory),
        format!("{}/openapi.json", urls.payment),
        format!("{}/metrics", urls.data),
    ] {
        let response = plain.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
    let response = plain
        .post(test.order_url("/api/orders"))
        .json(&laptops(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // And the token opens the internal routes.
    let (status, stats) = get(&test.client, &format!("{}/stats", urls.payment)).await;
    assert_eq!(status, 200, "{stats}");
    test.stop().await;
}

fn stockroom() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stockroom"));
    command
        .env_remove(stockroom_http_kit::INTERNAL_TOKEN_ENV)
        .env("STOCKROOM_LOG", "off");
    command
}

#[test]
fn serve_refuses_to_start_without_a_good_token() {
    for service in ["order", "data", "inventory", "payment"] {
        let output = stockroom()
            .args(["serve", service, "--port", "0"])
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "{service} started without a token"
        );
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            message.contains("STOCKROOM_INTERNAL_TOKEN"),
            "{service}: {message}"
        );
    }
    let output = stockroom()
        .args(["serve", "payment", "--port", "0"])
        .env(stockroom_http_kit::INTERNAL_TOKEN_ENV, "too-short")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("at least 32 characters"), "{message}");
}
