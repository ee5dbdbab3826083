//! The benchmark's report: every phase's measurement, a summary of each
//! Stockroom system with its ratios to the baselines, and the table a person
//! reads.

use serde::Serialize;

use crate::{PhaseResult, Scenario, SystemKind};

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
    /// How many times every phase ran (`--rounds`).
    pub rounds: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub os: String,
}

/// One Stockroom system in one scenario, with its ratios to each baseline.
/// Over several rounds each figure is the median of the rounds' figures,
/// each ratio taken within its own round; oversold and undersold are the
/// worst round's.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub system: String,
    pub orders_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p99_ms_at_latency_connections: Option<f64>,
    pub ratio_vs_postgres_per_request: Option<f64>,
    /// Against the order's whole life per request on PostgreSQL.
    pub ratio_vs_full_flow_per_request: Option<f64>,
    pub ratio_vs_noop_http: Option<f64>,
    pub ratio_vs_batching_off: Option<f64>,
    /// Stockroom on PostgreSQL against the same with every batch's stock
    /// locked before the rules decide it (when that system ran).
    pub ratio_vs_locking_first: Option<f64>,
    pub ratio_vs_naive: Option<f64>,
    pub oversold: Option<i64>,
    pub undersold: Option<i64>,
    pub sell_out_orders_per_s: Option<f64>,
    /// SQL statements per order over the whole flow, in the throughput phase.
    pub statements_per_order: Option<f64>,
    /// Bytes of PostgreSQL's write-ahead log per order over the whole flow,
    /// in the throughput phase (on PostgreSQL only).
    pub wal_bytes_per_order: Option<f64>,
    /// Index entries (B-tree leaf insertions) per order in the throughput
    /// phase, with `--wal-by-relation` on PostgreSQL.
    pub index_insertions_per_order: Option<f64>,
    /// The machine's CPU time per order over the whole flow, in
    /// microseconds, in the throughput phase (on Linux).
    pub cpu_us_per_order: Option<f64>,
}

/// `system`'s summary in `scenario`: each round's, then their medians.
pub(crate) fn summarize(
    phases: &[PhaseResult],
    scenario: Scenario,
    system: SystemKind,
) -> Option<Summary> {
    let last_round = phases.iter().map(|phase| phase.round).max()?;
    let rounds: Vec<Summary> = (1..=last_round)
        .filter_map(|round| summarize_round(phases, scenario, system, round))
        .collect();
    let median_of = |field: fn(&Summary) -> Option<f64>| median(rounds.iter().filter_map(field));
    let worst_of = |field: fn(&Summary) -> Option<i64>| rounds.iter().filter_map(field).max();
    Some(Summary {
        system: system.name().to_owned(),
        orders_per_s: median_of(|round| Some(round.orders_per_s))?,
        p50_ms: median_of(|round| Some(round.p50_ms))?,
        p99_ms: median_of(|round| Some(round.p99_ms))?,
        p999_ms: median_of(|round| Some(round.p999_ms))?,
        p99_ms_at_latency_connections: median_of(|round| round.p99_ms_at_latency_connections),
        ratio_vs_postgres_per_request: median_of(|round| round.ratio_vs_postgres_per_request),
        ratio_vs_full_flow_per_request: median_of(|round| round.ratio_vs_full_flow_per_request),
        ratio_vs_noop_http: median_of(|round| round.ratio_vs_noop_http),
        ratio_vs_batching_off: median_of(|round| round.ratio_vs_batching_off),
        ratio_vs_locking_first: median_of(|round| round.ratio_vs_locking_first),
        ratio_vs_naive: median_of(|round| round.ratio_vs_naive),
        oversold: worst_of(|round| round.oversold),
        undersold: worst_of(|round| round.undersold),
        sell_out_orders_per_s: median_of(|round| round.sell_out_orders_per_s),
        statements_per_order: median_of(|round| round.statements_per_order),
        wal_bytes_per_order: median_of(|round| round.wal_bytes_per_order),
        index_insertions_per_order: median_of(|round| round.index_insertions_per_order),
        cpu_us_per_order: median_of(|round| round.cpu_us_per_order),
    })
}

/// The median of `values` (the mean of the middle two when they are even
/// in number); `None` when there are none.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        length if !length.is_multiple_of(2) => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

