//! The race-lab control: `POST /api/lab {"scenarios":[…],"raceWindowMs":N}`
//! runs the lab's scenarios ([`stockroom_lab::run_scenario`], each against
//! the naive system and a fresh fixed one, both started in this process on
//! ephemeral ports) one after the other, one run at a time. With
//! `"matrix":true` (and optionally `"fixes":[…]`, `"throughput":false`) it
//! runs the fix matrix instead ([`crate::fix_matrix`]). Each finished
//! scenario's row (or the matrix's row) travels in the next snapshot, so the
//! page fills the table as the lab goes; `GET /api/lab` answers the status
//! alone.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use stockroom_http_kit::{ErrorChain, JsonBody};
use stockroom_lab::{FixedLauncher, LabError, Scenario, ScenarioResult};

use crate::DashboardState;
use crate::error::DashboardError;
use crate::fix_matrix::{self, FixChoiceView, FixRowView};
use crate::guard::ControlAccess;
use crate::job::{Job, RunState};

/// The widest race window the page may ask for. Every scenario waits for
/// its window several times over, so a wide one makes a lab run long; the
/// command line allows up to [`stockroom_naive::MAX_RACE_WINDOW_MS`].
pub const MAX_LAB_RACE_WINDOW_MS: u64 = 1_000;

/// A lab run is abandoned after this long, so a stuck scenario cannot keep
/// the control busy. The whole fix matrix is the longest run (every fix
/// against every scenario, each cell up to three runs, and a flash sale per
/// row: about seven minutes on a two-core machine); the races alone take
/// well under a minute.
pub const MAX_LAB_DURATION_MS: u64 = 1_800_000;

/// What the operator asks for: some scenarios (all when none are named) and
/// the naive system's race window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabRequest {
    #[serde(default)]
    pub scenarios: Vec<String>,
    pub race_window_ms: Option<u64>,
    /// Run the fix matrix rather than the races.
    #[serde(default)]
    pub matrix: bool,
    /// The matrix's rows (fix names, `stockroom`); every row when empty.
    #[serde(default)]
    pub fixes: Vec<String>,
    /// Whether the matrix measures each row's flash-sale throughput
    /// (default: yes).
    pub throughput: Option<bool>,
}

impl LabRequest {
    /// The scenarios to run, in the lab's order, and the race window.
    pub fn plan(&self) -> Result<(Vec<Scenario>, u64), DashboardError> {
        let mut chosen = Vec::new();
        for name in &self.scenarios {
            let scenario: Scenario =
                name.parse()
                    .map_err(|error: stockroom_domain::UnknownName| {
                        DashboardError::Invalid(error.to_string())
                    })?;
            if !chosen.contains(&scenario) {
                chosen.push(scenario);
            }
        }
        let scenarios = Scenario::ALL
            .into_iter()
            .filter(|scenario| chosen.is_empty() || chosen.contains(scenario))
            .collect();
        let window = self
            .race_window_ms
            .unwrap_or(stockroom_naive::DEFAULT_RACE_WINDOW_MS);
        if !(1..=MAX_LAB_RACE_WINDOW_MS).contains(&window) {
            return Err(DashboardError::Invalid(format!(
                "raceWindowMs must be from 1 to {MAX_LAB_RACE_WINDOW_MS}"
            )));
        }
        Ok((scenarios, window))
    }
}

/// One scenario the page may choose.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioChoice {
    pub name: &'static str,
    pub title: &'static str,
}

/// The control's state as the page shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabStatus {
    pub state: RunState,
    /// Whether this dashboard can run the lab at all.
    pub available: bool,
    pub started_at: Option<String>,
    pub elapsed_ms: u64,
    /// Scenarios in this run (rows, for the fix matrix).
    pub planned: usize,
    /// The scenario (or the matrix's fix) running now.
    pub current: Option<String>,
    /// One row per finished scenario, in the lab's order.
    pub results: Vec<ScenarioResult>,
    /// Whether this run is the fix matrix.
    pub matrix: bool,
    /// The matrix's columns: the scenarios of this run.
    pub matrix_scenarios: Vec<String>,
    /// One row per finished fix, in the lab's order.
    pub fix_rows: Vec<FixRowView>,
    /// The rows the matrix can have.
    pub fixes: Vec<FixChoiceView>,
    /// Every race reproduced on the naive system and every scenario clean
    /// on Stockroom; known once the run finished.
    pub passed: Option<bool>,
    pub error: Option<String>,
    pub scenarios: Vec<ScenarioChoice>,
    pub max_race_window_ms: u64,
}

