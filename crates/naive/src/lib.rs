//! **Naive mode: the ORIGINAL order system, wrong on purpose.**
//!
//! This crate re-creates the races of the system Stockroom replaces, so that
//! the race lab can reproduce each of them on demand and show the fixed system
//! surviving the same load. Nothing here is safe: it oversells, loses status
//! updates, tears its own data files and processes redelivered events twice.
//! It is never the default; it runs only with `--mode naive`.
//!
//! It keeps the HTTP contract (ports, paths and JSON field names) of the fixed
//! system, so the same load generator and checker run against both. The four
//! services run in one process, each on its own port, talking HTTP:
//!
//! - data-service keeps `orders.json` and `inventory.json` and rewrites them
//!   whole, in place, with no lock ([`files`]);
//! - order-service answers `pending` at once and publishes an event (when
//!   the lab turns the limit check on, after a racy check of the product's
//!   purchase limit);
//! - inventory-service's worker decides each order later, in one of the
//!   original system's [`NaiveFlow`]s, and runs the same invariant auditor as
//!   the fixed inventory-service;
//! - payment-service is a slow provider that charges every request it gets,
//!   duplicates included.
//!
//! Every race has a window, a pause at the spot where the original system was
//! exposed ([`RaceWindows`]); widening it makes the race happen every time.

pub mod data;
mod error;
pub mod files;
pub mod fix;
pub mod inventory;
mod limit;
pub mod order;
pub mod payment;
pub mod publisher;
pub mod redis_lock;
pub mod serve;
pub mod sqlite;
pub mod store;
mod worker;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use stockroom_contract::StockLine;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::NaiveError;
pub use fix::Fix;

/// What the naive system says about itself wherever it announces itself:
/// its ready line and every service's `/health`.
pub const RACY_NOTICE: &str = "racy on purpose: the original system, which oversells and corrupts its data, for the race lab only";

/// The `/health` document of a naive service: healthy, and racy on purpose.
pub(crate) fn health_document(service: &str) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "service": service,
        "mode": "naive",
        "racy": true,
        "warning": RACY_NOTICE,
    }))
}

/// The default race window: wide enough that every race of the lab shows
/// within a few seconds of load, short enough that a run stays quick.
pub const DEFAULT_RACE_WINDOW_MS: u64 = 50;

/// The most a race window may be widened to, so a typo cannot stall a run.
pub const MAX_RACE_WINDOW_MS: u64 = 10_000;

/// A torn write pauses once per chunk, so its share of the race window is
/// this fraction of it (a write has [`files::WRITE_CHUNKS`] chunks).
pub const TORN_WRITE_WINDOW_DIVISOR: u64 = 10;

/// The pauses at each spot where the original system raced. Zero closes a
/// window as far as the naive code allows (the code stays racy; the race just
/// becomes rare).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaceWindows {
    /// Between loading the orders file for a status update and saving the
    /// stale copy (lost status update).
    pub lost_update_ms: u64,
    /// Between computing available stock in storage and adding the
    /// reservation (check-then-reserve in storage).
    pub toctou_ms: u64,
    /// Between the chunks of an in-place file rewrite (torn writes).
    pub torn_write_ms: u64,
    /// Between order-service reading an order to cancel it and writing its
    /// copy back (stale order object).
    pub stale_order_ms: u64,
    /// Between the worker's "is there stock?" call and its "reserve" call.
    pub two_call_ms: u64,
    /// The payment provider's latency (pay before reserve).
    pub payment_ms: u64,
    /// Between order-service summing a customer's units of a product and
    /// creating the order (limit bypass). `None`: order-service checks no
    /// purchase limit, as the original system, which had none.
    pub limit_check_ms: Option<u64>,
    /// Between an operator's adjustment reading a product's figures and
    /// writing them back (stale adjustment).
    pub adjustment_ms: u64,
}

