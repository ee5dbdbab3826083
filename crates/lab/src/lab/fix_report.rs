//! What `lab --fixes` reports: one row per fix (with the write-up it comes
//! from and its flash-sale throughput), one cell per scenario, and the
//! matrix a user sees.

use serde::{Deserialize, Serialize};

use super::Scenario;
use super::throughput::{FLASH_ORDERS, FLASH_PAYMENT_MS};

/// What the runs of one scenario against one fix decided. A cell is judged
/// by every invariant the checker and the lab's probes know, not only by
/// its scenario's race, so that one bug cannot hide another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No invariant broke, and at most a tenth of the orders failed.
    Holds,
    /// The scenario's race showed.
    Breaks,
    /// The scenario's race did not show, but another invariant broke: the
    /// fix is not safe under this load, for a reason its scenario does not
    /// name.
    Finding,
    /// No invariant broke, but more than a tenth of the orders failed
    /// ([`MAX_FAILED_SHARE_PERCENT`]): a fix that refuses most orders
    /// proves nothing by not overselling them.
    Undecided,
    /// The cell could not run (no Redis, a start that failed).
    NotRun,
}

/// The most orders of a run, in percent, that may fail before a run that
/// broke nothing is undecided rather than held.
pub const MAX_FAILED_SHARE_PERCENT: u64 = 10;

/// Whether `failed` of `orders` is more than [`MAX_FAILED_SHARE_PERCENT`].
pub fn too_many_failed(failed: u64, orders: u64) -> bool {
    failed * 100 > orders * MAX_FAILED_SHARE_PERCENT
}

/// One cell of the matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// The scenario's name.
    pub name: String,
    /// Whether the fix held; false also when the cell could not run or is
    /// undecided.
    pub holds: bool,
    pub verdict: Verdict,
    /// What broke (every finding of the run, the scenario's own race
    /// first), what a holding run did, why the cell is undecided, or why it
    /// could not run.
    pub evidence: String,
    /// Runs it took: the first that broke, or every one that did not.
    pub attempts: u32,
}

impl Cell {
    fn new(scenario: Scenario, verdict: Verdict, evidence: String, attempts: u32) -> Cell {
        Cell {
            name: scenario.name().to_owned(),
            holds: verdict == Verdict::Holds,
            verdict,
            evidence,
            attempts,
        }
    }

    pub fn held(scenario: Scenario, evidence: String, attempts: u32) -> Cell {
        Cell::new(scenario, Verdict::Holds, evidence, attempts)
    }

    pub fn broke(scenario: Scenario, evidence: String, attempts: u32) -> Cell {
        Cell::new(scenario, Verdict::Breaks, evidence, attempts)
    }

    pub fn finding(scenario: Scenario, evidence: String, attempts: u32) -> Cell {
        Cell::new(scenario, Verdict::Finding, evidence, attempts)
    }

    pub fn undecided(scenario: Scenario, reason: String, attempts: u32) -> Cell {
        Cell::new(scenario, Verdict::Undecided, reason, attempts)
    }

    pub fn not_run(scenario: Scenario, reason: String) -> Cell {
        Cell::new(scenario, Verdict::NotRun, reason, 0)
    }

    /// The cell as the matrix prints it: "holds", what broke in a few words
    /// (see [`short_evidence`]), "finding: …", "undecided, N/M failed", or
    /// why it did not run.
    pub fn short(&self) -> String {
        match self.verdict {
            // A fix that holds while refusing some orders says so.
            Verdict::Holds => match failed_orders(&self.evidence) {
                Some(failed) => format!("holds, {failed} failed"),
                None => "holds".to_owned(),
            },
            Verdict::Breaks => short_evidence(&self.evidence),
            Verdict::Finding => format!("finding: {}", short_evidence(&self.evidence)),
            Verdict::Undecided => match self.evidence.split_once(" orders failed") {
                Some((counts, _)) => format!("undecided, {} failed", counts.replace(" of ", "/")),
                None => "undecided".to_owned(),
            },
            // "skipped: no Redis (…why…)": the reason's first words; the
            // JSON has it whole.
            Verdict::NotRun => self
                .evidence
                .split_once(" (")
                .map_or_else(|| self.evidence.clone(), |(first, _)| first.to_owned()),
        }
    }
}

/// A finding in a few words: "available -3" out of a check's "expected …,
/// actual available -3", "status reverted" out of the watcher's "status
/// reverted fulfilled→cancelled (3 orders)", "torn reads" out of a torn
/// file's headline, "orders lost" out of "acknowledged order … is missing
/// (lost)", "10 charged twice" out of "order charged twice (10 orders)".
pub fn short_evidence(evidence: &str) -> String {
    // Several findings: the first (the scenario's own race, when it showed).
    let evidence = evidence.split("; also: ").next().unwrap_or(evidence);
    if let Some((_, actual)) = evidence.split_once(", actual ") {
        return actual.to_owned();
    }
    if evidence.starts_with("status reverted") {
        return "status reverted".to_owned();
    }
    if evidence.contains("mid-write") || evidence.contains("garbled") {
        return "torn reads".to_owned();
    }
    if evidence.contains("is missing (lost)") {
        return "orders lost".to_owned();
    }
    if evidence.starts_with("order ") && evidence.contains(" still ") {
        return "orders stuck".to_owned();
    }
    if let Some(count) = evidence
        .strip_prefix("order charged twice (")
        .and_then(|rest| rest.split_whitespace().next())
    {
        return format!("{count} charged twice");
    }
    evidence.to_owned()
}

