//! The setup of each scenario: the stock it sells, which race window the
//! naive system opens and with which flow, and starting either side in a
//! temporary data directory before driving its load.

use stockroom_contract::StockLine;
use stockroom_domain::ProductName;
use stockroom_naive::{Fix, NaiveConfig, NaiveFlow, RaceWindows};

use super::drive::{Side, drive};
use super::{
    AMPLE_STOCK, FixedLauncher, FixedSpec, HOT_PRODUCT, LOCK_PAUSE_MS, LabError, SCARCE_STOCK,
    STALE_WINDOW_FACTOR, Scenario, SideOutcome, SystemUrls,
};

/// Which proposed fix the naive system runs with, and the Redis the Redis
/// fixes use.
#[derive(Debug, Clone, Default)]
pub struct FixChoice {
    pub fix: Fix,
    pub redis_url: Option<String>,
}

pub(super) fn stock(hot: u64) -> Vec<StockLine> {
    vec![StockLine {
        product_name: ProductName::new(HOT_PRODUCT).expect("a valid constant name"),
        quantity: hot,
    }]
}

fn hot_stock(scenario: Scenario) -> u64 {
    match scenario {
        Scenario::Toctou
        | Scenario::TwoCalls
        | Scenario::PayBeforeReserve
        | Scenario::LockExpiry
        | Scenario::TwoHosts => SCARCE_STOCK,
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
        Scenario::Toctou | Scenario::TwoHosts => {
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
        Scenario::DuplicateDelivery | Scenario::CrashAfterPublish => NaiveFlow::TwoCalls,
        Scenario::LockExpiry => {
            windows.payment_ms = LOCK_PAUSE_MS;
            NaiveFlow::PayFirst
        }
        Scenario::LimitBypass => {
            windows = windows.with_limit_check(window_ms);
            NaiveFlow::TwoCalls
        }
        Scenario::StaleAdjustment => {
            windows.adjustment_ms = window_ms;
            NaiveFlow::TwoCalls
        }
    };
    (flow, windows)
}

fn temporary_directory(scenario: Scenario) -> Result<tempfile::TempDir, LabError> {
    tempfile::Builder::new()
        .prefix("stockroom-lab-")
        .tempdir()
        .map_err(|source| LabError::TempDir {
            scenario: scenario.name(),
            source,
        })
}

pub(super) async fn run_naive(
    scenario: Scenario,
    window_ms: u64,
    sync: bool,
    choice: &FixChoice,
) -> Result<SideOutcome, LabError> {
    let directory = temporary_directory(scenario)?;
    let (flow, windows) = naive_setup(scenario, window_ms);
    let mut config = NaiveConfig::new(directory.path(), stock(hot_stock(scenario)));
    config.fresh = true;
    config.flow = flow;
    config.windows = windows;
    config.fix = choice.fix;
    config.redis_url = choice.redis_url.clone();
    config.redis_prefix = Some(stockroom_naive::new_redis_prefix());
    config.crash_after_publish = scenario == Scenario::CrashAfterPublish;
    let start_error = |error| LabError::Start {
        scenario: scenario.name(),
        side: "naive",
        source: Box::new(error),
    };
    let mut hosts = vec![
        stockroom_naive::start(config.clone())
            .await
            .map_err(start_error)?,
    ];
    if scenario == Scenario::TwoHosts {
        // The second host opens the first one's data as it finds it, and
        // shares its Redis keys: one shop on two machines.
        config.fresh = false;
        match stockroom_naive::start(config).await {
            Ok(second) => hosts.push(second),
            Err(error) => {
                let _ = hosts.remove(0).stop().await;
                return Err(start_error(error));
            }
        }
    }
    let mut urls = SystemUrls::of_naive(&hosts[0].urls);
    urls.other_hosts_orders = hosts[1..]
        .iter()
        .map(|host| host.urls.order.clone())
        .collect();
    let driven = drive(
        scenario,
        &urls,
        Side::Naive,
        sync,
        Some(directory.path().to_owned()),
    )
    .await;
    for host in hosts {
        let _ = host.stop().await;
    }
    driven
}

pub(super) async fn run_fixed(
    scenario: Scenario,
    window_ms: u64,
    sync: bool,
    launcher: &dyn FixedLauncher,
) -> Result<SideOutcome, LabError> {
    let directory = temporary_directory(scenario)?;
    let spec = FixedSpec {
        data_dir: directory.path().to_owned(),
        stock: stock(hot_stock(scenario)),
        payment_latency_ms: match scenario {
            Scenario::PayBeforeReserve => window_ms,
            Scenario::LockExpiry => LOCK_PAUSE_MS,
            _ => 0,
        },
        hosts: if scenario == Scenario::TwoHosts { 2 } else { 1 },
    };
    let running = launcher
        .start(spec)
        .await
        .map_err(|source| LabError::Start {
            scenario: scenario.name(),
            side: "fixed",
            source,
        })?;
    let driven = drive(
        scenario,
        &running.urls(),
        Side::Fixed,
        sync,
        Some(directory.path().to_owned()),
    )
    .await;
    let _ = running.stop().await;
    driven
}
