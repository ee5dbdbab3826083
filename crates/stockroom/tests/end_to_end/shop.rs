//! A shop's own operations over real HTTP: the operator's routes behind
//! their own token, every bad input refused with a 4xx that changes nothing,
//! a customer's storm against a purchase limit, the ledger, and reservation
//! extension.

use serde_json::{Value, json};
use stockroom_http_kit::OperatorToken;

use crate::harness::{TestSystem, get, post, stock};

/// A client that sends the operator's token with every request.
fn operator_client(token: &OperatorToken) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, token.header_value());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn shop() -> (TestSystem, reqwest::Client) {
    let token = OperatorToken::generate();
    let test = TestSystem::start(|config| {
        config.stock = Some(stock(&[("Laptop", 10)]));
        config.operator_token = Some(token.clone());
        // Orders stay reserved until the test pays or cancels them.
        config.payment_latency_ms = 60_000;
    })
    .await;
    (test, operator_client(&token))
}

async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Laptop's figures and ledger, to show that refused calls changed nothing.
async fn laptop_state(test: &TestSystem, operator: &reqwest::Client) -> (Value, Value) {
    let item = test.item("Laptop").await;
    let (status, movements) = get(operator, &test.data_url("/inventory/Laptop/movements")).await;
    assert_eq!(status, 200, "{movements}");
    (item, movements)
}

/// A request that must be refused: method, URL, body, headers, status.
type Refused<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    &'a [(&'a str, &'a str)],
    u16,
);

