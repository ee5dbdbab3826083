//! `stockroom serve <service>`: one service alone, of Stockroom or, with
//! `--mode naive`, of the original racy system.

use std::net::IpAddr;

use anyhow::Context;
use clap::{Args, Subcommand};
use stockroom_inventory_service::InventoryConfig;
use stockroom_launcher::system;
use stockroom_order_service::OrderConfig;
use stockroom_payment_service::PaymentConfig;

use super::args::{
    BusArgs, ExpiryArgs, ModeArgs, PaymentArgs, StorageArgs, TokenArgs, read_stock, writer_config,
};
use super::dashboard::{DashboardArgs, serve_dashboard};
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
    let signal = async {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
    };
    // The dashboard reads only public routes; every other service either
    // guards internal routes or calls them, so it cannot run without one.
    let token = match args.service {
        ServiceCommand::Dashboard(_) => None,
        _ => Some(args.token.required()?),
    };
    let token = move || {
        token
            .clone()
            .expect("every service but the dashboard has a token")
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
                    internal_token: token(),
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
            let running = system::data_service_with(
                listener,
                opened.clone(),
                &bus,
                storage.retention.retention()?,
                stockroom_data_service::RelaySettings::default(),
                token(),
            );
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
            let (listener, url) = system::bind("inventory-service", args.host, port).await?;
            tracing::info!(%url, "inventory-service listening");
            let events = bus.choice()?.event_source_leased(
                &data_url,
                stockroom_domain::CONSUMER_INVENTORY,
                bus.lease_ms,
                &token(),
            );
            let config = InventoryConfig {
                data_url,
                reservation_ttl_ms: expiry.reservation_ttl_ms,
                sweep_interval_ms: expiry.sweep_interval_ms,
                internal_token: token(),
            };
            stockroom_inventory_service::run(listener, config, events, signal)
                .await
                .context("inventory-service failed")
        }
        ServiceCommand::Dashboard(dashboard) => {
            serve_dashboard(dashboard, args.host, args.port, signal).await
        }
        ServiceCommand::Payment {
            data_url,
            payment,
            bus,
        } => {
            let port = args.port.unwrap_or(system::PAYMENT_PORT);
            let config = PaymentConfig {
                data_url: data_url.clone(),
                latency_ms: payment.payment_latency_ms,
                decline_rate: payment.payment_decline_rate,
                internal_token: token(),
            };
            config.validate().map_err(anyhow::Error::msg)?;
            let (listener, url) = system::bind("payment-service", args.host, port).await?;
            tracing::info!(%url, "payment-service listening");
            let events = bus.choice()?.event_source_leased(
                &data_url,
                stockroom_domain::CONSUMER_PAYMENT,
                bus.lease_ms,
                &token(),
            );
            stockroom_payment_service::run(listener, config, events, signal)
                .await
                .context("payment-service failed")
        }
    }
}

/// `serve <service> --mode naive`: one service of the original system.
pub(super) async fn serve_naive(args: ServeArgs) -> anyhow::Result<()> {
    let signal = async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    };
    args.mode.refuse_exposed_naive(args.host)?;
    anyhow::ensure!(
        args.mode.naive_fix == stockroom_naive::Fix::None,
        "--naive-fix works with `stockroom up --mode naive`, which runs the four services together"
    );
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
                fix: stockroom_naive::Fix::None,
                dedupe: None,
                crash_after_publish: false,
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
            let state =
                stockroom_naive::data::DataState::new(files, windows, stockroom_naive::Fix::None);
            let stock =
                read_stock(&storage)?.unwrap_or_else(stockroom_launcher::stock::default_stock);
            state.store().initialize(&stock, storage.fresh).await?;
            tracing::info!(%url, "naive data-service listening");
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
                fix: stockroom_naive::Fix::None,
                locks: None,
            };
            stockroom_naive::inventory::run(listener, config, signal)
                .await
                .context("naive inventory-service failed")
        }
        // The dashboard is the same for both systems: it reads the contract.
        ServiceCommand::Dashboard(dashboard) => {
            serve_dashboard(dashboard, args.host, args.port, signal).await
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
