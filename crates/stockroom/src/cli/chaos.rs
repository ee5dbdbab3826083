//! `stockroom chaos`: a fault campaign against a system it starts itself,
//! and its verdict as the exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use stockroom_chaos::inject::Commands;
use stockroom_chaos::stage::StageConfig;
use stockroom_chaos::{ChaosConfig, DEFAULT_PORT_OFFSET, Lengths};

use super::print_verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// N processes of every service over PostgreSQL and RabbitMQ.
    Cluster,
    /// One `stockroom up` process over SQLite (process faults only).
    Up,
}

#[derive(Debug, Args)]
pub(super) struct ChaosArgs {
    /// What to strike.
    #[arg(long, value_enum, default_value_t = Target::Cluster)]
    target: Target,
    /// Processes of each service (cluster only; at least 2, so that a fault
    /// always leaves one instance of each service).
    #[arg(long, default_value_t = 2)]
    instances: u16,
    /// The PostgreSQL server (cluster only); the campaign makes its own schema.
    #[arg(
        long,
        env = "STOCKROOM_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// The RabbitMQ broker (cluster only); the campaign uses its own queues.
    #[arg(
        long,
        env = "STOCKROOM_BUS_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    bus_url: String,
    /// Replays a campaign's schedule; a random seed is printed when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// A short campaign for CI: every kind of fault, under three minutes.
    #[arg(long)]
    smoke: bool,
    /// How long the storm runs (default 10m, or 45s with --smoke).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// New orders per second during the storm.
    #[arg(long)]
    rate: Option<f64>,
    /// Shifts every port of the campaign's system by this much.
    #[arg(long, default_value_t = DEFAULT_PORT_OFFSET)]
    port_offset: u16,
    /// Where the processes' logs go (kept when the campaign fails).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The command that stops the broker.
    #[arg(long, default_value_t = Commands::default().broker_stop)]
    broker_stop_command: String,
    /// The command that starts it again.
    #[arg(long, default_value_t = Commands::default().broker_start)]
    broker_start_command: String,
    /// The command that closes every connection to the broker.
    #[arg(long, default_value_t = Commands::default().broker_close_connections)]
    broker_close_command: String,
    /// The command that restarts the database server.
    #[arg(long, default_value_t = Commands::default().database_restart)]
    database_restart_command: String,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(super) async fn chaos(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let stage = match args.target {
        Target::Cluster => {
            anyhow::ensure!(
                (2..=stockroom_launcher::cluster::MAX_INSTANCES).contains(&args.instances),
                "--instances must be from 2 to {}: a fault leaves one instance of each service",
                stockroom_launcher::cluster::MAX_INSTANCES
            );
            StageConfig::Cluster {
                instances: args.instances,
                database_url: args.database_url,
                bus_url: args.bus_url,
            }
        }
        Target::Up => StageConfig::Up,
    };
    let mut lengths = if args.smoke {
        Lengths::SMOKE
    } else {
        Lengths::FULL
    };
    if let Some(duration) = args.duration {
        lengths.duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        // A broker outage fits in the middle half of a shorter campaign.
        lengths.broker_outage_ms = lengths.broker_outage_ms.min(lengths.duration_ms / 4);
    }
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be positive");
        lengths.rate_per_s = rate;
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut config = ChaosConfig::new(stage, seed, lengths, args.port_offset);
    config.commands = Commands {
        broker_stop: args.broker_stop_command,
        broker_start: args.broker_start_command,
        broker_close_connections: args.broker_close_command,
        database_restart: args.database_restart_command,
    };
    if let Some(directory) = args.work_dir {
        config.work_directory = directory;
    }
    config.verbose = !args.json;
    if !args.json {
        eprintln!(
            "chaos: seed {seed}; the storm runs {} s; replay with --seed {seed}",
            lengths.duration_ms / 1_000
        );
    }
    let report = stockroom_chaos::run(config).await?;
    print_verdict(args.json, &report, report.render(), report.passed)
}
