//! `lab`: runs each race of the original system against the naive mode and
//! against the fixed system, and tells what each did.
//!
//! Every scenario starts both systems itself, in this process, on ephemeral
//! ports with temporary data directories, drives the load that exposes its
//! race, waits for quiescence and runs the checker, plus the probes a
//! scenario needs (a status watcher for reverting statuses, a reader for torn
//! files, the payment ledger for double charges). The fixed system is started
//! through a [`FixedLauncher`], so this crate does not depend on the binary
//! crate that owns the launcher.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stockroom_contract::StockLine;
use stockroom_domain::{OrderStatus, ProductName};
use stockroom_naive::{NaiveConfig, NaiveFlow, RaceWindows};

use crate::check::{CheckConfig, CheckReport, HistorySource, run_check};
use crate::storm::{StormConfig, run_storm};

/// How often the status watcher reads every order.
pub const WATCH_INTERVAL_MS: u64 = 10;

/// How often quiescence is probed, and how many identical reads in a row
/// count as quiet.
pub const QUIESCE_POLL_MS: u64 = 100;
pub const QUIESCE_QUIET_POLLS: u32 = 4;

/// The longest a scenario waits for a system to go quiet.
pub const QUIESCE_TIMEOUT_MS: u64 = 10_000;

/// The longest one lab HTTP call may take.
pub const LAB_REQUEST_TIMEOUT_MS: u64 = 5_000;

/// The hot product every scenario sells.
pub const HOT_PRODUCT: &str = "Laptop";

/// Stock of the hot product in scenarios that oversell it.
pub const SCARCE_STOCK: u64 = 5;

/// Stock of the hot product in scenarios that must not run out.
pub const AMPLE_STOCK: u64 = 1_000;

/// Concurrent orders in the overselling scenarios.
pub const STORM_ORDERS: u64 = 20;

/// How many times the naive side of a scenario is run before the lab says
/// its race did not show: a race is a matter of chance, even a wide one.
pub const MAX_NAIVE_ATTEMPTS: u32 = 3;

/// How many more times than the race window the stale-order cancel waits,
/// so that the whole order flow fits inside it.
pub const STALE_WINDOW_FACTOR: u64 = 4;

/// The seven races of the original system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scenario {
    LostUpdate,
    Toctou,
    TornWrites,
    StaleOrder,
    TwoCalls,
    PayBeforeReserve,
    DuplicateDelivery,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::LostUpdate,
        Scenario::Toctou,
        Scenario::TornWrites,
        Scenario::StaleOrder,
        Scenario::TwoCalls,
        Scenario::PayBeforeReserve,
        Scenario::DuplicateDelivery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LostUpdate => "lost-update",
            Scenario::Toctou => "toctou",
            Scenario::TornWrites => "torn-writes",
            Scenario::StaleOrder => "stale-order",
            Scenario::TwoCalls => "two-calls",
            Scenario::PayBeforeReserve => "pay-before-reserve",
            Scenario::DuplicateDelivery => "duplicate-delivery",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Scenario::LostUpdate => "lost status update",
            Scenario::Toctou => "check-then-reserve in storage",
            Scenario::TornWrites => "torn file writes",
            Scenario::StaleOrder => "stale order object",
            Scenario::TwoCalls => "check and reserve as two calls",
            Scenario::PayBeforeReserve => "pay before reserve",
            Scenario::DuplicateDelivery => "duplicate delivery",
        }
    }

    /// The checks and probes whose failure means the naive system showed
    /// this scenario's race.
    fn signatures(self) -> &'static [&'static str] {
        match self {
            Scenario::LostUpdate => &[
                "status_reverted",
                "statuses_move_forward",
                "sold_matches_fulfilled",
                "acknowledged_orders_exist",
            ],
            Scenario::Toctou | Scenario::TwoCalls | Scenario::PayBeforeReserve => {
                &["available_non_negative", "reserved_within_on_hand"]
            }
            Scenario::TornWrites => &["torn_reads", "data_files_parse", "data_readable"],
            Scenario::StaleOrder => &[
                "status_reverted",
                "statuses_move_forward",
                "sold_matches_fulfilled",
                "reserved_matches_orders",
            ],
            Scenario::DuplicateDelivery => &["charged_twice", "no_double_effects"],
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {text} (one of {})", names.join(", "))
            })
    }
}

