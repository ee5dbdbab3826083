//! `stockroom up`: all four services in one process, either Stockroom itself
//! or, with `--mode naive`, the original racy system for the lab.

use std::net::IpAddr;

use clap::Args;
use stockroom_launcher::system::{self, Ports, SystemConfig};
use stockroom_naive::{NaiveConfig, NaivePorts};

use super::args::{
    AllowedHostsArgs, BusArgs, ExpiryArgs, ModeArgs, PaymentArgs, StorageArgs, TokenArgs,
    read_stock, writer_config,
};
use super::dashboard;
use super::shop_args::{ExtensionArgs, ShopArgs};
use super::shutdown_signal;

#[derive(Debug, Args)]
pub(super) struct UpArgs {
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    bus: BusArgs,
    #[command(flatten)]
    payment: PaymentArgs,
    #[command(flatten)]
    expiry: ExpiryArgs,
    #[command(flatten)]
    pub(super) mode: ModeArgs,
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
    /// The dashboard's port (a web page: open the URL the ready line gives).
    #[arg(long, default_value_t = system::DASHBOARD_PORT, env = "STOCKROOM_DASHBOARD_PORT")]
    dashboard_port: u16,
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    allowed_hosts: AllowedHostsArgs,
    #[command(flatten)]
    shop: ShopArgs,
    #[command(flatten)]
    extension: ExtensionArgs,
}

pub(super) async fn up(args: UpArgs) -> anyhow::Result<()> {
    args.allowed_hosts.install()?;
    let operator_token = args.shop.operator_token_or_keep(&args.storage.data_dir)?;
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
        postgres_group_commit: stockroom_launcher::system::GroupCommitConfig::default(),
        order_coalescing: true,
        retention: args.storage.retention.retention()?,
        relay: stockroom_data_service::RelaySettings::default(),
        lease_ms: args.bus.lease_ms,
        internal_token: args.token.or_generate()?,
        max_reservation_ttl_ms: args.extension.max_reservation_ttl_ms,
        operator_token: Some(operator_token.clone()),
        webhooks: args.shop.webhooks()?,
    };
    if args.token.optional()?.is_none() {
        tracing::info!(
            "internal routes need a token generated for this run; set {} before `up` to call them yourself (dead-letters, /invariants, /stats)",
            stockroom_http_kit::INTERNAL_TOKEN_ENV
        );
    }
    if args.shop.operator_token()?.is_none() {
        tracing::info!(
            path = %stockroom_operator::token_file::path_in(&args.storage.data_dir).display(),
            "the operator's routes (`stockroom stock`) take the token kept in this file"
        );
    }
    // Bound before anything starts, so that a taken port fails fast.
    let (dashboard_listener, dashboard_url) =
        system::bind("dashboard", args.host, args.dashboard_port).await?;
    let running = system::start(config).await?;
    let urls = &running.urls;
    // The dashboard's movement feed reads the ledger with the operator's
    // token, which this process holds anyway.
    let dashboard = system::dashboard(
        dashboard_listener,
        dashboard::config(
            &urls.order,
            &urls.data,
            &urls.inventory,
            &urls.payment,
            Some(operator_token),
        ),
    );
    // One line on standard output, for scripts and tests; logs go to stderr.
    println!(
        "stockroom ready: order={} data={} inventory={} payment={} dashboard={dashboard_url}",
        urls.order, urls.data, urls.inventory, urls.payment
    );
    tracing::info!(order = %urls.order, data = %urls.data, inventory = %urls.inventory, payment = %urls.payment, dashboard = %dashboard_url, "stockroom is up");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    dashboard.stop().await?;
    running.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `up --mode naive`: the original, racy system, for the lab only.
pub(super) async fn up_naive(args: UpArgs) -> anyhow::Result<()> {
    args.mode.refuse_exposed_naive(args.host)?;
    args.allowed_hosts.install()?;
    let config = NaiveConfig {
        data_dir: args.storage.data_dir.clone(),
        stock: read_stock(&args.storage)?.unwrap_or_else(stockroom_launcher::stock::default_stock),
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
        fix: args.mode.naive_fix,
        redis_url: Some(args.mode.naive_redis_url.clone()),
        redis_prefix: None,
        crash_after_publish: false,
    };
    tracing::warn!(
        race_window_ms = args.mode.race_window_ms,
        flow = args.mode.naive_flow.as_str(),
        fix = args.mode.naive_fix.name(),
        "NAIVE MODE: running the original system, which oversells and corrupts its data on purpose"
    );
    let (dashboard_listener, dashboard_url) =
        system::bind("dashboard", args.host, args.dashboard_port).await?;
    let running = stockroom_naive::start(config).await?;
    let urls = &running.urls;
    let dashboard = system::dashboard(
        dashboard_listener,
        // The naive system keeps no ledger: the feed says so.
        dashboard::config(
            &urls.order,
            &urls.data,
            &urls.inventory,
            &urls.payment,
            None,
        ),
    );
    println!(
        "stockroom ready: order={} data={} inventory={} payment={} dashboard={dashboard_url} mode=naive {}",
        urls.order,
        urls.data,
        urls.inventory,
        urls.payment,
        stockroom_naive::RACY_NOTICE
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    dashboard.stop().await?;
    running.stop().await?;
    Ok(())
}
