//! `stockroom bench`: the flash-sale benchmark. In one process run it sends
//! the same orders, through the same HTTP load generator, to Stockroom as
//! shipped and to its baselines, for a hot product and for a cold catalogue,
//! and prints throughput, latency, oversold and undersold side by side with
//! ratios. Every system is measured in the same run on the same machine, so
//! the ratios hold even where absolute numbers are noisy.
//!
//! Each system and scenario gets two phases, each on a freshly started
//! system: a throughput phase of fixed duration with stock that never runs
//! out, and a sell-out phase (a fixed stock, twice as many single-unit
//! orders) that must end with exactly the stock sold.
//!
//! For every Stockroom system a phase also counts the SQL statements its
//! storage executed over the whole flow (reservation, payment, settlement,
//! the bus), from the start of the load until every order it accepted has
//! settled, divided by the orders it answered: statements per order,
//! amortised over the batches.
//!
//! What the benchmarks need besides Stockroom lives here too, talking to its
//! database itself: the per-request PostgreSQL baseline ([`baseline`]) and
//! the rows the growth benchmark ([`growth`]) seeds ([`seed`]). The
//! production storage backends hold no benchmark code.

pub mod baseline;
mod chart;
pub mod growth;
mod load;
pub mod seed;
mod targets;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

pub use targets::SystemKind;

/// Units of every product during a throughput phase: more than any run can sell.
pub const UNLIMITED_STOCK: i64 = 1_000_000_000;

/// How long a system may take to become quiet after a sell-out phase before
/// its stock is read anyway.
pub const SETTLE_TIMEOUT_MS: u64 = 20_000;

/// The naive mode's sell-out is this many times smaller (stock and orders),
/// because it answers a few hundred orders a second and the whole benchmark
/// must stay within minutes. Its oversells show at any scale.
pub const NAIVE_SELL_OUT_DIVISOR: i64 = 10;

/// The longest one phase may run; a system slower than this is reported as
/// not finishing.
pub const PHASE_TIME_LIMIT_MS: u64 = 120_000;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub connections: usize,
    pub duration: Duration,
    pub sell_out_stock: i64,
    pub sell_out_orders: u64,
    pub cold_products: usize,
    /// Connections of the extra latency phase of Stockroom as shipped.
    pub latency_connections: usize,
    pub systems: Vec<SystemKind>,
    pub postgres_url: Option<String>,
    /// The broker of `stockroom-postgres-rabbitmq`; without it that system
    /// is skipped.
    pub amqp_url: Option<String>,
    pub show_progress: bool,
}

impl BenchConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.connections >= 1, "--connections must be at least 1");
        anyhow::ensure!(self.sell_out_stock >= 1, "--stock must be at least 1");
        anyhow::ensure!(
            self.cold_products >= 1,
            "--cold-products must be at least 1"
        );
        anyhow::ensure!(
            self.sell_out_stock % self.cold_products as i64 == 0,
            "--stock must be a multiple of --cold-products, so every cold product sells out"
        );
        anyhow::ensure!(
            self.sell_out_orders
                .is_multiple_of(self.cold_products as u64),
            "--orders must be a multiple of --cold-products"
        );
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Every order for one product.
    HotSku,
    /// Orders spread evenly over many products.
    Cold,
}

impl Scenario {
    fn products(self, config: &BenchConfig) -> Vec<String> {
        match self {
            Scenario::HotSku => vec!["Hot".to_owned()],
            Scenario::Cold => (0..config.cold_products)
                .map(|index| format!("Item{index:04}"))
                .collect(),
        }
    }
}

/// One phase's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub system: &'static str,
    pub scenario: Scenario,
    pub phase: &'static str,
    pub connections: usize,
    /// Requests sent, answered or not.
    pub requests: u64,
    pub orders_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub created: u64,
    pub rejected: u64,
    pub overloaded: u64,
    pub errors: u64,
    pub oversold: Option<i64>,
    pub undersold: Option<i64>,
    /// SQL statements per answered order over the whole flow (Stockroom only).
    pub statements_per_order: Option<f64>,
    pub durability: &'static str,
    pub note: Option<String>,
}

