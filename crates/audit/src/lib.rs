//! The live invariant auditor: every interval it reads data-service's stock
//! and reserved orders and checks that nothing is oversold. The invariants
//! themselves are [`stockroom_domain::invariants`], the one definition the
//! checker and the storage tests use too.
//!
//! Its cost is bounded: `GET /inventory` twice, as far apart as reading the
//! reserved orders took the last time, then, only if the stock did not move
//! between those two reads, at most [`MAX_AUDIT_PAGES`] pages of reserved
//! orders and the stock a third time. Stock and orders are read in
//! separate requests, so they are not one snapshot; the reserved-sum check is
//! only made when the stock did not change from the first read to the last,
//! which keeps a busy but correct system from raising false alarms. Stock
//! that moved between the first two reads, moments apart, would move while
//! the orders are read, so during a sale the orders are not read at all and
//! the check waits for the stock to settle. The single-row checks (available
//! never negative, reserved within on hand, conservation) need no snapshot
//! and are made every time.
//!
//! Its work per round is bounded and does not grow with the orders that are
//! finished: reserved orders are listed through data-service's status index.
//!
//! The auditor only talks the public HTTP contract, so the lab's naive
//! inventory-service runs the very same code against its JSON-file storage.
//! Given the operator token, it also replays every product's ledger against
//! its figures ([`ledger`]), incrementally, from one audit to the next.

mod ledger;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use stockroom_domain::invariants::{self, StockFigures};
use stockroom_http_kit::{
    ClientError, ErrorChain, Metrics, OperatorToken, ServiceClient, metric_names,
};
use tokio_util::sync::CancellationToken;

/// Default pause between two audits.
pub const DEFAULT_AUDIT_INTERVAL_MS: u64 = 1_000;

/// The page size used to read reserved orders.
pub const AUDIT_PAGE_SIZE: u32 = 500;

/// The most pages of reserved orders one audit reads; beyond that the
/// reserved-sum check is skipped for that audit rather than made expensive.
pub const MAX_AUDIT_PAGES: u32 = 20;

/// The least time the stock must hold still, between two reads, before an
/// audit reads the reserved orders: long enough to span a batch or two of a
/// busy system's writes.
pub const MIN_STILLNESS_WINDOW_MS: u64 = 20;

/// The most time an audit waits to see whether the stock holds still: the
/// window follows how long the reserved orders took to read, and a slow
/// read should not make the audits rare.
pub const MAX_STILLNESS_WINDOW_MS: u64 = 1_000;

/// The most products whose stock the auditor publishes as gauges (three
/// series each), so the metrics stay bounded whatever the catalogue's size.
pub const MAX_STOCK_GAUGE_PRODUCTS: usize = 1_000;

/// The most violations kept in one report, so a badly broken store cannot make
/// the report unbounded.
pub const MAX_REPORTED_VIOLATIONS: usize = 100;

/// One broken invariant, with the figures that show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub invariant: String,
    pub product: String,
    pub expected: String,
    pub actual: String,
}

/// What `GET /invariants` answers: the last audit's findings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvariantReport {
    /// True when the last audit ran and found nothing wrong.
    pub healthy: bool,
    /// Audits completed since start.
    pub audits: u64,
    /// Violations found since start, each counted once when it appeared.
    pub total_violations: u64,
    /// When the last audit finished (RFC 3339), if any did.
    pub checked_at: Option<String>,
    pub products: usize,
    pub reserved_orders: usize,
    /// Whether the last audit could compare reserved stock with reserved
    /// orders (it cannot while the stock keeps changing under it).
    pub reserved_sum_checked: bool,
    /// Whether the last audit replayed every product's ledger up to its
    /// figures (it needs the operator token; a product far behind catches
    /// up over several audits).
    #[serde(default)]
    pub ledger_checked: bool,
    /// Why the last audit could not run, if it could not.
    pub error: Option<String>,
    pub violations: Vec<Violation>,
}

impl From<invariants::Violation> for Violation {
    fn from(violation: invariants::Violation) -> Violation {
        Violation {
            invariant: violation.invariant.name().to_owned(),
            product: violation.subject,
            expected: violation.expected,
            actual: violation.actual,
        }
    }
}

#[derive(Debug, Deserialize)]
struct AuditInventory {
    inventory: Vec<StockFigures>,
}

#[derive(Debug, Deserialize)]
struct AuditProduct {
    name: String,
}

#[derive(Debug, Deserialize)]
struct AuditLine {
    product: AuditProduct,
    quantity: i64,
}