/// `system`'s summary in `scenario` from the phases of one round: every
/// ratio against a baseline measured in the same round.
fn summarize_round(
    phases: &[PhaseResult],
    scenario: Scenario,
    system: SystemKind,
    round: u32,
) -> Option<Summary> {
    let find = |name: &str, phase_name: &str| {
        phases.iter().find(|phase| {
            phase.system == name
                && phase.scenario == scenario
                && phase.phase == phase_name
                && phase.round == round
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
        ratio_vs_full_flow_per_request: ratio("postgres-full-flow-per-request"),
        ratio_vs_noop_http: ratio("noop-http"),
        ratio_vs_batching_off: ratio("stockroom-batching-off"),
        // The variant is the same system on PostgreSQL with its stock
        // locked first: a ratio only for Stockroom on PostgreSQL.
        ratio_vs_locking_first: (system == SystemKind::StockroomPostgres)
            .then(|| ratio("stockroom-postgres-locking-first"))
            .flatten(),
        ratio_vs_naive: ratio("naive"),
        oversold: sell_out.and_then(|phase| phase.oversold),
        undersold: sell_out.and_then(|phase| phase.undersold),
        sell_out_orders_per_s: sell_out.map(|phase| phase.orders_per_s),
        statements_per_order: shipped.statements_per_order,
        wal_bytes_per_order: shipped.wal_bytes_per_order,
        index_insertions_per_order: shipped
            .wal_by_relation
            .as_ref()
            .map(|breakdown| breakdown.index_insertions_per_order),
        cpu_us_per_order: shipped.cpu_us_per_order,
    })
}

fn optional(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}×"))
}

/// The report as a person reads it: a row per phase, then a paragraph per
/// measured Stockroom system, then the systems skipped.
pub fn render_table(report: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<32} {:<9} {:<10} {:>5} {:>6} {:>11} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11} {:>11} {:>12}  {}\n",
        "system",
        "scenario",
        "phase",
        "round",
        "conns",
        "orders/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "oversold",
        "undersold",
        "stmts/order",
        "WAL B/order",
        "CPU µs/order",
        "durability"
    ));
    for phase in &report.phases {
        out.push_str(&phase_row(phase));
    }
    for phase in &report.phases {
        out.push_str(&relation_block(phase));
    }
    if report.settings.rounds > 1 {
        out.push_str(&format!(
            "\nEach figure below is the median of {} rounds, each ratio taken within its round; oversold and undersold are the worst round's.\n",
            report.settings.rounds
        ));
    }
    for (label, summary) in measured_summaries(report) {
        out.push_str(&summary_paragraph(
            label,
            summary,
            report.settings.latency_connections,
        ));
    }
    for note in &report.skipped {
        out.push_str(&format!("{note}\n"));
    }
    out
}

/// One phase's row of the table, with a line for its errors and one for its
/// note when it has them.
fn phase_row(phase: &PhaseResult) -> String {
    let mut out = format!(
        "{:<32} {:<9} {:<10} {:>5} {:>6} {:>11.0} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>9} {:>11} {:>11} {:>12}  {}\n",
        phase.system,
        phase.scenario.name(),
        phase.phase,
        phase.round,
        phase.connections,
        phase.orders_per_s,
        phase.p50_ms,
        phase.p99_ms,
        phase.p999_ms,
        optional(phase.oversold),
        optional(phase.undersold),
        statements(phase.statements_per_order),
        wal_bytes(phase.wal_bytes_per_order),
        wal_bytes(phase.cpu_us_per_order),
        phase.durability,
    );
    if phase.errors > 0 || phase.overloaded > 0 {
        out.push_str(&format!(
            "{:<32} {} errors, {} answered 503 (overloaded)\n",
            "", phase.errors, phase.overloaded
        ));
    }
    if let Some(note) = &phase.note {
        out.push_str(&format!("{:<32} note: {note}\n", ""));
    }
    out
}

/// A phase's write-ahead log by table and index, when it was read back:
/// a heading, then a row per relation.
fn relation_block(phase: &PhaseResult) -> String {
    let Some(breakdown) = &phase.wal_by_relation else {
        return String::new();
    };
    let mut out = format!(
        "\nWAL by relation, {} · {} · {} · round {} ({:.1} index entries per order):\n{:<40} {:>12} {:>14}\n",
        phase.system,
        phase.scenario.name(),
        phase.phase,
        phase.round,
        breakdown.index_insertions_per_order,
        "relation",
        "bytes/order",
        "records/order"
    );
    for relation in &breakdown.relations {
        out.push_str(&format!(
            "{:<40} {:>12.0} {:>14.2}\n",
            relation.relation, relation.bytes_per_order, relation.records_per_order
        ));
    }
    out
}

