//! What `lab --fixes` reports: one row per fix (with the write-up it comes
//! from and its flash-sale throughput), one cell per scenario, and the
//! matrix a user sees.

use serde::{Deserialize, Serialize};

use super::Scenario;

/// What one run of one scenario against one fix decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The scenario's race never showed.
    Holds,
    /// The scenario's race showed.
    Breaks,
    /// The cell could not run (no Redis, a start that failed).
    NotRun,
}

/// One cell of the matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// The scenario's name.
    pub name: String,
    /// Whether the fix held; false also when the cell could not run.
    pub holds: bool,
    pub verdict: Verdict,
    /// What broke (the first finding of the scenario's race), what a holding
    /// run did, or why the cell could not run.
    pub evidence: String,
    /// Runs it took: the first that broke, or every one that held.
    pub attempts: u32,
}

impl Cell {
    pub fn held(scenario: Scenario, evidence: String, attempts: u32) -> Cell {
        Cell {
            name: scenario.name().to_owned(),
            holds: true,
            verdict: Verdict::Holds,
            evidence,
            attempts,
        }
    }

    pub fn broke(scenario: Scenario, evidence: String, attempts: u32) -> Cell {
        Cell {
            name: scenario.name().to_owned(),
            holds: false,
            verdict: Verdict::Breaks,
            evidence,
            attempts,
        }
    }

    pub fn not_run(scenario: Scenario, reason: String) -> Cell {
        Cell {
            name: scenario.name().to_owned(),
            holds: false,
            verdict: Verdict::NotRun,
            evidence: reason,
            attempts: 0,
        }
    }

    /// The cell as the matrix prints it: "holds", what broke in a few words
    /// (see [`short_evidence`]), or why it did not run.
    pub fn short(&self) -> String {
        match self.verdict {
            // A fix that holds by refusing orders says so.
            Verdict::Holds => match failed_orders(&self.evidence) {
                Some(failed) => format!("holds, {failed} failed"),
                None => "holds".to_owned(),
            },
            Verdict::Breaks => short_evidence(&self.evidence),
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
        text
    }
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
    }

    #[test]
    fn a_cell_that_holds_by_refusing_orders_says_so() {
        let held = Cell::held(
            Scenario::Toctou,
            "5 reserved, 0 rejected, 15 failed, 13/14 checks hold".into(),
            3,
        );
        assert_eq!(held.short(), "holds, 15 failed");
        let clean = Cell::held(Scenario::Toctou, "5 reserved, 15 rejected".into(), 3);
        assert_eq!(clean.short(), "holds");
        let skipped = Cell::not_run(Scenario::Toctou, "skipped: no Redis (refused)".into());
        assert_eq!(skipped.short(), "skipped: no Redis");
        assert!(!skipped.holds);
    }
}
