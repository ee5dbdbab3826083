//! Starting and stopping the whole system, or one service, in this process.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use stockroom_bus::{EmbeddedEventSource, EventSource};
use stockroom_bus_rabbitmq::{RabbitEventSource, RabbitPublisher, Topology};
use stockroom_contract::StockLine;
use stockroom_data_service::webhooks::WebhookConfig;
use stockroom_data_service::{DataState, RelaySettings, Retention};
use stockroom_domain::{CONSUMER_INVENTORY, CONSUMER_PAYMENT};
use stockroom_http_kit::{InternalToken, OperatorToken};
use stockroom_inventory_service::InventoryConfig;
use stockroom_order_service::{CoalesceConfig, OrderConfig};
use stockroom_payment_service::PaymentConfig;
use stockroom_storage::Storage;
pub use stockroom_storage_postgres::GroupCommitConfig;
use stockroom_storage_postgres::{PostgresConfig, PostgresStorage};
use stockroom_storage_sqlite::{DataDirectory, SqliteStorage, WriterConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Each service's default port.
pub const ORDER_PORT: u16 = 3001;
pub const DATA_PORT: u16 = 3002;
pub const INVENTORY_PORT: u16 = 3003;
pub const PAYMENT_PORT: u16 = 3004;
/// The dashboard's default port.
pub const DASHBOARD_PORT: u16 = 3000;

/// The ports to listen on; 0 picks a free one.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub order: u16,
    pub data: u16,
    pub inventory: u16,
    pub payment: u16,
}

impl Ports {
    pub const DEFAULT: Ports = Ports {
        order: ORDER_PORT,
        data: DATA_PORT,
        inventory: INVENTORY_PORT,
        payment: PAYMENT_PORT,
    };

    /// Every service on a free port, for tests.
    pub const EPHEMERAL: Ports = Ports {
        order: 0,
        data: 0,
        inventory: 0,
        payment: 0,
    };
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseChoice {
    /// `stockroom.db` in this directory (the embedded default).
    Sqlite { data_dir: PathBuf },
    /// A PostgreSQL database, optionally in its own schema.
    Postgres { url: String, schema: Option<String> },
}

impl DatabaseChoice {
    /// `--database-url`: a `postgres://` or `postgresql://` URL selects
    /// PostgreSQL (a `schema=NAME` query parameter puts the tables in that
    /// schema); `sqlite://DIR` or a plain path selects SQLite in that
    /// directory; nothing selects SQLite in `data_dir`.
    pub fn from_url(url: Option<&str>, data_dir: &Path) -> DatabaseChoice {
        match url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let (url, schema) = split_schema(url);
                DatabaseChoice::Postgres { url, schema }
            }
            Some(url) => DatabaseChoice::Sqlite {
                data_dir: PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url)),
            },
            None => DatabaseChoice::Sqlite {
                data_dir: data_dir.to_owned(),
            },
        }
    }
}

/// Takes Stockroom's own `schema=NAME` query parameter off a PostgreSQL URL:
/// the tables then live in that schema (created if missing), so several
/// systems or tests can share one database.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

/// What carries events between services.
#[derive(Debug, Clone)]
pub enum BusChoice {
    /// Consumers lease events from data-service's outbox over HTTP.
    Embedded,
    /// data-service relays the outbox to RabbitMQ; consumers read its queues.
    RabbitMq { url: String, topology: Topology },
}

impl BusChoice {
    /// `--bus-url`: an `amqp://` URL selects RabbitMQ; nothing selects the
    /// embedded bus.
    /// `prefix` names the exchanges and queues (`stockroom` by default).
    pub fn from_url(url: Option<&str>, prefix: &str) -> anyhow::Result<BusChoice> {
        match url {
            None => Ok(BusChoice::Embedded),
            Some(url) if url.starts_with("amqp://") || url.starts_with("amqps://") => {
                Ok(BusChoice::RabbitMq {
                    url: url.to_owned(),
                    topology: Topology::with_prefix(prefix),
                })
            }
            Some(url) => anyhow::bail!("--bus-url must be an amqp:// URL, got {url}"),
        }
    }

