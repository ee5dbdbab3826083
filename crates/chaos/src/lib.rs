//! `stockroom chaos`: a fault campaign in the Jepsen style.
//!
//! The campaign starts a system of its own (a cluster on PostgreSQL and
//! RabbitMQ, or one `up` process on SQLite), runs a steady storm of orders
//! with idempotency keys and retries against it, and meanwhile strikes it
//! with a seeded schedule of faults: processes killed and restarted, paused
//! longer than the lease, the broker stopped or its connections closed, the
//! database restarted or its sessions terminated, links cut or slowed by its
//! own proxies. Then it heals everything, waits (bounded) until no order is
//! in flight, and runs the checker against the storm's history: every order
//! acknowledged exists once, nothing was charged twice or oversold, nothing
//! is stuck.
//!
//! The pieces: [`schedule`] decides the faults (pure, seeded), [`stage`]
//! starts the system, [`proxy`] is the link the campaign controls,
//! [`inject`] strikes and heals, [`settle`] waits and counts, [`report`]
//! gives the verdict.

pub mod inject;
pub mod proxy;
pub mod report;
pub mod schedule;
pub mod settle;
pub mod stage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use stockroom_lab::{
    CheckConfig, CheckReport, HistorySource, RetryPolicy, StormConfig, StormReport,
};
use tokio_util::sync::CancellationToken;

use crate::inject::{Commands, Injector, Struck};
use crate::report::{ChaosReport, Findings};
use crate::schedule::{Plan, Topology};
use crate::stage::{ServiceSettings, Stage, StageConfig};

/// The product every campaign sells out: its stock is sized so that it runs
/// out about two thirds into the storm, so the sell-out happens under faults.
pub const HOT_PRODUCT: &str = "Flash";

/// Products with stock enough never to run out.
pub const PLENTIFUL_PRODUCTS: [&str; 3] = ["Laptop", "Phone", "Headphones"];

/// Units of each plentiful product.
const PLENTIFUL_UNITS: u64 = 10_000_000;

/// The share of orders that go to the hot product.
pub const HOT_SHARE: f64 = 0.25;

/// Attempts per order (the storm's most), so that a client rides out a
/// killed instance or a database restart with its idempotency key.
pub const ORDER_ATTEMPTS: u32 = stockroom_lab::storm::MAX_RETRY_ATTEMPTS;

/// The first retry's pause; each later one waits this much longer again, so
/// that ten attempts span about eleven seconds.
pub const RETRY_BACKOFF_MS: u64 = 200;

/// Reservations outlive every outage a campaign causes (the longest is the
/// broker's), so an order that expires shows an event that went missing.
pub const CAMPAIGN_RESERVATION_TTL_MS: u64 = 600_000;

/// The simulated provider's latency per charge.
pub const CAMPAIGN_PAYMENT_LATENCY_MS: u64 = 20;

/// The share of charges declined, so cancellations run under faults too.
pub const CAMPAIGN_DECLINE_RATE: f64 = 0.1;

/// The default distance of a campaign's ports from the services' defaults,
/// so a campaign does not collide with a `stockroom up` on 3001-3004.
pub const DEFAULT_PORT_OFFSET: u16 = 23_000;

/// Everything a campaign needs.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub stage: StageConfig,
    pub seed: u64,
    pub plan: Plan,
    pub settings: ServiceSettings,
    /// New orders per second.
    pub rate_per_s: f64,
    /// Orders in flight at once, at most.
    pub concurrency: usize,
    /// The longest wait for the system to become quiet after the heal.
    pub settle_timeout_ms: u64,
    pub commands: Commands,
    /// Where the processes' logs and data go.
    pub work_directory: PathBuf,
    /// Print each fault as it strikes.
    pub verbose: bool,
}

/// The lengths of a campaign, from which [`ChaosConfig`] is made.
#[derive(Debug, Clone, Copy)]
pub struct Lengths {
    pub duration_ms: u64,
    pub lease_ms: u64,
    pub fault_interval_ms: u64,
    pub broker_outage_ms: u64,
    pub settle_timeout_ms: u64,
    pub rate_per_s: f64,
}

impl Lengths {
    /// The full campaign: ten minutes, a fault every eight seconds, a broker
    /// outage of three minutes.
    pub const FULL: Lengths = Lengths {
        duration_ms: 600_000,
        lease_ms: 10_000,
        fault_interval_ms: 8_000,
        broker_outage_ms: 180_000,
        settle_timeout_ms: 300_000,
        rate_per_s: 100.0,
    };

