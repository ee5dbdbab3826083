//! What a chaos campaign found: the faults it injected, what the storm was
//! told, and what the checker found after the heal, as one verdict.

use std::collections::BTreeMap;

use serde::Serialize;
use stockroom_lab::CheckReport;
use stockroom_lab::storm::StormSummary;

use crate::inject::Struck;

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    /// What ran: `cluster` or `up`, with its parts.
    pub target: String,
    /// How long the storm ran, faults included.
    pub duration_s: f64,
    /// Faults injected, by kind (every kind named).
    pub faults: BTreeMap<&'static str, u64>,
    /// Faults that could not be carried out (a command that failed).
    pub faults_failed: u64,
    /// Orders the storm was answered 2xx for.
    pub acknowledged: u64,
    /// Acknowledged orders missing afterwards.
    pub lost: u64,
    /// Orders listed twice, or created without the client ever hearing of
    /// them beyond what requests without an answer explain.
    pub duplicated: u64,
    /// Orders charged more than once (by their history or the provider's
    /// ledger).
    pub charged_twice: u64,
    /// Products whose figures show more sold or held than there was.
    pub oversold: u64,
    /// Orders still pending or reserved after the settle wait.
    pub stuck: u64,
    /// Orders cancelled because their reservation expired: none should,
    /// since the campaign's reservations outlive every outage it causes.
    pub expired: u64,
    /// Seconds from the end of the heal until no order was pending or
    /// reserved; `None` when the settle wait ran out first.
    pub settle_s: Option<f64>,
    /// Processes that died without a fault killing them (restarted).
    pub unexpected_exits: u64,
    /// Every order by how it ended (`fulfilled`, `cancelled:payment_declined`, …).
    pub outcomes: BTreeMap<String, u64>,
    pub storm: StormSummary,
    /// The checks that failed, by name.
    pub failed_checks: Vec<String>,
    pub passed: bool,
    /// Every fault as it was carried out, in order.
    pub log: Vec<Struck>,
    /// Where the processes' logs are (kept when the campaign failed).
    pub logs: Option<String>,
}

/// The figures the verdict is made of, read off the checker's report.
pub struct Findings {
    pub lost: u64,
    pub duplicated: u64,
    pub charged_twice: u64,
    pub oversold: u64,
    pub stuck: u64,
}

impl Findings {
    /// Reads the counts of the checks that make each figure.
    pub fn from_check(check: &CheckReport, provider_charged_twice: u64) -> Findings {
        let count = |name: &str| {
            check
                .outcome(name)
                .map_or(0, |outcome| outcome.count as u64)
        };
        Findings {
            lost: count("acknowledged_orders_exist"),
            duplicated: count("orders_unique") + count("no_unknown_orders"),
            charged_twice: count("no_double_effects") + provider_charged_twice,
            oversold: count("available_non_negative") + count("conservation"),
            stuck: count("no_stuck_orders"),
        }
    }
}

impl ChaosReport {
    /// The human report, several lines.
    pub fn render(&self) -> String {
        let faults = self
            .faults
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let outcomes = self
            .outcomes
            .iter()
            .map(|(outcome, count)| format!("{outcome} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!(
            "chaos: seed {} against {} for {:.0} s\n\
             faults: {faults} ({} failed to apply)\n\
             storm: {} orders, {} acknowledged, {} rejected, {} errors, {} retries\n\
             outcomes: {outcomes}\n\
             lost {}  duplicated {}  charged twice {}  oversold {}  stuck {}  expired {}\n\
             settled {} after the heal; {} processes died on their own\n",
            self.seed,
            self.target,
            self.duration_s,
            self.faults_failed,
            self.storm.orders,
            self.acknowledged,
            self.storm.rejected,
            self.storm.errors,
            self.storm.retries,
            self.lost,
            self.duplicated,
            self.charged_twice,
            self.oversold,
            self.stuck,
            self.expired,
            self.settle_s
                .map_or("never".to_owned(), |seconds| format!("{seconds:.1} s")),
            self.unexpected_exits,
        );
        if !self.failed_checks.is_empty() {
            text.push_str(&format!(
                "failed checks: {}\n",
                self.failed_checks.join(", ")
            ));
        }
        if let Some(logs) = &self.logs {
            text.push_str(&format!("process logs: {logs}\n"));
        }
        text.push_str(if self.passed {
            "result: PASS"
        } else {
            "result: FAIL"
        });
        text
    }
}
