//! The lab control's fix matrix: every fix the original authors proposed
//! (and Stockroom as shipped) against the lab's scenarios, as `stockroom lab
//! --fixes` runs it, one row at a time. Each finished row travels in the
//! next snapshot, so the page fills the matrix as the lab goes.

use serde::Serialize;
use stockroom_lab::{Cell, FixLabConfig, FixRow, FixSubject, Scenario, Verdict};

use crate::error::DashboardError;

/// One fix the page may choose.
#[derive(Debug, Clone, Serialize)]
pub struct FixChoiceView {
    pub name: &'static str,
    pub source: &'static str,
}

/// Every row the matrix can have, in the lab's order.
pub fn fix_choices() -> Vec<FixChoiceView> {
    FixSubject::all()
        .into_iter()
        .map(|subject| FixChoiceView {
            name: subject.name(),
            source: subject.source(),
        })
        .collect()
}

/// One cell as the page shows it: the verdict, the matrix's few words, and
/// the whole evidence for its tooltip.
#[derive(Debug, Clone, Serialize)]
pub struct CellView {
    pub name: String,
    pub verdict: Verdict,
    pub short: String,
    pub evidence: String,
}

/// One finished row of the matrix.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FixRowView {
    pub name: String,
    pub source: String,
    pub orders_per_s: Option<f64>,
    pub cells: Vec<CellView>,
}

impl From<FixRow> for FixRowView {
    fn from(row: FixRow) -> FixRowView {
        FixRowView {
            name: row.name,
            source: row.source,
            orders_per_s: row.orders_per_s,
            cells: row
                .scenarios
                .into_iter()
                .map(|cell: Cell| CellView {
                    short: cell.short(),
                    name: cell.name,
                    verdict: cell.verdict,
                    evidence: cell.evidence,
                })
                .collect(),
        }
    }
}

/// The rows a request names, in the lab's order (every row when it names
/// none).
pub fn plan_rows(names: &[String]) -> Result<Vec<FixSubject>, DashboardError> {
    let mut chosen = Vec::new();
    for name in names {
        let subject: FixSubject =
            name.parse()
                .map_err(|error: stockroom_domain::UnknownName| {
                    DashboardError::Invalid(error.to_string())
                })?;
        chosen.push(subject);
    }
    Ok(FixSubject::all()
        .into_iter()
        .filter(|subject| chosen.is_empty() || chosen.contains(subject))
        .collect())
}

/// The fix lab's settings for a run from the page.
pub fn config(
    subjects: Vec<FixSubject>,
    scenarios: Vec<Scenario>,
    race_window_ms: u64,
    redis_url: Option<String>,
    throughput: bool,
) -> FixLabConfig {
    let mut config = FixLabConfig::new(race_window_ms, redis_url);
    config.subjects = subjects;
    config.scenarios = scenarios;
    config.throughput = throughput;
    config
}

/// The matrix's verdict, as `stockroom lab --fixes` gives it: every cell
/// ran, and Stockroom held everywhere it was tried; the other rows'
/// verdicts are what the lab found, not failures.
pub fn passed(rows: &[FixRowView]) -> bool {
    rows.iter().all(|row| {
        let stockroom = row.name == FixSubject::Stockroom.name();
        row.cells.iter().all(|cell| match cell.verdict {
            Verdict::NotRun => false,
            Verdict::Holds => true,
            Verdict::Breaks | Verdict::Finding | Verdict::Undecided => !stockroom,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_labs_order() {
        let all = plan_rows(&[]).unwrap();
        assert_eq!(all, FixSubject::all());
        let some = plan_rows(&["stockroom".into(), "no-fix".into()]).unwrap();
        assert_eq!(
            some,
            vec![
                FixSubject::Naive(stockroom_naive::Fix::None),
                FixSubject::Stockroom
            ]
        );
        assert!(plan_rows(&["no-such-fix".into()]).is_err());
    }

    #[test]
    fn only_stockroom_must_hold() {
        let row = |name: &str, verdict| FixRowView {
            name: name.into(),
            source: String::new(),
            orders_per_s: None,
            cells: vec![CellView {
                name: "toctou".into(),
                verdict,
                short: String::new(),
                evidence: String::new(),
            }],
        };
        assert!(passed(&[row("no-fix", Verdict::Breaks)]));
        assert!(passed(&[row("no-fix", Verdict::Undecided)]));
        assert!(!passed(&[row("stockroom", Verdict::Finding)]));
        assert!(!passed(&[row("redis-lock", Verdict::NotRun)]));
    }
}
