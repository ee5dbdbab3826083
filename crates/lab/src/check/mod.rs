//! `check`: verifies the invariants against any running service that speaks
//! Stockroom's HTTP contract, optionally against a storm's history, and says
//! for each what it expected and what it found.
//!
//! Wrong input (an unreachable URL, a service that does not answer the
//! contract, an unreadable history) is a [`CheckError`], never a pass. A
//! Stockroom-compatible service that reports its own data as unreadable
//! (5xx on a read) is a violation, since that is what a torn data file looks
//! like from outside.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use stockroom_domain::OrderStatus;
use stockroom_domain::invariants::{self, Invariant, OrderFigures, StockFigures, Violation};
use stockroom_http_kit::ErrorChain;

use crate::history::{EventType, HistoryError, HistoryEvent, read_history};

mod checks;
mod ledger;

use self::checks::*;

/// The page size used to read orders.
pub const ORDER_PAGE_SIZE: u32 = 500;

/// The most pages of orders read, so a service whose cursor never ends cannot
/// keep the checker busy forever.
pub const MAX_ORDER_PAGES: u32 = 10_000;

/// The longest one read may take.
pub const CHECK_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Default age after which an order still in a non-final status is stuck.
pub const DEFAULT_STUCK_AFTER_MS: u64 = 120_000;

/// The most detail lines kept per check.
pub const MAX_DETAILS: usize = 20;

/// Where the history to compare with comes from.
#[derive(Debug, Clone, Default)]
pub enum HistorySource {
    #[default]
    None,
    File(PathBuf),
    Events(Vec<HistoryEvent>),
}

#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub order_url: String,
    pub data_url: String,
    pub history: HistorySource,
    /// Units of each product at the start, for conservation when the service
    /// does not report `received` and `sold`.
    pub initial_stock: Option<BTreeMap<String, i64>>,
    pub stuck_after_ms: u64,
    /// A directory whose `orders.json` and `inventory.json`, if present, must parse.
    pub data_dir: Option<PathBuf>,
    /// The operator token, to read the ledger and check it; without it the
    /// ledger's invariants are not checked.
    pub operator_token: Option<stockroom_http_kit::OperatorToken>,
}

impl CheckConfig {
    pub fn new(order_url: &str, data_url: &str) -> CheckConfig {
        CheckConfig {
            order_url: order_url.trim_end_matches('/').to_owned(),
            data_url: data_url.trim_end_matches('/').to_owned(),
            history: HistorySource::None,
            initial_stock: None,
            stuck_after_ms: DEFAULT_STUCK_AFTER_MS,
            data_dir: None,
            operator_token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{service} at {url} is unreachable: {message}")]
    Unreachable {
        service: String,
        url: String,
        message: String,
    },
    #[error("{url} is not a Stockroom-compatible service: {message}")]
    Incompatible { url: String, message: String },
    /// The history could not be read. Its causes are named in the message
    /// rather than returned as the source, as every variant here names its
    /// cause: `stockroom check` prints the message alone.
    #[error("{}", ErrorChain(.0))]
    History(HistoryError),
    #[error("cannot read initial stock file {path}: {message}")]
    InitialStock { path: PathBuf, message: String },
}

impl From<HistoryError> for CheckError {
    fn from(error: HistoryError) -> Self {
        CheckError::History(error)
    }
}

/// What the checker concluded about one invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckVerdict {
    #[default]
    Holds,
    Violated,
    /// The checker had nothing to check it against (no history, no data
    /// directory, a document it could not read); it neither holds nor fails.
    NotChecked,
}

/// The verdict of one invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub name: String,
    /// False only when violated; a check that could not run passes, and says
    /// so in `verdict`.
    pub passed: bool,
    #[serde(default)]
    pub verdict: CheckVerdict,
    pub expected: String,
    pub actual: String,
    /// Why the verdict is what it is, in one line: what was seen when it
    /// holds, the first offenders when violated, why it was not checked.
    #[serde(default)]
    pub evidence: String,
    /// How many products, orders or files break it (0 when it holds).
    pub count: usize,
    /// One line per offending product or order, at most [`MAX_DETAILS`].
    pub details: Vec<String>,
}