impl RaceWindows {
    /// Every window at `window_ms` except the torn-write one, which stays
    /// closed: with it open most reads fail outright, which hides the other
    /// races. Open it with [`RaceWindows::with_torn_writes`]. The purchase
    /// limit's check stays off too (the original system had none, and it
    /// costs every order a read): turn it on with
    /// [`RaceWindows::with_limit_check`].
    pub fn uniform(window_ms: u64) -> RaceWindows {
        let window_ms = window_ms.min(MAX_RACE_WINDOW_MS);
        RaceWindows {
            lost_update_ms: window_ms,
            toctou_ms: window_ms,
            torn_write_ms: 0,
            stale_order_ms: window_ms,
            two_call_ms: window_ms,
            payment_ms: window_ms,
            limit_check_ms: None,
            adjustment_ms: window_ms,
        }
    }

    /// Opens the torn-write window: a pause of `window_ms` divided by
    /// [`TORN_WRITE_WINDOW_DIVISOR`] (at least 1 ms) between the chunks of
    /// every file rewrite.
    pub fn with_torn_writes(mut self, window_ms: u64) -> RaceWindows {
        self.torn_write_ms = (window_ms.min(MAX_RACE_WINDOW_MS) / TORN_WRITE_WINDOW_DIVISOR).max(1);
        self
    }

    /// Turns on order-service's purchase-limit check, with a pause of
    /// `window_ms` between the check and the order's creation.
    pub fn with_limit_check(mut self, window_ms: u64) -> RaceWindows {
        self.limit_check_ms = Some(window_ms.min(MAX_RACE_WINDOW_MS));
        self
    }

    /// Every window closed; a scenario then opens the one it studies.
    pub const CLOSED: RaceWindows = RaceWindows {
        lost_update_ms: 0,
        toctou_ms: 0,
        torn_write_ms: 0,
        stale_order_ms: 0,
        two_call_ms: 0,
        payment_ms: 0,
        limit_check_ms: None,
        adjustment_ms: 0,
    };
}

/// How the inventory worker decides a `pending` order: the original system
/// went through these versions, each with its own race.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NaiveFlow {
    /// "Is there stock?" in one remote call, "reserve" (unconditionally) in a
    /// second, then pay, then commit.
    #[default]
    TwoCalls,
    /// One "reserve" call whose storage computes available stock, pauses,
    /// and adds the reservation without checking again; then pay, commit.
    StorageCheck,
    /// Check stock, pay (slowly), then decrement the stock without checking
    /// again: the decrement can drive stock negative.
    PayFirst,
}

impl NaiveFlow {
    pub fn as_str(self) -> &'static str {
        match self {
            NaiveFlow::TwoCalls => "two-calls",
            NaiveFlow::StorageCheck => "storage-check",
            NaiveFlow::PayFirst => "pay-first",
        }
    }
}

impl NaiveFlow {
    pub const ALL: [NaiveFlow; 3] = [
        NaiveFlow::TwoCalls,
        NaiveFlow::StorageCheck,
        NaiveFlow::PayFirst,
    ];

    /// The flow's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NaiveFlow::TwoCalls => "two-calls",
            NaiveFlow::StorageCheck => "storage-check",
            NaiveFlow::PayFirst => "pay-first",
        }
    }
}

impl std::str::FromStr for NaiveFlow {
    type Err = stockroom_domain::UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        stockroom_domain::UnknownName::find("naive flow", &NaiveFlow::ALL, NaiveFlow::name, text)
    }
}

/// The ports of the four naive services; 0 picks a free one.
#[derive(Debug, Clone, Copy)]
pub struct NaivePorts {
    pub order: u16,
    pub data: u16,
    pub inventory: u16,
    pub payment: u16,
}

impl NaivePorts {
    pub const EPHEMERAL: NaivePorts = NaivePorts {
        order: 0,
        data: 0,
        inventory: 0,
        payment: 0,
    };
}

