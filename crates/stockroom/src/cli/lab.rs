//! `stockroom lab`: reproduces each race of the original system and shows
//! Stockroom surviving it, with the fixed system started in this process
//! (`stockroom_launcher::InProcessLauncher`). `lab --fixes` runs every race
//! against every fix the original authors proposed instead.

use std::process::ExitCode;

use clap::Args;
use stockroom_lab::lab::{DEFAULT_REDIS_URL, REDIS_URL_ENV};
use stockroom_lab::{FixLabConfig, FixSubject, LabConfig, Scenario, Verdict};
use stockroom_launcher::InProcessLauncher;

use super::print_verdict;

#[derive(Debug, Args)]
pub(super) struct LabArgs {
    /// Run only this scenario (repeatable): lost-update, toctou, torn-writes,
    /// stale-order, two-calls, pay-before-reserve, duplicate-delivery,
    /// lock-expiry, crash-after-publish, two-hosts, and a shop's own stock
    /// operations: limit-bypass, stale-adjustment (not in the fix matrix).
    #[arg(long)]
    scenario: Vec<Scenario>,
    /// The naive system's race window.
    #[arg(long, default_value_t = stockroom_naive::DEFAULT_RACE_WINDOW_MS)]
    race_window_ms: u64,
    /// Print `{"scenarios":[…]}` (with --fixes `{"fixes":[…]}`) as one JSON
    /// object.
    #[arg(long)]
    json: bool,
    /// Run every scenario against every fix the original authors proposed
    /// (and Stockroom as shipped) and print the matrix, with each one's
    /// flash-sale throughput.
    #[arg(long)]
    fixes: bool,
    /// With --fixes: only this fix (repeatable; `stockroom` for Stockroom).
    #[arg(long, requires = "fixes")]
    fix: Vec<FixSubject>,
    /// With --fixes: skip the throughput runs.
    #[arg(long, requires = "fixes")]
    no_throughput: bool,
    /// Send each scenario's storm with last-byte synchronisation, so its
    /// orders reach the system in the same instant (try it with
    /// --race-window-ms 0: which races still show without any widening).
    #[arg(long)]
    sync: bool,
    /// The Redis the Redis fixes use; without one their rows say so.
    #[arg(long, default_value = DEFAULT_REDIS_URL, env = REDIS_URL_ENV)]
    redis_url: String,
}

pub(super) async fn lab(args: LabArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.race_window_ms <= stockroom_naive::MAX_RACE_WINDOW_MS,
        "--race-window-ms may be at most {}",
        stockroom_naive::MAX_RACE_WINDOW_MS
    );
    let scenarios = match (args.scenario.is_empty(), args.fixes) {
        (false, _) => args.scenario,
        (true, true) => Scenario::FIX_MATRIX.to_vec(),
        (true, false) => Scenario::ALL.to_vec(),
    };
    if args.fixes {
        let mut config = FixLabConfig::new(args.race_window_ms, Some(args.redis_url));
        if !args.fix.is_empty() {
            config.subjects = args.fix;
        }
        config.scenarios = scenarios;
        config.throughput = !args.no_throughput;
        config.sync = args.sync;
        let matrix = stockroom_lab::run_fix_lab(&config, &InProcessLauncher).await;
        // Every cell ran, and Stockroom (when in the matrix) held everywhere:
        // the other rows' verdicts are what the lab found, not failures.
        let passed = matrix.fixes.iter().all(|row| {
            let stockroom = row.name == FixSubject::Stockroom.name();
            row.scenarios.iter().all(|cell| match cell.verdict {
                Verdict::NotRun => false,
                Verdict::Holds => true,
                Verdict::Breaks | Verdict::Finding | Verdict::Undecided => !stockroom,
            })
        });
        return print_verdict(args.json, &matrix, matrix.render(), passed);
    }
    let config = LabConfig {
        scenarios,
        race_window_ms: args.race_window_ms,
        sync: args.sync,
    };
    let report = stockroom_lab::run_lab(&config, &InProcessLauncher).await?;
    print_verdict(args.json, &report, report.render(), report.passed)
}
