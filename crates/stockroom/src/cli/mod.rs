//! Command-line parsing and the top-level error handling of `stockroom`.
//!
//! Besides running the system (`up`, `serve`), it carries the race lab's
//! commands: `storm` (load), `check` (invariants), `lab` (the races of the
//! original system, naive versus fixed; with `--fixes`, every fix its authors
//! proposed against every race). `--mode naive` runs the original, racy
//! system and exists only for the lab. `model` checks the protocol's model.
//!
//! Each command lives in its own file with its arguments and its function;
//! the argument groups several commands share live in `args`.

mod args;
mod bench;
mod chaos;
mod check;
mod cluster;
mod dashboard;
mod dead_letters;
mod lab;
mod model;
mod serve;
mod shop_args;
mod stock;
mod storm;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use self::args::Mode;
use self::bench::BenchArgs;
use self::chaos::ChaosArgs;
use self::check::CheckArgs;
use self::cluster::ClusterArgs;
use self::dead_letters::DeadLetterArgs;
use self::lab::LabArgs;
use self::model::ModelArgs;
use self::serve::ServeArgs;
use self::stock::StockArgs;
use self::storm::StormArgs;
use self::up::UpArgs;

/// Exit status of `check` and `lab` when an invariant is violated (or a race
/// was not reproduced).
pub const EXIT_VIOLATION: u8 = 1;

/// Exit status of `check` when its input is wrong: an unreachable URL, a
/// service that does not speak the contract, an unreadable file.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Stockroom: an order and inventory system that cannot oversell.
#[derive(Debug, Parser)]
#[command(name = "stockroom", version, about)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STOCKROOM_LOG_FORMAT")]
    log_format: LogFormat,
    /// Export traces over OTLP/HTTP to this collector (its base URL, e.g.
    /// Jaeger's `http://127.0.0.1:4318`). Without it nothing is exported.
    #[arg(long, global = true, env = "STOCKROOM_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all four services in this process (SQLite unless --database-url says otherwise).
    Up(UpArgs),
    /// Run one service alone.
    Serve(ServeArgs),
    /// Run N processes of every service over PostgreSQL and RabbitMQ.
    Cluster(ClusterArgs),
    /// The flash-sale benchmark: Stockroom against its baselines, in one run.
    Bench(BenchArgs),
    /// Fire orders at order-service and record every request and reply.
    Storm(StormArgs),
    /// Verify the invariants against running services; exit 0 only if all hold.
    Check(CheckArgs),
    /// Reproduce each race of the original system and show Stockroom surviving
    /// it; with --fixes, try every proposed fix against every race.
    Lab(LabArgs),
    /// List or redrive the events consumers refused as poison.
    DeadLetters(DeadLetterArgs),
    /// A shop operator's stock: create products, set limits, adjust units,
    /// read the ledger (needs the operator token).
    Stock(StockArgs),
    /// A fault campaign: a storm under kills, pauses, outages and cut links,
    /// then the invariants checked.
    Chaos(ChaosArgs),
    /// Check the order protocol's model: the real rules through every
    /// interleaving within bounds, broken variants, and (--naive) the
    /// original system's races.
    Model(ModelArgs),
}

/// Parses the command line, runs the command, and turns any error into one
/// line on standard error and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The lab's commands print reports; the services they start in this
    // process should not bury them in logs unless asked to (STOCKROOM_LOG).
    let default_filter = match cli.command {
        Command::Lab(_) | Command::Bench(_) | Command::Model(_) => "off",
        Command::Storm(_)
        | Command::Check(_)
        | Command::DeadLetters(_)
        | Command::Stock(_)
        | Command::Chaos(_) => "warn",
        Command::Up(_) | Command::Serve(_) | Command::Cluster(_) => "info",
    };
    let service_name = match &cli.command {
        Command::Serve(args) => args.service_name(),
        _ => "stockroom",
    };
    // Before the runtime: the trace exporter owns a blocking HTTP client.
    let telemetry = match stockroom_telemetry::init(
        matches!(cli.log_format, LogFormat::Json),
        default_filter,
        cli.otlp_endpoint.as_deref(),
        service_name,
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("stockroom: {:#}", anyhow::Error::new(error));
            return ExitCode::FAILURE;
        }
    };
    // Every service and every storm needs a file per connection; the usual
    // soft limit (1,024) is far below what a flash sale opens.
    stockroom_http_kit::raise_open_file_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stockroom: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli.command, cli.otlp_endpoint)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("stockroom: {error:#}");
            ExitCode::FAILURE
        }
    };
    drop(runtime);
    telemetry.shutdown();
    code
}

async fn run(command: Command, otlp_endpoint: Option<String>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up(args) if args.mode.mode == Mode::Naive => {
            up::up_naive(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Up(args) => up::up(args).await.map(|()| ExitCode::SUCCESS),
        Command::Serve(args) if args.mode.mode == Mode::Naive => {
            serve::serve_naive(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve::serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Cluster(args) => cluster::cluster(args, otlp_endpoint)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::bench(args).await,
        Command::Storm(args) => storm::storm(args).await,
        Command::Check(args) => check::check(args).await,
        Command::Lab(args) => lab::lab(args).await,
        Command::DeadLetters(args) => dead_letters::dead_letters(args).await,
        Command::Stock(args) => stock::stock(args).await.map(|()| ExitCode::SUCCESS),
        Command::Chaos(args) => chaos::chaos(args).await,
        Command::Model(args) => model::model(args).await,
    }
}

/// Prints a verdict (as one JSON object, or as its human rendering) and
/// turns it into the exit status: 0 when it passed, [`EXIT_VIOLATION`]
/// otherwise.
fn print_verdict<T: serde::Serialize>(
    json: bool,
    report: &T,
    rendered: String,
    passed: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{rendered}");
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_VIOLATION)
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
