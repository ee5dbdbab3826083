//! `stockroom serve <service>`: one service alone, of Stockroom or, with
//! `--mode naive`, of the original racy system.

use std::net::IpAddr;

use anyhow::Context;
use clap::{Args, Subcommand};
use stockroom_http_kit::InternalToken;
use stockroom_inventory_service::InventoryConfig;
use stockroom_launcher::system;
use stockroom_naive::Fix;
use stockroom_naive::serve::OneService;
use stockroom_order_service::OrderConfig;
use stockroom_payment_service::PaymentConfig;

use super::args::{
    AllowedHostsArgs, BusArgs, ExpiryArgs, ModeArgs, PaymentArgs, StorageArgs, TokenArgs,
    read_stock, writer_config,
};
use super::dashboard::{DashboardArgs, serve_dashboard};
use super::shop_args::{ExtensionArgs, ShopArgs};
use super::shutdown_signal;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    #[command(subcommand)]
    service: ServiceCommand,
    #[command(flatten)]
    pub(super) mode: ModeArgs,
    /// Address to listen on.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1",
        env = "STOCKROOM_HOST"
    )]
    host: IpAddr,
    /// Port to listen on; defaults to the service's own (3001 to 3004, the
    /// dashboard 3000).
    #[arg(long, global = true, env = "STOCKROOM_PORT")]
    port: Option<u16>,
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    allowed_hosts: AllowedHostsArgs,
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
        #[command(flatten)]
        extension: ExtensionArgs,
    },
    /// The only process that touches storage (3002).
    Data {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        bus: BusArgs,
        #[command(flatten)]
        shop: ShopArgs,
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
        /// The operator token, for the auditor to replay every product's
        /// ledger against its figures; without it the ledger is not audited.
        #[arg(long, env = stockroom_http_kit::OPERATOR_TOKEN_ENV, hide_env_values = true)]
        operator_token: Option<String>,
    },
    /// The live dashboard in the browser (3000), watching running services.
    Dashboard(DashboardArgs),
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

impl ServeArgs {
    /// The name the service's traces carry.
    pub(super) fn service_name(&self) -> &'static str {
        match self.service {
            ServiceCommand::Order { .. } => "order-service",
            ServiceCommand::Data { .. } => "data-service",
            ServiceCommand::Inventory { .. } => "inventory-service",
            ServiceCommand::Payment { .. } => "payment-service",
            ServiceCommand::Dashboard(_) => "dashboard",
        }
    }
}

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.allowed_hosts.install()?;
    let signal = async {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
    };
    let at = Address {
        host: args.host,
        port: args.port,
    };
    // The dashboard needs no internal token (it reads public routes, and the
    // ledger with the operator's); every other service either guards
    // internal routes or calls them, so it cannot run without one.
    let token = &args.token;
    match args.service {
        ServiceCommand::Order {
            inventory_url,
            data_url,
            extension,
        } => {
            let config = OrderConfig {
                inventory_url,
                data_url,
                internal_token: token.required()?,
                max_reservation_ttl_ms: extension.max_reservation_ttl_ms,
            };
            serve_order(at, config, signal).await
        }
        ServiceCommand::Data { storage, bus, shop } => {
            serve_data(at, storage, bus, shop, token.required()?, signal).await
        }
        ServiceCommand::Inventory {
            data_url,
            expiry,
            bus,
            operator_token,
            ..
        } => {
            let operator_token = operator_token
                .as_deref()
                .map(stockroom_http_kit::OperatorToken::parse)
                .transpose()?;
            let config = InventoryConfig {
                data_url,
                reservation_ttl_ms: expiry.reservation_ttl_ms,
                sweep_interval_ms: expiry.sweep_interval_ms,
                internal_token: token.required()?,
                operator_token,
            };
            serve_inventory(at, config, bus, signal).await
        }
        ServiceCommand::Dashboard(dashboard) => {
            serve_dashboard(dashboard, at.host, at.port, signal).await
        }
        ServiceCommand::Payment {
            data_url,
            payment,
            bus,
        } => serve_payment(at, data_url, payment, bus, token.required()?, signal).await,
    }
}

/// Where a service listens: `--host`, and `--port` or its default port.
#[derive(Debug, Clone, Copy)]
struct Address {
    host: IpAddr,
    port: Option<u16>,
}

impl Address {
    /// Binds the address, on `default_port` unless `--port` says otherwise.
    async fn bind(
        self,
        service: &str,
        default_port: u16,
    ) -> anyhow::Result<(tokio::net::TcpListener, String)> {
        system::bind(service, self.host, self.port.unwrap_or(default_port)).await
    }
}

/// A future that completes when a service should stop (Ctrl-C or SIGTERM).
trait Signal: Future<Output = ()> + Send + 'static {}

impl<F: Future<Output = ()> + Send + 'static> Signal for F {}

async fn serve_order(at: Address, config: OrderConfig, signal: impl Signal) -> anyhow::Result<()> {
    let (listener, url) = at.bind("order-service", system::ORDER_PORT).await?;
    tracing::info!(%url, "order-service listening");
    stockroom_order_service::run(listener, config, signal)
        .await
        .context("order-service failed")
}

