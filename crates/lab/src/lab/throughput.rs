//! Each fix's cost: the same flash sale (many one-unit orders of one product,
//! ample stock, a slow payment) against each, timed from the first order to
//! the last order decided. A lock held across the payment serialises the
//! product on the payment's latency; the table shows by how much.

use std::time::{Duration, Instant};

use stockroom_naive::{NaiveConfig, NaiveFlow, RaceWindows};

use super::probes::get_json;
use super::scenario::{FixChoice, stock};
use super::{
    AMPLE_STOCK, FixedLauncher, FixedSpec, LAB_REQUEST_TIMEOUT_MS, LaunchError, SystemUrls,
};
use crate::storm::{StormConfig, StormError, run_storm};

/// Orders in the flash sale.
pub const FLASH_ORDERS: u64 = 100;

/// The payment provider's latency in the flash sale: the story's 2 s,
/// scaled to the lab.
pub const FLASH_PAYMENT_MS: u64 = 10;

/// How often the sale's orders are read while they are decided.
pub const FLASH_POLL_MS: u64 = 25;

/// The sale ends when no order changed for this long (a fix whose requests
/// fail leaves orders stuck; they are not waited for).
pub const FLASH_IDLE_MS: u64 = 2_000;

/// The longest a sale may take.
pub const FLASH_TIMEOUT_MS: u64 = 60_000;

/// Why a fix's flash sale gave no throughput.
#[derive(Debug, thiserror::Error)]
pub enum ThroughputError {
    #[error("cannot create a temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("cannot start the system")]
    Start(#[source] LaunchError),
    #[error("the sale's storm could not run")]
    Storm(#[from] StormError),
    #[error("cannot build the sale's HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("no order of the sale reached a final status")]
    NothingDecided,
}

fn temporary_directory() -> Result<tempfile::TempDir, ThroughputError> {
    tempfile::Builder::new()
        .prefix("stockroom-lab-")
        .tempdir()
        .map_err(ThroughputError::TempDir)
}

/// Runs the flash sale against the naive system with `choice`.
pub async fn flash_sale_naive(choice: &FixChoice) -> Result<f64, ThroughputError> {
    let directory = temporary_directory()?;
    let mut config = NaiveConfig::new(directory.path(), stock(AMPLE_STOCK));
    config.fresh = true;
    config.flow = NaiveFlow::TwoCalls;
    config.windows = RaceWindows {
        payment_ms: FLASH_PAYMENT_MS,
        ..RaceWindows::CLOSED
    };
    config.fix = choice.fix;
    config.redis_url = choice.redis_url.clone();
    let running = stockroom_naive::start(config)
        .await
        .map_err(|error| ThroughputError::Start(Box::new(error)))?;
    let urls = SystemUrls::of_naive(&running.urls);
    let rate = flash_sale(&urls).await;
    let _ = running.stop().await;
    rate
}

/// Runs the flash sale against Stockroom.
pub async fn flash_sale_fixed(launcher: &dyn FixedLauncher) -> Result<f64, ThroughputError> {
    let directory = temporary_directory()?;
    let running = launcher
        .start(FixedSpec {
            data_dir: directory.path().to_owned(),
            stock: stock(AMPLE_STOCK),
            payment_latency_ms: FLASH_PAYMENT_MS,
            hosts: 1,
        })
        .await
        .map_err(ThroughputError::Start)?;
    let rate = flash_sale(&running.urls()).await;
    let _ = running.stop().await;
    rate
}

/// Places the sale's orders at once and waits until the system is done with
/// them: every order in a final status, or nothing changing any more (a fix
/// whose requests fail, or that loses orders, never gets every order to a
/// final status). Answers the orders that reached a final status per second
/// of that time: a lost or stuck order does not count.
async fn flash_sale(urls: &SystemUrls) -> Result<f64, ThroughputError> {
    let started = Instant::now();
    let mut storm = StormConfig::new(&urls.order, FLASH_ORDERS);
    storm.concurrency = FLASH_ORDERS as usize;
    storm.quantity = 1;
    run_storm(storm).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(LAB_REQUEST_TIMEOUT_MS))
        .build()
        .map_err(ThroughputError::Client)?;
    let deadline = started + Duration::from_millis(FLASH_TIMEOUT_MS);
    let mut previous = None;
    let mut decided_at_change = 0;
    let mut last_change = Instant::now();
    while Instant::now() < deadline && last_change.elapsed() < Duration::from_millis(FLASH_IDLE_MS)
    {
        if let Ok((statuses, decided)) = order_statuses(&http, &urls.data).await {
            if previous.as_ref() != Some(&statuses) {
                previous = Some(statuses);
                decided_at_change = decided;
                last_change = Instant::now();
            }
            if decided >= FLASH_ORDERS as usize {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(FLASH_POLL_MS)).await;
    }
    let seconds = last_change.duration_since(started).as_secs_f64();
    if decided_at_change == 0 || seconds <= 0.0 {
        return Err(ThroughputError::NothingDecided);
    }
    Ok(decided_at_change as f64 / seconds)
}

/// Every order's status, and how many are final (fulfilled, rejected,
/// cancelled).
async fn order_statuses(
    http: &reqwest::Client,
    data_url: &str,
) -> Result<(Vec<String>, usize), reqwest::Error> {
    let page: serde_json::Value = get_json(http, &format!("{data_url}/orders?limit=500")).await?;
    let statuses: Vec<String> = page["orders"]
        .as_array()
        .map(|orders| {
            orders
                .iter()
                .map(|order| order["status"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    let decided = statuses
        .iter()
        .filter(|status| matches!(status.as_str(), "fulfilled" | "rejected" | "cancelled"))
        .count();
    Ok((statuses, decided))
}