fn body_for(products: Arc<Vec<String>>) -> Arc<dyn Fn(u64) -> Bytes + Send + Sync> {
    // Round-robin over the products, so that in a sell-out every product
    // receives exactly orders / products orders.
    let bodies: Vec<Bytes> = products
        .iter()
        .map(|product| {
            Bytes::from(format!(
                r#"{{"productName":"{product}","quantity":1,"customerId":"bench"}}"#
            ))
        })
        .collect();
    Arc::new(move |sequence| bodies[(sequence % bodies.len() as u64) as usize].clone())
}

fn progress_bar(config: &BenchConfig, label: String, length: Option<u64>) -> ProgressBar {
    let bar = match length {
        Some(length) => ProgressBar::new(length),
        None => ProgressBar::new_spinner(),
    };
    if !config.show_progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if length.is_some() {
        "{msg:48} [{bar:30}] {pos}/{len} {per_sec}"
    } else {
        "{msg:48} {spinner} {pos} answers {per_sec}"
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(label);
    bar
}

async fn run_phase(
    config: &BenchConfig,
    kind: SystemKind,
    scenario: Scenario,
    phase: &'static str,
    connections: usize,
) -> anyhow::Result<PhaseResult> {
    let names = scenario.products(config);
    let sell_out = phase == "sell-out";
    let divisor = if kind == SystemKind::Naive && sell_out {
        NAIVE_SELL_OUT_DIVISOR
    } else {
        1
    };
    // Every product keeps at least one unit even when the naive run is scaled
    // down, so that the cold scenario still sells out every product.
    let stock = (config.sell_out_stock / divisor).max(names.len() as i64);
    let orders = (config.sell_out_orders / divisor as u64).max(2 * names.len() as u64);
    let per_product = if sell_out {
        stock / names.len() as i64
    } else {
        UNLIMITED_STOCK
    };
    let products: Vec<(String, i64)> = names
        .iter()
        .map(|name| (name.clone(), per_product))
        .collect();
    let schema = format!("stockroom_bench_{}", std::process::id());
    let target = targets::start(
        kind,
        &products,
        config.postgres_url.as_deref(),
        config.amqp_url.as_deref(),
        &schema,
    )
    .await?;
    let statements_before = target
        .storage()
        .map(|storage| storage.statements_executed());
    let stop = if sell_out {
        load::Stop::Orders(orders)
    } else {
        load::Stop::After(config.duration)
    };
    let bar = progress_bar(
        config,
        format!("{} · {:?} · {phase}", kind.name(), scenario),
        sell_out.then_some(orders),
    );
    let spec = load::LoadSpec {
        address: target.address.clone(),
        path: "/api/orders".into(),
        connections,
        stop,
        body: body_for(Arc::new(names.clone())),
    };
    let progress = bar.clone();
    let result = tokio::time::timeout(
        Duration::from_millis(PHASE_TIME_LIMIT_MS),
        load::run(spec, move |answered| progress.set_position(answered)),
    )
    .await;
    bar.finish_and_clear();
    let Ok(result) = result else {
        target.stop().await;
        anyhow::bail!(
            "{} did not finish its {phase} phase within {PHASE_TIME_LIMIT_MS} ms",
            kind.name()
        );
    };
    let (mut oversold, mut undersold, mut note) = (None, None, None);
    let mut statements_per_order = None;
    if let (Some(storage), Some(before)) = (target.storage(), statements_before) {
        if !settle(storage).await {
            note = Some(format!(
                "orders still reserved {SETTLE_TIMEOUT_MS} ms after the load; statements counted so far"
            ));
        }
        let answered = (result.created + result.rejected).max(1);
        let statements = storage.statements_executed() - before;
        statements_per_order = Some(statements as f64 / answered as f64);
    }
    if sell_out && kind.has_stock() {
        let client = reqwest::Client::new();
        let available = settled_stock(&target, &client).await;
        match available {
            Ok(available) => {
                let stock = per_product * names.len() as i64;
                let left: i64 = available.iter().map(|units| units.max(&0)).sum();
                let negative: i64 = available.iter().map(|units| (-units).max(0)).sum();
                // Oversold: units promised beyond the stock, as the stock
                // shows it (negative availability) or as the clients were told
                // (more 201s than units, for systems that reserve before
                // answering).
                let promised_beyond = if kind == SystemKind::Naive {
                    0
                } else {
                    (result.created as i64 - stock).max(0)
                };
                oversold = Some(negative.max(promised_beyond));
                // Undersold: units left while buyers were refused.
                undersold = Some(left.min(result.rejected as i64));
                if kind == SystemKind::Naive {
                    note = Some(format!(
                        "answers 201 pending and decides later, racily; sell-out scaled to {stock} units and {orders} orders"
                    ));
                }
            }
            Err(error) => note = Some(format!("could not read the stock: {error}")),
        }
    }
    target.stop().await;
    Ok(PhaseResult {
        system: kind.name(),
        scenario,
        phase,
        connections,
        requests: result.sent,
        orders_per_s: result.orders_per_s(),
        p50_ms: result.percentile_ms(0.50),
        p99_ms: result.percentile_ms(0.99),
        p999_ms: result.percentile_ms(0.999),
        created: result.created,
        rejected: result.rejected,
        overloaded: result.overloaded,
        errors: result.errors + result.other_status,
        oversold,
        undersold,
        statements_per_order,
        durability: kind.durability(),
        note,
    })
}

/// Waits until no order is left reserved (every accepted order paid and
/// settled), at most [`SETTLE_TIMEOUT_MS`]; returns whether it got there.
async fn settle(storage: &Arc<dyn stockroom_storage::Storage>) -> bool {
    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    loop {
        let open = storage
            .orders(stockroom_storage::OrderFilter {
                status: Some(stockroom_domain::OrderStatus::Reserved),
                customer_id: None,
                after: None,
                limit: 1,
            })
            .await
            .map(|page| page.orders.len())
            .unwrap_or(1);
        if open == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the stock once it stops changing (the naive worker decides orders
/// after answering them), or after [`SETTLE_TIMEOUT_MS`].
async fn settled_stock(
    target: &targets::Target,
    client: &reqwest::Client,
) -> anyhow::Result<Vec<i64>> {
    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    let mut last = target.available(client).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = target.available(client).await?;
        if now == last || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Stockroom as shipped (the embedded default), one hot product.
    pub hot_sku: Summary,
    /// Stockroom as shipped, the cold catalogue.
    pub cold: Summary,
    /// Stockroom on PostgreSQL with the embedded bus, when measured.
    pub postgres_hot: Option<Summary>,
    pub postgres_cold: Option<Summary>,
    /// Stockroom on PostgreSQL with RabbitMQ, when measured.
    pub postgres_rabbitmq_hot: Option<Summary>,
    pub postgres_rabbitmq_cold: Option<Summary>,
    pub phases: Vec<PhaseResult>,
    pub skipped: Vec<String>,
    pub machine: Machine,
    pub settings: Settings,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub connections: usize,
    pub duration_s: f64,
    pub sell_out_stock: i64,
    pub sell_out_orders: u64,
    pub cold_products: usize,
    pub latency_connections: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub os: String,
}

/// One Stockroom system in one scenario, with its ratios to each baseline.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub system: String,
    pub orders_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p99_ms_at_latency_connections: Option<f64>,
    pub ratio_vs_postgres_per_request: Option<f64>,
    pub ratio_vs_noop_http: Option<f64>,
    pub ratio_vs_batching_off: Option<f64>,
    pub ratio_vs_naive: Option<f64>,
    pub oversold: Option<i64>,
    pub undersold: Option<i64>,
    pub sell_out_orders_per_s: Option<f64>,
    /// SQL statements per order over the whole flow, in the throughput phase.
    pub statements_per_order: Option<f64>,
}

fn summarize(phases: &[PhaseResult], scenario: Scenario, system: SystemKind) -> Option<Summary> {
    let find = |name: &str, phase_name: &str| {
        phases.iter().find(|phase| {
            phase.system == name && phase.scenario == scenario && phase.phase == phase_name
        })
    };
    let throughput = |name: &str| find(name, "throughput");
    let sell_out = find(system.name(), "sell-out");
    let latency = find(system.name(), "latency");
    let shipped = throughput(system.name())?;
    let ratio = |system: &str| {
        throughput(system).map(|other| shipped.orders_per_s / other.orders_per_s.max(1e-9))
    };
    Some(Summary {
        system: system.name().to_owned(),
        orders_per_s: shipped.orders_per_s,
        p50_ms: shipped.p50_ms,
        p99_ms: shipped.p99_ms,
        p999_ms: shipped.p999_ms,
        p99_ms_at_latency_connections: latency.map(|phase| phase.p99_ms),
        ratio_vs_postgres_per_request: ratio("postgres-per-request"),
        ratio_vs_noop_http: ratio("noop-http"),
        ratio_vs_batching_off: ratio("stockroom-batching-off"),
        ratio_vs_naive: ratio("naive"),
        oversold: sell_out.and_then(|phase| phase.oversold),
        undersold: sell_out.and_then(|phase| phase.undersold),
        sell_out_orders_per_s: sell_out.map(|phase| phase.orders_per_s),
        statements_per_order: shipped.statements_per_order,
    })
}

/// Runs every phase of every system; a system that cannot run here (no
/// PostgreSQL or AMQP URL) is skipped with a note.
pub async fn run(config: BenchConfig) -> anyhow::Result<BenchReport> {
    config.validate()?;
    let mut phases = Vec::new();
    let mut skipped = Vec::new();
    for scenario in [Scenario::HotSku, Scenario::Cold] {
        for &kind in &config.systems {
            if let Some(missing) =
                kind.missing(config.postgres_url.as_deref(), config.amqp_url.as_deref())
            {
                if scenario == Scenario::HotSku {
                    skipped.push(format!("{}: skipped, {missing}", kind.name()));
                }
                continue;
            }
            phases
                .push(run_phase(&config, kind, scenario, "throughput", config.connections).await?);
            if kind.has_stock() {
                phases.push(
                    run_phase(&config, kind, scenario, "sell-out", config.connections).await?,
                );
            }
            if kind == SystemKind::Shipped
                && scenario == Scenario::HotSku
                && config.latency_connections > 0
            {
                phases.push(
                    run_phase(
                        &config,
                        kind,
                        scenario,
                        "latency",
                        config.latency_connections,
                    )
                    .await?,
                );
            }
        }
    }
    let summary = |scenario, system| summarize(&phases, scenario, system);
    Ok(BenchReport {
        hot_sku: summary(Scenario::HotSku, SystemKind::Shipped).unwrap_or_default(),
        cold: summary(Scenario::Cold, SystemKind::Shipped).unwrap_or_default(),
        postgres_hot: summary(Scenario::HotSku, SystemKind::StockroomPostgres),
        postgres_cold: summary(Scenario::Cold, SystemKind::StockroomPostgres),
        postgres_rabbitmq_hot: summary(Scenario::HotSku, SystemKind::StockroomPostgresRabbitmq),
        postgres_rabbitmq_cold: summary(Scenario::Cold, SystemKind::StockroomPostgresRabbitmq),
        phases,
        skipped,
        machine: Machine {
            cores: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            os: std::env::consts::OS.to_owned(),
        },
        settings: Settings {
            connections: config.connections,
            duration_s: config.duration.as_secs_f64(),
            sell_out_stock: config.sell_out_stock,
            sell_out_orders: config.sell_out_orders,
            cold_products: config.cold_products,
            latency_connections: config.latency_connections,
        },
    })
}

fn optional(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}×"))
}

/// The report as a person reads it.
pub fn render_table(report: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<28} {:<9} {:<10} {:>6} {:>11} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11}  {}\n",
        "system",
        "scenario",
        "phase",
        "conns",
        "orders/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "oversold",
        "undersold",
        "stmts/order",
        "durability"
    ));
    for phase in &report.phases {
        out.push_str(&format!(
            "{:<28} {:<9} {:<10} {:>6} {:>11.0} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>9} {:>11}  {}\n",
            phase.system,
            match phase.scenario {
                Scenario::HotSku => "hot",
                Scenario::Cold => "cold",
            },
            phase.phase,
            phase.connections,
            phase.orders_per_s,
            phase.p50_ms,
            phase.p99_ms,
            phase.p999_ms,
            optional(phase.oversold),
            optional(phase.undersold),
            phase
                .statements_per_order
                .map_or_else(|| "-".to_owned(), |value| format!("{value:.2}")),
            phase.durability,
        ));
        if phase.errors > 0 || phase.overloaded > 0 {
            out.push_str(&format!(
                "{:<28} {} errors, {} answered 503 (overloaded)\n",
                "", phase.errors, phase.overloaded
            ));
        }
        if let Some(note) = &phase.note {
            out.push_str(&format!("{:<28} note: {note}\n", ""));
        }
    }
    let measured_stockroom = report
        .phases
        .iter()
        .any(|phase| phase.system == SystemKind::Shipped.name());
    let shipped = [
        ("Stockroom, hot product", Some(&report.hot_sku)),
        ("Stockroom, cold catalogue", Some(&report.cold)),
    ];
    let on_postgres = [
        (
            "Stockroom on PostgreSQL, hot product",
            report.postgres_hot.as_ref(),
        ),
        (
            "Stockroom on PostgreSQL, cold catalogue",
            report.postgres_cold.as_ref(),
        ),
        (
            "Stockroom on PostgreSQL + RabbitMQ, hot product",
            report.postgres_rabbitmq_hot.as_ref(),
        ),
        (
            "Stockroom on PostgreSQL + RabbitMQ, cold catalogue",
            report.postgres_rabbitmq_cold.as_ref(),
        ),
    ];
    let measured = shipped
        .into_iter()
        .filter(|_| measured_stockroom)
        .chain(on_postgres)
        .filter_map(|(label, summary)| Some((label, summary?)));
    for (label, summary) in measured {
        out.push_str(&format!(
            "\n{label}: {:.0} orders/s, p99 {:.1} ms{}; {} vs PostgreSQL per request, {} vs no-op HTTP, {} vs batching off, {} vs naive; oversold {}, undersold {}; {} SQL statements per order\n",
            summary.orders_per_s,
            summary.p99_ms,
            summary
                .p99_ms_at_latency_connections
                .map(|p99| format!(" (p99 {p99:.1} ms at {} connections)", report.settings.latency_connections))
                .unwrap_or_default(),
            ratio(summary.ratio_vs_postgres_per_request),
            ratio(summary.ratio_vs_noop_http),
            ratio(summary.ratio_vs_batching_off),
            ratio(summary.ratio_vs_naive),
            optional(summary.oversold),
            optional(summary.undersold),
            summary
                .statements_per_order
                .map_or_else(|| "-".to_owned(), |value| format!("{value:.2}")),
        ));
    }
    for note in &report.skipped {
        out.push_str(&format!("{note}\n"));
    }
    out
}

pub use chart::render_svg;
