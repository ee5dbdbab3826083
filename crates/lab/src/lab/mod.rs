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
//!
//! Each scenario's setup is in `scenario`, driving its load in `drive`, the
//! probes in `probes`, and the rows and table the lab prints in `report`.
//! The operator's side of the shop's scenarios (a purchase limit,
//! concurrent stock adjustments) is in `operator`.
//! The fix lab (every proposed fix against every scenario) is in `fixes`,
//! its matrix in `fix_report`, and its flash-sale throughput in
//! `throughput`.

mod drive;
mod fix_report;
mod fixes;
mod operator;
mod probes;
mod report;
mod scenario;
mod throughput;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use stockroom_contract::StockLine;

pub use self::fix_report::{Cell, FixMatrix, FixRow, MAX_CELL_CHARS, Verdict, short_evidence};
pub use self::fixes::{
    DEFAULT_REDIS_URL, FixLabConfig, FixSubject, REDIS_URL_ENV, RedisUnavailable, probe_redis,
    redis_url_from_environment, run_cell, run_fix_lab, run_subject,
};
pub use self::report::{LabReport, ScenarioResult};
pub use self::scenario::FixChoice;
use self::scenario::{run_fixed, run_naive};
pub use self::throughput::{FLASH_ORDERS, FLASH_PAYMENT_MS, ThroughputError};

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

/// How many times longer than the Redis lock's timeout the payment pauses a
/// lock holder in the lock-expiry scenario.
pub const LOCK_PAUSE_FACTOR: u64 = 3;

/// The payment's pause in the lock-expiry scenario: longer than the lock
/// lives, so a second worker takes the lock while the first still pays.
pub const LOCK_PAUSE_MS: u64 = stockroom_naive::redis_lock::LOCK_TIMEOUT_MS * LOCK_PAUSE_FACTOR;

/// Orders in the lock-expiry scenario: enough that, with the lock running
/// out every timeout, more orders pass the check than the scarce stock
/// holds, few enough that the serialised run stays short.
pub const LOCK_EXPIRY_ORDERS: u64 = 10;

/// The hot product's purchase limit in the limit-bypass scenario: low, so
/// that most of one customer's storm must be refused.
pub const PURCHASE_LIMIT: u32 = 2;

/// The one customer whose orders make the limit-bypass storm.
pub const LIMIT_CUSTOMER: &str = "lab-customer";

/// How many adjustments each of the two operators makes at once in the
/// stale-adjustment scenario: one receiving goods, one writing off damage.
pub const ADJUSTMENTS_PER_OPERATOR: usize = 3;

/// Units the receiving operator adds per adjustment.
pub const RECEIVED_UNITS: i64 = 5;

/// Units the other operator writes off as damaged per adjustment.
pub const DAMAGED_UNITS: i64 = 2;

const _: () = assert!(
    (ADJUSTMENTS_PER_OPERATOR as u64) * (DAMAGED_UNITS as u64) < AMPLE_STOCK,
    "the write-offs must never run out of stock, or a refusal would hide a lost update"
);

/// The seven races of the original system, the two faults the proposed
/// fixes need to be tried against, the same race on two hosts, and the
/// races of a shop's own stock operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scenario {
    LostUpdate,
    Toctou,
    TornWrites,
    StaleOrder,
    TwoCalls,
    PayBeforeReserve,
    DuplicateDelivery,
    /// A lock holder paused (by a slow payment) longer than the lock's
    /// timeout.
    LockExpiry,
    /// The publisher crashes between publishing a message and marking it as
    /// sent, and publishes it again when it is back.
    CrashAfterPublish,
    /// The check-then-reserve storm split over two hosts, each running every
    /// service with memory, locks and connections of its own, sharing only
    /// the data (the naive system's files or database, Stockroom's
    /// data-service): a lock held in one process does not stop the other.
    TwoHosts,
    /// One customer's concurrent orders, each checked against the
    /// product's `maxPerCustomer` before any of them is stored.
    LimitBypass,
    /// Two operators adjusting the same product's stock at once, each
    /// writing back the figure it read plus its delta.
    StaleAdjustment,
}