/// Why a lab run from the dashboard failed.
#[derive(Debug, thiserror::Error)]
enum LabRunError {
    #[error(transparent)]
    Scenario(#[from] LabError),
    #[error("the lab did not finish within {limit_s} s")]
    TimedOut { limit_s: u64 },
}

/// The control, shared by the handlers and the collector. Cloning shares it.
#[derive(Clone)]
pub struct LabControl {
    launcher: Option<Arc<dyn FixedLauncher>>,
    /// The Redis the matrix's Redis rows use; without one they say so.
    redis_url: Option<String>,
    job: Job<LabStatus>,
}

impl LabControl {
    pub fn new(launcher: Option<Arc<dyn FixedLauncher>>, redis_url: Option<String>) -> LabControl {
        let available = launcher.is_some();
        LabControl {
            launcher,
            redis_url,
            job: Job::new(LabStatus {
                state: RunState::Idle,
                available,
                started_at: None,
                elapsed_ms: 0,
                planned: 0,
                current: None,
                results: Vec::new(),
                matrix: false,
                matrix_scenarios: Vec::new(),
                fix_rows: Vec::new(),
                fixes: fix_matrix::fix_choices(),
                passed: None,
                error: None,
                scenarios: Scenario::ALL
                    .into_iter()
                    .map(|scenario| ScenarioChoice {
                        name: scenario.name(),
                        title: scenario.title(),
                    })
                    .collect(),
                max_race_window_ms: MAX_LAB_RACE_WINDOW_MS,
            }),
        }
    }

    pub fn status(&self) -> LabStatus {
        let mut slot = self.job.lock();
        if slot.busy() {
            slot.status.elapsed_ms = slot.elapsed_ms();
        }
        slot.status.clone()
    }

