//! `stockroom model`: the model checker. It drives the real decision rules
//! through every interleaving of the order protocol within bounds (crashes,
//! duplicated messages, timed-out calls, expired leases), checks every
//! property, runs each broken variant of the rules to show the checker
//! catches it, and with `--naive` finds the original system's races.
//! `docs/model.md` tells what is modelled and what is not.

use std::process::ExitCode;

use clap::Args;
use stockroom_model::{Bounds, DEFAULT_RUNS, Run, SMOKE_RUNS};

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
    /// The custom bounds the flags give, if any bound flag is given.
    fn custom(&self) -> Option<Bounds> {
        let given = [
            self.clients,
            self.orders,
            self.stock,
            self.crashes,
            self.duplicates,
            self.timeouts,
            self.attempts,
            self.workers,
        ];
        if given.iter().all(Option::is_none) && !self.poison {
            return None;
        }
        let start = Bounds::ONE_ORDER;
        Some(Bounds {
            clients: self.clients.unwrap_or(start.clients),
            orders: self.orders.unwrap_or(start.orders),
            stock: self.stock.unwrap_or(start.stock),
            crashes: self.crashes.unwrap_or(start.crashes),
            duplicates: self.duplicates.unwrap_or(start.duplicates),
            timeouts: self.timeouts.unwrap_or(start.timeouts),
            attempts: self.attempts.unwrap_or(start.attempts),
            workers: self.workers.unwrap_or(start.workers),
            poison: self.poison,
            ..start
        })
    }

    fn runs(&self) -> Vec<Run> {
        let runs = match (self.custom(), self.smoke) {
            (Some(bounds), _) => vec![Run {
                name: "custom",
                bounds,
            }],
            (None, true) => SMOKE_RUNS.to_vec(),
            (None, false) => DEFAULT_RUNS.to_vec(),
        };
        runs.into_iter()
            .map(|run| Run {
                bounds: Bounds {
                    depth: self.depth,
                    ..run.bounds
                },
                ..run
            })
            .collect()
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