    /// The event source of one consumer group.
    pub fn event_source(
        &self,
        data_url: &str,
        consumer: &'static str,
        token: &InternalToken,
    ) -> Arc<dyn EventSource> {
        self.event_source_leased(data_url, consumer, stockroom_bus::LEASE_MS, token)
    }

    /// [`BusChoice::event_source`], leasing embedded events for `lease_ms`
    /// (a broker keeps unacknowledged messages with their consumer until its
    /// connection ends, without a lease).
    pub fn event_source_leased(
        &self,
        data_url: &str,
        consumer: &'static str,
        lease_ms: u64,
        token: &InternalToken,
    ) -> Arc<dyn EventSource> {
        match self {
            BusChoice::Embedded => Arc::new(
                EmbeddedEventSource::new(data_url, consumer, token.clone()).with_lease_ms(lease_ms),
            ),
            BusChoice::RabbitMq { url, topology } => Arc::new(
                RabbitEventSource::new(url, topology.clone(), consumer)
                    .with_dead_letters(data_url, token.clone()),
            ),
        }
    }
}

/// Everything `stockroom up` can be told.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub database: DatabaseChoice,
    pub bus: BusChoice,
    /// Stock loaded on first start; `None` means the built-in stock.
    pub stock: Option<Vec<StockLine>>,
    /// Delete the data first and load the stock again.
    pub fresh: bool,
    pub host: IpAddr,
    pub ports: Ports,
    pub payment_latency_ms: u64,
    pub payment_decline_rate: f64,
    pub reservation_ttl_ms: u64,
    pub sweep_interval_ms: u64,
    /// The longest a customer may extend an unpaid reservation by.
    pub max_reservation_ttl_ms: u64,
    pub writer: WriterConfig,
    /// How data-service on PostgreSQL batches its calls and locks their
    /// stock; the default as shipped.
    pub postgres_group_commit: GroupCommitConfig,
    /// Whether order-service coalesces concurrent orders into one batch per
    /// internal exchange.
    pub order_coalescing: bool,
    /// How long data-service keeps old rows.
    pub retention: Retention,
    /// How the outbox relay retries a broker that is down.
    pub relay: RelaySettings,
    /// How long a consumer holds the embedded events it leased before they
    /// go to another consumer.
    pub lease_ms: u64,
    /// The secret the services' internal routes require; a random one
    /// unless the operator gives one.
    pub internal_token: InternalToken,
    /// The secret the operator's routes require; `None` turns them off.
    pub operator_token: Option<OperatorToken>,
    /// Where the rules' notices go; `None` for no webhooks (and then the
    /// rules raise none).
    pub webhooks: Option<WebhookConfig>,
}

impl SystemConfig {
    pub fn new(data_dir: &Path) -> SystemConfig {
        SystemConfig {
            database: DatabaseChoice::Sqlite {
                data_dir: data_dir.to_owned(),
            },
            bus: BusChoice::Embedded,
            stock: None,
            fresh: false,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::DEFAULT,
            payment_latency_ms: 0,
            payment_decline_rate: 0.0,
            reservation_ttl_ms: stockroom_inventory_service::DEFAULT_RESERVATION_TTL_MS,
            sweep_interval_ms: stockroom_inventory_service::DEFAULT_SWEEP_INTERVAL_MS,
            max_reservation_ttl_ms: stockroom_order_service::DEFAULT_MAX_RESERVATION_TTL_MS,
            writer: WriterConfig::default(),
            postgres_group_commit: GroupCommitConfig::default(),
            order_coalescing: true,
            retention: Retention::default(),
            relay: RelaySettings::default(),
            lease_ms: stockroom_bus::LEASE_MS,
            internal_token: InternalToken::generate(),
            operator_token: None,
            webhooks: None,
        }
    }
}

/// The base URLs of a running system.
#[derive(Debug, Clone)]
pub struct Urls {
    pub order: String,
    pub data: String,
    pub inventory: String,
    pub payment: String,
}

/// One service running in this process.
pub struct RunningService {
    pub name: &'static str,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningService {
    /// Stops accepting, finishes requests in flight, and waits for the end.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task
            .await
            .with_context(|| format!("{} panicked", self.name))?
            .with_context(|| format!("{} failed", self.name))
    }
}

