//! Stockroom's race lab as a library: the `storm` load generator, the `check`
//! invariant checker, Jepsen-shaped histories, and the `lab` that runs the
//! original system's races against the naive mode and the fixed system (and
//! every fix its authors proposed against every race), and `last_byte`, the
//! synchronised sending of a storm's requests.
//!
//! Everything here talks plain HTTP to the contract's endpoints, so `storm`
//! and `check` work against any service that speaks it.

pub mod check;
pub mod history;
pub mod lab;
pub mod last_byte;
pub mod storm;

pub use check::{CheckConfig, CheckError, CheckReport, HistorySource, run_check};
pub use history::{EventType, HistoryEvent, HistoryWriter, OpValue, read_history};
pub use lab::{
    Cell, FixChoice, FixLabConfig, FixMatrix, FixRow, FixSubject, FixedLauncher, FixedRunning,
    FixedSpec, LabConfig, LabError, LabReport, LaunchError, Scenario, ScenarioResult, SystemUrls,
    Verdict, run_cell, run_fix_lab, run_lab, run_scenario, run_scenario_synced, run_subject,
};
pub use storm::{RetryPolicy, StormConfig, StormError, StormReport, StormSummary, run_storm};