/// The base URLs of a system under test.
#[derive(Debug, Clone)]
pub struct SystemUrls {
    pub order: String,
    pub data: String,
    pub inventory: String,
    pub payment: String,
}

/// What the fixed system is started with.
#[derive(Debug, Clone)]
pub struct FixedSpec {
    pub data_dir: PathBuf,
    pub stock: Vec<StockLine>,
    pub payment_latency_ms: u64,
}

/// A fixed system running for one scenario.
#[async_trait::async_trait]
pub trait FixedRunning: Send {
    fn urls(&self) -> SystemUrls;
    async fn stop(self: Box<Self>) -> Result<(), String>;
}

/// Starts the fixed system (the binary crate passes `system::start`).
#[async_trait::async_trait]
pub trait FixedLauncher: Send + Sync {
    async fn start(&self, spec: FixedSpec) -> Result<Box<dyn FixedRunning>, String>;
}

#[derive(Debug, Clone)]
pub struct LabConfig {
    pub scenarios: Vec<Scenario>,
    pub race_window_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("scenario {scenario}: cannot start the {side} system: {message}")]
    Start {
        scenario: &'static str,
        side: &'static str,
        message: String,
    },
    #[error("scenario {scenario}: {message}")]
    Run {
        scenario: &'static str,
        message: String,
    },
}

/// One row of the lab's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub title: String,
    pub naive_reproduced: bool,
    /// Naive runs it took (at most [`MAX_NAIVE_ATTEMPTS`]).
    pub naive_attempts: u32,
    /// What the naive system showed, the scenario's own race first.
    pub naive_anomalies: Vec<String>,
    pub fixed_violations: usize,
    /// What the fixed system did under the same load.
    pub fixed_result: String,
    pub fixed_details: Vec<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabReport {
    pub passed: bool,
    pub scenarios: Vec<ScenarioResult>,
}

