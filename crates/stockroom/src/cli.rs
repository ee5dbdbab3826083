//! Command-line parsing and the top-level error handling of `stockroom`.
//!
//! Besides running the system (`up`, `serve`), it carries the race lab's
//! commands: `storm` (load), `check` (invariants), `lab` (the seven races of
//! the original system, naive versus fixed). `--mode naive` runs the original,
//! racy system and exists only for the lab.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use stockroom_inventory_service::InventoryConfig;
use stockroom_order_service::OrderConfig;
use stockroom_payment_service::PaymentConfig;
use stockroom_storage_sqlite::WriterConfig;

use stockroom_lab::{
    CheckConfig, FixedLauncher, FixedRunning, FixedSpec, HistorySource, LabConfig, RetryPolicy,
    Scenario, StormConfig, SystemUrls,
};
use stockroom_naive::{NaiveConfig, NaiveFlow, NaivePorts, RaceWindows};

use crate::system::{self, Ports, RunningSystem, SystemConfig};

/// Exit status of `check` and `lab` when an invariant is violated (or a race
/// was not reproduced).
pub const EXIT_VIOLATION: u8 = 1;

/// Exit status of `check` when its input is wrong: an unreachable URL, a
/// service that does not speak the contract, an unreadable file.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Default number of orders a storm places when no duration is given.
pub const DEFAULT_STORM_ORDERS: u64 = 1_000;

/// Default concurrent storm workers.
pub const DEFAULT_STORM_CONCURRENCY: usize = 32;

/// Stockroom: an order and inventory system that cannot oversell.
#[derive(Debug, Parser)]
#[command(name = "stockroom", version, about)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STOCKROOM_LOG_FORMAT")]
    log_format: LogFormat,
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
    /// Reproduce each race of the original system and show Stockroom surviving it.
    Lab(LabArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Stockroom: atomic reservations, idempotent consumers, no races.
    Fixed,
    /// The ORIGINAL system, racy on purpose: JSON files, lost updates,
    /// oversells, double charges. Only for the race lab.
    Naive,
}

#[derive(Debug, Args)]
struct ModeArgs {
    /// Which system to run; naive is wrong on purpose and only for the lab.
    #[arg(long, global = true, value_enum, default_value_t = Mode::Fixed, env = "STOCKROOM_MODE")]
    mode: Mode,
    /// Naive mode: the pause at each spot where the original system races;
    /// wider makes every race happen.
    #[arg(long, global = true, default_value_t = stockroom_naive::DEFAULT_RACE_WINDOW_MS, env = "STOCKROOM_RACE_WINDOW_MS")]
    race_window_ms: u64,
    /// Naive mode: also tear file writes (truncate, then write in chunks with
    /// a tenth of the race window between them). Most reads then fail.
    #[arg(long, global = true)]
    torn_writes: bool,
    /// Naive mode: how the inventory worker decides orders (two-calls,
    /// storage-check or pay-first), one version of the original each.
    #[arg(long, global = true, default_value = "two-calls", value_parser = parse_flow)]
    naive_flow: NaiveFlow,
}

fn parse_flow(text: &str) -> Result<NaiveFlow, String> {
    text.parse()
}

impl ModeArgs {
    fn windows(&self) -> anyhow::Result<RaceWindows> {
        anyhow::ensure!(
            self.race_window_ms <= stockroom_naive::MAX_RACE_WINDOW_MS,
            "--race-window-ms may be at most {}",
            stockroom_naive::MAX_RACE_WINDOW_MS
        );
        let windows = RaceWindows::uniform(self.race_window_ms);
        Ok(if self.torn_writes {
            windows.with_torn_writes(self.race_window_ms)
        } else {
            windows
        })
    }
}

