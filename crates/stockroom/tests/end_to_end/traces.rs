//! Traces: `stockroom up --otlp-endpoint` exports its spans over OTLP/HTTP,
//! and one order is one trace from `POST /api/orders` through every service
//! and the bus to its settlement. The collector is an OTLP/HTTP endpoint in
//! this test that decodes what it receives.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use stockroom_bus_rabbitmq::{RabbitAdmin, Topology};

use crate::harness::{SETTLE_TIMEOUT_MS, laptops, post as post_json};

/// One received span: its trace, its name and its string attributes.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: Vec<u8>,
    name: String,
    attributes: BTreeMap<String, String>,
}

type Received = Arc<Mutex<Vec<ReceivedSpan>>>;

async fn receive(State(received): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut received = received.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .filter_map(
                        |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                            AnyValue::StringValue(value) => {
                                Some((attribute.key.clone(), value.clone()))
                            }
                            _ => None,
                        },
                    )
                    .collect();
                received.push(ReceivedSpan {
                    trace_id: span.trace_id,
                    name: span.name,
                    attributes,
                });
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// An OTLP/HTTP collector on a free port: its base URL and what it received.
async fn collector() -> (String, Received) {
    let received = Received::default();
    let router = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

/// `stockroom up` on free ports with `extra` arguments, exporting to
/// `otlp_endpoint`; its order URL.
fn start(
    data_dir: &std::path::Path,
    otlp_endpoint: &str,
    extra: &[String],
) -> (crate::harness::UpProcess, String) {
    let mut arguments = vec!["--otlp-endpoint", otlp_endpoint];
    arguments.extend(extra.iter().map(String::as_str));
    // Errors only: a service waiting for another while they all start is
    // expected here, not news.
    let (child, line) =
        crate::harness::spawn_up(data_dir, &arguments, &[("STOCKROOM_LOG", "error")]);
    (child, crate::harness::ready_url(&line, "order"))
}

/// The services and span names of the trace that holds `order_id`'s spans,
/// once it holds the settlement, and how many traces hold its spans.
fn order_trace(
    spans: &[ReceivedSpan],
    order_id: &str,
) -> Option<(usize, BTreeSet<String>, BTreeSet<String>)> {
    let of_order: BTreeSet<&Vec<u8>> = spans
        .iter()
        .filter(|span| span.attributes.get("order_id").map(String::as_str) == Some(order_id))
        .map(|span| &span.trace_id)
        .collect();
    let trace_id = *of_order.iter().next()?;
    let in_trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| &span.trace_id == trace_id)
        .collect();
    let names: BTreeSet<String> = in_trace.iter().map(|span| span.name.clone()).collect();
    if !names.contains("settlement") {
        return None;
    }
    let services = in_trace
        .iter()
        .filter_map(|span| span.attributes.get("service").cloned())
        .collect();
    Some((of_order.len(), services, names))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_across_every_service_and_its_settlement() {
    one_order_is_one_trace(&[]).await;
}

/// The same over RabbitMQ: the context crosses the broker in the message
/// headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_over_rabbitmq() {
    let Some(url) = crate::bus::rabbit_url() else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("stockroom-traces-{nanos:x}-{}", std::process::id());
    let topology = Topology::with_prefix(&prefix);
    one_order_is_one_trace(&[
        "--bus-url".to_owned(),
        url.clone(),
        "--bus-prefix".to_owned(),
        prefix,
    ])
    .await;
    RabbitAdmin::connect(&url)
        .await
        .unwrap()
        .delete(&topology)
        .await
        .unwrap();
}

async fn one_order_is_one_trace(extra: &[String]) {
    let (endpoint, received) = collector().await;
    let directory = tempfile::tempdir().unwrap();
    let (mut child, order_url) = start(directory.path(), &endpoint, extra);
    let client = reqwest::Client::new();
    let (status, body) = post_json(&client, &format!("{order_url}/api/orders"), laptops(1)).await;
    assert_eq!(status, 201, "{body}");
    let order_id = body["order"]["id"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    let (traces, services, names) = loop {
        let found = order_trace(&received.lock().unwrap(), &order_id);
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no settled trace of {order_id}; received: {:#?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    child.wait().unwrap();

    assert_eq!(traces, 1, "the order's spans are in {traces} traces");
    let expected: BTreeSet<String> = [
        "order-service",
        "inventory-service",
        "data-service",
        "payment-service",
    ]
    .map(String::from)
    .into();
    assert!(
        expected.is_subset(&services),
        "the trace spans {services:?}; names: {names:?}"
    );
    for name in [
        "order-service POST /api/orders",
        "place order",
        "inventory-service POST /reservations",
        "data-service POST /reservations",
        "storage",
        "payment",
        "data-service POST /payments",
        "settlement",
        "data-service POST /settlements",
    ] {
        assert!(names.contains(name), "no {name} span in {names:?}");
    }
}