    /// Starts a lab run unless one is under way.
    pub fn start(&self, request: &LabRequest) -> Result<LabStatus, DashboardError> {
        let launcher = self
            .launcher
            .clone()
            .ok_or(DashboardError::LabUnavailable)?;
        let (mut scenarios, race_window_ms) = request.plan()?;
        if request.matrix {
            scenarios.retain(|scenario| Scenario::FIX_MATRIX.contains(scenario));
        }
        let rows = if request.matrix {
            fix_matrix::plan_rows(&request.fixes)?
        } else if request.fixes.is_empty() && request.throughput.is_none() {
            Vec::new()
        } else {
            return Err(DashboardError::Invalid(
                "fixes and throughput go with matrix: true".to_owned(),
            ));
        };
        let mut slot = self.job.lock();
        if slot.busy() {
            return Err(DashboardError::Busy(
                "the race lab is already running; wait for its table".to_owned(),
            ));
        }
        let planned = if request.matrix {
            rows.len()
        } else {
            scenarios.len()
        };
        let status = &mut slot.status;
        status.matrix = request.matrix;
        status.matrix_scenarios = if request.matrix {
            scenarios
                .iter()
                .map(|scenario| scenario.name().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        let matrix = request.matrix.then(|| {
            fix_matrix::config(
                rows,
                scenarios.clone(),
                race_window_ms,
                self.redis_url.clone(),
                request.throughput.unwrap_or(true),
            )
        });
        let control = self.clone();
        let started_at = slot.begin(async move {
            let work = async {
                match &matrix {
                    Some(config) => {
                        control.run_matrix(config, launcher.as_ref()).await;
                        Ok(())
                    }
                    None => {
                        control
                            .run_scenarios(&scenarios, race_window_ms, launcher.as_ref())
                            .await
                    }
                }
            };
            let outcome = tokio::time::timeout(Duration::from_millis(MAX_LAB_DURATION_MS), work)
                .await
                .unwrap_or(Err(LabRunError::TimedOut {
                    limit_s: MAX_LAB_DURATION_MS / 1_000,
                }));
            control.finish(outcome);
        });
        let status = &mut slot.status;
        status.state = RunState::Running;
        status.started_at = Some(started_at);
        status.elapsed_ms = 0;
        status.planned = planned;
        status.current = None;
        status.results.clear();
        status.fix_rows.clear();
        status.passed = None;
        status.error = None;
        Ok(status.clone())
    }

    /// Runs the matrix one row at a time, each row's cells one after the
    /// other, as `stockroom lab --fixes` does.
    async fn run_matrix(&self, config: &stockroom_lab::FixLabConfig, launcher: &dyn FixedLauncher) {
        let redis = stockroom_lab::lab::probe_redis(config.redis_url.as_deref()).await;
        for subject in &config.subjects {
            self.job.lock().status.current = Some(subject.name().to_owned());
            let row = stockroom_lab::run_subject(*subject, config, &redis, launcher).await;
            self.job.lock().status.fix_rows.push(row.into());
        }
    }

    async fn run_scenarios(
        &self,
        scenarios: &[Scenario],
        race_window_ms: u64,
        launcher: &dyn FixedLauncher,
    ) -> Result<(), LabRunError> {
        for scenario in scenarios {
            self.job.lock().status.current = Some(scenario.title().to_owned());
            let result = stockroom_lab::run_scenario(*scenario, race_window_ms, launcher).await?;
            self.job.lock().status.results.push(result);
        }
        Ok(())
    }

    fn finish(&self, outcome: Result<(), LabRunError>) {
        let mut slot = self.job.lock();
        let elapsed_ms = slot.end();
        let status = &mut slot.status;
        status.elapsed_ms = elapsed_ms;
        status.current = None;
        match outcome {
            Ok(()) => {
                status.state = RunState::Finished;
                // The lab's own verdict, as `stockroom lab` gives it.
                status.passed = Some(if status.matrix {
                    fix_matrix::passed(&status.fix_rows)
                } else {
                    status
                        .results
                        .iter()
                        .all(|result| result.naive_reproduced && result.fixed_violations == 0)
                });
            }
            Err(error) => {
                tracing::warn!(error = &error as &dyn std::error::Error, "race lab failed");
                status.state = RunState::Failed;
                status.error = Some(ErrorChain(&error).to_string());
            }
        }
    }

    /// Stops a run under way (the dashboard is shutting down).
    pub fn abort(&self) {
        self.job.abort();
    }
}

/// `POST /api/lab`: starts the race lab; 202 with its status.
pub(crate) async fn start(
    State(state): State<DashboardState>,
    _access: ControlAccess,
    JsonBody(request): JsonBody<LabRequest>,
) -> Result<(StatusCode, Json<LabStatus>), DashboardError> {
    let status = state.lab.start(&request)?;
    tracing::info!(
        planned = status.planned,
        matrix = status.matrix,
        "race lab started"
    );
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// `GET /api/lab`: the lab's status (also in every snapshot).
pub(crate) async fn status(State(state): State<DashboardState>) -> Json<LabStatus> {
    Json(state.lab.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_labs_order_and_bounds() {
        let all = LabRequest::default().plan().unwrap();
        assert_eq!(all.0, Scenario::ALL.to_vec());
        assert_eq!(all.1, stockroom_naive::DEFAULT_RACE_WINDOW_MS);
        let some = LabRequest {
            scenarios: vec!["two-calls".into(), "toctou".into(), "toctou".into()],
            race_window_ms: Some(20),
            ..LabRequest::default()
        }
        .plan()
        .unwrap();
        assert_eq!(some, (vec![Scenario::Toctou, Scenario::TwoCalls], 20));
        for bad in [
            LabRequest {
                scenarios: vec!["no-such-race".into()],
                ..LabRequest::default()
            },
            LabRequest {
                race_window_ms: Some(MAX_LAB_RACE_WINDOW_MS + 1),
                ..LabRequest::default()
            },
            LabRequest {
                race_window_ms: Some(0),
                ..LabRequest::default()
            },
        ] {
            assert!(bad.plan().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn without_a_launcher_the_lab_is_unavailable() {
        let control = LabControl::new(None, None);
        assert!(!control.status().available);
        assert!(matches!(
            control.start(&LabRequest::default()),
            Err(DashboardError::LabUnavailable)
        ));
        assert_eq!(control.status().state, RunState::Idle);
    }
}