/// The "N failed" of a run's summary ("5 reserved, 0 rejected, 15 failed,
/// …"): orders the system answered with an error.
fn failed_orders(evidence: &str) -> Option<u64> {
    evidence.split(", ").find_map(|part| {
        part.strip_suffix(" failed")
            .and_then(|count| count.parse().ok())
    })
}

/// One fix's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixRow {
    pub name: String,
    pub source: String,
    /// Orders decided per second on the flash sale; `None` when not measured.
    pub orders_per_s: Option<f64>,
    pub scenarios: Vec<Cell>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixMatrix {
    /// The scenarios' names, in column order.
    pub scenarios: Vec<String>,
    pub fixes: Vec<FixRow>,
}

/// The widest a printed cell gets; longer evidence is cut (the JSON has it
/// whole).
pub const MAX_CELL_CHARS: usize = 24;

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CELL_CHARS {
        return text.to_owned();
    }
    let kept: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
    format!("{kept}…")
}

impl FixMatrix {
    /// The matrix a user sees: one line per fix, one column per scenario,
    /// then the throughput.
    pub fn render(&self) -> String {
        let mut header = vec!["fix".to_owned(), "from".to_owned()];
        header.extend(self.scenarios.iter().cloned());
        header.push("orders/s".to_owned());
        let rows: Vec<Vec<String>> = self
            .fixes
            .iter()
            .map(|row| {
                let mut cells = vec![row.name.clone(), row.source.clone()];
                cells.extend(row.scenarios.iter().map(|cell| cut(&cell.short())));
                cells.push(
                    row.orders_per_s
                        .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}")),
                );
                cells
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|column| {
                rows.iter()
                    .chain([&header])
                    .map(|row| row.get(column).map_or(0, |cell| cell.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for row in [&header].into_iter().chain(rows.iter()) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            text.push_str(line.join("  ").trim_end());
            text.push('\n');
        }
        let held: Vec<String> = self
            .fixes
            .iter()
            .filter(|row| {
                row.scenarios
                    .iter()
                    .all(|cell| cell.verdict == Verdict::Holds)
            })
            .map(|row| row.name.clone())
            .collect();
        text.push_str(&format!(
            "\nholds every scenario: {}",
            if held.is_empty() {
                "none".to_owned()
            } else {
                held.join(", ")
            }
        ));
        for (verdict, heading) in [
            (
                Verdict::Finding,
                "findings (the scenario's race did not show; another invariant broke)",
            ),
            (
                Verdict::Undecided,
                "undecided (more than a tenth of the orders failed)",
            ),
        ] {
            let cells = self.cells_with(verdict);
            if !cells.is_empty() {
                text.push_str(&format!("\n{heading}:\n{}", cells.join("\n")));
            }
        }
        text.push_str(&format!("\n{}", throughput_note()));
        text
    }

    /// "fix × scenario: evidence" for every cell with `verdict`.
    fn cells_with(&self, verdict: Verdict) -> Vec<String> {
        self.fixes
            .iter()
            .flat_map(|row| {
                row.scenarios
                    .iter()
                    .filter(move |cell| cell.verdict == verdict)
                    .map(move |cell| format!("  {} × {}: {}", row.name, cell.name, cell.evidence))
            })
            .collect()
    }
}

/// What the orders/s column measures, printed under the matrix.
pub fn throughput_note() -> String {
    format!(
        "orders/s: a flash sale of {FLASH_ORDERS} one-unit orders, every race window the lab widens shut (the naive system's own windows only), a {FLASH_PAYMENT_MS} ms payment; orders that reached a final status per second"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_print_in_a_few_words() {
        assert_eq!(
            short_evidence("Laptop: expected available >= 0, actual available -3"),
            "available -3"
        );
        assert_eq!(
            short_evidence("status reverted fulfilled→cancelled (3 orders)"),
            "status reverted"
        );
        assert_eq!(
            short_evidence("orders.json truncated mid-write: 7 reads failed"),
            "torn reads"
        );
        assert_eq!(
            short_evidence("order charged twice (10 orders)"),
            "10 charged twice"
        );
        assert_eq!(
            short_evidence("acknowledged order 01a2 is missing (lost) (+1 more)"),
            "orders lost"
        );
        assert_eq!(
            short_evidence("order 01a2 still reserved after 781 ms (+8 more); also: x"),
            "orders stuck"
        );
    }

    #[test]
    fn a_cell_that_refuses_orders_says_so() {
        let held = Cell::held(
            Scenario::Toctou,
            "5 reserved, 13 rejected, 2 failed, 14/14 checks hold".into(),
            3,
        );
        assert_eq!(held.short(), "holds, 2 failed");
        let clean = Cell::held(Scenario::Toctou, "5 reserved, 15 rejected".into(), 3);
        assert_eq!(clean.short(), "holds");
        let refused = Cell::undecided(
            Scenario::Toctou,
            "15 of 20 orders failed; 5 reserved, 0 rejected, 15 failed".into(),
            3,
        );
        assert_eq!(refused.short(), "undecided, 15/20 failed");
        assert!(!refused.holds);
        let skipped = Cell::not_run(Scenario::Toctou, "skipped: no Redis (refused)".into());
        assert_eq!(skipped.short(), "skipped: no Redis");
        assert!(!skipped.holds);
    }

    #[test]
    fn more_than_a_tenth_failed_is_undecided() {
        assert!(!too_many_failed(2, 20));
        assert!(too_many_failed(3, 20));
        assert!(!too_many_failed(0, 0));
    }
}
