//! Command-line parsing and the top-level error handling of `stockroom`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use stockroom_inventory_service::InventoryConfig;
use stockroom_order_service::OrderConfig;
use stockroom_payment_service::PaymentConfig;
use stockroom_storage_sqlite::WriterConfig;

use crate::system::{self, Ports, SystemConfig};

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
    /// Run all four services in this process on SQLite.
    Up(UpArgs),
    /// Run one service alone.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct StorageArgs {
    /// Where the SQLite database lives.
    #[arg(long, default_value = "./data", env = "STOCKROOM_DATA_DIR")]
    data_dir: PathBuf,
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
    payment: PaymentArgs,
    #[command(flatten)]
    expiry: ExpiryArgs,
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
struct ServeArgs {
    #[command(subcommand)]
    service: ServiceCommand,
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
    },
    /// Stock decisions, settlement and expiry (3003).
    Inventory {
        #[arg(
            long,
            default_value = "http://127.0.0.1:3002",
            env = "STOCKROOM_DATA_URL"
        )]
        data_url: String,
        #[command(flatten)]
        expiry: ExpiryArgs,
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
    },
}

/// Parses the command line, runs the command, and turns any error into one
/// line on standard error and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stockroom: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stockroom: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOCKROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Serve(args) => serve(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = SystemConfig {
        data_dir: args.storage.data_dir.clone(),
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
        ServiceCommand::Data { storage } => {
            let port = args.port.unwrap_or(system::DATA_PORT);
            let (listener, url) = system::bind("data-service", args.host, port).await?;
            let opened = system::open_storage(
                &storage.data_dir,
                storage.fresh,
                read_stock(&storage)?,
                writer_config(&storage)?,
            )
            .await?;
            tracing::info!(%url, "data-service listening");
            let state = stockroom_data_service::DataState::new(opened.clone());
            let served = stockroom_data_service::run(listener, state, signal).await;
            opened.close().await;
            served.context("data-service failed")
        }
        ServiceCommand::Inventory { data_url, expiry } => {
            let port = args.port.unwrap_or(system::INVENTORY_PORT);
            let (listener, url) = system::bind("inventory-service", args.host, port).await?;
            tracing::info!(%url, "inventory-service listening");
            let events = Arc::new(stockroom_bus::EmbeddedEventSource::new(
                &data_url,
                stockroom_domain::CONSUMER_INVENTORY,
            ));
            let config = InventoryConfig {
                data_url,
                reservation_ttl_ms: expiry.reservation_ttl_ms,
                sweep_interval_ms: expiry.sweep_interval_ms,
            };
            stockroom_inventory_service::run(listener, config, events, signal)
                .await
                .context("inventory-service failed")
        }
        ServiceCommand::Payment { data_url, payment } => {
            let port = args.port.unwrap_or(system::PAYMENT_PORT);
            let config = PaymentConfig {
                data_url: data_url.clone(),
                latency_ms: payment.payment_latency_ms,
                decline_rate: payment.payment_decline_rate,
            };
            config.validate().map_err(anyhow::Error::msg)?;
            let (listener, url) = system::bind("payment-service", args.host, port).await?;
            tracing::info!(%url, "payment-service listening");
            let events = Arc::new(stockroom_bus::EmbeddedEventSource::new(
                &data_url,
                stockroom_domain::CONSUMER_PAYMENT,
            ));
            stockroom_payment_service::run(listener, config, events, signal)
                .await
                .context("payment-service failed")
        }
    }
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
