//! `lab --fixes`: every race scenario against every fix the original authors
//! proposed (each as an option of the naive system) and against Stockroom as
//! shipped, plus each one's throughput on the same flash sale.
//!
//! Every cell is decided by a run. A cell breaks when the scenario's own race
//! shows in any of [`MAX_NAIVE_ATTEMPTS`] runs (a race is a matter of chance)
//! and holds when it shows in none; a cell that could not run says why.

use serde::{Deserialize, Serialize};
use stockroom_http_kit::ErrorChain;
use stockroom_naive::Fix;

use super::fix_report::{Cell, FixMatrix, FixRow, too_many_failed};
use super::scenario::{FixChoice, run_fixed, run_naive};
use super::throughput::{flash_sale_fixed, flash_sale_naive};
use super::{Anomaly, FixedLauncher, MAX_NAIVE_ATTEMPTS, Scenario, SideOutcome};

/// One row of the matrix: a proposed fix on the naive system, or Stockroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FixSubject {
    Naive(#[serde(with = "fix_name")] Fix),
    Stockroom,
}

mod fix_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use stockroom_naive::Fix;

    pub fn serialize<S: Serializer>(fix: &Fix, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(fix.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Fix, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FixSubject {
    /// Every proposed fix, then Stockroom.
    pub fn all() -> Vec<FixSubject> {
        Fix::ALL
            .into_iter()
            .map(FixSubject::Naive)
            .chain([FixSubject::Stockroom])
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            FixSubject::Naive(fix) => fix.name(),
            FixSubject::Stockroom => "stockroom",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            FixSubject::Naive(fix) => fix.source(),
            FixSubject::Stockroom => "Stockroom as shipped",
        }
    }

    fn needs_redis(self) -> bool {
        matches!(self, FixSubject::Naive(fix) if fix.needs_redis())
    }
}

impl std::str::FromStr for FixSubject {
    type Err = stockroom_domain::UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "stockroom" {
            return Ok(FixSubject::Stockroom);
        }
        text.parse()
            .map(FixSubject::Naive)
            .map_err(|mut unknown: stockroom_domain::UnknownName| {
                unknown.choices.insert(0, "stockroom");
                unknown
            })
    }
}

#[derive(Debug, Clone)]
pub struct FixLabConfig {
    pub subjects: Vec<FixSubject>,
    pub scenarios: Vec<Scenario>,
    pub race_window_ms: u64,
    /// The Redis the Redis fixes use; `None` or unreachable skips their rows.
    pub redis_url: Option<String>,
    /// Whether to measure each row's flash-sale throughput.
    pub throughput: bool,
    /// Send each scenario's storm with last-byte synchronisation.
    pub sync: bool,
    /// Runs of a cell before it is said to hold (it breaks at the first run
    /// that shows its race); the lab uses [`MAX_NAIVE_ATTEMPTS`].
    pub attempts: u32,
}

impl FixLabConfig {
    /// Every fix against every scenario, as `lab --fixes` runs them.
    pub fn new(race_window_ms: u64, redis_url: Option<String>) -> FixLabConfig {
        FixLabConfig {
            subjects: FixSubject::all(),
            scenarios: Scenario::FIX_MATRIX.to_vec(),
            race_window_ms,
            redis_url,
            throughput: true,
            sync: false,
            attempts: MAX_NAIVE_ATTEMPTS,
        }
    }
}

/// Where the fix lab looks for Redis unless told.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The variable that tells the fix lab (the command and the dashboard's
/// control) where Redis is.
pub const REDIS_URL_ENV: &str = "STOCKROOM_REDIS_URL";