async fn serve_data(
    at: Address,
    storage: StorageArgs,
    bus: BusArgs,
    shop: ShopArgs,
    internal_token: InternalToken,
    signal: impl Signal,
) -> anyhow::Result<()> {
    let bus = bus.choice()?;
    let webhooks = shop.webhooks()?;
    let operator_token = shop.operator_token()?;
    if operator_token.is_none() {
        tracing::warn!(
            "no operator token: the operator's routes answer 401; set {} to serve them",
            stockroom_http_kit::OPERATOR_TOKEN_ENV
        );
    }
    let (listener, url) = at.bind("data-service", system::DATA_PORT).await?;
    let opened = system::open_storage(
        &storage.database(),
        storage.fresh,
        read_stock(&storage)?,
        stockroom_storage_sqlite::WriterConfig {
            notify: webhooks.is_some(),
            ..writer_config(&storage)?
        },
        system::GroupCommitConfig::default(),
    )
    .await?;
    tracing::info!(%url, backend = opened.backend_name(), "data-service listening");
    let state = stockroom_data_service::DataState::new(opened.clone(), internal_token)
        .with_retention(storage.retention.retention()?)
        .with_operator_token(operator_token)
        .with_webhooks(webhooks);
    let running = system::data_service_with(
        listener,
        state,
        opened.clone(),
        &bus,
        stockroom_data_service::RelaySettings::default(),
    );
    signal.await;
    let stopped = running.stop().await;
    opened.close().await;
    stopped
}

async fn serve_inventory(
    at: Address,
    config: InventoryConfig,
    bus: BusArgs,
    signal: impl Signal,
) -> anyhow::Result<()> {
    let (listener, url) = at.bind("inventory-service", system::INVENTORY_PORT).await?;
    tracing::info!(%url, "inventory-service listening");
    let events = bus.choice()?.event_source_leased(
        &config.data_url,
        stockroom_domain::CONSUMER_INVENTORY,
        bus.lease_ms,
        &config.internal_token,
    );
    stockroom_inventory_service::run(listener, config, events, signal)
        .await
        .context("inventory-service failed")
}

async fn serve_payment(
    at: Address,
    data_url: String,
    payment: PaymentArgs,
    bus: BusArgs,
    internal_token: InternalToken,
    signal: impl Signal,
) -> anyhow::Result<()> {
    let config = PaymentConfig {
        data_url: data_url.clone(),
        latency_ms: payment.payment_latency_ms,
        decline_rate: payment.payment_decline_rate,
        internal_token: internal_token.clone(),
    };
    config.validate().map_err(anyhow::Error::msg)?;
    let (listener, url) = at.bind("payment-service", system::PAYMENT_PORT).await?;
    tracing::info!(%url, "payment-service listening");
    let events = bus.choice()?.event_source_leased(
        &data_url,
        stockroom_domain::CONSUMER_PAYMENT,
        bus.lease_ms,
        &internal_token,
    );
    stockroom_payment_service::run(listener, config, events, signal)
        .await
        .context("payment-service failed")
}

/// `serve <service> --mode naive`: one service of the original system.
pub(super) async fn serve_naive(args: ServeArgs) -> anyhow::Result<()> {
    let signal = async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    };
    args.mode.refuse_exposed_naive(args.host)?;
    args.allowed_hosts.install()?;
    anyhow::ensure!(
        args.mode.naive_fix == Fix::None,
        "--naive-fix works with `stockroom up --mode naive`, which runs the four services together"
    );
    let windows = args.mode.windows()?;
    tracing::warn!("NAIVE MODE: this service is racy on purpose; only for the race lab");
    let at = Address {
        host: args.host,
        port: args.port,
    };
    let (service, default_port) = match args.service {
        ServiceCommand::Order {
            inventory_url,
            data_url,
            ..
        } => (
            OneService::Order {
                data_url,
                inventory_url,
            },
            system::ORDER_PORT,
        ),
        ServiceCommand::Data { storage, .. } => (
            OneService::Data {
                stock: read_stock(&storage)?
                    .unwrap_or_else(stockroom_launcher::stock::default_stock),
                data_dir: storage.data_dir,
                fresh: storage.fresh,
            },
            system::DATA_PORT,
        ),
        ServiceCommand::Inventory {
            data_url,
            payment_url,
            ..
        } => (
            OneService::Inventory {
                data_url,
                payment_url,
                flow: args.mode.naive_flow,
            },
            system::INVENTORY_PORT,
        ),
        ServiceCommand::Payment { .. } => (OneService::Payment, system::PAYMENT_PORT),
        // The dashboard is the same for both systems: it reads the contract.
        ServiceCommand::Dashboard(dashboard) => {
            return serve_dashboard(dashboard, at.host, at.port, signal).await;
        }
    };
    let name = service.name();
    let (listener, url) = at.bind(name, default_port).await?;
    tracing::info!(%url, "{name} listening");
    stockroom_naive::serve::serve_one(service, listener, windows, signal)
        .await
        .with_context(|| format!("{name} failed"))
}