#[derive(Debug, Deserialize)]
struct AuditOrder {
    status: String,
    items: Vec<AuditLine>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditOrderPage {
    orders: Vec<AuditOrder>,
    next_cursor: Option<String>,
}

/// The auditor and its last report. Cloning shares the report.
#[derive(Clone)]
pub struct Auditor {
    data: ServiceClient,
    metrics: Metrics,
    report: Arc<Mutex<InvariantReport>>,
    /// The ledger's replay, when the auditor holds the operator token.
    ledger: Option<Arc<ledger::LedgerAudit>>,
    /// How long the last reading of the reserved orders took, in ms.
    orders_read_ms: Arc<AtomicU64>,
    /// The longest the stock is watched before the reserved orders are read.
    max_stillness_window_ms: u64,
}

impl Auditor {
    pub fn new(data_url: &str, metrics: Metrics) -> Auditor {
        Auditor {
            data: ServiceClient::new("data-service", data_url),
            metrics,
            report: Arc::new(Mutex::new(InvariantReport::default())),
            ledger: None,
            orders_read_ms: Arc::new(AtomicU64::new(0)),
            max_stillness_window_ms: MAX_STILLNESS_WINDOW_MS,
        }
    }

    /// The same auditor, also replaying every product's ledger against its
    /// figures, read with the operator's `token`.
    pub fn with_ledger(mut self, data_url: &str, token: Option<&OperatorToken>) -> Auditor {
        self.ledger = token.map(|token| Arc::new(ledger::LedgerAudit::new(data_url, token)));
        self
    }

    /// The last audit's report.
    pub fn report(&self) -> InvariantReport {
        self.report
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Audits every `interval_ms` until `stop` is cancelled. An audit under
    /// way when it is (reading, or watching the stock hold still for up to
    /// [`MAX_STILLNESS_WINDOW_MS`]) is dropped: it only reads, and the last
    /// report stays as it was.
    pub async fn run(self, interval_ms: u64, stop: CancellationToken) {
        let interval = Duration::from_millis(interval_ms.max(10));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.audit_once() => {}
            }
        }
    }

    /// Runs one audit, logs an alert line for each violation that is new since
    /// the previous audit, and stores the report.
    pub async fn audit_once(&self) -> InvariantReport {
        let outcome = self.examine().await;
        let mut report = self
            .report
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match outcome {
            Ok(found) => {
                let previous: BTreeSet<&Violation> = report.violations.iter().collect();
                let mut fresh = 0;
                for violation in &found.violations {
                    if previous.contains(violation) {
                        continue;
                    }
                    fresh += 1;
                    self.metrics.record_violation(&violation.invariant);
                    tracing::error!(
                        target: "stockroom::alert",
                        invariant = %violation.invariant,
                        product = %violation.product,
                        expected = %violation.expected,
                        actual = %violation.actual,
                        "ALERT invariant violated: {} for {}: expected {}, actual {}",
                        violation.invariant, violation.product, violation.expected, violation.actual
                    );
                }
                report.total_violations += fresh;
                report.healthy = found.violations.is_empty();
                report.products = found.products;
                report.reserved_orders = found.reserved_orders;
                report.reserved_sum_checked = found.reserved_sum_checked;
                report.ledger_checked = found.ledger_checked;
                report.violations = found.violations;
                report.error = None;
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "invariant audit could not run; retrying next interval"
                );
                report.healthy = false;
                report.error = Some(ErrorChain(&error).to_string());
            }
        }
        report.audits += 1;
        report.checked_at = Some(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
        self.metrics.set_gauge(
            metric_names::INVARIANT_VIOLATIONS_CURRENT,
            metric_names::help(metric_names::INVARIANT_VIOLATIONS_CURRENT),
            &[],
            report.violations.len() as i64,
        );
        report.clone()
    }

    /// Sets the stock gauges of the first [`MAX_STOCK_GAUGE_PRODUCTS`]
    /// products: the catalogue is the operator's, but a bound keeps a huge
    /// one from flooding the metrics.
    fn publish_stock(&self, stock: &[StockFigures]) {
        let help = metric_names::help(metric_names::STOCK_UNITS);
        for figures in stock.iter().take(MAX_STOCK_GAUGE_PRODUCTS) {
            let product = figures.product.as_str();
            let available = figures
                .available
                .unwrap_or(figures.on_hand - figures.reserved);
            for (figure, units) in [
                ("on_hand", figures.on_hand),
                ("reserved", figures.reserved),
                ("available", available),
            ] {
                self.metrics.set_gauge(
                    metric_names::STOCK_UNITS,
                    help,
                    &[("product", product), ("figure", figure)],
                    units,
                );
            }
        }
    }

