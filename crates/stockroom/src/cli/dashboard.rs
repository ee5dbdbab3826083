//! The dashboard from the command line: `stockroom serve dashboard` runs it
//! alone, given the services' URLs, and `stockroom up` runs it beside the
//! system it starts. Either way its race-lab control starts the lab's systems
//! in this process, as `stockroom lab` does.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use stockroom_dashboard::{DashboardConfig, Sources};
use stockroom_http_kit::{OPERATOR_TOKEN_ENV, OperatorToken, split_urls};
use stockroom_launcher::{InProcessLauncher, system};

/// Where the watched services are (`serve dashboard`).
#[derive(Debug, Args)]
pub(super) struct DashboardArgs {
    /// order-service, one URL or a comma-separated list of instances.
    #[arg(
        long,
        default_value = "http://127.0.0.1:3001",
        env = "STOCKROOM_ORDER_URL"
    )]
    order_url: String,
    /// data-service, one URL or a comma-separated list of instances.
    #[arg(
        long,
        default_value = "http://127.0.0.1:3002",
        env = "STOCKROOM_DATA_URL"
    )]
    data_url: String,
    /// inventory-service, one URL or a comma-separated list of instances.
    #[arg(
        long,
        default_value = "http://127.0.0.1:3003",
        env = "STOCKROOM_INVENTORY_URL"
    )]
    inventory_url: String,
    /// payment-service, one URL or a comma-separated list of instances.
    #[arg(
        long,
        default_value = "http://127.0.0.1:3004",
        env = "STOCKROOM_PAYMENT_URL"
    )]
    payment_url: String,
    /// The operator token, for the movement feed to read the stock ledger;
    /// without it the feed stays off. Used for reads only.
    #[arg(long, env = OPERATOR_TOKEN_ENV, hide_env_values = true)]
    operator_token: Option<String>,
}

/// The dashboard's configuration for services at these URLs (each one URL
/// or a comma-separated list), following the ledger with `operator_token`.
pub(super) fn config(
    order: &str,
    data: &str,
    inventory: &str,
    payment: &str,
    operator_token: Option<OperatorToken>,
) -> DashboardConfig {
    DashboardConfig {
        sources: Sources {
            order: split_urls(order),
            data: split_urls(data),
            inventory: split_urls(inventory),
            payment: split_urls(payment),
        },
        lab: Some(Arc::new(InProcessLauncher)),
        operator_token,
        lab_redis_url: Some(stockroom_lab::lab::redis_url_from_environment()),
    }
}

/// `stockroom serve dashboard`.
pub(super) async fn serve_dashboard(
    args: DashboardArgs,
    host: IpAddr,
    port: Option<u16>,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Checked before binding, so that a bad token fails before a listener
    // is announced.
    let operator_token = args
        .operator_token
        .as_deref()
        .map(OperatorToken::parse)
        .transpose()?;
    let (listener, url) =
        system::bind("dashboard", host, port.unwrap_or(system::DASHBOARD_PORT)).await?;
    tracing::info!(%url, "dashboard listening");
    let config = config(
        &args.order_url,
        &args.data_url,
        &args.inventory_url,
        &args.payment_url,
        operator_token,
    );
    stockroom_dashboard::run(listener, config, signal)
        .await
        .context("dashboard failed")
}
