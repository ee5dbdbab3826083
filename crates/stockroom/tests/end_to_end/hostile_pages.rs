//! Web pages as attackers: what a page on another site can make the
//! operator's browser send to a system on loopback, sent here by hand.
//!
//! - DNS rebinding: the page's own name resolves to 127.0.0.1, so the
//!   browser sends `Host: rebind.attacker.test:<port>`; all five listeners
//!   answer 421 and nothing runs, unless the operator allowed the name.
//! - Simple requests: a form post, or a `text/plain` body, needs no
//!   permission from the target; order-service refuses both (415 without a
//!   browser's headers, 403 with them), and places and cancels nothing.
//! - The dashboard's controls refuse other sites, requests without `Origin`
//!   or the dashboard's token, and bursts beyond their allowance.

use serde_json::{Value, json};

use crate::dashboard::Watched;
use crate::harness::{TestSystem, get, laptops, ready_url, spawn_up};

const REBOUND_HOST: &str = "rebind.attacker.test";

/// A control request that must be refused: what it is, its headers, and the
/// error code it gets.
type Refused<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

/// How long a service of a just-started system may take to report healthy.
const HEALTHY_WITHIN_MS: u64 = 15_000;

/// Waits until `base` answers its health check with 200 for its own name,
/// or fails the test after [`HEALTHY_WITHIN_MS`].
async fn wait_until_healthy(client: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(HEALTHY_WITHIN_MS);
    loop {
        let status = client
            .get(format!("{base}/health"))
            .send()
            .await
            .map(|response| response.status().as_u16());
        if status.as_ref().is_ok_and(|status| *status == 200) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{base} did not report healthy: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A port nothing listens on, for an origin that is not the dashboard's.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `host:port` of a base URL, with the port and another host name.
fn rebound(base: &str) -> String {
    let port = base.rsplit(':').next().unwrap();
    format!("{REBOUND_HOST}:{port}")
}

async fn assert_misdirected(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 421, "{what}");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "misdirected_request", "{what}");
    assert!(
        error["message"].as_str().unwrap().contains(REBOUND_HOST),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebound_host_is_refused_by_all_five_listeners() {
    let watched = Watched::start(25).await;
    let urls = &watched.system.system.urls;
    let plain = reqwest::Client::new();
    let reads = [
        (&urls.order, "/api/orders"),
        (&urls.data, "/orders"),
        (&urls.inventory, "/health"),
        (&urls.payment, "/health"),
        (&watched.dashboard_url, "/api/snapshot"),
    ];
    for (base, path) in reads {
        let response = plain
            .get(format!("{base}{path}"))
            .header("host", rebound(base))
            .send()
            .await
            .unwrap();
        assert_misdirected(response, &format!("GET {base}{path}")).await;
        // The same request under the listener's own name is answered.
        let (status, _) = get(&plain, &format!("{base}{path}")).await;
        assert_eq!(status, 200, "{base}{path}");
    }
    // What a rebinding page would do: place an order and start a sale, as
    // its own origin, with the dashboard's token read from its page (the
    // page is refused too, so it could not have read one).
    let host = rebound(&urls.order);
    let response = plain
        .post(format!("{}/api/orders", urls.order))
        .header("host", &host)
        .header("origin", format!("http://{host}"))
        .json(&laptops(1))
        .send()
        .await
        .unwrap();
    assert_misdirected(response, "POST /api/orders").await;
    let host = rebound(&watched.dashboard_url);
    let response = plain
        .get(watched.url("/"))
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_misdirected(response, "GET / on the dashboard").await;
    let response = plain
        .post(watched.url("/api/sale"))
        .header("host", &host)
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"product": "Laptop", "orders": 10, "concurrency": 2}))
        .send()
        .await
        .unwrap();
    assert_misdirected(response, "POST /api/sale").await;
    assert!(
        watched.system.all_orders().await.is_empty(),
        "an order was placed"
    );
    let (_, sale) = get(&plain, &watched.url("/api/sale")).await;
    assert_eq!(sale["state"], "idle", "a sale started");
    watched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_the_names_the_operator_allows() {
    let directory = tempfile::tempdir().unwrap();
    let (_up, line) = spawn_up(
        directory.path(),
        &["--allowed-hosts", "shop.example.test,.example.org"],
        &[],
    );
    let client = reqwest::Client::new();
    for name in ["order", "data", "inventory", "payment", "dashboard"] {
        let base = ready_url(&line, name);
        let port = base.rsplit(':').next().unwrap();
        // The ready line comes once every service listens; the dashboard
        // reports healthy only after its first read of the stock. That is
        // readiness, not the name check this test is about: wait for it.
        wait_until_healthy(&client, &base).await;
        for (host, status) in [
            (format!("shop.example.test:{port}"), 200),
            (format!("api.example.org:{port}"), 200),
            ("localhost".to_owned(), 200),
            (format!("{REBOUND_HOST}:{port}"), 421),
            (format!("shop.example.test.{REBOUND_HOST}"), 421),
        ] {
            let response = client
                .get(format!("{base}/health"))
                .header("host", &host)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{name} for {host}");
        }
    }
}

