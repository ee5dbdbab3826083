//! `stockroom bench`: the arguments of the flash-sale benchmark and the
//! command that runs it and prints its report (the benchmark itself is
//! `stockroom_bench`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use stockroom_bench::{BenchConfig, Scenario, SystemKind};

#[derive(Debug, Args)]
pub(super) struct BenchArgs {
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Length of each throughput phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Units on sale in each sell-out phase.
    #[arg(long, default_value_t = 10_000)]
    stock: i64,
    /// Single-unit orders of each sell-out phase.
    #[arg(long, default_value_t = 20_000)]
    orders: u64,
    /// Products of the cold scenario (orders are spread evenly over them).
    #[arg(long, default_value_t = 1_000)]
    cold_products: usize,
    /// Connections of the extra latency phase of Stockroom (0 skips it).
    #[arg(long, default_value_t = 100)]
    latency_connections: usize,
    /// Run every phase this many times (1 to 9), the systems' order
    /// reversed every other round; each ratio is taken within its round and
    /// each summary figure is the median of the rounds'. On a machine whose
    /// speed drifts, 3 makes one run's ratios much steadier.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// The PostgreSQL database of Stockroom on PostgreSQL and of the
    /// per-request baseline (each phase in a schema of its own); without it
    /// those systems are skipped.
    #[arg(long, env = "STOCKROOM_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// The RabbitMQ broker of stockroom-postgres-rabbitmq (its own exchanges
    /// and queues, deleted afterwards); without it that system is skipped.
    #[arg(long, env = "STOCKROOM_BENCH_AMQP_URL")]
    amqp_url: Option<String>,
    /// Only these systems (comma-separated: stockroom, stockroom-batching-off,
    /// stockroom-postgres, stockroom-postgres-rabbitmq, postgres-per-request,
    /// postgres-full-flow-per-request, naive, noop-http; and, run only when
    /// named, stockroom-postgres-locking-first).
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// Only these scenarios (comma-separated: hot, cold), for profiling one.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// A tiny run that only shows every part works (CI): 1 s phases, 50
    /// connections, 200 units, 400 orders, 10 cold products.
    #[arg(long)]
    smoke: bool,
    /// Also read each PostgreSQL phase's write-ahead log back and print it by
    /// table and index, with the index entries an order adds. It installs
    /// PostgreSQL's pg_walinspect extension in the database if it is not
    /// there, and needs a superuser (or pg_read_server_files).
    #[arg(long)]
    wal_by_relation: bool,
    /// Write an SVG chart of throughput and p99 here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Instead of the flash sale, measure how reads (listing orders, the
    /// stock, an invariant audit round) cost as the stored orders grow, on
    /// SQLite and, with --postgres-url, PostgreSQL.
    #[arg(long)]
    growth: bool,
    /// The stored orders --growth measures at, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = stockroom_bench::growth::DEFAULT_SIZES)]
    growth_sizes: Vec<u64>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(super) async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.growth {
        let sizes = if args.smoke {
            vec![1_000, 10_000]
        } else {
            args.growth_sizes.clone()
        };
        anyhow::ensure!(!sizes.is_empty(), "--growth-sizes needs at least one size");
        let report = stockroom_bench::growth::run(&sizes, args.postgres_url.as_deref()).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", stockroom_bench::growth::render(&report));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let systems = chosen(
        &args.systems,
        &SystemKind::ALL,
        &SystemKind::DEFAULT,
        SystemKind::name,
        "system",
    )?;
    let scenarios = chosen(
        &args.scenarios,
        &Scenario::ALL,
        &Scenario::ALL,
        Scenario::name,
        "scenario",
    )?;
    let mut config = BenchConfig {
        connections: args.connections,
        duration: args.duration,
        sell_out_stock: args.stock,
        sell_out_orders: args.orders,
        cold_products: args.cold_products,
        latency_connections: args.latency_connections,
        rounds: args.rounds,
        systems,
        scenarios,
        postgres_url: args.postgres_url,
        amqp_url: args.amqp_url,
        wal_by_relation: args.wal_by_relation,
        show_progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    if args.smoke {
        config.connections = 50;
        config.duration = std::time::Duration::from_secs(1);
        config.sell_out_stock = 200;
        config.sell_out_orders = 400;
        config.cold_products = 10;
        config.latency_connections = 10;
    }
    let report = stockroom_bench::run(config).await?;
    if let Some(path) = &args.chart {
        std::fs::write(path, stockroom_bench::render_svg(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", stockroom_bench::render_table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The items of `all` that `names` names, or `default` when it names none.
fn chosen<T: Copy>(
    names: &[String],
    all: &[T],
    default: &[T],
    name_of: impl Fn(T) -> &'static str,
    what: &str,
) -> anyhow::Result<Vec<T>> {
    if names.is_empty() {
        return Ok(default.to_vec());
    }
    names
        .iter()
        .map(|name| {
            all.iter()
                .copied()
                .find(|&item| name_of(item) == name.trim())
                .ok_or_else(|| anyhow::anyhow!("unknown {what} {name}"))
        })
        .collect()
}