#[tokio::test]
async fn operator_routes_need_their_own_token_and_refuse_bad_input_without_a_change() {
    let (test, operator) = shop().await;
    let before = laptop_state(&test, &operator).await;
    let plain = reqwest::Client::new();
    let adjust = test.data_url("/inventory/Laptop/adjustments");
    let good_adjustment = r#"{"delta":-1,"reason":"damaged"}"#;
    // Neither no token nor the services' own token opens the operator's
    // routes.
    for client in [&plain, &test.client] {
        let (status, body) = send(
            client,
            "POST",
            &adjust,
            Some(good_adjustment),
            &[("idempotency-key", "k")],
        )
        .await;
        assert_eq!(status, 401, "{body}");
        let (status, _) = get(client, &test.data_url("/inventory/Laptop/movements")).await;
        assert_eq!(status, 401);
    }
    let key = [("idempotency-key", "k1")];
    let refused: Vec<Refused<'_>> = vec![
        ("POST", adjust.clone(), Some(good_adjustment), &[], 400),
        (
            "POST",
            adjust.clone(),
            Some(good_adjustment),
            &[("idempotency-key", "two words")],
            400,
        ),
        ("POST", adjust.clone(), Some("{\"delta\":"), &key, 400),
        (
            "POST",
            adjust.clone(),
            Some(r#"{"delta":"-1","reason":"damaged"}"#),
            &key,
            422,
        ),
        (
            "POST",
            adjust.clone(),
            Some(r#"{"delta":0,"reason":"damaged"}"#),
            &key,
            422,
        ),
        (
            "POST",
            adjust.clone(),
            Some(r#"{"delta":1.5,"reason":"received"}"#),
            &key,
            422,
        ),
        (
            "POST",
            adjust.clone(),
            Some(r#"{"delta":-1,"reason":"stolen"}"#),
            &key,
            422,
        ),
        (
            "POST",
            adjust.clone(),
            Some(r#"{"delta":-1,"reason":"damaged","colour":"red"}"#),
            &key,
            422,
        ),
        (
            "POST",
            adjust.clone(),
            Some(r#"{"delta":-1000000000000000,"reason":"damaged"}"#),
            &key,
            422,
        ),
        (
            "POST",
            adjust.clone(),
            Some(r#"{"delta":-11,"reason":"damaged"}"#),
            &key,
            409,
        ),
        (
            "POST",
            adjust.clone(),
            Some(r#"{"delta":-1,"reason":"damaged","expectedOnHand":9}"#),
            &key,
            409,
        ),
        (
            "POST",
            test.data_url("/inventory/Nothing/adjustments"),
            Some(good_adjustment),
            &key,
            404,
        ),
        (
            "POST",
            test.data_url("/inventory"),
            Some(r#"{"productName":"Laptop","quantity":1}"#),
            &[],
            409,
        ),
        (
            "POST",
            test.data_url("/inventory"),
            Some(r#"{"productName":"","quantity":1}"#),
            &[],
            422,
        ),
        (
            "POST",
            test.data_url("/inventory"),
            Some(r#"{"productName":"Pen","quantity":-1}"#),
            &[],
            422,
        ),
        (
            "POST",
            test.data_url("/inventory"),
            Some(r#"{"productName":"Pen","quantity":1,"maxPerCustomer":0}"#),
            &[],
            422,
        ),
        (
            "PATCH",
            test.data_url("/inventory/Laptop"),
            Some(r#"{"maxPerCustomer":2000000}"#),
            &[],
            422,
        ),
        (
            "PATCH",
            test.data_url("/inventory/Laptop"),
            Some(r#"{"maxPerCustomr":2}"#),
            &[],
            422,
        ),
        (
            "PATCH",
            test.data_url("/inventory/Nothing"),
            Some(r#"{"maxPerCustomer":2}"#),
            &[],
            404,
        ),
        (
            "GET",
            test.data_url("/inventory/Laptop/movements?limit=0"),
            None,
            &[],
            422,
        ),
        (
            "GET",
            test.data_url("/inventory/Laptop/movements?after=-1"),
            None,
            &[],
            422,
        ),
        (
            "GET",
            test.data_url("/inventory/Nothing/movements"),
            None,
            &[],
            404,
        ),
    ];
    for (method, url, body, headers, expected) in refused {
        let (status, answer) = send(&operator, method, &url, body, headers).await;
        assert_eq!(status, expected, "{method} {url} {body:?}: {answer}");
        assert!(answer["error"].is_string(), "{method} {url}: {answer}");
        assert!(answer["message"].is_string(), "{method} {url}: {answer}");
    }
    // The key of a refused adjustment was not spent on it: the first
    // adjustment that applies claims it.
    assert_eq!(
        laptop_state(&test, &operator).await,
        before,
        "a refusal changed something"
    );
    let (status, first) = send(&operator, "POST", &adjust, Some(good_adjustment), &key).await;
    assert_eq!(status, 201, "{first}");
    let response = operator
        .post(&adjust)
        .header("idempotency-key", "k1")
        .json(&json!({"delta": -1, "reason": "damaged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    assert_eq!(response.json::<Value>().await.unwrap(), first);
    let (status, reused) = send(
        &operator,
        "POST",
        &adjust,
        Some(r#"{"delta":-2,"reason":"damaged"}"#),
        &key,
    )
    .await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(
        test.item("Laptop").await["quantity"],
        9,
        "one adjustment, applied once"
    );
    test.stop().await;
}

#[tokio::test]
async fn a_customers_storm_stops_at_the_limit_and_the_ledger_explains_every_figure() {
    let (test, operator) = shop().await;
    let (status, created) = post(
        &operator,
        &test.data_url("/inventory"),
        json!({"productName": "Tablet", "quantity": 20, "maxPerCustomer": 3, "lowStockThreshold": 5}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["item"]["maxPerCustomer"], 3);
    assert_eq!(created["item"]["movementSeq"], 1);
    let orders: Vec<_> = (0..24)
        .map(|index| {
            let client = test.client.clone();
            let url = test.order_url("/api/orders");
            let customer = if index % 8 == 0 { "bob" } else { "ann" };
            tokio::spawn(async move {
                let body = json!({"customerId": customer, "productName": "Tablet", "quantity": 1});
                (customer, post(&client, &url, body).await)
            })
        })
        .collect();
    let mut reserved = Vec::new();
    for order in orders {
        let (customer, (status, body)) = order.await.unwrap();
        match status {
            201 => reserved.push((customer, body["order"]["id"].as_str().unwrap().to_owned())),
            409 => {
                assert_eq!(body["error"], "limit_exceeded", "{body}");
                assert_eq!(
                    (
                        body["maxPerCustomer"].as_u64(),
                        body["alreadyHeld"].as_u64()
                    ),
                    (Some(3), Some(3))
                );
                assert_eq!(body["productName"], "Tablet");
            }
            other => panic!("an order answered {other}: {body}"),
        }
    }
    let held = |who: &str| {
        reserved
            .iter()
            .filter(|(customer, _)| *customer == who)
            .count()
    };
    assert_eq!(
        (held("ann"), held("bob")),
        (3, 3),
        "each customer holds exactly the limit"
    );

    // Ann cancels one and may buy one more; bob's extension keeps his.
    let (_, ann_first) = reserved
        .iter()
        .find(|(customer, _)| *customer == "ann")
        .unwrap();
    let (status, _) = post(
        &test.client,
        &test.order_url(&format!("/api/orders/{ann_first}/cancel")),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = test
        .place(json!({"customerId": "ann", "productName": "Tablet", "quantity": 1}))
        .await;
    assert_eq!(status, 201);
    let (_, bob_first) = reserved
        .iter()
        .find(|(customer, _)| *customer == "bob")
        .unwrap();
    let extend = test.order_url(&format!("/api/orders/{bob_first}/extend"));
    let (status, extended) = post(
        &test.client,
        &extend,
        json!({"customerId": "bob", "ttlMs": 600_000}),
    )
    .await;
    assert_eq!(status, 200, "{extended}");
    assert!(extended["order"]["extendedUntil"].is_string(), "{extended}");
    let refusals = [
        (json!({"customerId": "ann", "ttlMs": 1_000}), 403),
        (json!({"customerId": "bob", "ttlMs": 0}), 422),
        (json!({"customerId": "bob", "ttlMs": 86_400_001}), 422),
        (json!({"customerId": "bob"}), 422),
        (json!({"customerId": "bob", "ttlMs": "60000"}), 422),
    ];
    for (body, expected) in refusals {
        let (status, answer) = post(&test.client, &extend, body.clone()).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    let (status, _) = post(
        &test.client,
        &test.order_url(&format!("/api/orders/{ann_first}/extend")),
        json!({"customerId": "ann", "ttlMs": 1_000}),
    )
    .await;
    assert_eq!(status, 409, "a cancelled order cannot be extended");
    let (status, _) = post(
        &test.client,
        &test.order_url("/api/orders/0190a8e4-6a39-7000-8000-000000000000/extend"),
        json!({"customerId": "ann", "ttlMs": 1_000}),
    )
    .await;
    assert_eq!(status, 404);

    // The ledger, read two at a time, replays to the figures.
    let item = test.item("Tablet").await;
    let mut movements = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = get(
            &operator,
            &test.data_url(&format!(
                "/inventory/tablet/movements?after={after}&limit=2"
            )),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        movements.extend(page["movements"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_u64() {
            Some(cursor) => after = cursor,
            None => break,
        }
    }
    assert_eq!(
        movements.len() as u64,
        item["movementSeq"].as_u64().unwrap()
    );
    let sum = |field: &str| -> i64 {
        movements
            .iter()
            .map(|movement| movement["delta"][field].as_i64().unwrap())
            .sum()
    };
    assert_eq!(sum("onHand"), item["quantity"].as_i64().unwrap());
    assert_eq!(sum("reserved"), item["reservedQuantity"].as_i64().unwrap());
    assert_eq!(movements[0]["kind"], "created");
    assert_eq!(movements[0]["settings"]["maxPerCustomer"], 3);
    assert!(
        movements
            .iter()
            .any(|movement| movement["kind"] == "released"
                && movement["reason"] == "cancelled_by_customer")
    );
    let (status, patched) = send(
        &operator,
        "PATCH",
        &test.data_url("/inventory/TABLET"),
        Some(r#"{"maxPerCustomer":null}"#),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["item"]["maxPerCustomer"], Value::Null);
    assert_eq!(
        patched["item"]["lowStockThreshold"], 5,
        "a field left out stays"
    );

    // The live auditor replays the ledger too, and notices a figure that
    // changed behind the rules' back.
    let invariants = format!("{}/invariants", test.system.urls.inventory);
    wait_for_audit(&test.client, &invariants, |report| {
        report["ledgerChecked"] == true && report["healthy"] == true
    })
    .await;
    let database = test
        .directory
        .path()
        .join(stockroom_storage_sqlite::DATABASE_FILE_NAME);
    let connection = rusqlite::Connection::open(database).unwrap();
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    connection
        .execute(
            "UPDATE inventory SET quantity = quantity + 1, received = received + 1
             WHERE product_key = 'tablet'",
            [],
        )
        .unwrap();
    let report = wait_for_audit(&test.client, &invariants, |report| {
        report["healthy"] == false
    })
    .await;
    assert!(
        report["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|violation| violation["invariant"] == "ledger_matches_stock"
                && violation["product"] == "Tablet"),
        "{report}"
    );
    test.stop().await;
}

/// Waits until the auditor's report satisfies `done`, or fails the test.
async fn wait_for_audit(
    client: &reqwest::Client,
    url: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, report) = get(client, url).await;
        assert_eq!(status, 200, "{report}");
        if done(&report) {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit never got there: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