    /// The smoke campaign for CI: under a minute of storm with every kind
    /// of fault, short enough that the whole run stays under three minutes.
    pub const SMOKE: Lengths = Lengths {
        duration_ms: 45_000,
        lease_ms: 3_000,
        fault_interval_ms: 2_500,
        broker_outage_ms: 8_000,
        settle_timeout_ms: 90_000,
        rate_per_s: 40.0,
    };
}

impl ChaosConfig {
    pub fn new(stage: StageConfig, seed: u64, lengths: Lengths, port_offset: u16) -> ChaosConfig {
        // The broker notices a paused consumer after about two heartbeats;
        // a quarter of the lease keeps that well inside a pause.
        let heartbeat_s = (lengths.lease_ms / 4_000).max(1);
        let pause_ms = (lengths.lease_ms * 3 / 2).max(heartbeat_s * 3_000);
        ChaosConfig {
            stage,
            seed,
            plan: Plan {
                duration_ms: lengths.duration_ms,
                fault_interval_ms: lengths.fault_interval_ms,
                pause_ms,
                broker_outage_ms: lengths.broker_outage_ms,
                link_hold_ms: lengths.lease_ms,
                dead_ms: (lengths.lease_ms / 5).max(500),
                recovery_ms: lengths.lease_ms,
            },
            settings: ServiceSettings {
                port_offset,
                lease_ms: lengths.lease_ms,
                heartbeat_s,
                reservation_ttl_ms: CAMPAIGN_RESERVATION_TTL_MS,
                payment_latency_ms: CAMPAIGN_PAYMENT_LATENCY_MS,
                payment_decline_rate: CAMPAIGN_DECLINE_RATE,
            },
            rate_per_s: lengths.rate_per_s,
            concurrency: 16,
            settle_timeout_ms: lengths.settle_timeout_ms,
            commands: Commands::default(),
            work_directory: std::env::temp_dir(),
            verbose: false,
        }
    }

    fn topology(&self) -> Topology {
        match &self.stage {
            StageConfig::Cluster { instances, .. } => Topology {
                instances: *instances,
                broker: true,
                database: true,
                links: true,
            },
            StageConfig::Up => Topology {
                instances: 0,
                broker: false,
                database: false,
                links: false,
            },
        }
    }

    fn describe(&self) -> String {
        match &self.stage {
            StageConfig::Cluster { instances, .. } => {
                format!("cluster ({instances} of each service, PostgreSQL, RabbitMQ)")
            }
            StageConfig::Up => "up (one process, SQLite, embedded bus)".to_owned(),
        }
    }

    /// Units of the hot product: what the storm orders of it in about two
    /// thirds of its length.
    fn hot_units(&self) -> u64 {
        let seconds = self.plan.duration_ms as f64 / 1_000.0;
        (self.rate_per_s * HOT_SHARE * seconds * 2.0 / 3.0).max(10.0) as u64
    }
}

fn write_stock(
    config: &ChaosConfig,
    directory: &Path,
) -> anyhow::Result<(PathBuf, BTreeMap<String, i64>)> {
    let mut lines = vec![(HOT_PRODUCT.to_owned(), config.hot_units())];
    lines.extend(
        PLENTIFUL_PRODUCTS
            .iter()
            .map(|name| ((*name).to_owned(), PLENTIFUL_UNITS)),
    );
    let document = json!({
        "inventory": lines
            .iter()
            .map(|(name, quantity)| json!({"productName": name, "quantity": quantity}))
            .collect::<Vec<_>>()
    });
    let path = directory.join("stock.json");
    std::fs::write(&path, document.to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let initial = lines
        .into_iter()
        .map(|(name, quantity)| (name.to_lowercase(), quantity as i64))
        .collect();
    Ok((path, initial))
}

/// Runs one campaign to its verdict. An `Err` means the campaign could not
/// run (the system did not start, the checker could not read it); a failed
/// verdict is an `Ok` report with `passed: false`.
pub async fn run(config: ChaosConfig) -> anyhow::Result<ChaosReport> {
    let name = stage::run_name(config.seed);
    let directory = config.work_directory.join(&name);
    let (stage, initial_stock) = set_stage(&config, &name, &directory).await?;
    let reach = Reach::of(&stage);
    let after = storm_under_faults(&config, stage).await?;
    let found = settle_and_check(&config, &reach, &after, initial_stock).await?;
    let log = after.injector.log().await;
    let tally = Tally::of(&log, &found.outcomes);
    let passed = found.passed() && tally.faults_failed == 0 && tally.expired == 0;
    let unexpected_exits = after.injector.unexpected_exits();
    stop_processes(after.injector).await?;
    if passed {
        clean_up(reach.database.as_ref(), reach.broker.as_ref(), &directory).await;
    }
    let storm = after.storm.summary;
    Ok(ChaosReport {
        seed: config.seed,
        target: config.describe(),
        duration_s: storm.elapsed_s,
        faults: tally.injected,
        faults_failed: tally.faults_failed,
        acknowledged: storm.reserved,
        lost: found.findings.lost,
        duplicated: found.findings.duplicated,
        charged_twice: found.findings.charged_twice,
        oversold: found.findings.oversold,
        stuck: found.findings.stuck,
        expired: tally.expired,
        settle_s: found.settle_s,
        unexpected_exits,
        outcomes: found.outcomes,
        storm,
        failed_checks: found
            .check
            .failed()
            .map(|outcome| outcome.name.clone())
            .collect(),
        passed,
        log,
        logs: (!passed).then(|| directory.display().to_string()),
    })
}

/// The first phase: the campaign's work directory, its stock file, and the
/// system started on them. Returns the stage and the initial stock the
/// checker compares with.
async fn set_stage(
    config: &ChaosConfig,
    name: &str,
    directory: &Path,
) -> anyhow::Result<(Stage, BTreeMap<String, i64>)> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("cannot create {}", directory.display()))?;
    let (stock_file, initial_stock) = write_stock(config, directory)?;
    let stage = stage::start(
        &config.stage,
        &config.settings,
        &stock_file,
        directory,
        name,
    )
    .await
    .with_context(|| {
        format!(
            "the system did not start; its logs are in {}",
            directory.display()
        )
    })?;
    Ok((stage, initial_stock))
}