/// What a page can send to another site without asking: each must be
/// refused before it reaches a handler.
fn simple_requests(
    client: &reqwest::Client,
    url: &str,
) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    let order = laptops(1).to_string();
    let as_browser = |request: reqwest::RequestBuilder| {
        request
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site")
    };
    let text = || {
        client
            .post(url)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(order.clone())
    };
    let form = || {
        client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{order}="))
    };
    let multipart = client
        .post(url)
        .header("content-type", "multipart/form-data; boundary=x")
        .body(format!(
            "--x\r\nContent-Disposition: form-data; name=\"{order}\"\r\n\r\n\r\n--x--\r\n"
        ));
    vec![
        ("text/plain", text()),
        ("a form", form()),
        ("multipart", multipart),
        ("text/plain from a page", as_browser(text())),
        ("a form from a page", as_browser(form())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_site_simple_requests_place_and_cancel_nothing() {
    // The payment takes long enough that the order is still cancellable
    // while the page tries.
    let test = TestSystem::start(|config| config.payment_latency_ms = 3_000).await;
    let (status, placed) = test.place(laptops(1)).await;
    assert_eq!(status, 201, "{placed}");
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    let plain = reqwest::Client::new();
    for (what, request) in simple_requests(&plain, &test.order_url("/api/orders")) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        let expected = if what.ends_with("from a page") {
            (403, "cross_site_request")
        } else {
            (415, "unsupported_media_type")
        };
        assert_eq!(
            (status, error["error"].as_str().unwrap()),
            expected,
            "{what}: {error}"
        );
    }
    // A cancel needs no body at all; the page's headers give it away.
    let cancel = test.order_url(&format!("/api/orders/{order_id}/cancel"));
    let response = plain
        .post(&cancel)
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // The internal JSON routes refuse other types too, token or not.
    let urls = &test.system.urls;
    for url in [
        format!("{}/reservations", urls.data),
        format!("{}/reservations", urls.inventory),
    ] {
        let response = test
            .client
            .post(&url)
            .header("content-type", "text/plain")
            .body(r#"{"requests":[]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{url}");
    }
    test.wait_until_settled().await;
    let orders = test.all_orders().await;
    assert_eq!(orders.len(), 1, "a refused request placed an order");
    assert_eq!(orders[0]["status"], "fulfilled", "the order was cancelled");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_controls_refuse_other_sites_and_requests_without_a_token() {
    let watched = Watched::start(25).await;
    let token = watched.control_token().await;
    let own_origin = watched.dashboard_url.clone();
    let plain = reqwest::Client::new();
    let sale = json!({"product": "Laptop", "orders": 10, "concurrency": 2});
    // Every listener refuses other sites' pages (`cross_site_request`); the
    // controls also refuse another page of this machine, a request the
    // browser did not say came from the dashboard's page, and one that
    // carries neither the dashboard's origin nor its token.
    let another_local_page = format!("http://127.0.0.1:{}", free_port());
    let refused: [Refused; 8] = [
        ("no origin, no token", vec![], "csrf_token_required"),
        (
            "a wrong token",
            vec![("x-stockroom-csrf-token", "0123")],
            "csrf_token_invalid",
        ),
        (
            "another site, with the token",
            vec![
                ("origin", "https://evil.example"),
                ("x-stockroom-csrf-token", &token),
            ],
            "cross_site_request",
        ),
        (
            "a cross-site fetch",
            vec![
                ("sec-fetch-site", "cross-site"),
                ("x-stockroom-csrf-token", &token),
            ],
            "cross_site_request",
        ),
        (
            "a sibling site",
            vec![("sec-fetch-site", "same-site"), ("origin", &own_origin)],
            "cross_site_request",
        ),
        (
            "a null origin",
            vec![("origin", "null"), ("x-stockroom-csrf-token", &token)],
            "cross_site_request",
        ),
        (
            "another page on this machine",
            vec![("origin", &another_local_page)],
            "foreign_origin",
        ),
        (
            "a request the user typed, not the page's",
            vec![
                ("sec-fetch-site", "none"),
                ("x-stockroom-csrf-token", &token),
            ],
            "cross_site_request",
        ),
    ];
    for path in ["/api/sale", "/api/lab"] {
        for (what, headers, code) in &refused {
            let mut request = plain.post(watched.url(path)).json(&sale);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 403, "{path}: {what}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"], *code, "{path}: {what}: {error}");
        }
    }
    for path in ["/api/sale", "/api/lab"] {
        let (_, status) = get(&plain, &watched.url(path)).await;
        assert_eq!(status["state"], "idle", "{path} started: {status}");
    }
    // The page's own request (its origin, its fetch metadata, its token)
    // starts a sale.
    let response = plain
        .post(watched.url("/api/sale"))
        .header("origin", &own_origin)
        .header("sec-fetch-site", "same-origin")
        .header("x-stockroom-csrf-token", &token)
        .json(&sale)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    // A burst beyond the allowance is refused with 429 and Retry-After.
    let mut limited = None;
    for _ in 0..=stockroom_dashboard::guard::CONTROL_BURST {
        let response = plain
            .post(watched.url("/api/lab"))
            .header("x-stockroom-csrf-token", &token)
            .json(&json!({"raceWindowMs": 0}))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 422);
    }
    let limited = limited.expect("a burst of control requests is limited");
    assert!(limited.headers().contains_key("retry-after"));
    watched.stop().await;
}