    async fn examine(&self) -> Result<Findings, ReadError> {
        let before = self.read_stock("the stock").await?;
        let stock = &before.inventory;
        self.publish_stock(stock);
        let mut violations: Vec<Violation> = stock
            .iter()
            .flat_map(invariants::check_stock)
            .map(Violation::from)
            .collect();
        // The stock read again after as long as reading the reserved orders
        // took last time: if it moved in between, it would move while they
        // are read too, and the comparison would be thrown away. During a
        // sale that is every audit, and reading the reserved orders was
        // more than a quarter of PostgreSQL's statement time on the cold
        // catalogue (docs/benchmarks.md, eleventh pass).
        tokio::time::sleep(self.stillness_window()).await;
        let moving = self.read_stock("the stock again").await?.inventory != before.inventory;
        let reserved = if moving {
            Reserved::default()
        } else {
            let started = Instant::now();
            let reserved = self.reserved_orders(&before.inventory).await?;
            let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.orders_read_ms.store(took_ms, Ordering::Relaxed);
            reserved
        };
        let Reserved {
            units: reserved,
            orders: reserved_orders,
            complete,
            moved,
        } = reserved;
        let stable = complete
            && !moved
            && self
                .read_stock("the stock after the orders")
                .await?
                .inventory
                == before.inventory;
        let ledger_checked = match &self.ledger {
            Some(ledger) => {
                let found = ledger.audit(stock).await?;
                violations.extend(found.violations);
                found.caught_up
            }
            None => false,
        };
        let reserved_sum_checked = stable;
        if reserved_sum_checked {
            violations.extend(
                invariants::check_reserved_sums(stock, &reserved)
                    .into_iter()
                    .map(Violation::from),
            );
        }
        violations.sort();
        violations.truncate(MAX_REPORTED_VIOLATIONS);
        Ok(Findings {
            violations,
            products: before.inventory.len(),
            reserved_orders,
            reserved_sum_checked,
            ledger_checked,
        })
    }

    /// The same auditor, watching the stock at most `max_ms` before it
    /// reads the reserved orders; 0 reads the stock twice back to back. For
    /// timing what an audit reads (`bench --growth`), on stock known to hold
    /// still.
    pub fn with_max_stillness_window_ms(mut self, max_ms: u64) -> Auditor {
        self.max_stillness_window_ms = max_ms;
        self
    }

    /// How long the stock must hold still before the reserved orders are
    /// read: as long as reading them took the last time, within
    /// [`MIN_STILLNESS_WINDOW_MS`] and [`MAX_STILLNESS_WINDOW_MS`].
    fn stillness_window(&self) -> Duration {
        let took_ms = self.orders_read_ms.load(Ordering::Relaxed);
        let max_ms = self.max_stillness_window_ms;
        Duration::from_millis(took_ms.clamp(MIN_STILLNESS_WINDOW_MS.min(max_ms), max_ms))
    }

    /// Every product's figures; `what` names the read in its error.
    async fn read_stock(&self, what: &'static str) -> Result<AuditInventory, ReadError> {
        self.data
            .get("/inventory")
            .await
            .map_err(ReadError::of(what))
    }

    /// Units per product held by reserved orders, read through the status
    /// index, at most [`MAX_AUDIT_PAGES`] pages; `complete` says whether
    /// every reserved order was read. Before each page after the first the
    /// stock is read again: once it has moved from `stock`, the comparison
    /// is void, and the pages left are not read (`moved`).
    async fn reserved_orders(&self, stock: &[StockFigures]) -> Result<Reserved, ReadError> {
        let mut reserved = Reserved::default();
        let mut after: Option<String> = None;
        for _ in 0..MAX_AUDIT_PAGES {
            let mut query = vec![
                ("status", "reserved".to_owned()),
                ("limit", AUDIT_PAGE_SIZE.to_string()),
            ];
            if let Some(cursor) = &after {
                query.push(("after", cursor.clone()));
            }
            let page: AuditOrderPage = self
                .data
                .get_query("/orders", &query)
                .await
                .map_err(ReadError::of("the reserved orders"))?;
            for order in page
                .orders
                .iter()
                .filter(|order| order.status == "reserved")
            {
                reserved.orders += 1;
                for line in &order.items {
                    *reserved
                        .units
                        .entry(line.product.name.to_lowercase())
                        .or_insert(0) += line.quantity;
                }
            }
            match page.next_cursor {
                Some(cursor) if !page.orders.is_empty() => after = Some(cursor),
                _ => {
                    reserved.complete = true;
                    break;
                }
            }
            if self.read_stock("the stock between pages").await?.inventory != stock {
                reserved.moved = true;
                break;
            }
        }
        Ok(reserved)
    }
}

/// What the reserved orders hold.
#[derive(Default)]
struct Reserved {
    units: BTreeMap<String, i64>,
    orders: usize,
    complete: bool,
    /// The stock moved while the orders were read, so they were not all
    /// read.
    moved: bool,
}

/// Why an audit could not run: a read of the system failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what}")]
struct ReadError {
    what: &'static str,
    #[source]
    source: ClientError,
}

impl ReadError {
    fn of(what: &'static str) -> impl FnOnce(ClientError) -> ReadError {
        move |source| ReadError { what, source }
    }
}

struct Findings {
    violations: Vec<Violation>,
    products: usize,
    reserved_orders: usize,
    reserved_sum_checked: bool,
    ledger_checked: bool,
}

/// `GET /invariants`: the last audit's report.
#[utoipa::path(get, path = "/invariants", responses((status = 200, description = "the last invariant audit")))]
pub async fn invariants(State(auditor): State<Auditor>) -> Json<InvariantReport> {
    Json(auditor.report())
}

#[cfg(test)]
mod tests;