/// Binds `host:port` for `service`, with an error that names the port.
pub async fn bind(
    service: &str,
    host: IpAddr,
    port: u16,
) -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = stockroom_http_kit::bind(SocketAddr::new(host, port))
        .await
        .with_context(|| format!("{service} cannot start"))?;
    let address = listener.local_addr()?;
    Ok((listener, format!("http://{address}")))
}

fn spawn<F>(name: &'static str, run: impl FnOnce(CancellationToken) -> F) -> RunningService
where
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(stop.clone()));
    RunningService { name, stop, task }
}

/// The connections a PostgreSQL-backed data-service instance keeps.
pub const POSTGRES_POOL_SIZE: usize = 16;

/// Opens the chosen storage (emptying a SQLite directory first when `fresh`)
/// and loads the stock if none was ever loaded. With `writer.notify` the
/// rules raise notices for webhooks, on either backend; `group_commit` is
/// PostgreSQL's batching.
pub async fn open_storage(
    database: &DatabaseChoice,
    fresh: bool,
    stock: Option<Vec<StockLine>>,
    writer: WriterConfig,
    group_commit: GroupCommitConfig,
) -> anyhow::Result<Arc<dyn Storage>> {
    let storage: Arc<dyn Storage> = match database {
        DatabaseChoice::Sqlite { data_dir } => {
            // The directory is held before anything in it is touched, so
            // `--fresh` never deletes a store another process has open.
            let directory = DataDirectory::lock(data_dir)?;
            if fresh {
                directory.remove_database()?;
            }
            let storage = SqliteStorage::open_held(directory, writer)
                .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
            Arc::new(storage)
        }
        DatabaseChoice::Postgres { url, schema } => {
            anyhow::ensure!(
                !fresh,
                "--fresh empties a SQLite data directory only; for PostgreSQL use a new database or schema"
            );
            let config = PostgresConfig {
                schema: schema.clone(),
                pool_size: POSTGRES_POOL_SIZE,
                notify: writer.notify,
            };
            Arc::new(
                PostgresStorage::connect_with_group_commit(url, config, group_commit)
                    .await
                    .context("cannot open the PostgreSQL database")?,
            )
        }
    };
    let stock = stock
        .unwrap_or_else(crate::stock::default_stock)
        .into_iter()
        .map(|line| stockroom_storage::InitialStock {
            product: line.product_name,
            quantity: line.quantity,
        })
        .collect();
    if storage.initialize_stock(stock).await? {
        tracing::info!(backend = storage.backend_name(), "initial stock loaded");
    }
    Ok(storage)
}

/// Serves data-service and, when a broker carries the events, runs the
/// outbox relay beside it.
pub fn data_service_with_bus(
    listener: tokio::net::TcpListener,
    storage: Arc<dyn Storage>,
    bus: &BusChoice,
    token: InternalToken,
) -> RunningService {
    data_service_with(
        listener,
        DataState::new(storage.clone(), token),
        storage,
        bus,
        RelaySettings::default(),
    )
}

/// Serves data-service with `state` (its storage, retention, tokens and
/// webhooks) over `bus`.
pub fn data_service_with(
    listener: tokio::net::TcpListener,
    state: DataState,
    storage: Arc<dyn Storage>,
    bus: &BusChoice,
    relay: RelaySettings,
) -> RunningService {
    let publisher = match bus {
        BusChoice::Embedded => None,
        BusChoice::RabbitMq { url, topology } => {
            Some(Arc::new(RabbitPublisher::new(url, topology.clone())))
        }
    };
    spawn("data-service", move |stop| async move {
        let relay = publisher.map(|publisher| {
            tokio::spawn(stockroom_data_service::relay_outbox(
                storage,
                publisher,
                state.events_written.clone(),
                state.readiness.clone(),
                relay,
                stop.clone(),
            ))
        });
        let served =
            stockroom_data_service::run(listener, state, stop.clone().cancelled_owned()).await;
        if let Some(relay) = relay {
            stop.cancel();
            let _ = relay.await;
        }
        served
    })
}