/// Everything `stockroom up --mode naive` can be told.
#[derive(Debug, Clone)]
pub struct NaiveConfig {
    pub data_dir: PathBuf,
    pub stock: Vec<StockLine>,
    /// Rewrite the data files from `stock` even if they exist.
    pub fresh: bool,
    pub host: IpAddr,
    pub ports: NaivePorts,
    pub windows: RaceWindows,
    pub flow: NaiveFlow,
    /// The proposed fix the system runs with ([`Fix::None`]: the original).
    pub fix: Fix,
    /// The Redis the Redis fixes use.
    pub redis_url: Option<String>,
    /// The prefix of this system's Redis keys. Two systems given the same
    /// one are two hosts of one shop and share their locks and
    /// de-duplication; `None` gives the system keys of its own.
    pub redis_prefix: Option<String>,
    /// The lab's fault: order-service crashes between publishing an order's
    /// message and marking it as sent, and publishes it again on restart.
    pub crash_after_publish: bool,
}

impl NaiveConfig {
    pub fn new(data_dir: &Path, stock: Vec<StockLine>) -> NaiveConfig {
        NaiveConfig {
            data_dir: data_dir.to_owned(),
            stock,
            fresh: false,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: NaivePorts::EPHEMERAL,
            windows: RaceWindows::uniform(DEFAULT_RACE_WINDOW_MS),
            flow: NaiveFlow::default(),
            fix: Fix::None,
            redis_url: None,
            redis_prefix: None,
            crash_after_publish: false,
        }
    }
}

/// The base URLs of a running naive system.
#[derive(Debug, Clone)]
pub struct NaiveUrls {
    pub order: String,
    pub data: String,
    pub inventory: String,
    pub payment: String,
}

struct Running {
    name: &'static str,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

fn spawn<F>(name: &'static str, run: impl FnOnce(CancellationToken) -> F) -> Running
where
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(stop.clone()));
    Running { name, stop, task }
}

impl Running {
    async fn stop(self) -> Result<(), NaiveError> {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(NaiveError::Io {
                file: self.name.to_owned(),
                source,
            }),
            Err(_) => Err(NaiveError::Panicked { service: self.name }),
        }
    }
}

/// All four naive services running in this process.
pub struct RunningNaive {
    pub urls: NaiveUrls,
    services: Vec<Running>,
}

/// A service's listener and the base URL it answers at.
struct Bound {
    listener: TcpListener,
    url: String,
}

async fn bind(host: IpAddr, port: u16) -> Result<Bound, NaiveError> {
    let listener = stockroom_http_kit::bind(SocketAddr::new(host, port)).await?;
    let address = listener.local_addr().map_err(|source| NaiveError::Io {
        file: "listener".into(),
        source,
    })?;
    Ok(Bound {
        listener,
        url: format!("http://{address}"),
    })
}

/// A Redis key prefix no other system has.
pub fn new_redis_prefix() -> String {
    format!("stockroom-naive:{}:", uuid::Uuid::now_v7())
}