/// The Redis of [`REDIS_URL_ENV`], or [`DEFAULT_REDIS_URL`].
pub fn redis_url_from_environment() -> String {
    std::env::var(REDIS_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// Why the Redis fixes cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RedisUnavailable {
    #[error("no Redis URL")]
    NoUrl,
    /// Redis could not be reached; the naive system's error says where.
    #[error(transparent)]
    Unreachable(stockroom_naive::NaiveError),
}

/// Whether Redis answers at `url`, and if not, why.
pub async fn probe_redis(url: Option<&str>) -> Result<(), RedisUnavailable> {
    let url = url.ok_or(RedisUnavailable::NoUrl)?;
    stockroom_naive::redis_lock::connect_redis(url)
        .await
        .map(|_| ())
        .map_err(RedisUnavailable::Unreachable)
}

/// Runs every scenario against every subject, one after the other.
pub async fn run_fix_lab(config: &FixLabConfig, launcher: &dyn FixedLauncher) -> FixMatrix {
    let redis = probe_redis(config.redis_url.as_deref()).await;
    let mut rows = Vec::new();
    for subject in &config.subjects {
        rows.push(run_subject(*subject, config, &redis, launcher).await);
    }
    FixMatrix {
        scenarios: config
            .scenarios
            .iter()
            .map(|scenario| scenario.name().to_owned())
            .collect(),
        fixes: rows,
    }
}

/// One subject's row: every scenario's cell and the throughput.
pub async fn run_subject(
    subject: FixSubject,
    config: &FixLabConfig,
    redis: &Result<(), RedisUnavailable>,
    launcher: &dyn FixedLauncher,
) -> FixRow {
    let skipped = match redis {
        Err(reason) if subject.needs_redis() => {
            Some(format!("skipped: no Redis ({})", ErrorChain(reason)))
        }
        _ => None,
    };
    let mut scenarios = Vec::new();
    for scenario in &config.scenarios {
        let cell = match &skipped {
            Some(reason) => Cell::not_run(*scenario, reason.clone()),
            None => run_cell(subject, *scenario, config, launcher).await,
        };
        scenarios.push(cell);
    }
    let orders_per_s = match (&skipped, config.throughput) {
        (None, true) => {
            let measured = match subject {
                FixSubject::Naive(fix) => {
                    flash_sale_naive(&FixChoice {
                        fix,
                        redis_url: config.redis_url.clone(),
                    })
                    .await
                }
                FixSubject::Stockroom => flash_sale_fixed(launcher).await,
            };
            measured
                .map_err(|error| {
                    tracing::warn!(
                        fix = subject.name(),
                        error = &error as &dyn std::error::Error,
                        "no throughput"
                    )
                })
                .ok()
        }
        _ => None,
    };
    FixRow {
        name: subject.name().to_owned(),
        source: subject.source().to_owned(),
        orders_per_s,
        scenarios,
    }
}

/// Runs one scenario against one subject until any invariant breaks, at
/// most `config.attempts` times, and judges the cell by everything the runs
/// showed (see [`Verdict`](super::Verdict)).
pub async fn run_cell(
    subject: FixSubject,
    scenario: Scenario,
    config: &FixLabConfig,
    launcher: &dyn FixedLauncher,
) -> Cell {
    let attempts = config.attempts.max(1);
    let mut undecided = None;
    let mut last = None;
    for attempt in 1..=attempts {
        let mut outcome = match run_once(subject, scenario, config, launcher).await {
            Ok(outcome) => outcome,
            Err(error) => {
                let reason = format!("could not run: {}", ErrorChain(&error));
                return Cell::not_run(scenario, reason);
            }
        };
        if !outcome.anomalies.is_empty() {
            outcome.signature_first(scenario);
            return broken_cell(scenario, &outcome, attempt);
        }
        if undecided.is_none() && too_many_failed(outcome.failed, outcome.orders) {
            undecided = Some(format!(
                "{} of {} orders failed; {}",
                outcome.failed, outcome.orders, outcome.summary
            ));
        }
        last = Some(outcome);
    }
    if let Some(reason) = undecided {
        return Cell::undecided(scenario, reason, attempts);
    }
    let summary = last.map(|outcome| outcome.summary).unwrap_or_default();
    Cell::held(scenario, summary, attempts)
}
/// The most findings a cell's evidence lists (the JSON of a lab run keeps
/// them short enough to read; the checker's own report has them all).
pub const MAX_EVIDENCE_FINDINGS: usize = 3;

/// One run of `scenario` against `subject`.
async fn run_once(
    subject: FixSubject,
    scenario: Scenario,
    config: &FixLabConfig,
    launcher: &dyn FixedLauncher,
) -> Result<SideOutcome, super::LabError> {
    match subject {
        FixSubject::Naive(fix) => {
            let choice = FixChoice {
                fix,
                redis_url: config.redis_url.clone(),
            };
            run_naive(scenario, config.race_window_ms, config.sync, &choice).await
        }
        FixSubject::Stockroom => {
            run_fixed(scenario, config.race_window_ms, config.sync, launcher).await
        }
    }
}

/// The cell of a run that broke an invariant: it breaks when the scenario's
/// own race is among what broke (sorted first), and is a finding otherwise.
/// The evidence lists the findings, the race first.
fn broken_cell(scenario: Scenario, outcome: &SideOutcome, attempt: u32) -> Cell {
    let texts: Vec<&str> = outcome
        .anomalies
        .iter()
        .take(MAX_EVIDENCE_FINDINGS)
        .map(|anomaly: &Anomaly| anomaly.text.as_str())
        .collect();
    let evidence = texts.join("; also: ");
    let race_showed = outcome
        .anomalies
        .first()
        .is_some_and(|anomaly| scenario.signatures().contains(&anomaly.kind.as_str()));
    if race_showed {
        Cell::broke(scenario, evidence, attempt)
    } else {
        Cell::finding(scenario, evidence, attempt)
    }
}