impl CheckOutcome {
    fn not_checked(name: &str, reason: &str) -> CheckOutcome {
        CheckOutcome {
            name: name.to_owned(),
            passed: true,
            verdict: CheckVerdict::NotChecked,
            expected: "-".into(),
            actual: "-".into(),
            evidence: reason.to_owned(),
            count: 0,
            details: Vec::new(),
        }
    }
}

/// Every invariant the checker knows beside the domain's, so that the report
/// names each one, checked or not.
const CHECKER_INVARIANTS: [&str; 6] = [
    "data_readable",
    "orders_unique",
    "no_stuck_orders",
    "acknowledged_orders_exist",
    "no_unknown_orders",
    "data_files_parse",
];

/// Why an invariant absent from a run was not checked.
fn not_checked_reason(name: &str) -> &'static str {
    match name {
        "acknowledged_orders_exist" | "no_unknown_orders" => "no storm history was given",
        "data_files_parse" => "no data directory was given",
        "ledger_matches_stock" | "within_purchase_limit" => {
            "the ledger was not read (no ledger kept, or no operator token)"
        }
        _ => "the inventory or the orders could not be read",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub passed: bool,
    pub violations: usize,
    pub products: usize,
    pub orders: usize,
    pub checks: Vec<CheckOutcome>,
}

impl CheckReport {
    pub fn failed(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.checks.iter().filter(|check| !check.passed)
    }

    pub fn outcome(&self, name: &str) -> Option<&CheckOutcome> {
        self.checks.iter().find(|check| check.name == name)
    }

    /// The checks that ran (holding or violated).
    pub fn checked(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.checks
            .iter()
            .filter(|check| check.verdict != CheckVerdict::NotChecked)
    }

    /// The human report: one line per check, details under failures.
    pub fn render(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|check| check.name.len())
            .max()
            .unwrap_or(0);
        let mut text = format!(
            "checked {} products and {} orders\n",
            self.products, self.orders
        );
        for check in &self.checks {
            if check.verdict == CheckVerdict::NotChecked {
                text.push_str(&format!(
                    "SKIP  {:width$}  not checked: {}\n",
                    check.name, check.evidence
                ));
                continue;
            }
            text.push_str(&format!(
                "{}  {:width$}  expected: {}\n{:>6}  {:width$}  actual:   {}\n",
                if check.passed { "PASS" } else { "FAIL" },
                check.name,
                check.expected,
                "",
                "",
                check.actual,
            ));
            if !check.passed {
                for detail in &check.details {
                    text.push_str(&format!("{:>6}  {:width$}    - {detail}\n", "", ""));
                }
            }
        }
        let checked = self.checked().count();
        text.push_str(&if self.passed {
            format!("result: PASS (all {checked} checks hold)")
        } else {
            format!(
                "result: FAIL ({} of {checked} checks violated)",
                self.violations
            )
        });
        let skipped = self.checks.len() - checked;
        if skipped > 0 {
            text.push_str(&format!("; {skipped} not checked"));
        }
        text
    }
}

#[derive(Debug, Deserialize)]
struct InventoryDocument {
    inventory: Vec<StockFigures>,
}

