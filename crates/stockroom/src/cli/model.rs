//! `stockroom model`: the model checker. It drives the real decision rules
//! through every interleaving of the order protocol within bounds (crashes,
//! duplicated messages, timed-out calls, expired leases), checks every
//! property, runs each broken variant of the rules to show the checker
//! catches it, and with `--naive` finds the original system's races.
//! `docs/model.md` tells what is modelled and what is not.

use std::process::ExitCode;

use clap::Args;
use stockroom_model::{ChosenBounds, Run};

/// The Explorer's address unless `--explore` names another: loopback only.
const DEFAULT_EXPLORER_ADDRESS: &str = "127.0.0.1:3010";

/// The checker's threads: the two cores the project is built on.
const DEFAULT_THREADS: usize = 2;

#[derive(Debug, Args)]
pub(super) struct ModelArgs {
    /// The original system's protocol instead of Stockroom's.
    #[arg(long)]
    naive: bool,
    /// CI's smaller runs.
    #[arg(long, conflicts_with = "naive")]
    smoke: bool,
    /// One JSON object instead of a report.
    #[arg(long)]
    json: bool,
    /// Clients (one run with these bounds instead of the default runs).
    #[arg(long)]
    clients: Option<u8>,
    /// Orders per client.
    #[arg(long)]
    orders: Option<u8>,
    /// Laptops in stock.
    #[arg(long)]
    stock: Option<u8>,
    /// Crashes of order-service, payment-service or inventory-service.
    #[arg(long)]
    crashes: Option<u8>,
    /// Messages the network delivers twice.
    #[arg(long)]
    duplicates: Option<u8>,
    /// Consumer calls that time out.
    #[arg(long)]
    timeouts: Option<u8>,
    /// Attempts a client makes per order.
    #[arg(long)]
    attempts: Option<u8>,
    /// Workers per consumer.
    #[arg(long)]
    workers: Option<u8>,
    /// Start the outbox with a poison event.
    #[arg(long)]
    poison: bool,
    /// The longest execution explored, in steps.
    #[arg(long)]
    depth: Option<usize>,
    /// Checker threads.
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    threads: usize,
    /// Skip the broken variants.
    #[arg(long)]
    no_mutants: bool,
    /// Serve stateright's Explorer (a web page to step through any
    /// execution) instead of checking; ADDRESS defaults to 127.0.0.1:3010.
    #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = DEFAULT_EXPLORER_ADDRESS)]
    explore: Option<String>,
}

impl ModelArgs {
    fn runs(&self) -> Vec<Run> {
        ChosenBounds {
            clients: self.clients,
            orders: self.orders,
            stock: self.stock,
            crashes: self.crashes,
            duplicates: self.duplicates,
            timeouts: self.timeouts,
            attempts: self.attempts,
            workers: self.workers,
            poison: self.poison,
            depth: self.depth,
            smoke: self.smoke,
        }
        .runs()
    }
}

pub(super) async fn model(args: ModelArgs) -> anyhow::Result<ExitCode> {
    // Checking is CPU-bound: off the runtime's threads.
    tokio::task::spawn_blocking(move || run(args)).await?
}

fn run(args: ModelArgs) -> anyhow::Result<ExitCode> {
    let runs = args.runs();
    if let Some(address) = &args.explore {
        eprintln!("stockroom model: Explorer on http://{address}/ (Ctrl-C stops it)");
        stockroom_model::explore(runs[0].bounds, args.naive, address);
        return Ok(ExitCode::SUCCESS);
    }
    let report = if args.naive {
        stockroom_model::check_naive(&runs[0].bounds)
    } else {
        stockroom_model::check_stockroom(&runs, args.threads, !args.no_mutants)
    };
    // The original system is expected to break: its run passes when every
    // race showed.
    let passed = if args.naive {
        report.properties.iter().all(|verdict| !verdict.holds)
    } else {
        report.passed()
    };
    super::print_verdict(args.json, &report, report.render(), passed)
}