impl Scenario {
    /// What `stockroom lab` runs: the fix matrix's scenarios and the shop's
    /// own, which no proposed fix was written against.
    pub const ALL: [Scenario; 12] = [
        Scenario::LostUpdate,
        Scenario::Toctou,
        Scenario::TornWrites,
        Scenario::StaleOrder,
        Scenario::TwoCalls,
        Scenario::PayBeforeReserve,
        Scenario::DuplicateDelivery,
        Scenario::LockExpiry,
        Scenario::CrashAfterPublish,
        Scenario::TwoHosts,
        Scenario::LimitBypass,
        Scenario::StaleAdjustment,
    ];

    /// The fix matrix's columns: the original's races and faults, which the
    /// proposed fixes were written against, and the same race on two hosts:
    /// every scenario but the shop's own, which come last in [`Self::ALL`].
    pub const FIX_MATRIX: &'static [Scenario] = Self::ALL.split_at(Self::ALL.len() - 2).0;

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LostUpdate => "lost-update",
            Scenario::Toctou => "toctou",
            Scenario::TornWrites => "torn-writes",
            Scenario::StaleOrder => "stale-order",
            Scenario::TwoCalls => "two-calls",
            Scenario::PayBeforeReserve => "pay-before-reserve",
            Scenario::DuplicateDelivery => "duplicate-delivery",
            Scenario::LockExpiry => "lock-expiry",
            Scenario::CrashAfterPublish => "crash-after-publish",
            Scenario::TwoHosts => "two-hosts",
            Scenario::LimitBypass => "limit-bypass",
            Scenario::StaleAdjustment => "stale-adjustment",
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
            Scenario::LockExpiry => "lock holder paused past its timeout",
            Scenario::CrashAfterPublish => "crash between publish and mark-sent",
            Scenario::TwoHosts => "check-then-reserve on two hosts",
            Scenario::LimitBypass => "purchase limit checked, then ordered",
            Scenario::StaleAdjustment => "stock adjusted from a stale read",
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
            Scenario::Toctou
            | Scenario::TwoCalls
            | Scenario::PayBeforeReserve
            | Scenario::LockExpiry
            | Scenario::TwoHosts => &["available_non_negative", "reserved_within_on_hand"],
            Scenario::TornWrites => &["torn_reads", "data_files_parse", "data_readable"],
            Scenario::StaleOrder => &[
                "status_reverted",
                "statuses_move_forward",
                "sold_matches_fulfilled",
                "reserved_matches_orders",
            ],
            Scenario::DuplicateDelivery | Scenario::CrashAfterPublish => {
                &["charged_twice", "no_double_effects"]
            }
            Scenario::LimitBypass => &["customer_over_limit", "within_purchase_limit"],
            Scenario::StaleAdjustment => &["adjustment_lost", "ledger_matches_stock"],
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = stockroom_domain::UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        stockroom_domain::UnknownName::find("scenario", &Scenario::ALL, Scenario::name, text)
    }
}

/// The base URLs of a system under test.
#[derive(Debug, Clone)]
pub struct SystemUrls {
    pub order: String,
    pub data: String,
    pub inventory: String,
    pub payment: String,
    /// The order-services of the system's other hosts, when it runs on more
    /// than one; a storm spreads its orders over every host.
    pub other_hosts_orders: Vec<String>,
    /// The bearer token of the system's internal routes (the lab's probes
    /// deliver events again and read the live monitor); `None` for the
    /// original system, which has no such routes guarded.
    pub internal_token: Option<String>,
    /// The bearer token of the system's operator routes (limits,
    /// adjustments, the ledger); `None` for the original system, whose
    /// operator routes anyone may call.
    pub operator_token: Option<String>,
}

impl SystemUrls {
    /// The original system's URLs; it guards no route with a token.
    pub fn of_naive(urls: &stockroom_naive::NaiveUrls) -> SystemUrls {
        SystemUrls {
            order: urls.order.clone(),
            data: urls.data.clone(),
            inventory: urls.inventory.clone(),
            payment: urls.payment.clone(),
            other_hosts_orders: Vec::new(),
            internal_token: None,
            operator_token: None,
        }
    }
}

/// What the fixed system is started with.
#[derive(Debug, Clone)]
pub struct FixedSpec {
    pub data_dir: PathBuf,
    pub stock: Vec<StockLine>,
    pub payment_latency_ms: u64,
    /// How many hosts of the services that take orders (order-,
    /// inventory- and payment-service) run over the one data-service: 1,
    /// or 2 for the two-hosts scenario.
    pub hosts: usize,
}