/// data-service on the embedded bus.
pub fn data_service(
    listener: tokio::net::TcpListener,
    storage: Arc<dyn Storage>,
    token: InternalToken,
) -> RunningService {
    data_service_with_bus(listener, storage, &BusChoice::Embedded, token)
}

/// inventory-service, leasing embedded events for `lease_ms`.
pub fn inventory_service(
    listener: tokio::net::TcpListener,
    config: InventoryConfig,
    bus: &BusChoice,
    lease_ms: u64,
) -> RunningService {
    let events = bus.event_source_leased(
        &config.data_url,
        CONSUMER_INVENTORY,
        lease_ms,
        &config.internal_token,
    );
    spawn("inventory-service", move |stop| {
        stockroom_inventory_service::run(listener, config, events, stop.cancelled_owned())
    })
}

/// payment-service, leasing embedded events for `lease_ms`.
pub fn payment_service(
    listener: tokio::net::TcpListener,
    config: PaymentConfig,
    bus: &BusChoice,
    lease_ms: u64,
) -> RunningService {
    let events = bus.event_source_leased(
        &config.data_url,
        CONSUMER_PAYMENT,
        lease_ms,
        &config.internal_token,
    );
    spawn("payment-service", move |stop| {
        stockroom_payment_service::run(listener, config, events, stop.cancelled_owned())
    })
}

pub fn order_service(
    listener: tokio::net::TcpListener,
    config: OrderConfig,
    coalescing: bool,
) -> RunningService {
    let coalesce = if coalescing {
        CoalesceConfig::default()
    } else {
        CoalesceConfig::OFF
    };
    spawn("order-service", move |stop| {
        stockroom_order_service::run_with_coalescing(
            listener,
            config,
            coalesce,
            stop.cancelled_owned(),
        )
    })
}

/// The dashboard, watching the services `config` names.
pub fn dashboard(
    listener: tokio::net::TcpListener,
    config: stockroom_dashboard::DashboardConfig,
) -> RunningService {
    spawn("dashboard", move |stop| {
        stockroom_dashboard::run(listener, config, stop.cancelled_owned())
    })
}

/// All four services running in this process.
pub struct RunningSystem {
    pub urls: Urls,
    /// What the internal routes of this system's services require.
    pub internal_token: InternalToken,
    pub storage: Arc<dyn Storage>,
    order: RunningService,
    inventory: RunningService,
    payment: RunningService,
    data: RunningService,
}

/// Starts data-service, then the others, and waits until every service
/// reports healthy.
pub async fn start(config: SystemConfig) -> anyhow::Result<RunningSystem> {
    // Checked before anything starts; the data URL is filled in once bound.
    let payment = PaymentConfig {
        data_url: String::new(),
        latency_ms: config.payment_latency_ms,
        decline_rate: config.payment_decline_rate,
        internal_token: config.internal_token.clone(),
    };
    payment.validate().map_err(anyhow::Error::msg)?;
    let listeners = Listeners::bind(config.host, config.ports).await?;
    let storage = open_storage(
        &config.database,
        config.fresh,
        config.stock.clone(),
        WriterConfig {
            notify: config.webhooks.is_some(),
            ..config.writer
        },
        config.postgres_group_commit,
    )
    .await?;
    let running = start_services(config, listeners, storage, payment);
    wait_until_healthy(&running.urls).await?;
    Ok(running)
}

/// The four services' listeners and their URLs.
struct Listeners {
    data: tokio::net::TcpListener,
    inventory: tokio::net::TcpListener,
    payment: tokio::net::TcpListener,
    order: tokio::net::TcpListener,
    urls: Urls,
}

impl Listeners {
    /// Binds every port before starting anything, so a taken port fails fast
    /// and leaves nothing half-started.
    async fn bind(host: IpAddr, ports: Ports) -> anyhow::Result<Listeners> {
        let (data, data_url) = bind("data-service", host, ports.data).await?;
        let (inventory, inventory_url) = bind("inventory-service", host, ports.inventory).await?;
        let (payment, payment_url) = bind("payment-service", host, ports.payment).await?;
        let (order, order_url) = bind("order-service", host, ports.order).await?;
        Ok(Listeners {
            data,
            inventory,
            payment,
            order,
            urls: Urls {
                order: order_url,
                data: data_url,
                inventory: inventory_url,
                payment: payment_url,
            },
        })
    }
}

