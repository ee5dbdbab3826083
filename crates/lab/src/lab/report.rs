//! What the lab reports: one row per scenario, the table a user sees, and the
//! short phrases the table is made of (a failed check's headline, a torn
//! file's, the fixed system's summary).

use serde::{Deserialize, Serialize};

use super::Anomaly;
use crate::check::CheckReport;

/// One row of the lab's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub title: String,
    pub naive_reproduced: bool,
    /// Naive runs it took (at most [`MAX_NAIVE_ATTEMPTS`](super::MAX_NAIVE_ATTEMPTS)).
    pub naive_attempts: u32,
    /// What the naive system showed, the scenario's own race first.
    pub naive_anomalies: Vec<String>,
    pub fixed_violations: usize,
    /// What the fixed system did under the same load.
    pub fixed_result: String,
    pub fixed_details: Vec<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabReport {
    pub passed: bool,
    /// The naive system's race window in this run.
    #[serde(default)]
    pub race_window_ms: u64,
    /// Whether each storm was synchronised by last bytes.
    #[serde(default)]
    pub sync: bool,
    pub scenarios: Vec<ScenarioResult>,
}

impl LabReport {
    /// The table a user sees.
    pub fn render(&self) -> String {
        let rows: Vec<[String; 3]> = self
            .scenarios
            .iter()
            .map(|result| {
                let naive = match (result.naive_reproduced, result.naive_anomalies.first()) {
                    (true, Some(first)) => first.clone(),
                    (false, _) => "NOT REPRODUCED".to_owned(),
                    (true, None) => "reproduced".to_owned(),
                };
                let fixed = if result.fixed_violations == 0 {
                    format!("ok: {}", result.fixed_result)
                } else {
                    format!(
                        "VIOLATED ({}): {}",
                        result.fixed_violations,
                        result.fixed_details.join("; ")
                    )
                };
                [result.title.clone(), naive, fixed]
            })
            .collect();
        let header = [
            "scenario".to_owned(),
            "original system (naive)".to_owned(),
            "Stockroom (fixed)".to_owned(),
        ];
        let widths: Vec<usize> = (0..2)
            .map(|column| {
                rows.iter()
                    .chain([&header])
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        if self.sync || self.race_window_ms == 0 {
            // Which races show without help is the point of such a run.
            text.push_str(&format!(
                "{} storms, naive race windows at {} ms\n\n",
                if self.sync {
                    "last-byte synchronised"
                } else {
                    "plain"
                },
                self.race_window_ms
            ));
        }
        for row in [&header].into_iter().chain(rows.iter()) {
            text.push_str(&format!(
                "{:w0$}  {:w1$}  {}\n",
                row[0],
                row[1],
                row[2],
                w0 = widths[0],
                w1 = widths[1]
            ));
        }
        let reproduced = self
            .scenarios
            .iter()
            .filter(|result| result.naive_reproduced)
            .count();
        let clean = self
            .scenarios
            .iter()
            .filter(|result| result.fixed_violations == 0)
            .count();
        text.push_str(&format!(
            "\n{reproduced}/{} races reproduced on the naive system; {clean}/{} scenarios clean on Stockroom: {}",
            self.scenarios.len(),
            self.scenarios.len(),
            if self.passed { "PASS" } else { "FAIL" }
        ));
        text
    }
}

pub(super) fn check_anomalies(report: &CheckReport) -> Vec<Anomaly> {
    report
        .failed()
        .map(|check| Anomaly {
            kind: check.name.clone(),
            text: headline(check),
        })
        .collect()
}

/// A short phrase for a failed check, for the lab's table: its first
/// finding, and how many more there were.
fn headline(check: &crate::check::CheckOutcome) -> String {
    let first = check
        .details
        .first()
        .cloned()
        .unwrap_or_else(|| check.name.clone());
    if check.details.len() > 1 {
        format!("{first} (+{} more)", check.details.len() - 1)
    } else {
        first
    }
}

/// "orders.json truncated mid-write: 8 reads failed", from the first error
/// message a reader got.
pub(super) fn torn_headline(failures: usize, first_message: Option<&str>) -> String {
    let message = first_message.unwrap_or("");
    let file = message
        .split_once(" is corrupted")
        .map_or("a data file", |(file, _)| file);
    let how = if message.contains("unexpected end of JSON input") {
        "truncated mid-write"
    } else {
        "garbled"
    };
    format!("{file} {how}: {failures} reads failed")
}

pub(super) fn fixed_summary(
    check: &CheckReport,
    storm: &crate::storm::StormSummary,
    notes: &[String],
) -> String {
    let mut parts = vec![format!(
        "{} reserved, {} rejected",
        storm.reserved, storm.rejected
    )];
    if storm.errors > 0 {
        parts.push(format!("{} failed", storm.errors));
    }
    parts.extend(notes.iter().cloned());
    let checked = check.checked().count();
    parts.push(format!(
        "{}/{checked} checks hold",
        checked - check.violations
    ));
    parts.join(", ")
}