/// Writes the initial data files (when `fresh` or missing), starts the four
/// naive services, and waits until each answers `/health`.
pub async fn start(config: NaiveConfig) -> Result<RunningNaive, NaiveError> {
    let redis = match (config.fix.needs_redis(), config.redis_url.as_deref()) {
        (false, _) => None,
        (true, None) => {
            return Err(NaiveError::RedisNotGiven {
                fix: config.fix.name(),
            });
        }
        (true, Some(url)) => Some(redis_lock::connect_redis(url).await?),
    };
    let files = files::JsonFiles::new(&config.data_dir, config.windows.torn_write_ms);
    let data_state = data::DataState::new(files, config.windows, config.fix);
    data_state
        .store()
        .initialize(&config.stock, config.fresh)
        .await?;
    let data = bind(config.host, config.ports.data).await?;
    let inventory = bind(config.host, config.ports.inventory).await?;
    let payment = bind(config.host, config.ports.payment).await?;
    let order = bind(config.host, config.ports.order).await?;
    let urls = NaiveUrls {
        order: order.url.clone(),
        data: data.url.clone(),
        inventory: inventory.url.clone(),
        payment: payment.url.clone(),
    };
    // Every system's keys apart, so that systems sharing a Redis never meet,
    // unless they are told they are hosts of one shop.
    let prefix = config.redis_prefix.clone().unwrap_or_else(new_redis_prefix);
    let data = spawn("naive data-service", move |stop| {
        data::run(data.listener, data_state, stop.cancelled_owned())
    });
    let payment = spawn_payment(&config, payment.listener);
    let inventory = spawn_inventory(&config, inventory.listener, &urls, redis.clone(), &prefix);
    let order = spawn_order(&config, order.listener, &urls, redis, &prefix);
    // In the order they stop: order-service first, data-service last.
    let services = vec![order, inventory, payment, data];
    let running = RunningNaive { urls, services };
    match running.wait_until_healthy().await {
        Ok(()) => Ok(running),
        Err(error) => {
            let _ = running.stop().await;
            Err(error)
        }
    }
}

fn spawn_payment(config: &NaiveConfig, listener: TcpListener) -> Running {
    let state = payment::PaymentState::new(config.windows.payment_ms);
    spawn("naive payment-service", move |stop| {
        payment::run(listener, state, stop.cancelled_owned())
    })
}

/// inventory-service, with the Redis locks when the fix takes them.
fn spawn_inventory(
    config: &NaiveConfig,
    listener: TcpListener,
    urls: &NaiveUrls,
    redis: Option<redis::aio::MultiplexedConnection>,
    prefix: &str,
) -> Running {
    let fix = config.fix;
    let config = inventory::InventoryConfig {
        data_url: urls.data.clone(),
        payment_url: urls.payment.clone(),
        flow: config.flow,
        windows: config.windows,
        fix,
        locks: redis
            .filter(|_| fix.worker_lock().is_some())
            .map(|connection| redis_lock::RedisLocks::new(connection, prefix)),
    };
    spawn("naive inventory-service", move |stop| {
        inventory::run(listener, config, stop.cancelled_owned())
    })
}

/// order-service, with the Redis de-duplication when the fix takes it.
fn spawn_order(
    config: &NaiveConfig,
    listener: TcpListener,
    urls: &NaiveUrls,
    redis: Option<redis::aio::MultiplexedConnection>,
    prefix: &str,
) -> Running {
    let fix = config.fix;
    let config = order::OrderConfig {
        data_url: urls.data.clone(),
        inventory_url: urls.inventory.clone(),
        windows: config.windows,
        fix,
        dedupe: redis
            .filter(|_| fix.publisher_dedupe())
            .map(|connection| publisher::PublishDedupe::new(connection, prefix)),
        crash_after_publish: config.crash_after_publish,
    };
    spawn("naive order-service", move |stop| {
        order::run(listener, config, stop.cancelled_owned())
    })
}

impl RunningNaive {
    /// Waits until every service answers `/health`, data-service first.
    async fn wait_until_healthy(&self) -> Result<(), NaiveError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(
                stockroom_http_kit::INTERNAL_REQUEST_TIMEOUT_MS,
            ))
            .build()
            .map_err(NaiveError::Client)?;
        for (name, url) in [
            ("naive data-service", &self.urls.data),
            ("naive inventory-service", &self.urls.inventory),
            ("naive payment-service", &self.urls.payment),
            ("naive order-service", &self.urls.order),
        ] {
            stockroom_http_kit::wait_for_health(&client, name, url).await?;
        }
        Ok(())
    }

    /// Stops order-service first and data-service last.
    pub async fn stop(self) -> Result<(), NaiveError> {
        let mut first_error = None;
        for service in self.services {
            if let Err(error) = service.stop().await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