/// Starts data-service on `storage`, then the consumers and order-service
/// pointed at it, each on its listener.
fn start_services(
    config: SystemConfig,
    listeners: Listeners,
    storage: Arc<dyn Storage>,
    payment: PaymentConfig,
) -> RunningSystem {
    let urls = listeners.urls;
    let token = config.internal_token;
    let state = DataState::new(storage.clone(), token.clone())
        .with_retention(config.retention)
        .with_operator_token(config.operator_token.clone())
        .with_webhooks(config.webhooks.clone());
    let data = data_service_with(
        listeners.data,
        state,
        storage.clone(),
        &config.bus,
        config.relay,
    );
    let inventory = inventory_service(
        listeners.inventory,
        InventoryConfig {
            data_url: urls.data.clone(),
            reservation_ttl_ms: config.reservation_ttl_ms,
            sweep_interval_ms: config.sweep_interval_ms,
            internal_token: token.clone(),
            operator_token: config.operator_token.clone(),
        },
        &config.bus,
        config.lease_ms,
    );
    let payment = payment_service(
        listeners.payment,
        PaymentConfig {
            data_url: urls.data.clone(),
            ..payment
        },
        &config.bus,
        config.lease_ms,
    );
    let order = order_service(
        listeners.order,
        OrderConfig {
            inventory_url: urls.inventory.clone(),
            data_url: urls.data.clone(),
            internal_token: token.clone(),
            max_reservation_ttl_ms: config.max_reservation_ttl_ms,
        },
        config.order_coalescing,
    );
    RunningSystem {
        urls,
        internal_token: token,
        storage,
        order,
        inventory,
        payment,
        data,
    }
}

/// Waits for each service's `/health`, in the order they depend on each
/// other.
async fn wait_until_healthy(urls: &Urls) -> anyhow::Result<()> {
    let client = stockroom_http_kit::direct_client()
        .build()
        .context("cannot build the health-check client")?;
    for (name, url) in [
        ("data-service", &urls.data),
        ("inventory-service", &urls.inventory),
        ("payment-service", &urls.payment),
        ("order-service", &urls.order),
    ] {
        stockroom_http_kit::wait_for_health(&client, name, url).await?;
    }
    Ok(())
}

impl RunningSystem {
    /// Stops the services in reverse dependency order (clients first, storage
    /// last), each finishing its requests in flight, then closes the database.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.order.stop().await?;
        let inventory = self.inventory.stop();
        let payment = self.payment.stop();
        let (inventory, payment) = tokio::join!(inventory, payment);
        inventory?;
        payment?;
        self.data.stop().await?;
        self.storage.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_select_the_backend() {
        assert_eq!(
            DatabaseChoice::from_url(
                Some("postgres://u@h/db?schema=s1&sslmode=disable"),
                Path::new("d")
            ),
            DatabaseChoice::Postgres {
                url: "postgres://u@h/db?sslmode=disable".into(),
                schema: Some("s1".into())
            }
        );
        assert_eq!(
            DatabaseChoice::from_url(Some("postgresql://u@h/db"), Path::new("d")),
            DatabaseChoice::Postgres {
                url: "postgresql://u@h/db".into(),
                schema: None
            }
        );
        assert_eq!(
            DatabaseChoice::from_url(Some("sqlite://var/data"), Path::new("d")),
            DatabaseChoice::Sqlite {
                data_dir: "var/data".into()
            }
        );
        assert_eq!(
            DatabaseChoice::from_url(None, Path::new("d")),
            DatabaseChoice::Sqlite {
                data_dir: "d".into()
            }
        );
        assert!(BusChoice::from_url(Some("http://x"), "p").is_err());
        assert!(matches!(
            BusChoice::from_url(None, "p"),
            Ok(BusChoice::Embedded)
        ));
    }
}
