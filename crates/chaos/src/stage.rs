//! The system a chaos campaign strikes, started by the campaign itself: a
//! cluster (PostgreSQL, RabbitMQ, N processes of every service, with the
//! campaign's proxies on two links) or one `stockroom up` process on SQLite.
//!
//! Everything the campaign creates is its own: a fresh database schema, a
//! fresh broker prefix, a fresh data directory, so that a campaign never
//! mixes with another system's orders.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use stockroom_launcher::cluster::{self, ClusterConfig, Instance};
use stockroom_launcher::system::{
    DASHBOARD_PORT, DATA_PORT, INVENTORY_PORT, ORDER_PORT, PAYMENT_PORT,
};
use tokio::sync::Mutex;

use crate::proxy::Proxy;
use crate::schedule::{Link, Target};

/// What the campaign runs against.
#[derive(Debug, Clone)]
pub enum StageConfig {
    Cluster {
        instances: u16,
        /// The PostgreSQL server (a `postgres://` URL, without `schema=`).
        database_url: String,
        /// The RabbitMQ broker.
        bus_url: String,
    },
    Up,
}

/// The processes' settings that the campaign chooses.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub port_offset: u16,
    pub lease_ms: u64,
    /// The broker heartbeat, which is how long a paused consumer keeps its
    /// messages from the others.
    pub heartbeat_s: u64,
    pub reservation_ttl_ms: u64,
    pub payment_latency_ms: u64,
    pub payment_decline_rate: f64,
}

/// Where the campaign reaches the database it may fault.
#[derive(Debug, Clone)]
pub struct DatabaseHandle {
    /// The server's URL as given (no schema, no application name).
    pub url: String,
    pub schema: String,
    /// What the system's sessions report, so that only they are terminated.
    pub application_name: String,
}

/// Where the campaign reaches the broker.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    pub url: String,
    pub prefix: String,
}

/// The running system under test.
pub struct Stage {
    pub processes: Arc<Mutex<Vec<Instance>>>,
    pub proxies: BTreeMap<Link, Vec<Proxy>>,
    pub order_urls: Vec<String>,
    pub data_urls: Vec<String>,
    pub database: Option<DatabaseHandle>,
    pub broker: Option<BrokerHandle>,
    /// What the system's internal routes require.
    pub internal_token: stockroom_http_kit::InternalToken,
}

impl Stage {
    /// The process a target names, as its index in `processes`.
    pub fn process_index(processes: &[Instance], target: Target) -> Option<usize> {
        processes.iter().position(|instance| match target {
            Target::Process { service, index } => {
                instance.service == service.name() && instance.index == index
            }
            Target::System => true,
            _ => false,
        })
    }
}

/// A name for this campaign's schema and broker prefix: lower-case letters,
/// digits and `_`, unique per run.
pub fn run_name(seed: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("chaos_{seed}_{nanos}")
}

/// Starts the system and waits until every process is healthy.
pub async fn start(
    config: &StageConfig,
    settings: &ServiceSettings,
    stock_file: &Path,
    work_directory: &Path,
    name: &str,
) -> anyhow::Result<Stage> {
    match config {
        StageConfig::Cluster {
            instances,
            database_url,
            bus_url,
        } => {
            start_cluster(
                *instances,
                database_url,
                bus_url,
                settings,
                stock_file,
                work_directory,
                name,
            )
            .await
        }
        StageConfig::Up => start_up(settings, stock_file, work_directory).await,
    }
}

fn with_query(url: &str, parameters: &[(&str, String)]) -> String {
    let mut url = url.to_owned();
    for (name, value) in parameters {
        let separator = if url.contains('?') { '&' } else { '?' };
        url = format!("{url}{separator}{name}={value}");
    }
    url
}

fn socket_address(url: &str) -> anyhow::Result<SocketAddr> {
    let address = url.trim_start_matches("http://");
    address
        .parse()
        .with_context(|| format!("{url} is not an http://IP:PORT address"))
}

async fn proxies_for(urls: &[String]) -> anyhow::Result<Vec<Proxy>> {
    let mut proxies = Vec::new();
    for url in urls {
        proxies.push(
            Proxy::start(socket_address(url)?)
                .await
                .context("cannot start a proxy")?,
        );
    }
    Ok(proxies)
}

fn service_arguments(settings: &ServiceSettings) -> (Vec<String>, Vec<String>) {
    let payment = vec![
        "--lease-ms".to_owned(),
        settings.lease_ms.to_string(),
        "--payment-latency-ms".to_owned(),
        settings.payment_latency_ms.to_string(),
        "--payment-decline-rate".to_owned(),
        settings.payment_decline_rate.to_string(),
    ];
    let inventory = vec![
        "--lease-ms".to_owned(),
        settings.lease_ms.to_string(),
        "--reservation-ttl-ms".to_owned(),
        settings.reservation_ttl_ms.to_string(),
    ];
    (payment, inventory)
}