impl LabReport {
    /// The table a user sees.
    pub fn render(&self) -> String {
        let rows: Vec<[String; 3]> = self
            .scenarios
            .iter()
            .map(|result| {
                let naive = match (result.naive_reproduced, result.naive_anomalies.first()) {
                    (true, Some(first)) => first.clone(),
                    (false, _) => "NOT REPRODUCED".to_owned(),
                    (true, None) => "reproduced".to_owned(),
                };
                let fixed = if result.fixed_violations == 0 {
                    format!("ok: {}", result.fixed_result)
                } else {
                    format!(
                        "VIOLATED ({}): {}",
                        result.fixed_violations,
                        result.fixed_details.join("; ")
                    )
                };
                [result.title.clone(), naive, fixed]
            })
            .collect();
        let header = [
            "scenario".to_owned(),
            "original system (naive)".to_owned(),
            "Stockroom (fixed)".to_owned(),
        ];
        let widths: Vec<usize> = (0..2)
            .map(|column| {
                rows.iter()
                    .chain([&header])
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for row in [&header].into_iter().chain(rows.iter()) {
            text.push_str(&format!(
                "{:w0$}  {:w1$}  {}\n",
                row[0],
                row[1],
                row[2],
                w0 = widths[0],
                w1 = widths[1]
            ));
        }
        let reproduced = self
            .scenarios
            .iter()
            .filter(|result| result.naive_reproduced)
            .count();
        let clean = self
            .scenarios
            .iter()
            .filter(|result| result.fixed_violations == 0)
            .count();
        text.push_str(&format!(
            "\n{reproduced}/{} races reproduced on the naive system; {clean}/{} scenarios clean on Stockroom: {}",
            self.scenarios.len(),
            self.scenarios.len(),
            if self.passed { "PASS" } else { "FAIL" }
        ));
        text
    }
}

/// Runs the scenarios one after the other, naive and fixed side by side.
pub async fn run_lab(
    config: &LabConfig,
    launcher: &dyn FixedLauncher,
) -> Result<LabReport, LabError> {
    let mut scenarios = Vec::new();
    for scenario in &config.scenarios {
        scenarios.push(run_scenario(*scenario, config.race_window_ms, launcher).await?);
    }
    let passed = scenarios
        .iter()
        .all(|result| result.naive_reproduced && result.fixed_violations == 0);
    Ok(LabReport { passed, scenarios })
}

/// A finding of a probe or of the checker.
#[derive(Debug, Clone)]
struct Anomaly {
    kind: String,
    text: String,
}

/// Runs one scenario on both systems.
pub async fn run_scenario(
    scenario: Scenario,
    race_window_ms: u64,
    launcher: &dyn FixedLauncher,
) -> Result<ScenarioResult, LabError> {
    let started = Instant::now();
    let signatures = scenario.signatures();
    let reproduced = |outcome: &SideOutcome| {
        outcome
            .anomalies
            .iter()
            .any(|anomaly| signatures.contains(&anomaly.kind.as_str()))
    };
    let naive_runs = async {
        let mut attempts = 1;
        loop {
            let outcome = run_naive(scenario, race_window_ms).await?;
            if reproduced(&outcome) || attempts >= MAX_NAIVE_ATTEMPTS {
                return Ok::<_, LabError>((outcome, attempts));
            }
            attempts += 1;
        }
    };
    let (naive, fixed) = tokio::join!(naive_runs, run_fixed(scenario, race_window_ms, launcher));
    let (naive, naive_attempts) = naive?;
    let fixed = fixed?;
    let mut anomalies = naive.anomalies;
    // The scenario's own race first, so the table shows it.
    anomalies.sort_by_key(|anomaly| {
        signatures
            .iter()
            .position(|signature| *signature == anomaly.kind)
            .unwrap_or(signatures.len())
    });
    let naive_reproduced = anomalies
        .iter()
        .any(|anomaly| signatures.contains(&anomaly.kind.as_str()));
    Ok(ScenarioResult {
        name: scenario.name().to_owned(),
        title: scenario.title().to_owned(),
        naive_reproduced,
        naive_attempts,
        naive_anomalies: anomalies.into_iter().map(|anomaly| anomaly.text).collect(),
        fixed_violations: fixed.anomalies.len(),
        fixed_result: fixed.summary,
        fixed_details: fixed
            .anomalies
            .into_iter()
            .map(|anomaly| anomaly.text)
            .collect(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

struct SideOutcome {
    anomalies: Vec<Anomaly>,
    summary: String,
}

fn stock(hot: u64) -> Vec<StockLine> {
    vec![StockLine {
        product_name: ProductName::new(HOT_PRODUCT).expect("a valid constant name"),
        quantity: hot,
    }]
}

fn hot_stock(scenario: Scenario) -> u64 {
    match scenario {
        Scenario::Toctou | Scenario::TwoCalls | Scenario::PayBeforeReserve => SCARCE_STOCK,
        _ => AMPLE_STOCK,
    }
}

fn naive_setup(scenario: Scenario, window_ms: u64) -> (NaiveFlow, RaceWindows) {
    let mut windows = RaceWindows::CLOSED;
    let flow = match scenario {
        Scenario::LostUpdate => {
            windows.lost_update_ms = window_ms;
            NaiveFlow::TwoCalls
        }
        Scenario::Toctou => {
            windows.toctou_ms = window_ms;
            NaiveFlow::StorageCheck
        }
        Scenario::TornWrites => {
            windows = windows.with_torn_writes(window_ms);
            NaiveFlow::TwoCalls
        }
        Scenario::StaleOrder => {
            windows.stale_order_ms = window_ms * STALE_WINDOW_FACTOR;
            NaiveFlow::TwoCalls
        }
        Scenario::TwoCalls => {
            windows.two_call_ms = window_ms;
            NaiveFlow::TwoCalls
        }
        Scenario::PayBeforeReserve => {
            windows.payment_ms = window_ms;
            NaiveFlow::PayFirst
        }
        Scenario::DuplicateDelivery => NaiveFlow::TwoCalls,
    };
    (flow, windows)
}

fn temporary_directory(scenario: Scenario) -> Result<tempfile::TempDir, LabError> {
    tempfile::Builder::new()
        .prefix("stockroom-lab-")
        .tempdir()
        .map_err(|error| LabError::Run {
            scenario: scenario.name(),
            message: format!("cannot create a temporary directory: {error}"),
        })
}

async fn run_naive(scenario: Scenario, window_ms: u64) -> Result<SideOutcome, LabError> {
    let directory = temporary_directory(scenario)?;
    let (flow, windows) = naive_setup(scenario, window_ms);
    let mut config = NaiveConfig::new(directory.path(), stock(hot_stock(scenario)));
    config.fresh = true;
    config.flow = flow;
    config.windows = windows;
    let running = stockroom_naive::start(config)
        .await
        .map_err(|error| LabError::Start {
            scenario: scenario.name(),
            side: "naive",
            message: error.to_string(),
        })?;
    let urls = SystemUrls {
        order: running.urls.order.clone(),
        data: running.urls.data.clone(),
        inventory: running.urls.inventory.clone(),
        payment: running.urls.payment.clone(),
    };
    let driven = drive(
        scenario,
        &urls,
        Side::Naive,
        Some(directory.path().to_owned()),
    )
    .await;
    let _ = running.stop().await;
    driven
}

async fn run_fixed(
    scenario: Scenario,
    window_ms: u64,
    launcher: &dyn FixedLauncher,
) -> Result<SideOutcome, LabError> {
    let directory = temporary_directory(scenario)?;
    let spec = FixedSpec {
        data_dir: directory.path().to_owned(),
        stock: stock(hot_stock(scenario)),
        payment_latency_ms: if scenario == Scenario::PayBeforeReserve {
            window_ms
        } else {
            0
        },
    };
    let running = launcher
        .start(spec)
        .await
        .map_err(|message| LabError::Start {
            scenario: scenario.name(),
            side: "fixed",
            message,
        })?;
    let driven = drive(
        scenario,
        &running.urls(),
        Side::Fixed,
        Some(directory.path().to_owned()),
    )
    .await;
    let _ = running.stop().await;
    driven
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Naive,
    Fixed,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(LAB_REQUEST_TIMEOUT_MS))
        .build()
        .expect("a client with no TLS or proxy settings always builds")
}

/// Drives one scenario's load against one system and collects what went wrong.
async fn drive(
    scenario: Scenario,
    urls: &SystemUrls,
    side: Side,
    data_dir: Option<PathBuf>,
) -> Result<SideOutcome, LabError> {
    let run_error = |message: String| LabError::Run {
        scenario: scenario.name(),
        message,
    };
    let http = client();
    let watcher = Watcher::start(http.clone(), urls.data.clone());
    let mut storm = StormConfig::new(&urls.order, STORM_ORDERS);
    storm.concurrency = STORM_ORDERS as usize;
    storm.keep_history = true;
    if scenario == Scenario::DuplicateDelivery || scenario == Scenario::StaleOrder {
        storm.orders = Some(STORM_ORDERS / 2);
    }
    let report = run_storm(storm)
        .await
        .map_err(|error| run_error(error.to_string()))?;
    let placed: Vec<String> = report
        .history
        .iter()
        .filter(|event| event.kind == crate::history::EventType::Ok)
        .filter_map(|event| event.value.order_id.clone())
        .collect();
    let mut anomalies = Vec::new();
    let mut notes = Vec::new();
    match scenario {
        Scenario::StaleOrder => {
            let cancels = placed.iter().map(|id| {
                let http = http.clone();
                let url = format!("{}/api/orders/{id}/cancel", urls.order);
                async move {
                    http.post(url)
                        .send()
                        .await
                        .map(|response| response.status().as_u16())
                        .unwrap_or(0)
                }
            });
            let statuses = futures_join_all(cancels).await;
            let cancelled = statuses.iter().filter(|status| **status == 200).count();
            let refused = statuses.iter().filter(|status| **status == 409).count();
            notes.push(format!(
                "{cancelled} cancelled, {refused} too late to cancel"
            ));
        }
        Scenario::DuplicateDelivery => {
            quiesce(&http, urls).await;
            let redelivered = match side {
                Side::Naive => redeliver_naive(&http, urls).await,
                Side::Fixed => redeliver_fixed(&http, urls, &placed).await,
            }
            .map_err(run_error)?;
            if side == Side::Fixed && redelivered.applied > 0 {
                anomalies.push(Anomaly {
                    kind: "redelivery_applied".into(),
                    text: format!("{} redelivered events had an effect", redelivered.applied),
                });
            }
            notes.push(format!(
                "{} events redelivered, {} ignored as duplicates",
                redelivered.sent, redelivered.ignored
            ));
        }
        _ => {}
    }
    quiesce(&http, urls).await;
    let watched = watcher.stop().await;
    if watched.reverted > 0 {
        anomalies.push(Anomaly {
            kind: "status_reverted".into(),
            text: format!(
                "status reverted {} ({} orders)",
                watched.first_reversion.clone().unwrap_or_default(),
                watched.reverted
            ),
        });
    }
    if watched.unreadable > 0 {
        anomalies.push(Anomaly {
            kind: "torn_reads".into(),
            text: torn_headline(watched.unreadable, watched.first_unreadable.as_deref()),
        });
    }
    if side == Side::Naive {
        anomalies.extend(double_charges(&http, urls).await);
    }
    let mut check = CheckConfig::new(&urls.order, &urls.data);
    check.history = HistorySource::Events(report.history.clone());
    // The system is quiet now, so any order not in a final status is stuck.
    check.stuck_after_ms = 0;
    check.data_dir = data_dir;
    let checked = run_check(&check)
        .await
        .map_err(|error| run_error(format!("the checker could not run: {error}")))?;
    anomalies.extend(check_anomalies(&checked));
    anomalies.extend(monitor_anomalies(&http, urls).await);
    let summary = fixed_summary(&checked, &report.summary, &notes);
    Ok(SideOutcome { anomalies, summary })
}

fn check_anomalies(report: &CheckReport) -> Vec<Anomaly> {
    report
        .failed()
        .map(|check| Anomaly {
            kind: check.name.clone(),
            text: headline(check),
        })
        .collect()
}

/// A short phrase for a failed check, for the lab's table: its first
/// finding, and how many more there were.
fn headline(check: &crate::check::CheckOutcome) -> String {
    let first = check
        .details
        .first()
        .cloned()
        .unwrap_or_else(|| check.name.clone());
    if check.details.len() > 1 {
        format!("{first} (+{} more)", check.details.len() - 1)
    } else {
        first
    }
}

/// "orders.json truncated mid-write: 8 reads failed", from the first error
/// message a reader got.
fn torn_headline(failures: usize, first_message: Option<&str>) -> String {
    let message = first_message.unwrap_or("");
    let file = message
        .split_once(" is corrupted")
        .map_or("a data file", |(file, _)| file);
    let how = if message.contains("unexpected end of JSON input") {
        "truncated mid-write"
    } else {
        "garbled"
    };
    format!("{file} {how}: {failures} reads failed")
}

fn fixed_summary(
    check: &CheckReport,
    storm: &crate::storm::StormSummary,
    notes: &[String],
) -> String {
    let mut parts = vec![format!(
        "{} reserved, {} rejected",
        storm.reserved, storm.rejected
    )];
    parts.extend(notes.iter().cloned());
    parts.push(format!(
        "{}/{} checks hold",
        check.checks.len() - check.violations,
        check.checks.len()
    ));
    parts.join(", ")
}

/// Waits until two reads of the stock and orders in a row are the same for a
/// few polls (or the timeout passes).
async fn quiesce(http: &reqwest::Client, urls: &SystemUrls) {
    let deadline = Instant::now() + Duration::from_millis(QUIESCE_TIMEOUT_MS);
    let mut previous = String::new();
    let mut quiet = 0;
    while Instant::now() < deadline && quiet < QUIESCE_QUIET_POLLS {
        tokio::time::sleep(Duration::from_millis(QUIESCE_POLL_MS)).await;
        let mut snapshot = String::new();
        for path in ["/inventory", "/orders?limit=500"] {
            match http.get(format!("{}{path}", urls.data)).send().await {
                Ok(response) => snapshot.push_str(&response.text().await.unwrap_or_default()),
                Err(error) => snapshot.push_str(&error.to_string()),
            }
        }
        if snapshot == previous {
            quiet += 1;
        } else {
            quiet = 0;
            previous = snapshot;
        }
    }
}

/// What the status watcher saw.
#[derive(Debug, Clone, Default)]
struct Watched {
    reverted: usize,
    first_reversion: Option<String>,
    unreadable: usize,
    first_unreadable: Option<String>,
}

/// Reads every order (and the stock) over and over while the load runs and
/// notes any status that moved backwards and any read that failed.
struct Watcher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Watched>,
}

#[derive(Deserialize)]
struct WatchedOrder {
    id: String,
    status: String,
}

#[derive(Deserialize)]
struct WatchedPage {
    orders: Vec<WatchedOrder>,
}

impl Watcher {
    fn start(http: reqwest::Client, data_url: String) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut watched = Watched::default();
            let mut last: HashMap<String, OrderStatus> = HashMap::new();
            let mut reverted: BTreeMap<String, String> = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_millis(QUIESCE_TIMEOUT_MS * 3);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                for path in ["/orders?limit=500", "/inventory"] {
                    let Ok(response) = http.get(format!("{data_url}{path}")).send().await else {
                        continue;
                    };
                    if response.status().is_server_error() {
                        watched.unreadable += 1;
                        if watched.first_unreadable.is_none() {
                            let body: serde_json::Value = response.json().await.unwrap_or_default();
                            watched.first_unreadable = body["message"].as_str().map(str::to_owned);
                        }
                        continue;
                    }
                    if path == "/inventory" {
                        continue;
                    }
                    let Ok(page) = response.json::<WatchedPage>().await else {
                        continue;
                    };
                    for order in page.orders {
                        let Ok(status) = order.status.parse::<OrderStatus>() else {
                            continue;
                        };
                        if let Some(before) = last.get(&order.id).copied() {
                            let backwards = rank(status) < rank(before)
                                || (before.is_final() && status != before);
                            if backwards {
                                let text = format!("{before}→{status}");
                                watched.first_reversion.get_or_insert(text.clone());
                                reverted.insert(order.id.clone(), text);
                            }
                        }
                        last.insert(order.id, status);
                    }
                }
                tokio::time::sleep(Duration::from_millis(WATCH_INTERVAL_MS)).await;
            }
            watched.reverted = reverted.len();
            watched
        });
        Watcher { stop, task }
    }