/// Where the campaign reaches its system once the injector owns the stage.
struct Reach {
    order_urls: Vec<String>,
    data_urls: Vec<String>,
    database: Option<stage::DatabaseHandle>,
    broker: Option<stage::BrokerHandle>,
    internal_token: stockroom_http_kit::InternalToken,
}

impl Reach {
    fn of(stage: &Stage) -> Reach {
        Reach {
            order_urls: stage.order_urls.clone(),
            data_urls: stage.data_urls.clone(),
            database: stage.database.clone(),
            broker: stage.broker.clone(),
            internal_token: stage.internal_token.clone(),
        }
    }
}

/// What the storm phase leaves: the storm's history and the injector, which
/// owns the stage's processes, with every fault healed.
struct AfterStorm {
    storm: StormReport,
    injector: Arc<Injector>,
    healed_at: Instant,
}

/// The second phase: the storm runs while every fault of the schedule
/// strikes at its time and a supervisor restarts processes that die on
/// their own; then everything is healed.
async fn storm_under_faults(config: &ChaosConfig, stage: Stage) -> anyhow::Result<AfterStorm> {
    let order_urls = stage.order_urls.clone();
    let faults = schedule::schedule(config.seed, &config.plan, &config.topology());
    let began = Instant::now();
    let injector = Arc::new(Injector::new(
        stage,
        config.commands.clone(),
        began,
        config.verbose,
    ));
    let stop_supervisor = CancellationToken::new();
    let supervisor = tokio::spawn({
        let injector = Arc::clone(&injector);
        let stop = stop_supervisor.clone();
        async move { injector.supervise(stop).await }
    });
    let strikes: Vec<_> = faults
        .iter()
        .map(|fault| {
            let injector = Arc::clone(&injector);
            let fault = *fault;
            tokio::spawn(async move {
                tokio::time::sleep_until((began + Duration::from_millis(fault.at_ms)).into()).await;
                injector.strike(fault).await;
            })
        })
        .collect();
    let storm = stockroom_lab::run_storm(storm_config(config, &order_urls)).await;
    for strike in strikes {
        let _ = strike.await;
    }
    let healed = injector.heal().await;
    let healed_at = Instant::now();
    stop_supervisor.cancel();
    let _ = supervisor.await;
    let storm = storm.context("the storm could not run")?;
    healed.context("the heal failed")?;
    Ok(AfterStorm {
        storm,
        injector,
        healed_at,
    })
}

/// What the checker and the counts found after the heal.
struct Found {
    /// Seconds from the heal until the system was quiet, if it got there.
    settle_s: Option<f64>,
    check: CheckReport,
    findings: Findings,
    outcomes: BTreeMap<String, u64>,
}

impl Found {
    /// The system settled, every check held, and no figure counts a harm.
    fn passed(&self) -> bool {
        let findings = &self.findings;
        self.check.passed
            && self.settle_s.is_some()
            && findings.lost
                + findings.duplicated
                + findings.charged_twice
                + findings.oversold
                + findings.stuck
                == 0
    }
}

