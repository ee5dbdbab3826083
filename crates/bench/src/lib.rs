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
//! amortised over the batches. Every system on PostgreSQL also gets the
//! write-ahead log it wrote over the same span per order answered ([`wal`]),
//! and on request that log by table and index, with the index entries an
//! order adds.
//!
//! What the benchmarks need besides Stockroom lives here too, talking to its
//! database itself: the per-request PostgreSQL baselines ([`baseline`], the
//! reservation alone, and [`full_flow`], the order's whole life) and
//! the rows the growth benchmark ([`growth`]) seeds ([`seed`]). The
//! production storage backends hold no benchmark code.

pub mod baseline;
mod chart;
mod cpu;
pub mod full_flow;
pub mod growth;
mod load;
mod phase;
mod report;
pub mod seed;
mod targets;
mod wal;

use std::time::Duration;

use serde::Serialize;

pub use chart::render_svg;
pub use phase::PhaseResult;
pub use report::{BenchReport, Machine, Settings, Summary, render_table};
pub use targets::SystemKind;
pub use wal::{LogBreakdown, RelationLog};

use self::phase::{Phase, SELL_OUT, run_phase};
use self::report::summarize;

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

/// The most rounds one run may repeat its phases in (`--rounds`): nine
/// full rounds already take about half an hour.
pub const MAX_ROUNDS: u32 = 9;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub connections: usize,
    pub duration: Duration,
    pub sell_out_stock: i64,
    pub sell_out_orders: u64,
    pub cold_products: usize,
    /// Connections of the extra latency phase of Stockroom as shipped.
    pub latency_connections: usize,
    /// How many times every phase runs, the systems' order reversed in
    /// every other round so that a machine whose speed drifts during the run
    /// favours none of them. Each ratio is taken within its round, and each
    /// summary figure is the median of the rounds' (1 to [`MAX_ROUNDS`]).
    pub rounds: u32,
    pub systems: Vec<SystemKind>,
    /// The scenarios to run, in this order (both by default).
    pub scenarios: Vec<Scenario>,
    pub postgres_url: Option<String>,
    /// The broker of `stockroom-postgres-rabbitmq`; without it that system
    /// is skipped.
    pub amqp_url: Option<String>,
    /// Read each PostgreSQL phase's write-ahead log back and sum it by
    /// table and index ([`wal::by_relation`]).
    pub wal_by_relation: bool,
    pub show_progress: bool,
}

impl BenchConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.connections >= 1, "--connections must be at least 1");
        anyhow::ensure!(self.sell_out_stock >= 1, "--stock must be at least 1");
        anyhow::ensure!(
            (1..=MAX_ROUNDS).contains(&self.rounds),
            "--rounds must be from 1 to {MAX_ROUNDS}"
        );
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
    pub const ALL: [Scenario; 2] = [Scenario::HotSku, Scenario::Cold];

    /// The scenario's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::HotSku => "hot",
            Scenario::Cold => "cold",
        }
    }

    fn products(self, config: &BenchConfig) -> Vec<String> {
        match self {
            Scenario::HotSku => vec!["Hot".to_owned()],
            Scenario::Cold => (0..config.cold_products)
                .map(|index| format!("Item{index:04}"))
                .collect(),
        }
    }
}

/// Runs every phase of every system, once per round; a system that cannot
/// run here (no PostgreSQL or AMQP URL) is skipped with a note.
pub async fn run(config: BenchConfig) -> anyhow::Result<BenchReport> {
    config.validate()?;
    let mut skipped = Vec::new();
    let mut runnable = Vec::new();
    for &kind in &config.systems {
        match kind.missing(config.postgres_url.as_deref(), config.amqp_url.as_deref()) {
            Some(missing) => skipped.push(format!("{}: skipped, {missing}", kind.name())),
            None => runnable.push(kind),
        }
    }
    let mut phases = Vec::new();
    for round in 1..=config.rounds {
        for &scenario in &config.scenarios {
            for kind in systems_in_round(&runnable, round) {
                for phase in phases_of(&config, kind, scenario, round) {
                    phases.push(run_phase(&config, phase).await?);
                }
            }
        }
    }
    Ok(report(&config, phases, skipped))
}

/// The systems in the order `round` runs them: as given in odd rounds,
/// reversed in even ones. A machine that slows down or speeds up through
/// the run then weighs on the first system of one round as on the last of
/// the next.
fn systems_in_round(systems: &[SystemKind], round: u32) -> Vec<SystemKind> {
    let mut ordered = systems.to_vec();
    if round.is_multiple_of(2) {
        ordered.reverse();
    }
    ordered
}

/// The phases of one system in one scenario, in the order they run: its
/// throughput, its sell-out when it keeps stock, and for Stockroom as
/// shipped on the hot product the latency phase at fewer connections.
fn phases_of(config: &BenchConfig, kind: SystemKind, scenario: Scenario, round: u32) -> Vec<Phase> {
    let phase = |name, connections| Phase {
        kind,
        scenario,
        name,
        connections,
        round,
    };
    let mut phases = vec![phase("throughput", config.connections)];
    if kind.has_stock() {
        phases.push(phase(SELL_OUT, config.connections));
    }
    if kind == SystemKind::Shipped && scenario == Scenario::HotSku && config.latency_connections > 0
    {
        phases.push(phase("latency", config.latency_connections));
    }
    phases
}

/// The run's report: its phases, each Stockroom system's summary, the
/// machine and the settings.
fn report(config: &BenchConfig, phases: Vec<PhaseResult>, skipped: Vec<String>) -> BenchReport {
    let summary = |scenario, system| summarize(&phases, scenario, system);
    BenchReport {
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
            rounds: config.rounds,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_round_runs_the_systems_in_reverse() {
        let systems = [
            SystemKind::Shipped,
            SystemKind::StockroomPostgres,
            SystemKind::NoopHttp,
        ];
        assert_eq!(systems_in_round(&systems, 1), systems.to_vec());
        let mut reversed = systems.to_vec();
        reversed.reverse();
        assert_eq!(systems_in_round(&systems, 2), reversed);
        assert_eq!(systems_in_round(&systems, 3), systems.to_vec());
    }
}