/// Why a system could not be started or stopped. The launcher belongs to
/// the binary crate, whose errors this crate does not know, so its error
/// travels boxed, with its causes.
pub type LaunchError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A fixed system running for one scenario.
#[async_trait::async_trait]
pub trait FixedRunning: Send {
    fn urls(&self) -> SystemUrls;
    async fn stop(self: Box<Self>) -> Result<(), LaunchError>;
}

/// Starts the fixed system (the binary crate passes `system::start`).
#[async_trait::async_trait]
pub trait FixedLauncher: Send + Sync {
    async fn start(&self, spec: FixedSpec) -> Result<Box<dyn FixedRunning>, LaunchError>;
}

#[derive(Debug, Clone)]
pub struct LabConfig {
    pub scenarios: Vec<Scenario>,
    pub race_window_ms: u64,
    /// Send each scenario's storm with last-byte synchronisation.
    pub sync: bool,
}

/// Why a scenario could not be run to its verdict.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("scenario {scenario}: cannot create a temporary directory")]
    TempDir {
        scenario: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario {scenario}: cannot start the {side} system")]
    Start {
        scenario: &'static str,
        side: &'static str,
        #[source]
        source: LaunchError,
    },
    #[error("scenario {scenario}: the storm could not run")]
    Storm {
        scenario: &'static str,
        #[source]
        source: crate::storm::StormError,
    },
    #[error("scenario {scenario}: cannot deliver the events again")]
    Redelivery {
        scenario: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("scenario {scenario}: an operator's request failed")]
    Operator {
        scenario: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("scenario {scenario}: the checker could not run")]
    Check {
        scenario: &'static str,
        #[source]
        source: crate::check::CheckError,
    },
}

/// Runs the scenarios one after the other, naive and fixed side by side.
pub async fn run_lab(
    config: &LabConfig,
    launcher: &dyn FixedLauncher,
) -> Result<LabReport, LabError> {
    let mut scenarios = Vec::new();
    for scenario in &config.scenarios {
        scenarios.push(
            run_scenario_synced(*scenario, config.race_window_ms, config.sync, launcher).await?,
        );
    }
    // With every race window shut, whether a race still shows is a finding
    // (the synchronised storm's), not a requirement.
    let passed = scenarios.iter().all(|result| {
        (result.naive_reproduced || config.race_window_ms == 0) && result.fixed_violations == 0
    });
    Ok(LabReport {
        passed,
        race_window_ms: config.race_window_ms,
        sync: config.sync,
        scenarios,
    })
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
    run_scenario_synced(scenario, race_window_ms, false, launcher).await
}

/// Runs one scenario on both systems, its storm synchronised by last bytes
/// when `sync` is set.
pub async fn run_scenario_synced(
    scenario: Scenario,
    race_window_ms: u64,
    sync: bool,
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
            let outcome = run_naive(scenario, race_window_ms, sync, &FixChoice::default()).await?;
            if reproduced(&outcome) || attempts >= MAX_NAIVE_ATTEMPTS {
                return Ok::<_, LabError>((outcome, attempts));
            }
            attempts += 1;
        }
    };
    let (naive, fixed) = tokio::join!(
        naive_runs,
        run_fixed(scenario, race_window_ms, sync, launcher)
    );
    let (naive, naive_attempts) = naive?;
    let fixed = fixed?;
    let mut naive = naive;
    // The scenario's own race first, so the table shows it.
    naive.signature_first(scenario);
    let anomalies = naive.anomalies;
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
    /// Orders the storm placed, and how many of them the system answered
    /// with an error (neither accepted nor refused for stock).
    orders: u64,
    failed: u64,
}

impl SideOutcome {
    /// Sorts the anomalies so that `scenario`'s own race comes first.
    fn signature_first(&mut self, scenario: Scenario) {
        let signatures = scenario.signatures();
        self.anomalies.sort_by_key(|anomaly| {
            signatures
                .iter()
                .position(|signature| *signature == anomaly.kind)
                .unwrap_or(signatures.len())
        });
    }
}