#[derive(Debug, Args)]
struct StormArgs {
    /// order-service base URLs, comma-separated; orders go round-robin.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3001")]
    order_url: Vec<String>,
    /// Orders to place; without it (and with --duration) the storm runs until
    /// the duration ends. Defaults to 1000 when no duration is given.
    #[arg(long)]
    orders: Option<u64>,
    /// Orders in flight at once.
    #[arg(long, default_value_t = DEFAULT_STORM_CONCURRENCY)]
    concurrency: usize,
    /// One product to order (same as --products with one name).
    #[arg(long, conflicts_with = "products")]
    product: Option<String>,
    /// Products to order, comma-separated; the first is the hot SKU.
    #[arg(long, value_delimiter = ',')]
    products: Vec<String>,
    /// Units per order.
    #[arg(long, default_value_t = 1)]
    quantity: u32,
    /// Share of orders for the hot SKU (the first product), 0 to 1; the rest
    /// spread evenly over the others. Defaults to an even spread.
    #[arg(long)]
    hot_share: Option<f64>,
    /// Stop after this long (e.g. 10s, 1m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Send an Idempotency-Key with every order.
    #[arg(long)]
    idempotency: bool,
    /// Attempts per order when the answer is 503 or the connection fails,
    /// with the same key (needs --idempotency); 1 means no retry.
    #[arg(long, default_value_t = 1)]
    retry: u32,
    /// Pause before the first retry; each later one waits one step more.
    #[arg(long, default_value_t = stockroom_lab::storm::DEFAULT_RETRY_BACKOFF_MS)]
    retry_backoff_ms: u64,
    /// Record every request and reply here, one JSON object per line.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Longest one order request may take.
    #[arg(long, default_value_t = stockroom_lab::storm::DEFAULT_REQUEST_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    order_url: String,
    #[arg(long, default_value = "http://127.0.0.1:3002")]
    data_url: String,
    /// A storm history to compare with (every acknowledged order exists once,
    /// no order the history never saw).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Initial stock (shaped like GET /inventory), for conservation when the
    /// service has no received/sold fields.
    #[arg(long)]
    initial_stock: Option<PathBuf>,
    /// An order still pending or reserved this long after its last change is stuck.
    #[arg(long, default_value_t = stockroom_lab::check::DEFAULT_STUCK_AFTER_MS)]
    stuck_after_ms: u64,
    /// A data directory whose orders.json and inventory.json, if present, must parse.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LabArgs {
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

#[derive(Debug, Args)]
struct StorageArgs {
    /// Where the SQLite database lives.
    #[arg(long, default_value = "./data", env = "STOCKROOM_DATA_DIR")]
    data_dir: PathBuf,
    /// A postgres:// URL selects PostgreSQL (?schema=NAME for its own schema);
    /// a path or sqlite://DIR selects SQLite there. Default: SQLite in --data-dir.
    #[arg(long, env = "STOCKROOM_DATABASE_URL")]
    database_url: Option<String>,
    /// Initial stock, shaped like GET /inventory; loaded on first start only.
    #[arg(long, env = "STOCKROOM_INVENTORY_FILE")]
    inventory: Option<PathBuf>,
    /// Delete the existing data first and load the stock again.
    #[arg(long)]
    fresh: bool,
    /// Most writes per transaction (group commit); 1 turns batching off.
    #[arg(long, default_value_t = stockroom_storage_sqlite::MAX_WRITE_BATCH, env = "STOCKROOM_WRITE_BATCH")]
    write_batch: usize,
}

#[derive(Debug, Args)]
struct BusArgs {
    /// An amqp:// URL carries events over RabbitMQ; without it consumers read
    /// data-service's outbox directly (the embedded bus).
    #[arg(long, env = "STOCKROOM_BUS_URL")]
    bus_url: Option<String>,
    /// The prefix of the RabbitMQ exchange and queue names.
    #[arg(long, default_value = stockroom_bus_rabbitmq::DEFAULT_PREFIX, env = "STOCKROOM_BUS_PREFIX")]
    bus_prefix: String,
}

impl BusArgs {
    fn choice(&self) -> anyhow::Result<system::BusChoice> {
        system::BusChoice::from_url(self.bus_url.as_deref(), &self.bus_prefix)
    }
}

impl StorageArgs {
    fn database(&self) -> system::DatabaseChoice {
        system::DatabaseChoice::from_url(self.database_url.as_deref(), &self.data_dir)
    }
}

#[derive(Debug, Args)]
struct PaymentArgs {
    /// Simulated provider latency per charge.
    #[arg(long, default_value_t = 0, env = "STOCKROOM_PAYMENT_LATENCY_MS")]
    payment_latency_ms: u64,
    /// Share of payments declined, 0 to 1.
    #[arg(long, default_value_t = 0.0, env = "STOCKROOM_PAYMENT_DECLINE_RATE")]
    payment_decline_rate: f64,
}

#[derive(Debug, Args)]
struct ExpiryArgs {
    /// Unpaid reservations are released after this long.
    #[arg(long, default_value_t = stockroom_inventory_service::DEFAULT_RESERVATION_TTL_MS, env = "STOCKROOM_RESERVATION_TTL_MS")]
    reservation_ttl_ms: u64,
    /// Pause between two expiry sweeps.
    #[arg(long, default_value_t = stockroom_inventory_service::DEFAULT_SWEEP_INTERVAL_MS, env = "STOCKROOM_SWEEP_INTERVAL_MS")]
    sweep_interval_ms: u64,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    bus: BusArgs,
    #[command(flatten)]
    payment: PaymentArgs,
    #[command(flatten)]
    expiry: ExpiryArgs,
    #[command(flatten)]
    mode: ModeArgs,
    /// Address every service listens on.
    #[arg(long, default_value = "127.0.0.1", env = "STOCKROOM_HOST")]
    host: IpAddr,
    #[arg(long, default_value_t = system::ORDER_PORT)]
    order_port: u16,
    #[arg(long, default_value_t = system::DATA_PORT)]
    data_port: u16,
    #[arg(long, default_value_t = system::INVENTORY_PORT)]
    inventory_port: u16,
    #[arg(long, default_value_t = system::PAYMENT_PORT)]
    payment_port: u16,
}

#[derive(Debug, Args)]
struct BenchArgs {
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
    /// The PostgreSQL database of the per-request baseline; without it that
    /// baseline is skipped.
    #[arg(long, env = "STOCKROOM_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Only these systems (comma-separated: stockroom, stockroom-batching-off,
    /// postgres-per-request, naive, noop-http).
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// A tiny run that only shows every part works (CI): 1 s phases, 50
    /// connections, 200 units, 400 orders, 10 cold products.
    #[arg(long)]
    smoke: bool,
    /// Write an SVG chart of throughput and p99 here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use crate::bench::{self, BenchConfig, SystemKind};
    let systems = if args.systems.is_empty() {
        SystemKind::ALL.to_vec()
    } else {
        args.systems
            .iter()
            .map(|name| {
                SystemKind::ALL
                    .into_iter()
                    .find(|kind| kind.name() == name.trim())
                    .ok_or_else(|| anyhow::anyhow!("unknown system {name}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let mut config = BenchConfig {
        connections: args.connections,
        duration: args.duration,
        sell_out_stock: args.stock,
        sell_out_orders: args.orders,
        cold_products: args.cold_products,
        latency_connections: args.latency_connections,
        systems,
        postgres_url: args.postgres_url,
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
    let report = bench::run(config).await?;
    if let Some(path) = &args.chart {
        std::fs::write(path, bench::render_svg(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::render_table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Processes of each service; instance i listens on the default port + 10·i.
    #[arg(long, default_value_t = 2)]
    instances: u16,
    /// The shared database (a postgres:// URL; SQLite cannot be shared
    /// between processes safely enough for this).
    #[arg(long, env = "STOCKROOM_DATABASE_URL")]
    database_url: String,
    #[command(flatten)]
    bus: BusArgs,
    /// Initial stock, loaded on the first start of the database.
    #[arg(long, env = "STOCKROOM_INVENTORY_FILE")]
    inventory: Option<PathBuf>,
    /// Shifts every port by this much (3001 + offset, …).
    #[arg(long, default_value_t = 0)]
    port_offset: u16,
    #[arg(long, default_value = "127.0.0.1", env = "STOCKROOM_HOST")]
    host: String,
    #[command(flatten)]
    payment: PaymentArgs,
    #[command(flatten)]
    expiry: ExpiryArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(subcommand)]
    service: ServiceCommand,
    #[command(flatten)]
    mode: ModeArgs,
    /// Address to listen on.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1",
        env = "STOCKROOM_HOST"
    )]
    host: IpAddr,
    /// Port to listen on; defaults to the service's own (3001 to 3004).
    #[arg(long, global = true, env = "STOCKROOM_PORT")]
    port: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// The public order API (3001).
    Order {
        #[arg(
            long,
            default_value = "http://127.0.0.1:3003",
            env = "STOCKROOM_INVENTORY_URL"
        )]
        inventory_url: String,
        #[arg(
            long,
            default_value = "http://127.0.0.1:3002",
            env = "STOCKROOM_DATA_URL"
        )]
        data_url: String,
    },
    /// The only process that touches storage (3002).
    Data {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        bus: BusArgs,
    },
    /// Stock decisions, settlement and expiry (3003).
    Inventory {
        #[arg(
            long,
            default_value = "http://127.0.0.1:3002",
            env = "STOCKROOM_DATA_URL"
        )]
        data_url: String,
        /// Naive mode only: the payment-service its worker calls.
        #[arg(
            long,
            default_value = "http://127.0.0.1:3004",
            env = "STOCKROOM_PAYMENT_URL"
        )]
        payment_url: String,
        #[command(flatten)]
        expiry: ExpiryArgs,
        #[command(flatten)]
        bus: BusArgs,
    },
    /// The simulated payment provider (3004).
    Payment {
        #[arg(
            long,
            default_value = "http://127.0.0.1:3002",
            env = "STOCKROOM_DATA_URL"
        )]
        data_url: String,
        #[command(flatten)]
        payment: PaymentArgs,
        #[command(flatten)]
        bus: BusArgs,
    },
}