#[derive(Debug, Clone, Deserialize)]
struct Product {
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Line {
    product: Product,
    quantity: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct Entry {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    id: String,
    status: String,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    items: Vec<Line>,
    #[serde(default)]
    history: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderPage {
    orders: Vec<Order>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// A read that a compatible service refused with a server error.
struct Unreadable(String);

struct Reader {
    client: reqwest::Client,
}

impl Reader {
    /// GETs a JSON document: `Ok(Ok(doc))`, `Ok(Err(_))` for a compatible
    /// service's 5xx, and `Err(_)` for wrong input.
    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        service: &str,
        base: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Result<T, Unreadable>, CheckError> {
        let url = format!("{base}{path}");
        let response = self
            .client
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|error| CheckError::Unreachable {
                service: service.to_owned(),
                url: base.to_owned(),
                message: error.to_string(),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| CheckError::Unreachable {
                service: service.to_owned(),
                url: base.to_owned(),
                message: error.to_string(),
            })?;
        if status.is_server_error() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(code) = body["error"].as_str() {
                return Ok(Err(Unreadable(format!(
                    "GET {path} answered {status}: {code}: {}",
                    body["message"].as_str().unwrap_or("")
                ))));
            }
        }
        if !status.is_success() {
            return Err(CheckError::Incompatible {
                url: base.to_owned(),
                message: format!("GET {path} answered {status}"),
            });
        }
        serde_json::from_slice(&bytes)
            .map(Ok)
            .map_err(|error| CheckError::Incompatible {
                url: base.to_owned(),
                message: format!("GET {path} did not answer the contract's document: {error}"),
            })
    }

    /// GETs a document with the operator's token; a 5xx is wrong input
    /// here too (the ledger is read only from services that keep one).
    async fn get_with_token<T: for<'de> Deserialize<'de>>(
        &self,
        service: &str,
        base: &str,
        path: &str,
        query: &[(&str, String)],
        token: &stockroom_http_kit::OperatorToken,
    ) -> Result<T, CheckError> {
        let url = format!("{base}{path}");
        let unreachable = |error: reqwest::Error| CheckError::Unreachable {
            service: service.to_owned(),
            url: base.to_owned(),
            message: error.to_string(),
        };
        let response = self
            .client
            .get(&url)
            .query(query)
            .header(reqwest::header::AUTHORIZATION, token.header_value())
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(CheckError::Incompatible {
                url: base.to_owned(),
                message: format!("GET {path} answered {status}"),
            });
        }
        response
            .json()
            .await
            .map_err(|error| CheckError::Incompatible {
                url: base.to_owned(),
                message: format!("GET {path} did not answer the contract's document: {error}"),
            })
    }

    async fn health(&self, service: &str, base: &str) -> Result<(), CheckError> {
        self.get::<serde_json::Value>(service, base, "/health", &[])
            .await?
            .map_err(|Unreadable(message)| CheckError::Incompatible {
                url: base.to_owned(),
                message,
            })?;
        Ok(())
    }
}

/// Reads an initial stock file shaped like `GET /inventory` (only
/// `productName` and `quantity` are used).
pub fn read_initial_stock(path: &Path) -> Result<BTreeMap<String, i64>, CheckError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct StockLine {
        product_name: String,
        quantity: i64,
    }
    #[derive(Deserialize)]
    struct StockDocument {
        inventory: Vec<StockLine>,
    }
    let error = |message: String| CheckError::InitialStock {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
    let document: StockDocument =
        serde_json::from_str(&text).map_err(|source| error(source.to_string()))?;
    Ok(document
        .inventory
        .into_iter()
        .map(|line| (line.product_name.to_lowercase(), line.quantity))
        .collect())
}

/// Runs every check once against the services as they are now.
pub async fn run_check(config: &CheckConfig) -> Result<CheckReport, CheckError> {
    let history = match &config.history {
        HistorySource::None => None,
        HistorySource::File(path) => Some(read_history(path)?),
        HistorySource::Events(events) => Some(events.clone()),
    };
    let reader = Reader {
        client: reqwest::Client::builder()
            .timeout(Duration::from_millis(CHECK_REQUEST_TIMEOUT_MS))
            .build()
            .map_err(|error| CheckError::Incompatible {
                url: config.data_url.clone(),
                message: error.to_string(),
            })?,
    };
    reader.health("data-service", &config.data_url).await?;
    reader.health("order-service", &config.order_url).await?;
    let mut unreadable = Vec::new();
    let inventory = match reader
        .get::<InventoryDocument>("data-service", &config.data_url, "/inventory", &[])
        .await?
    {
        Ok(document) => Some(document.inventory),
        Err(Unreadable(message)) => {
            unreadable.push(message);
            None
        }
    };
    let orders = read_orders(&reader, config, &mut unreadable).await?;
    let mut checks = vec![outcome(
        "data_readable",
        "GET /inventory and GET /orders answer their documents".into(),
        "both read".into(),
        unreadable.clone(),
    )];
    if let Some(items) = &inventory {
        checks.extend(stock_checks(items, orders.as_deref(), config));
        checks.extend(ledger_outcomes(&reader, config, items, orders.as_deref()).await?);
    }
    if let Some(orders) = &orders {
        checks.push(unique_orders(orders));
        checks.extend(order_checks(orders));
        checks.push(stuck_orders(orders, config.stuck_after_ms));
        if let Some(history) = &history {
            let (acknowledged, unknown) = history_checks(orders, history);
            checks.push(acknowledged);
            checks.push(unknown);
        }
    }
    if let Some(directory) = &config.data_dir {
        checks.push(data_files(directory));
    }
    let every = Invariant::ALL
        .iter()
        .map(|invariant| invariant.name())
        .chain(CHECKER_INVARIANTS);
    for name in every {
        if !checks.iter().any(|check| check.name == name) {
            checks.push(CheckOutcome::not_checked(name, not_checked_reason(name)));
        }
    }
    let violations = checks.iter().filter(|check| !check.passed).count();
    Ok(CheckReport {
        passed: violations == 0,
        violations,
        products: inventory.as_ref().map_or(0, Vec::len),
        orders: orders.as_ref().map_or(0, Vec::len),
        checks,
    })
}

/// The ledger's invariants, or why they were not checked.
async fn ledger_outcomes(
    reader: &Reader,
    config: &CheckConfig,
    items: &[StockFigures],
    orders: Option<&[Order]>,
) -> Result<Vec<CheckOutcome>, CheckError> {
    let names = [
        Invariant::LedgerMatchesStock,
        Invariant::WithinPurchaseLimit,
    ];
    let skipped = |reason: &str| {
        names
            .iter()
            .map(|invariant| CheckOutcome::not_checked(invariant.name(), reason))
            .collect()
    };
    if let Some(reason) = ledger::why_not_checked(items, config) {
        return Ok(skipped(reason));
    }
    let (Some(token), Some(orders)) = (&config.operator_token, orders) else {
        return Ok(skipped("the orders could not be read"));
    };
    let ledgers = ledger::read_ledgers(reader, config, token, items).await?;
    Ok(ledger::ledger_checks(items, &ledgers, orders))
}

async fn read_orders(
    reader: &Reader,
    config: &CheckConfig,
    unreadable: &mut Vec<String>,
) -> Result<Option<Vec<Order>>, CheckError> {
    let mut orders = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_ORDER_PAGES {
        let mut query = vec![("limit", ORDER_PAGE_SIZE.to_string())];
        if let Some(cursor) = &after {
            query.push(("after", cursor.clone()));
        }
        let page = match reader
            .get::<OrderPage>("data-service", &config.data_url, "/orders", &query)
            .await?
        {
            Ok(page) => page,
            Err(Unreadable(message)) => {
                unreadable.push(message);
                return Ok(None);
            }
        };
        let empty = page.orders.is_empty();
        orders.extend(page.orders);
        match page.next_cursor {
            Some(cursor) if !empty && after.as_deref() != Some(cursor.as_str()) => {
                after = Some(cursor)
            }
            _ => return Ok(Some(orders)),
        }
    }
    Err(CheckError::Incompatible {
        url: config.data_url.clone(),
        message: format!("GET /orders still had a next page after {MAX_ORDER_PAGES} pages"),
    })
}