/// The summaries worth a paragraph, with their labels: Stockroom as shipped
/// when it was measured, and Stockroom on PostgreSQL where it was.
fn measured_summaries(report: &BenchReport) -> impl Iterator<Item = (&'static str, &Summary)> {
    // The shipped system's summaries are not optional in the report (its
    // JSON keeps their keys), so a scenario it did not run is told by its
    // phases: a run of one scenario gets no paragraph of zeros for the other.
    let measured = |scenario: Scenario| {
        report.phases.iter().any(|phase| {
            phase.system == SystemKind::Shipped.name()
                && phase.scenario == scenario
                && phase.phase == "throughput"
        })
    };
    let shipped = [
        (
            "Stockroom, hot product",
            measured(Scenario::HotSku).then_some(&report.hot_sku),
        ),
        (
            "Stockroom, cold catalogue",
            measured(Scenario::Cold).then_some(&report.cold),
        ),
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
    shipped
        .into_iter()
        .chain(on_postgres)
        .filter_map(|(label, summary)| Some((label, summary?)))
}

/// One system's paragraph: throughput, p99, its ratios to each baseline,
/// what a sell-out left, and statements per order.
fn summary_paragraph(label: &str, summary: &Summary, latency_connections: usize) -> String {
    format!(
        "\n{label}: {:.0} orders/s, p99 {:.1} ms{}; {} vs PostgreSQL per request, {} vs the full flow per request, {} vs no-op HTTP, {} vs batching off, {} vs naive{}; oversold {}, undersold {}; {} SQL statements per order{}{}{}\n",
        summary.orders_per_s,
        summary.p99_ms,
        summary
            .p99_ms_at_latency_connections
            .map(|p99| format!(" (p99 {p99:.1} ms at {latency_connections} connections)"))
            .unwrap_or_default(),
        ratio(summary.ratio_vs_postgres_per_request),
        ratio(summary.ratio_vs_full_flow_per_request),
        ratio(summary.ratio_vs_noop_http),
        ratio(summary.ratio_vs_batching_off),
        ratio(summary.ratio_vs_naive),
        summary
            .ratio_vs_locking_first
            .map(|value| format!(", {value:.2}× vs its stock locked first"))
            .unwrap_or_default(),
        optional(summary.oversold),
        optional(summary.undersold),
        statements(summary.statements_per_order),
        summary
            .wal_bytes_per_order
            .map(|bytes| format!("; {bytes:.0} bytes of WAL per order"))
            .unwrap_or_default(),
        summary
            .index_insertions_per_order
            .map(|entries| format!(", {entries:.1} index entries per order"))
            .unwrap_or_default(),
        summary
            .cpu_us_per_order
            .map(|micros| format!("; {micros:.0} µs of the machine's CPU per order"))
            .unwrap_or_default(),
    )
}

fn statements(per_order: Option<f64>) -> String {
    per_order.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"))
}

fn wal_bytes(per_order: Option<f64>) -> String {
    per_order.map_or_else(|| "-".to_owned(), |value| format!("{value:.0}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throughput(system: SystemKind, scenario: Scenario, orders_per_s: f64) -> PhaseResult {
        PhaseResult {
            system: system.name(),
            scenario,
            phase: "throughput",
            round: 1,
            connections: 10,
            requests: 100,
            orders_per_s,
            p50_ms: 1.0,
            p99_ms: 2.0,
            p999_ms: 3.0,
            created: 100,
            rejected: 0,
            overloaded: 0,
            errors: 0,
            oversold: None,
            undersold: None,
            statements_per_order: None,
            wal_bytes_per_order: None,
            wal_by_relation: None,
            cpu_us_per_order: None,
            durability: "n/a",
            note: None,
        }
    }

    fn report_of(phases: Vec<PhaseResult>) -> BenchReport {
        let rounds = phases.iter().map(|phase| phase.round).max().unwrap_or(1);
        let summary =
            |scenario| summarize(&phases, scenario, SystemKind::Shipped).unwrap_or_default();
        BenchReport {
            hot_sku: summary(Scenario::HotSku),
            cold: summary(Scenario::Cold),
            postgres_hot: None,
            postgres_cold: None,
            postgres_rabbitmq_hot: None,
            postgres_rabbitmq_cold: None,
            phases,
            skipped: Vec::new(),
            machine: Machine {
                cores: 2,
                os: "linux".to_owned(),
            },
            settings: Settings {
                connections: 10,
                duration_s: 1.0,
                sell_out_stock: 10,
                sell_out_orders: 20,
                cold_products: 10,
                latency_connections: 0,
                rounds,
            },
        }
    }

    #[test]
    fn a_scenario_that_did_not_run_gets_no_paragraph() {
        let report = report_of(vec![throughput(
            SystemKind::Shipped,
            Scenario::HotSku,
            1234.0,
        )]);
        let table = render_table(&report);
        assert!(
            table.contains("Stockroom, hot product: 1234 orders/s"),
            "{table}"
        );
        assert!(!table.contains("Stockroom, cold catalogue"), "{table}");
    }

    #[test]
    fn both_scenarios_get_their_paragraphs() {
        let report = report_of(vec![
            throughput(SystemKind::Shipped, Scenario::HotSku, 1234.0),
            throughput(SystemKind::Shipped, Scenario::Cold, 567.0),
        ]);
        let table = render_table(&report);
        assert!(
            table.contains("Stockroom, hot product: 1234 orders/s"),
            "{table}"
        );
        assert!(
            table.contains("Stockroom, cold catalogue: 567 orders/s"),
            "{table}"
        );
    }

    fn in_round(mut phase: PhaseResult, round: u32) -> PhaseResult {
        phase.round = round;
        phase
    }

    #[test]
    fn each_ratio_is_taken_within_its_round_then_the_median_of_the_rounds() {
        // The machine halves its speed after the first round: each round's
        // ratio is 2, though the first round's Stockroom against the
        // second round's no-op ceiling would give 8.
        let phases = vec![
            in_round(throughput(SystemKind::Shipped, Scenario::HotSku, 400.0), 1),
            in_round(throughput(SystemKind::NoopHttp, Scenario::HotSku, 200.0), 1),
            in_round(throughput(SystemKind::NoopHttp, Scenario::HotSku, 50.0), 2),
            in_round(throughput(SystemKind::Shipped, Scenario::HotSku, 100.0), 2),
            in_round(throughput(SystemKind::Shipped, Scenario::HotSku, 300.0), 3),
            in_round(throughput(SystemKind::NoopHttp, Scenario::HotSku, 100.0), 3),
        ];
        let summary = summarize(&phases, Scenario::HotSku, SystemKind::Shipped).unwrap();
        assert_eq!(summary.ratio_vs_noop_http, Some(2.0));
        assert_eq!(summary.orders_per_s, 300.0);
        let table = render_table(&report_of(phases));
        assert!(table.contains("the median of 3 rounds"), "{table}");
    }

    #[test]
    fn only_stockroom_on_postgres_is_compared_with_its_stock_locked_first() {
        let phases = vec![
            throughput(SystemKind::StockroomPostgres, Scenario::Cold, 300.0),
            throughput(
                SystemKind::StockroomPostgresLockingFirst,
                Scenario::Cold,
                200.0,
            ),
            throughput(SystemKind::Shipped, Scenario::Cold, 400.0),
        ];
        let on_postgres =
            summarize(&phases, Scenario::Cold, SystemKind::StockroomPostgres).unwrap();
        assert_eq!(on_postgres.ratio_vs_locking_first, Some(1.5));
        let embedded = summarize(&phases, Scenario::Cold, SystemKind::Shipped).unwrap();
        assert_eq!(embedded.ratio_vs_locking_first, None);
        let paragraph = summary_paragraph("Stockroom on PostgreSQL", &on_postgres, 100);
        assert!(
            paragraph.contains("1.50× vs its stock locked first"),
            "{paragraph}"
        );
    }

    #[test]
    fn the_worst_round_oversold_is_reported() {
        let sold_out = |round, oversold| {
            let mut phase = in_round(throughput(SystemKind::Shipped, Scenario::Cold, 10.0), round);
            phase.phase = crate::phase::SELL_OUT;
            phase.oversold = Some(oversold);
            phase.undersold = Some(0);
            phase
        };
        let phases = vec![
            in_round(throughput(SystemKind::Shipped, Scenario::Cold, 10.0), 1),
            sold_out(1, 0),
            in_round(throughput(SystemKind::Shipped, Scenario::Cold, 10.0), 2),
            sold_out(2, 3),
        ];
        let summary = summarize(&phases, Scenario::Cold, SystemKind::Shipped).unwrap();
        assert_eq!(summary.oversold, Some(3));
        assert_eq!(summary.undersold, Some(0));
    }

    #[test]
    fn a_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }
}