async fn start_cluster(
    instances: u16,
    database_url: &str,
    bus_url: &str,
    settings: &ServiceSettings,
    stock_file: &Path,
    work_directory: &Path,
    name: &str,
) -> anyhow::Result<Stage> {
    let application_name = format!("stockroom_{name}");
    let system_database_url = with_query(
        database_url,
        &[
            ("schema", name.to_owned()),
            ("application_name", application_name.clone()),
        ],
    );
    let system_bus_url = with_query(bus_url, &[("heartbeat", settings.heartbeat_s.to_string())]);
    let prefix = format!("stockroom_{name}");
    let mut config = ClusterConfig {
        data_environment: Vec::new(),
        operator_token: None,
        instances,
        database_url: system_database_url,
        bus_url: Some(system_bus_url),
        inventory_file: Some(stock_file.to_owned()),
        port_offset: settings.port_offset,
        host: "127.0.0.1".to_owned(),
        payment_args: Vec::new(),
        inventory_args: Vec::new(),
        data_args: Vec::new(),
        inventory_urls_for_order: None,
        data_urls_for_consumers: None,
        environment: vec![
            ("STOCKROOM_BUS_PREFIX".to_owned(), prefix.clone()),
            (
                "STOCKROOM_LOG".to_owned(),
                std::env::var("STOCKROOM_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ),
        ],
        internal_token: stockroom_http_kit::InternalToken::generate(),
        log_directory: Some(work_directory.to_owned()),
    };
    let (payment, inventory) = service_arguments(settings);
    config.payment_args = payment;
    config.inventory_args = inventory;
    let mut proxies = BTreeMap::new();
    let to_inventory = proxies_for(&config.urls(INVENTORY_PORT)).await?;
    let to_data = proxies_for(&config.urls(DATA_PORT)).await?;
    config.inventory_urls_for_order = Some(to_inventory.iter().map(|p| p.url.clone()).collect());
    config.data_urls_for_consumers = Some(to_data.iter().map(|p| p.url.clone()).collect());
    proxies.insert(Link::OrderToInventory, to_inventory);
    proxies.insert(Link::ConsumersToData, to_data);
    let running = cluster::start(&config).await?;
    Ok(Stage {
        internal_token: config.internal_token.clone(),
        order_urls: config.urls(ORDER_PORT),
        data_urls: config.urls(DATA_PORT),
        processes: Arc::new(Mutex::new(running.instances)),
        proxies,
        database: Some(DatabaseHandle {
            url: database_url.to_owned(),
            schema: name.to_owned(),
            application_name,
        }),
        broker: Some(BrokerHandle {
            url: bus_url.to_owned(),
            prefix,
        }),
    })
}

async fn start_up(
    settings: &ServiceSettings,
    stock_file: &Path,
    work_directory: &Path,
) -> anyhow::Result<Stage> {
    let port = |base: u16| base + settings.port_offset;
    let url = |base: u16| format!("http://127.0.0.1:{}", port(base));
    let data_directory: PathBuf = work_directory.join("data");
    let (payment, inventory) = service_arguments(settings);
    let mut arguments = vec![
        "up".to_owned(),
        "--data-dir".to_owned(),
        data_directory.display().to_string(),
        "--inventory".to_owned(),
        stock_file.display().to_string(),
    ];
    for (flag, base) in [
        ("--order-port", ORDER_PORT),
        ("--data-port", DATA_PORT),
        ("--inventory-port", INVENTORY_PORT),
        ("--payment-port", PAYMENT_PORT),
        ("--dashboard-port", DASHBOARD_PORT),
    ] {
        arguments.extend([flag.to_owned(), port(base).to_string()]);
    }
    arguments.extend(payment);
    // `up` takes one --lease-ms; the inventory arguments repeat it.
    arguments.extend(inventory.into_iter().skip(2));
    let internal_token = stockroom_http_kit::InternalToken::generate();
    let environment = vec![
        (
            "STOCKROOM_LOG".to_owned(),
            std::env::var("STOCKROOM_LOG").unwrap_or_else(|_| "warn".to_owned()),
        ),
        (
            stockroom_http_kit::INTERNAL_TOKEN_ENV.to_owned(),
            internal_token.expose().to_owned(),
        ),
    ];
    let instance = Instance::start(
        "system",
        0,
        url(ORDER_PORT),
        arguments,
        environment,
        Some(work_directory.join("up.log")),
    )?;
    let client = reqwest::Client::new();
    let processes = vec![instance];
    for base in [DATA_PORT, ORDER_PORT] {
        stockroom_http_kit::wait_for_health(&client, "stockroom up", &url(base)).await?;
    }
    Ok(Stage {
        processes: Arc::new(Mutex::new(processes)),
        proxies: BTreeMap::new(),
        order_urls: vec![url(ORDER_PORT)],
        data_urls: vec![url(DATA_PORT)],
        database: None,
        broker: None,
        internal_token,
    })
}
