//! One phase of the flash-sale benchmark: a system started fresh with its
//! stock, the load sent through the load generator, and what came back
//! measured (throughput, latency, statements per order, and for a sell-out
//! what was oversold or undersold).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::load::{self, LoadResult};
use crate::targets::{self, Target};
use crate::wal::LogBreakdown;
use crate::{
    BenchConfig, NAIVE_SELL_OUT_DIVISOR, PHASE_TIME_LIMIT_MS, SETTLE_TIMEOUT_MS, Scenario,
    SystemKind, UNLIMITED_STOCK,
};

/// The phase whose stock is sold out.
pub const SELL_OUT: &str = "sell-out";

/// One phase to run: a system, a scenario, the phase's name, and the load
/// generator's connections.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub kind: SystemKind,
    pub scenario: Scenario,
    pub name: &'static str,
    pub connections: usize,
    /// Which of the run's rounds this phase belongs to, from 1.
    pub round: u32,
}

/// One phase's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub system: &'static str,
    pub scenario: Scenario,
    pub phase: &'static str,
    /// The round of the run the phase ran in, from 1 (`--rounds`).
    pub round: u32,
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
    /// Bytes of PostgreSQL's write-ahead log per answered order, from the
    /// start of the load until every order settled (systems on PostgreSQL
    /// only).
    pub wal_bytes_per_order: Option<f64>,
    /// The same log read back by table and index, with the index entries an
    /// order adds (with `--wal-by-relation`, systems on PostgreSQL only).
    pub wal_by_relation: Option<LogBreakdown>,
    /// The machine's CPU time per answered order, in microseconds, over the
    /// same span as the write-ahead log: every process on the order's path
    /// (the load generator, the services, the database), on Linux
    /// (`crate::cpu`).
    pub cpu_us_per_order: Option<f64>,
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

/// The products, stock and orders of one phase.
struct Sizes {
    names: Vec<String>,
    sell_out: bool,
    /// Orders of a sell-out.
    orders: u64,
    /// Units of each product.
    per_product: i64,
}

impl Sizes {
    fn of(config: &BenchConfig, phase: Phase) -> Sizes {
        let names = phase.scenario.products(config);
        let sell_out = phase.name == SELL_OUT;
        let divisor = if phase.kind == SystemKind::Naive && sell_out {
            NAIVE_SELL_OUT_DIVISOR
        } else {
            1
        };
        // Every product keeps at least one unit even when the naive run is
        // scaled down, so that the cold scenario still sells out every
        // product.
        let stock = (config.sell_out_stock / divisor).max(names.len() as i64);
        let orders = (config.sell_out_orders / divisor as u64).max(2 * names.len() as u64);
        let per_product = if sell_out {
            stock / names.len() as i64
        } else {
            UNLIMITED_STOCK
        };
        Sizes {
            names,
            sell_out,
            orders,
            per_product,
        }
    }

    fn products(&self) -> Vec<(String, i64)> {
        self.names
            .iter()
            .map(|name| (name.clone(), self.per_product))
            .collect()
    }

    /// Units on sale over all products.
    fn stock(&self) -> i64 {
        self.per_product * self.names.len() as i64
    }
}

/// Runs one phase on a freshly started system and measures it.
pub async fn run_phase(config: &BenchConfig, phase: Phase) -> anyhow::Result<PhaseResult> {
    let sizes = Sizes::of(config, phase);
    let schema = format!("stockroom_bench_{}", std::process::id());
    let target = targets::start(
        phase.kind,
        &sizes.products(),
        config.postgres_url.as_deref(),
        config.amqp_url.as_deref(),
        &schema,
    )
    .await?;
    let statements_before = target
        .storage()
        .map(|storage| storage.statements_executed());
    let wal_url = config
        .postgres_url
        .as_deref()
        .filter(|_| phase.kind.on_postgres());
    let wal_before = wal_position(wal_url).await;
    let busy_before = crate::cpu::busy_ticks();
    let Some(result) = send_load(config, phase, &sizes, &target).await else {
        target.stop().await;
        anyhow::bail!(
            "{} did not finish its {} phase within {PHASE_TIME_LIMIT_MS} ms",
            phase.kind.name(),
            phase.name
        );
    };
    let (statements_per_order, settle_note) =
        statements_per_order(&target, statements_before, &result).await;
    let wal_after = wal_position(wal_url).await;
    let cpu_us_per_order =
        crate::cpu::micros_per_order(busy_before, crate::cpu::busy_ticks(), result.answered());
    let wal_bytes_per_order = match (wal_before, wal_after) {
        (Some(before), Some(after)) => {
            Some((after - before) as f64 / result.answered().max(1) as f64)
        }
        _ => None,
    };
    let (wal_by_relation, wal_note) = match (wal_url, wal_before, wal_after) {
        (Some(url), Some(before), Some(after)) if config.wal_by_relation => {
            match crate::wal::by_relation(url, before, after, result.answered()).await {
                Ok(breakdown) => (Some(breakdown), None),
                Err(error) => (None, Some(format!("no WAL by relation: {error:#}"))),
            }
        }
        _ => (None, None),
    };
    let sold = if sizes.sell_out && phase.kind.has_stock() {
        sell_out_figures(&target, phase.kind, &sizes, &result).await
    } else {
        SellOut::default()
    };
    target.stop().await;
    Ok(PhaseResult {
        system: phase.kind.name(),
        scenario: phase.scenario,
        phase: phase.name,
        round: phase.round,
        connections: phase.connections,
        requests: result.sent,
        orders_per_s: result.orders_per_s(),
        p50_ms: result.percentile_ms(0.50),
        p99_ms: result.percentile_ms(0.99),
        p999_ms: result.percentile_ms(0.999),
        created: result.created,
        rejected: result.rejected,
        overloaded: result.overloaded,
        errors: result.errors + result.other_status,
        oversold: sold.oversold,
        undersold: sold.undersold,
        statements_per_order,
        wal_bytes_per_order,
        wal_by_relation,
        cpu_us_per_order,
        durability: phase.kind.durability(),
        note: sold.note.or(settle_note).or(wal_note),
    })
}