/// Parses the command line, runs the command, and turns any error into one
/// line on standard error and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The lab's commands print reports; the services they start in this
    // process should not bury them in logs unless asked to (STOCKROOM_LOG).
    let default_filter = match cli.command {
        Command::Lab(_) | Command::Bench(_) => "off",
        Command::Storm(_) | Command::Check(_) => "warn",
        Command::Up(_) | Command::Serve(_) | Command::Cluster(_) => "info",
    };
    init_logging(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stockroom: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("stockroom: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOCKROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn writer_config(storage: &StorageArgs) -> anyhow::Result<WriterConfig> {
    anyhow::ensure!(
        (1..=stockroom_storage_sqlite::MAX_WRITE_BATCH).contains(&storage.write_batch),
        "--write-batch must be from 1 to {}",
        stockroom_storage_sqlite::MAX_WRITE_BATCH
    );
    Ok(WriterConfig {
        max_batch: storage.write_batch,
    })
}

fn read_stock(storage: &StorageArgs) -> anyhow::Result<Option<Vec<stockroom_contract::StockLine>>> {
    storage
        .inventory
        .as_deref()
        .map(crate::stock::read_stock_file)
        .transpose()
        .map_err(anyhow::Error::from)
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up(args) if args.mode.mode == Mode::Naive => {
            up_naive(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Up(args) => up(args).await.map(|()| ExitCode::SUCCESS),
        Command::Serve(args) if args.mode.mode == Mode::Naive => {
            serve_naive(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Cluster(args) => cluster(args).await.map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench(args).await,
        Command::Storm(args) => storm(args).await,
        Command::Check(args) => check(args).await,
        Command::Lab(args) => lab(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = SystemConfig {
        database: args.storage.database(),
        bus: args.bus.choice()?,
        stock: read_stock(&args.storage)?,
        fresh: args.storage.fresh,
        host: args.host,
        ports: Ports {
            order: args.order_port,
            data: args.data_port,
            inventory: args.inventory_port,
            payment: args.payment_port,
        },
        payment_latency_ms: args.payment.payment_latency_ms,
        payment_decline_rate: args.payment.payment_decline_rate,
        reservation_ttl_ms: args.expiry.reservation_ttl_ms,
        sweep_interval_ms: args.expiry.sweep_interval_ms,
        writer: writer_config(&args.storage)?,
        order_coalescing: true,
    };
    let running = system::start(config).await?;
    let urls = &running.urls;
    // One line on standard output, for scripts and tests; logs go to stderr.
    println!(
        "stockroom ready: order={} data={} inventory={} payment={}",
        urls.order, urls.data, urls.inventory, urls.payment
    );
    tracing::info!(order = %urls.order, data = %urls.data, inventory = %urls.inventory, payment = %urls.payment, "stockroom is up");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    running.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let signal = async {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
    };
    match args.service {
        ServiceCommand::Order {
            inventory_url,
            data_url,
        } => {
            let port = args.port.unwrap_or(system::ORDER_PORT);
            let (listener, url) = system::bind("order-service", args.host, port).await?;
            tracing::info!(%url, "order-service listening");
            stockroom_order_service::run(
                listener,
                OrderConfig {
                    inventory_url,
                    data_url,
                },
                signal,
            )
            .await
            .context("order-service failed")
        }
        ServiceCommand::Data { storage, bus } => {
            let port = args.port.unwrap_or(system::DATA_PORT);
            let bus = bus.choice()?;
            let (listener, url) = system::bind("data-service", args.host, port).await?;
            let opened = system::open_storage(
                &storage.database(),
                storage.fresh,
                read_stock(&storage)?,
                writer_config(&storage)?,
            )
            .await?;
            tracing::info!(%url, backend = opened.backend_name(), "data-service listening");
            let running = system::data_service_with_bus(listener, opened.clone(), &bus);
            signal.await;
            let stopped = running.stop().await;
            opened.close().await;
            stopped
        }
        ServiceCommand::Inventory {
            data_url,
            expiry,
            bus,
            ..
        } => {
            let port = args.port.unwrap_or(system::INVENTORY_PORT);
            let bus = bus.choice()?;
            let (listener, url) = system::bind("inventory-service", args.host, port).await?;
            tracing::info!(%url, "inventory-service listening");
            let events = bus.event_source(&data_url, stockroom_domain::CONSUMER_INVENTORY);
            let config = InventoryConfig {
                data_url,
                reservation_ttl_ms: expiry.reservation_ttl_ms,
                sweep_interval_ms: expiry.sweep_interval_ms,
            };
            stockroom_inventory_service::run(listener, config, events, signal)
                .await
                .context("inventory-service failed")
        }
        ServiceCommand::Payment {
            data_url,
            payment,
            bus,
        } => {
            let port = args.port.unwrap_or(system::PAYMENT_PORT);
            let bus = bus.choice()?;
            let config = PaymentConfig {
                data_url: data_url.clone(),
                latency_ms: payment.payment_latency_ms,
                decline_rate: payment.payment_decline_rate,
            };
            config.validate().map_err(anyhow::Error::msg)?;
            let (listener, url) = system::bind("payment-service", args.host, port).await?;
            tracing::info!(%url, "payment-service listening");
            let events = bus.event_source(&data_url, stockroom_domain::CONSUMER_PAYMENT);
            stockroom_payment_service::run(listener, config, events, signal)
                .await
                .context("payment-service failed")
        }
    }
}

async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(
            system::DatabaseChoice::from_url(Some(&args.database_url), std::path::Path::new(".")),
            system::DatabaseChoice::Postgres { .. }
        ),
        "--database-url must be a postgres:// URL: every instance shares the one database"
    );
    anyhow::ensure!(
        args.bus.bus_url.is_some(),
        "--bus-url is required: the instances share one RabbitMQ broker"
    );
    args.bus.choice()?;
    let bus_prefix = vec!["--bus-prefix".to_owned(), args.bus.bus_prefix.clone()];
    let config = crate::cluster::ClusterConfig {
        instances: args.instances,
        database_url: args.database_url.clone(),
        bus_url: args.bus.bus_url.clone(),
        inventory_file: args.inventory.clone(),
        port_offset: args.port_offset,
        host: args.host.clone(),
        payment_args: [
            bus_prefix.clone(),
            vec![
                "--payment-latency-ms".to_owned(),
                args.payment.payment_latency_ms.to_string(),
                "--payment-decline-rate".to_owned(),
                args.payment.payment_decline_rate.to_string(),
            ],
        ]
        .concat(),
        inventory_args: [
            bus_prefix.clone(),
            vec![
                "--reservation-ttl-ms".to_owned(),
                args.expiry.reservation_ttl_ms.to_string(),
                "--sweep-interval-ms".to_owned(),
                args.expiry.sweep_interval_ms.to_string(),
            ],
        ]
        .concat(),
        data_args: bus_prefix,
    };
    let mut running = crate::cluster::start(&config).await?;
    for instance in &running.instances {
        println!(
            "instance {} {} pid {} {}",
            instance.service,
            instance.index,
            instance.pid().unwrap_or(0),
            instance.url
        );
    }
    println!(
        "stockroom cluster ready: order={} data={} inventory={} payment={}",
        running.urls("order").join(","),
        running.urls("data").join(","),
        running.urls("inventory").join(","),
        running.urls("payment").join(",")
    );
    running.supervise(shutdown_signal()).await;
    tracing::info!("stopping the cluster");
    running.stop().await;
    Ok(())
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

/// `up --mode naive`: the original, racy system, for the lab only.
async fn up_naive(args: UpArgs) -> anyhow::Result<()> {
    let config = NaiveConfig {
        data_dir: args.storage.data_dir.clone(),
        stock: read_stock(&args.storage)?.unwrap_or_else(crate::stock::default_stock),
        fresh: args.storage.fresh,
        host: args.host,
        ports: NaivePorts {
            order: args.order_port,
            data: args.data_port,
            inventory: args.inventory_port,
            payment: args.payment_port,
        },
        windows: args.mode.windows()?,
        flow: args.mode.naive_flow,
    };
    tracing::warn!(
        race_window_ms = args.mode.race_window_ms,
        flow = args.mode.naive_flow.as_str(),
        "NAIVE MODE: running the original system, which oversells and corrupts its data on purpose"
    );
    let running = stockroom_naive::start(config).await?;
    let urls = &running.urls;
    println!(
        "stockroom ready: order={} data={} inventory={} payment={}",
        urls.order, urls.data, urls.inventory, urls.payment
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await?;
    Ok(())
}

/// `serve <service> --mode naive`: one service of the original system.
async fn serve_naive(args: ServeArgs) -> anyhow::Result<()> {
    let signal = async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    };
    let windows = args.mode.windows()?;
    tracing::warn!("NAIVE MODE: this service is racy on purpose; only for the race lab");
    match args.service {
        ServiceCommand::Order {
            inventory_url,
            data_url,
        } => {
            let port = args.port.unwrap_or(system::ORDER_PORT);
            let (listener, url) = system::bind("order-service", args.host, port).await?;
            tracing::info!(%url, "naive order-service listening");
            let config = stockroom_naive::order::OrderConfig {
                data_url,
                inventory_url,
                windows,
            };
            stockroom_naive::order::run(listener, config, signal)
                .await
                .context("naive order-service failed")
        }
        ServiceCommand::Data { storage, .. } => {
            let port = args.port.unwrap_or(system::DATA_PORT);
            let (listener, url) = system::bind("data-service", args.host, port).await?;
            let files =
                stockroom_naive::files::JsonFiles::new(&storage.data_dir, windows.torn_write_ms);
            let stock = read_stock(&storage)?.unwrap_or_else(crate::stock::default_stock);
            files.initialize(&stock, storage.fresh).await?;
            tracing::info!(%url, "naive data-service listening");
            let state = stockroom_naive::data::DataState::new(files, windows);
            stockroom_naive::data::run(listener, state, signal)
                .await
                .context("naive data-service failed")
        }
        ServiceCommand::Inventory {
            data_url,
            payment_url,
            ..
        } => {
            let port = args.port.unwrap_or(system::INVENTORY_PORT);
            let (listener, url) = system::bind("inventory-service", args.host, port).await?;
            tracing::info!(%url, "naive inventory-service listening");
            let config = stockroom_naive::inventory::InventoryConfig {
                data_url,
                payment_url,
                flow: args.mode.naive_flow,
                windows,
            };
            stockroom_naive::inventory::run(listener, config, signal)
                .await
                .context("naive inventory-service failed")
        }
        ServiceCommand::Payment { .. } => {
            let port = args.port.unwrap_or(system::PAYMENT_PORT);
            let (listener, url) = system::bind("payment-service", args.host, port).await?;
            tracing::info!(%url, "naive payment-service listening");
            let state = stockroom_naive::payment::PaymentState::new(windows.payment_ms);
            stockroom_naive::payment::run(listener, state, signal)
                .await
                .context("naive payment-service failed")
        }
    }
}

async fn storm(args: StormArgs) -> anyhow::Result<ExitCode> {
    let products = match (args.product, args.products.is_empty()) {
        (Some(product), _) => vec![product],
        (None, false) => args.products,
        (None, true) => vec!["Laptop".to_owned()],
    };
    let hot_share = args.hot_share.unwrap_or(1.0 / products.len() as f64);
    let config = StormConfig {
        order_urls: args.order_url,
        orders: match (args.orders, args.duration) {
            (None, None) => Some(DEFAULT_STORM_ORDERS),
            (orders, _) => orders,
        },
        concurrency: args.concurrency,
        products,
        quantity: args.quantity,
        hot_share,
        duration: args.duration,
        idempotency: args.idempotency,
        retry: RetryPolicy {
            max_attempts: args.retry,
            backoff_ms: args.retry_backoff_ms,
        },
        history: args.history,
        keep_history: false,
        progress: true,
        request_timeout_ms: args.timeout_ms,
    };
    let report = stockroom_lab::run_storm(config).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report.summary)?);
    } else {
        println!("{}", report.summary.render());
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut config = CheckConfig::new(&args.order_url, &args.data_url);
    config.history = args
        .history
        .map_or(HistorySource::None, HistorySource::File);
    config.stuck_after_ms = args.stuck_after_ms;
    config.data_dir = args.data_dir;
    let outcome = match &args.initial_stock {
        Some(path) => stockroom_lab::check::read_initial_stock(path).map(Some),
        None => Ok(None),
    };
    let outcome = match outcome {
        Ok(stock) => {
            config.initial_stock = stock;
            stockroom_lab::run_check(&config).await
        }
        Err(error) => Err(error),
    };
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("stockroom check: {error}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.render());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_VIOLATION)
    })
}

async fn lab(args: LabArgs) -> anyhow::Result<ExitCode> {
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
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.render());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_VIOLATION)
    })
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
