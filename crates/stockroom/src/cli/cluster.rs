//! `stockroom cluster`: N processes of every service sharing one PostgreSQL
//! database and one RabbitMQ broker.

use std::path::PathBuf;

use clap::Args;
use stockroom_launcher::system;

use super::args::{AllowedHostsArgs, BusArgs, ExpiryArgs, PaymentArgs, TokenArgs};
use super::shop_args::{ExtensionArgs, ShopArgs};
use super::shutdown_signal;

#[derive(Debug, Args)]
pub(super) struct ClusterArgs {
    /// Processes of each service; instance i listens on the default port + 10·i.
    #[arg(long, default_value_t = 2)]
    instances: u16,
    /// The shared database (a postgres:// URL; SQLite cannot be shared
    /// between processes safely enough for this). The instances get it in
    /// their environment, never on their command lines; prefer the
    /// environment variable for this command too when the URL holds a
    /// password.
    #[arg(
        long,
        env = stockroom_launcher::cluster::DATABASE_URL_ENV,
        hide_env_values = true
    )]
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
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    allowed_hosts: AllowedHostsArgs,
    #[command(flatten)]
    shop: ShopArgs,
    #[command(flatten)]
    extension: ExtensionArgs,
}

pub(super) async fn cluster(
    args: ClusterArgs,
    otlp_endpoint: Option<String>,
) -> anyhow::Result<()> {
    let config = cluster_config(&args, otlp_endpoint)?;
    let mut running = stockroom_launcher::cluster::start(&config).await?;
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

/// The cluster's configuration, every setting checked before any child
/// starts.
fn cluster_config(
    args: &ClusterArgs,
    otlp_endpoint: Option<String>,
) -> anyhow::Result<stockroom_launcher::cluster::ClusterConfig> {
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
    // Checked here, so that a wrong setting fails before any child starts.
    args.shop.webhooks()?;
    let operator_token = args.shop.operator_token()?;
    let bus_prefix = vec!["--bus-prefix".to_owned(), args.bus.bus_prefix.clone()];
    Ok(stockroom_launcher::cluster::ClusterConfig {
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
        inventory_urls_for_order: None,
        data_urls_for_consumers: None,
        // Each process exports its own spans, under its own service name,
        // and serves the names the operator allowed.
        // order-service reads the extension bound from its environment.
        environment: otlp_endpoint
            .map(|endpoint| ("STOCKROOM_OTLP_ENDPOINT".to_owned(), endpoint))
            .into_iter()
            .chain(args.allowed_hosts.for_children())
            .chain([(
                "STOCKROOM_MAX_RESERVATION_TTL_MS".to_owned(),
                args.extension.max_reservation_ttl_ms.to_string(),
            )])
            .collect(),
        data_environment: args.shop.for_children(),
        operator_token,
        internal_token: args.token.or_generate()?,
        log_directory: None,
    })
}