/// The third phase: waits (bounded) until no order is in flight, then runs
/// the checker against the storm's history and counts how orders ended.
async fn settle_and_check(
    config: &ChaosConfig,
    reach: &Reach,
    after: &AfterStorm,
    initial_stock: BTreeMap<String, i64>,
) -> anyhow::Result<Found> {
    let (order_url, data_url) = (&reach.order_urls[0], &reach.data_urls[0]);
    let settle = settle::wait_quiet(&reach.data_urls, config.settle_timeout_ms).await;
    let settle_s = settle.map(|_| after.healed_at.elapsed().as_secs_f64());
    let client = reqwest::Client::new();
    for url in [data_url, order_url] {
        stockroom_http_kit::wait_for_health(&client, "a campaign's service", url).await?;
    }
    let mut check = CheckConfig::new(order_url, data_url);
    check.history = HistorySource::Events(after.storm.history.clone());
    check.initial_stock = Some(initial_stock);
    check.stuck_after_ms = 0;
    let check = stockroom_lab::run_check(&check)
        .await
        .context("the checker could not read the system")?;
    let provider_charged_twice =
        provider_charged_twice(&client, data_url, &reach.internal_token).await?;
    let outcomes = settle::outcomes(data_url).await?;
    Ok(Found {
        settle_s,
        findings: Findings::from_check(&check, provider_charged_twice),
        check,
        outcomes,
    })
}

/// The faults as they were carried out, counted.
struct Tally {
    /// Faults carried out, by kind (every kind named).
    injected: BTreeMap<&'static str, u64>,
    /// Faults that could not be carried out.
    faults_failed: u64,
    /// Orders cancelled because their reservation expired.
    expired: u64,
}

impl Tally {
    fn of(log: &[Struck], outcomes: &BTreeMap<String, u64>) -> Tally {
        let faults_failed = log.iter().filter(|struck| struck.error.is_some()).count() as u64;
        let mut injected = schedule::counts(&[]);
        for struck in log.iter().filter(|struck| struck.error.is_none()) {
            *injected.entry(struck.kind.name()).or_default() += 1;
        }
        let expired = outcomes
            .iter()
            .filter(|(outcome, _)| outcome.ends_with("reservation_expired"))
            .map(|(_, count)| *count)
            .sum();
        Tally {
            injected,
            faults_failed,
            expired,
        }
    }
}

/// The last phase: every process of the stage stopped, order-services
/// first.
async fn stop_processes(injector: Arc<Injector>) -> anyhow::Result<()> {
    let injector = Arc::into_inner(injector).context("a fault task outlived the campaign")?;
    let processes = injector.into_stage().processes;
    stockroom_launcher::cluster::Cluster {
        instances: std::mem::take(&mut *processes.lock().await),
    }
    .stop()
    .await;
    Ok(())
}

fn storm_config(config: &ChaosConfig, order_urls: &[String]) -> StormConfig {
    let mut products = vec![HOT_PRODUCT.to_owned()];
    products.extend(PLENTIFUL_PRODUCTS.iter().map(|name| (*name).to_owned()));
    StormConfig {
        order_urls: order_urls.to_vec(),
        orders: None,
        concurrency: config.concurrency,
        products,
        quantity: 1,
        hot_share: HOT_SHARE,
        customer: None,
        duration: Some(Duration::from_millis(config.plan.duration_ms)),
        idempotency: true,
        retry: RetryPolicy {
            max_attempts: ORDER_ATTEMPTS,
            backoff_ms: RETRY_BACKOFF_MS,
        },
        history: None,
        keep_history: true,
        progress: false,
        request_timeout_ms: stockroom_lab::storm::DEFAULT_REQUEST_TIMEOUT_MS,
        rate_per_s: Some(config.rate_per_s),
        sync: false,
    }
}

/// Orders the simulated provider charged under more than one key.
async fn provider_charged_twice(
    client: &reqwest::Client,
    data_url: &str,
    token: &stockroom_http_kit::InternalToken,
) -> anyhow::Result<u64> {
    let stats: serde_json::Value = client
        .get(format!("{data_url}/provider/stats"))
        .header(reqwest::header::AUTHORIZATION, token.header_value())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    stats["ordersChargedTwice"]
        .as_u64()
        .context("GET /provider/stats has no ordersChargedTwice")
}

/// Drops what a passing campaign created: its schema, its broker queues
/// and its work directory.
async fn clean_up(
    database: Option<&stage::DatabaseHandle>,
    broker: Option<&stage::BrokerHandle>,
    directory: &Path,
) {
    if let Some(database) = database {
        let _ = stockroom_storage_postgres::drop_schema(&database.url, &database.schema).await;
    }
    if let Some(broker) = broker
        && let Ok(admin) = stockroom_bus_rabbitmq::RabbitAdmin::connect(&broker.url).await
    {
        let topology = stockroom_bus_rabbitmq::Topology::with_prefix(&broker.prefix);
        let _ = admin.delete(&topology).await;
    }
    let _ = std::fs::remove_dir_all(directory);
}