    async fn stop(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

fn rank(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::Pending => 0,
        OrderStatus::Reserved => 1,
        _ => 2,
    }
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(output) = handle.await {
            outputs.push(output);
        }
    }
    outputs
}

struct Redelivery {
    sent: usize,
    ignored: usize,
    applied: usize,
}

/// Hands every order event the naive bus delivered to its worker again, as a
/// broker does when an acknowledgement is lost.
async fn redeliver_naive(http: &reqwest::Client, urls: &SystemUrls) -> Result<Redelivery, String> {
    let log: stockroom_naive::inventory::EventLog = http
        .get(format!("{}/events", urls.inventory))
        .send()
        .await
        .map_err(|error| error.to_string())?
        .json()
        .await
        .map_err(|error| error.to_string())?;
    let mut sent = 0;
    for event in &log.events {
        let response = http
            .post(format!("{}/events", urls.inventory))
            .json(event)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if response.status().is_success() {
            sent += 1;
        }
    }
    Ok(Redelivery {
        sent,
        ignored: 0,
        applied: sent,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EffectResults {
    results: Vec<EffectResult>,
}

#[derive(Deserialize)]
struct EffectResult {
    outcome: String,
}

/// Delivers every order's `OrderReserved` and `PaymentSucceeded` events to
/// data-service's consumers again, twice each, with the event ids the outbox
/// gave them.
async fn redeliver_fixed(
    http: &reqwest::Client,
    urls: &SystemUrls,
    placed: &[String],
) -> Result<Redelivery, String> {
    let mut redelivery = Redelivery {
        sent: 0,
        ignored: 0,
        applied: 0,
    };
    for order_id in placed {
        let document: serde_json::Value = http
            .get(format!("{}/orders/{order_id}", urls.data))
            .send()
            .await
            .map_err(|error| error.to_string())?
            .json()
            .await
            .map_err(|error| error.to_string())?;
        let history = document["order"]["history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let version_of = |wanted: &dyn Fn(&serde_json::Value) -> bool| {
            history
                .iter()
                .find(|entry| wanted(entry))
                .and_then(|entry| entry["version"].as_i64())
        };
        let reserved =
            version_of(&|entry| entry["status"] == "reserved" && entry["reason"].is_null());
        let charged = version_of(&|entry| entry["reason"] == crate::check::CHARGED_REASON);
        let mut deliveries = Vec::new();
        if let Some(version) = reserved {
            deliveries.push((
                "/payments",
                serde_json::json!({"payments": [{
                    "orderId": order_id,
                    "eventId": format!("OrderReserved:{order_id}:{version}"),
                    "approved": true,
                }]}),
            ));
        }
        if let Some(version) = charged {
            deliveries.push((
                "/settlements",
                serde_json::json!({"settlements": [{
                    "orderId": order_id,
                    "eventId": format!("PaymentSucceeded:{order_id}:{version}"),
                    "action": "commit",
                }]}),
            ));
        }
        for (path, body) in &deliveries {
            for _ in 0..2 {
                let results: EffectResults = http
                    .post(format!("{}{path}", urls.data))
                    .json(body)
                    .send()
                    .await
                    .map_err(|error| error.to_string())?
                    .json()
                    .await
                    .map_err(|error| error.to_string())?;
                for result in results.results {
                    redelivery.sent += 1;
                    if result.outcome == "applied" {
                        redelivery.applied += 1;
                    } else {
                        redelivery.ignored += 1;
                    }
                }
            }
        }
    }
    Ok(redelivery)
}

/// Orders the naive payment provider charged more than once.
async fn double_charges(http: &reqwest::Client, urls: &SystemUrls) -> Vec<Anomaly> {
    let Ok(response) = http.get(format!("{}/charges", urls.payment)).send().await else {
        return Vec::new();
    };
    let Ok(ledger) = response.json::<stockroom_naive::payment::Ledger>().await else {
        return Vec::new();
    };
    let mut per_order: BTreeMap<String, usize> = BTreeMap::new();
    for charge in ledger.charges {
        *per_order.entry(charge.order_id).or_insert(0) += 1;
    }
    let twice = per_order.values().filter(|count| **count > 1).count();
    if twice == 0 {
        return Vec::new();
    }
    vec![Anomaly {
        kind: "charged_twice".into(),
        text: format!("order charged twice ({twice} orders)"),
    }]
}

/// The live monitor's findings, from inventory-service's `/invariants`.
async fn monitor_anomalies(http: &reqwest::Client, urls: &SystemUrls) -> Vec<Anomaly> {
    let Ok(response) = http
        .get(format!("{}/invariants", urls.inventory))
        .send()
        .await
    else {
        return Vec::new();
    };
    let Ok(report) = response
        .json::<stockroom_inventory_report::InvariantReport>()
        .await
    else {
        return Vec::new();
    };
    report
        .violations
        .into_iter()
        .take(1)
        .map(|violation| Anomaly {
            kind: format!("monitor_{}", violation.invariant),
            text: format!(
                "monitor alerted: {} for {} ({})",
                violation.invariant, violation.product, violation.actual
            ),
        })
        .collect()
}

/// The shape of inventory-service's `/invariants`, read as any client would.
mod stockroom_inventory_report {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    pub struct Violation {
        pub invariant: String,
        pub product: String,
        pub actual: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct InvariantReport {
        pub violations: Vec<Violation>,
    }
}
