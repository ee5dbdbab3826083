//! `stockroom lab`: reproduces each race of the original system and shows
//! Stockroom surviving it, with the launcher that starts the fixed system in
//! this process.

use std::process::ExitCode;

use clap::Args;
use stockroom_lab::{FixedLauncher, FixedRunning, FixedSpec, LabConfig, Scenario, SystemUrls};

use super::print_verdict;
use crate::system::{self, Ports, RunningSystem, SystemConfig};

#[derive(Debug, Args)]
pub(super) struct LabArgs {
    /// Run only this scenario (repeatable): lost-update, toctou, torn-writes,
    /// stale-order, two-calls, pay-before-reserve, duplicate-delivery.
    #[arg(long, value_parser = parse_scenario)]
    scenario: Vec<Scenario>,
    /// The naive system's race window.
    #[arg(long, default_value_t = stockroom_naive::DEFAULT_RACE_WINDOW_MS)]
    race_window_ms: u64,
    /// Print `{"scenarios":[…]}` as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_scenario(text: &str) -> Result<Scenario, String> {
    text.parse()
}

pub(super) async fn lab(args: LabArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.race_window_ms <= stockroom_naive::MAX_RACE_WINDOW_MS,
        "--race-window-ms may be at most {}",
        stockroom_naive::MAX_RACE_WINDOW_MS
    );
    let scenarios = if args.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenario
    };
    let config = LabConfig {
        scenarios,
        race_window_ms: args.race_window_ms,
    };
    let report = stockroom_lab::run_lab(&config, &InProcessLauncher).await?;
    print_verdict(args.json, &report, report.render(), report.passed)
}

/// Starts the fixed system in this process for the lab, with
/// [`system::start`] on ephemeral ports.
pub struct InProcessLauncher;

struct InProcessSystem(RunningSystem);

#[async_trait::async_trait]
impl FixedRunning for InProcessSystem {
    fn urls(&self) -> SystemUrls {
        let urls = &self.0.urls;
        SystemUrls {
            order: urls.order.clone(),
            data: urls.data.clone(),
            inventory: urls.inventory.clone(),
            payment: urls.payment.clone(),
            internal_token: Some(self.0.internal_token.expose().to_owned()),
        }
    }

    async fn stop(self: Box<Self>) -> Result<(), String> {
        self.0.stop().await.map_err(|error| format!("{error:#}"))
    }
}

#[async_trait::async_trait]
impl FixedLauncher for InProcessLauncher {
    async fn start(&self, spec: FixedSpec) -> Result<Box<dyn FixedRunning>, String> {
        let mut config = SystemConfig::new(&spec.data_dir);
        config.ports = Ports::EPHEMERAL;
        config.stock = Some(spec.stock);
        config.fresh = true;
        config.payment_latency_ms = spec.payment_latency_ms;
        let running = system::start(config)
            .await
            .map_err(|error| format!("{error:#}"))?;
        Ok(Box::new(InProcessSystem(running)))
    }
}