/// Sends the phase's load to `target` with a progress bar: its orders for
/// a sell-out, for the configured duration otherwise. `None` when it did
/// not finish within [`PHASE_TIME_LIMIT_MS`].
async fn send_load(
    config: &BenchConfig,
    phase: Phase,
    sizes: &Sizes,
    target: &Target,
) -> Option<LoadResult> {
    let stop = if sizes.sell_out {
        load::Stop::Orders(sizes.orders)
    } else {
        load::Stop::After(config.duration)
    };
    let bar = progress_bar(
        config,
        format!(
            "{} · {:?} · {}",
            phase.kind.name(),
            phase.scenario,
            phase.name
        ),
        sizes.sell_out.then_some(sizes.orders),
    );
    let spec = load::LoadSpec {
        address: target.address.clone(),
        path: "/api/orders".into(),
        connections: phase.connections,
        stop,
        body: body_for(Arc::new(sizes.names.clone())),
    };
    let progress = bar.clone();
    let result = tokio::time::timeout(
        Duration::from_millis(PHASE_TIME_LIMIT_MS),
        load::run(spec, move |answered| progress.set_position(answered)),
    )
    .await;
    bar.finish_and_clear();
    result.ok()
}

/// SQL statements per answered order since `before`, counted once every
/// accepted order has settled (Stockroom only), with a note when they did
/// not settle in time.
async fn statements_per_order(
    target: &Target,
    before: Option<u64>,
    result: &LoadResult,
) -> (Option<f64>, Option<String>) {
    let (Some(storage), Some(before)) = (target.storage(), before) else {
        return (None, None);
    };
    let note = (!settle(storage).await).then(|| {
        format!(
            "orders still reserved {SETTLE_TIMEOUT_MS} ms after the load; statements counted so far"
        )
    });
    let answered = (result.created + result.rejected).max(1);
    let statements = storage.statements_executed() - before;
    (Some(statements as f64 / answered as f64), note)
}

/// The WAL position of the server at `url`, when there is one and it can
/// be read (a failed read leaves the phase without the figure, not failed).
async fn wal_position(url: Option<&str>) -> Option<i64> {
    crate::wal::position_bytes(url?).await.ok()
}

/// What a sell-out left: units oversold and undersold, and a note.
#[derive(Default)]
struct SellOut {
    oversold: Option<i64>,
    undersold: Option<i64>,
    note: Option<String>,
}

/// Reads the stock a sell-out left once it stops changing and compares it
/// with what the clients were told.
async fn sell_out_figures(
    target: &Target,
    kind: SystemKind,
    sizes: &Sizes,
    result: &LoadResult,
) -> SellOut {
    let client = reqwest::Client::new();
    let available = match settled_stock(target, &client).await {
        Ok(available) => available,
        Err(error) => {
            return SellOut {
                note: Some(format!("could not read the stock: {error}")),
                ..SellOut::default()
            };
        }
    };
    let stock = sizes.stock();
    let left: i64 = available.iter().map(|units| units.max(&0)).sum();
    let negative: i64 = available.iter().map(|units| (-units).max(0)).sum();
    // Oversold: units promised beyond the stock, as the stock shows it
    // (negative availability) or as the clients were told (more 201s than
    // units, for systems that reserve before answering).
    let promised_beyond = if kind == SystemKind::Naive {
        0
    } else {
        (result.created as i64 - stock).max(0)
    };
    SellOut {
        oversold: Some(negative.max(promised_beyond)),
        // Undersold: units left while buyers were refused.
        undersold: Some(left.min(result.rejected as i64)),
        note: (kind == SystemKind::Naive).then(|| {
            format!(
                "answers 201 pending and decides later, racily; sell-out scaled to {stock} units and {} orders",
                sizes.orders
            )
        }),
    }
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
async fn settled_stock(target: &Target, client: &reqwest::Client) -> anyhow::Result<Vec<i64>> {
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
