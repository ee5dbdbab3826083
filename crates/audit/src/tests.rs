//! The auditor against a scripted data-service: what it reads, and what
//! it concludes, when the stock holds still and when it moves.

use std::sync::atomic::{AtomicI64, AtomicUsize};

use axum::Router;
use axum::routing::get;

use super::*;

/// How the scripted stock moves.
#[derive(Clone, Copy)]
enum Motion {
    Still,
    /// A unit more on hand at every read.
    EveryRead,
    /// A unit more on hand at a read this long after the one before:
    /// a system writing in batches, still between them.
    AfterMs(u64),
}

/// A data-service with one product, `widget`, and one reserved order
/// holding `ordered` units of it, answered after `orders_delay_ms` on each
/// of `pages` pages.
struct Scripted {
    motion: Motion,
    reserved: i64,
    ordered: i64,
    orders_delay_ms: u64,
    pages: usize,
    on_hand: AtomicI64,
    last_stock_read: Mutex<Option<Instant>>,
    stock_reads: AtomicUsize,
    order_reads: AtomicUsize,
}

impl Scripted {
    fn new(motion: Motion, reserved: i64, ordered: i64) -> Scripted {
        Scripted {
            motion,
            reserved,
            ordered,
            orders_delay_ms: 0,
            pages: 1,
            on_hand: AtomicI64::new(10),
            last_stock_read: Mutex::new(None),
            stock_reads: AtomicUsize::new(0),
            order_reads: AtomicUsize::new(0),
        }
    }
}

async fn inventory(State(script): State<Arc<Scripted>>) -> Json<serde_json::Value> {
    script.stock_reads.fetch_add(1, Ordering::SeqCst);
    let previous = script
        .last_stock_read
        .lock()
        .unwrap()
        .replace(Instant::now());
    let moves = match script.motion {
        Motion::Still => false,
        Motion::EveryRead => true,
        Motion::AfterMs(quiet_ms) => {
            previous.is_some_and(|at| at.elapsed() >= Duration::from_millis(quiet_ms))
        }
    };
    if moves {
        script.on_hand.fetch_add(1, Ordering::SeqCst);
    }
    let on_hand = script.on_hand.load(Ordering::SeqCst);
    Json(serde_json::json!({ "inventory": [
        { "productName": "widget", "quantity": on_hand, "reservedQuantity": script.reserved }
    ] }))
}

async fn orders(State(script): State<Arc<Scripted>>) -> Json<serde_json::Value> {
    let read = script.order_reads.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(script.orders_delay_ms)).await;
    let next_cursor = (read < script.pages).then(|| format!("page-{read}"));
    Json(serde_json::json!({
        "orders": [{ "status": "reserved", "items": [
            { "product": { "name": "Widget" }, "quantity": script.ordered }
        ] }],
        "nextCursor": next_cursor
    }))
}

/// An auditor of `script`'s data-service, and the server's task.
async fn auditor_of(script: &Arc<Scripted>) -> (Auditor, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/inventory", get(inventory))
        .route("/orders", get(orders))
        .with_state(Arc::clone(script));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (Auditor::new(&url, Metrics::new("audit-test")), server)
}

async fn audit(motion: Motion, reserved: i64, ordered: i64) -> (InvariantReport, Arc<Scripted>) {
    audit_script(Scripted::new(motion, reserved, ordered)).await
}

/// One audit of `script`'s data-service.
async fn audit_script(script: Scripted) -> (InvariantReport, Arc<Scripted>) {
    let script = Arc::new(script);
    let (auditor, server) = auditor_of(&script).await;
    let report = auditor.audit_once().await;
    server.abort();
    (report, script)
}

#[tokio::test]
async fn still_stock_is_compared_with_the_reserved_orders() {
    let (report, script) = audit(Motion::Still, 2, 2).await;
    assert!(report.healthy, "{report:?}");
    assert!(report.reserved_sum_checked, "{report:?}");
    assert_eq!(report.reserved_orders, 1);
    assert_eq!(script.order_reads.load(Ordering::SeqCst), 1);
    assert_eq!(script.stock_reads.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn still_stock_that_disagrees_with_its_orders_is_reported() {
    let (report, _) = audit(Motion::Still, 3, 2).await;
    assert!(report.reserved_sum_checked, "{report:?}");
    assert!(!report.healthy, "{report:?}");
    assert_eq!(report.violations.len(), 1, "{report:?}");
}

/// Moving stock would make any comparison void, so the orders are not
/// read at all: even a disagreement is neither read nor reported.
#[tokio::test]
async fn moving_stock_is_not_compared_and_its_orders_are_not_read() {
    let (report, script) = audit(Motion::EveryRead, 3, 2).await;
    assert!(report.healthy, "{report:?}");
    assert!(!report.reserved_sum_checked, "{report:?}");
    assert_eq!(report.reserved_orders, 0);
    assert_eq!(script.order_reads.load(Ordering::SeqCst), 0);
    assert_eq!(script.stock_reads.load(Ordering::SeqCst), 2);
}

/// Stock that holds still for a moment but not for as long as the
/// orders take to read is read once in vain, then waited for as long as
/// that read took: the next audit sees it move and reads no orders.
#[tokio::test]
async fn the_window_grows_to_the_time_the_orders_take() {
    let mut script = Scripted::new(Motion::AfterMs(200), 2, 2);
    script.orders_delay_ms = 500;
    let script = Arc::new(script);
    let (auditor, server) = auditor_of(&script).await;
    let first = auditor.audit_once().await;
    assert!(!first.reserved_sum_checked, "{first:?}");
    assert_eq!(script.order_reads.load(Ordering::SeqCst), 1);
    let second = auditor.audit_once().await;
    assert!(!second.reserved_sum_checked, "{second:?}");
    assert_eq!(second.reserved_orders, 0, "{second:?}");
    assert_eq!(script.order_reads.load(Ordering::SeqCst), 1);
    server.abort();
}

/// Stock that holds still for the window but moves while the orders are
/// read is noticed between their pages: the pages left are not read.
#[tokio::test]
async fn stock_that_moves_between_pages_stops_the_reading() {
    let mut script = Scripted::new(Motion::AfterMs(100), 2, 2);
    script.orders_delay_ms = 150;
    script.pages = 5;
    let (report, script) = audit_script(script).await;
    assert!(!report.reserved_sum_checked, "{report:?}");
    assert!(report.healthy, "{report:?}");
    assert_eq!(script.order_reads.load(Ordering::SeqCst), 1);
}

/// Still stock is read to its last page.
#[tokio::test]
async fn still_stock_has_every_page_read() {
    let mut script = Scripted::new(Motion::Still, 10, 2);
    script.pages = 5;
    let (report, script) = audit_script(script).await;
    assert!(report.reserved_sum_checked, "{report:?}");
    assert!(report.healthy, "{report:?}");
    assert_eq!(report.reserved_orders, 5);
    assert_eq!(script.order_reads.load(Ordering::SeqCst), 5);
}

/// Stopping the auditor does not wait for the audit under way: here one
/// watching the stock for the 500 ms the orders took to read last time.
#[tokio::test]
async fn a_stopped_auditor_does_not_finish_its_audit() {
    let mut script = Scripted::new(Motion::Still, 2, 2);
    script.orders_delay_ms = 500;
    let script = Arc::new(script);
    let (auditor, server) = auditor_of(&script).await;
    auditor.audit_once().await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(auditor.clone().run(10, stop.clone()));
    // The next audit starts after 10 ms and then watches the stock for 500.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    stop.cancel();
    running.await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_millis(300),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(auditor.report().audits, 1);
    server.abort();
}
