//! The systems the benchmark compares, each started fresh for each phase in
//! this process: Stockroom as shipped, Stockroom with batching off, Stockroom
//! on PostgreSQL (with the embedded bus, and with RabbitMQ), the per-request
//! PostgreSQL baseline, the naive mode, and a no-op endpoint on the same HTTP
//! stack.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use stockroom_bus_rabbitmq::{RabbitAdmin, Topology};
use stockroom_contract::StockLine;
use stockroom_domain::ProductName;
use stockroom_http_kit::JsonBody;
use stockroom_launcher::system::{
    self, BusChoice, DatabaseChoice, Ports, RunningSystem, SystemConfig,
};
use stockroom_storage::Storage;
use stockroom_storage_postgres::GroupCommitConfig;
use stockroom_storage_sqlite::WriterConfig;
use tokio_util::sync::CancellationToken;

use crate::baseline::PerRequestStock;
use crate::full_flow::FullFlowStock;

/// One of the compared systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// The embedded default: group commit and request coalescing, durable.
    Shipped,
    /// The same, one transaction per request and no coalescing.
    BatchingOff,
    /// Stockroom as shipped on PostgreSQL, with the embedded bus: what
    /// `stockroom up --database-url postgres://…` runs.
    StockroomPostgres,
    /// Stockroom on PostgreSQL with RabbitMQ carrying the events.
    StockroomPostgresRabbitmq,
    /// Stockroom on PostgreSQL with every batch's stock locked before the
    /// rules decide it, as before batches were decided ahead: what deciding
    /// ahead buys. Run only when named.
    StockroomPostgresLockingFirst,
    /// One conditional UPDATE per request on PostgreSQL, synchronous commit.
    PostgresPerRequest,
    /// The order's whole life per request on PostgreSQL: reserve and insert,
    /// pay, settle, three synchronous commits.
    PostgresFullFlowPerRequest,
    /// The original system (JSON files), racy.
    Naive,
    /// An endpoint that parses the order and answers 201: the HTTP ceiling.
    NoopHttp,
}

impl SystemKind {
    /// Every system a run may name.
    pub const ALL: [SystemKind; 9] = [
        SystemKind::Shipped,
        SystemKind::BatchingOff,
        SystemKind::StockroomPostgres,
        SystemKind::StockroomPostgresRabbitmq,
        SystemKind::StockroomPostgresLockingFirst,
        SystemKind::PostgresPerRequest,
        SystemKind::PostgresFullFlowPerRequest,
        SystemKind::Naive,
        SystemKind::NoopHttp,
    ];

    /// The systems a run that names none runs: all but the variant kept
    /// for measuring one change.
    pub const DEFAULT: [SystemKind; 8] = [
        SystemKind::Shipped,
        SystemKind::BatchingOff,
        SystemKind::StockroomPostgres,
        SystemKind::StockroomPostgresRabbitmq,
        SystemKind::PostgresPerRequest,
        SystemKind::PostgresFullFlowPerRequest,
        SystemKind::Naive,
        SystemKind::NoopHttp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Shipped => "stockroom",
            SystemKind::BatchingOff => "stockroom-batching-off",
            SystemKind::StockroomPostgres => "stockroom-postgres",
            SystemKind::StockroomPostgresRabbitmq => "stockroom-postgres-rabbitmq",
            SystemKind::StockroomPostgresLockingFirst => "stockroom-postgres-locking-first",
            SystemKind::PostgresPerRequest => "postgres-per-request",
            SystemKind::PostgresFullFlowPerRequest => "postgres-full-flow-per-request",
            SystemKind::Naive => "naive",
            SystemKind::NoopHttp => "noop-http",
        }
    }

    pub fn durability(self) -> &'static str {
        match self {
            SystemKind::Shipped => "fsync per batch (SQLite WAL, synchronous=FULL)",
            SystemKind::BatchingOff => "fsync per request (SQLite WAL, synchronous=FULL)",
            SystemKind::StockroomPostgres
            | SystemKind::StockroomPostgresRabbitmq
            | SystemKind::StockroomPostgresLockingFirst => {
                "fsync per batch (synchronous_commit=on)"
            }
            SystemKind::PostgresPerRequest => "fsync per request (synchronous_commit=on)",
            SystemKind::PostgresFullFlowPerRequest => {
                "3 fsyncs per request (synchronous_commit=on)"
            }
            SystemKind::Naive => "none (JSON rewritten in place, no fsync)",
            SystemKind::NoopHttp => "n/a (stores nothing)",
        }
    }

    /// Whether the system keeps stock, so a sell-out means something.
    pub fn has_stock(self) -> bool {
        self != SystemKind::NoopHttp
    }

    /// Whether this is Stockroom itself, whose storage counts its statements.
    pub fn is_stockroom(self) -> bool {
        matches!(
            self,
            SystemKind::Shipped
                | SystemKind::BatchingOff
                | SystemKind::StockroomPostgres
                | SystemKind::StockroomPostgresRabbitmq
                | SystemKind::StockroomPostgresLockingFirst
        )
    }

    /// Whether the system keeps its data in PostgreSQL, whose write-ahead
    /// log a phase measures.
    pub fn on_postgres(self) -> bool {
        matches!(
            self,
            SystemKind::StockroomPostgres
                | SystemKind::StockroomPostgresRabbitmq
                | SystemKind::StockroomPostgresLockingFirst
                | SystemKind::PostgresPerRequest
                | SystemKind::PostgresFullFlowPerRequest
        )
    }

    /// What the system needs that a run may not have, if anything.
    pub fn missing(
        self,
        postgres_url: Option<&str>,
        amqp_url: Option<&str>,
    ) -> Option<&'static str> {
        if self.on_postgres() && postgres_url.is_none() {
            return Some("no --postgres-url (or STOCKROOM_BENCH_POSTGRES_URL) given");
        }
        if self == SystemKind::StockroomPostgresRabbitmq && amqp_url.is_none() {
            return Some("no --amqp-url (or STOCKROOM_BENCH_AMQP_URL) given");
        }
        None
    }
}

/// A started system.
pub struct Target {
    /// `host:port` of its order endpoint.
    pub address: String,
    running: Running,
}

enum Running {
    Stockroom(RunningSystem, tempfile::TempDir),
    /// Stockroom on PostgreSQL, in its own schema (and its own RabbitMQ
    /// topology), both removed when it stops.
    StockroomPostgres {
        running: RunningSystem,
        url: String,
        schema: String,
        rabbit: Option<(String, Topology)>,
    },
    Naive(stockroom_naive::RunningNaive, tempfile::TempDir),
    Http {
        stop: CancellationToken,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
        stock: Option<Baseline>,
    },
}

/// The stock of a PostgreSQL baseline, read after a sell-out and dropped
/// when it stops.
#[derive(Clone)]
enum Baseline {
    PerRequest(Arc<PerRequestStock>),
    FullFlow(Arc<FullFlowStock>),
}

impl Baseline {
    async fn total_available(&self) -> anyhow::Result<i64> {
        match self {
            Baseline::PerRequest(stock) => stock.total_available().await,
            Baseline::FullFlow(stock) => stock.total_available().await,
        }
    }

    async fn drop_schema(&self) -> anyhow::Result<()> {
        match self {
            Baseline::PerRequest(stock) => stock.drop_schema().await,
            Baseline::FullFlow(stock) => stock.drop_schema().await,
        }
    }
}

fn stock_lines(products: &[(String, i64)]) -> anyhow::Result<Vec<StockLine>> {
    products
        .iter()
        .map(|(name, quantity)| {
            Ok(StockLine {
                product_name: ProductName::new(name)?,
                quantity: u64::try_from(*quantity)?,
            })
        })
        .collect()
}

fn address_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Starts `kind` with `products` in stock.
pub async fn start(
    kind: SystemKind,
    products: &[(String, i64)],
    postgres_url: Option<&str>,
    amqp_url: Option<&str>,
    schema: &str,
) -> anyhow::Result<Target> {
    match kind {
        SystemKind::StockroomPostgres
        | SystemKind::StockroomPostgresRabbitmq
        | SystemKind::StockroomPostgresLockingFirst => {
            let url = postgres_url.ok_or_else(|| anyhow::anyhow!("no PostgreSQL URL"))?;
            start_stockroom_postgres(kind, products, url, amqp_url, schema).await
        }
        SystemKind::Shipped | SystemKind::BatchingOff => start_stockroom(kind, products).await,
        SystemKind::Naive => start_naive(products).await,
        SystemKind::NoopHttp => serve_http(noop_router(), None).await,
        SystemKind::PostgresPerRequest => {
            let url = postgres_url.ok_or_else(|| anyhow::anyhow!("no PostgreSQL URL"))?;
            let stock = Arc::new(PerRequestStock::create(url, schema, products).await?);
            let router = baseline_router(Arc::clone(&stock));
            serve_http(router, Some(Baseline::PerRequest(stock))).await
        }
        SystemKind::PostgresFullFlowPerRequest => {
            let url = postgres_url.ok_or_else(|| anyhow::anyhow!("no PostgreSQL URL"))?;
            let stock = Arc::new(FullFlowStock::create(url, schema, products).await?);
            let router = full_flow_router(Arc::clone(&stock));
            serve_http(router, Some(Baseline::FullFlow(stock))).await
        }
    }
}

/// Stockroom on PostgreSQL in `schema`, with the embedded bus or, for
/// [`SystemKind::StockroomPostgresRabbitmq`], RabbitMQ in a topology of its
/// own.
async fn start_stockroom_postgres(
    kind: SystemKind,
    products: &[(String, i64)],
    url: &str,
    amqp_url: Option<&str>,
    schema: &str,
) -> anyhow::Result<Target> {
    // Dropped first, in case an earlier run was killed before it could drop
    // it: every phase starts on empty tables.
    stockroom_storage_postgres::drop_schema(url, schema).await?;
    let directory = tempfile::tempdir()?;
    let mut config = SystemConfig::new(directory.path());
    config.database = DatabaseChoice::Postgres {
        url: url.to_owned(),
        schema: Some(schema.to_owned()),
    };
    let rabbit = match (kind, amqp_url) {
        (SystemKind::StockroomPostgresRabbitmq, Some(amqp)) => {
            let topology = Topology::with_prefix(&format!("stockroom-bench-{schema}"));
            config.bus = BusChoice::RabbitMq {
                url: amqp.to_owned(),
                topology: topology.clone(),
            };
            Some((amqp.to_owned(), topology))
        }
        (SystemKind::StockroomPostgresRabbitmq, None) => {
            anyhow::bail!("no AMQP URL")
        }
        _ => None,
    };
    if kind == SystemKind::StockroomPostgresLockingFirst {
        config.postgres_group_commit = GroupCommitConfig::default().locking_first();
    }
    config.ports = Ports::EPHEMERAL;
    config.stock = Some(stock_lines(products)?);
    let running = system::start(config).await?;
    Ok(Target {
        address: address_of(&running.urls.order),
        running: Running::StockroomPostgres {
            running,
            url: url.to_owned(),
            schema: schema.to_owned(),
            rabbit,
        },
    })
}

/// Stockroom on SQLite in a temporary directory, as shipped or with
/// batching off.
async fn start_stockroom(kind: SystemKind, products: &[(String, i64)]) -> anyhow::Result<Target> {
    let directory = tempfile::tempdir()?;
    let mut config = SystemConfig::new(directory.path());
    config.ports = Ports::EPHEMERAL;
    config.stock = Some(stock_lines(products)?);
    if kind == SystemKind::BatchingOff {
        config.writer = WriterConfig {
            max_batch: 1,
            ..WriterConfig::default()
        };
        config.order_coalescing = false;
    }
    let running = system::start(config).await?;
    Ok(Target {
        address: address_of(&running.urls.order),
        running: Running::Stockroom(running, directory),
    })
}

/// The naive system in a temporary directory.
async fn start_naive(products: &[(String, i64)]) -> anyhow::Result<Target> {
    let directory = tempfile::tempdir()?;
    let mut config = stockroom_naive::NaiveConfig::new(directory.path(), stock_lines(products)?);
    config.fresh = true;
    // The lab's default race windows: the original system as the lab shows
    // it, races included.
    let running = stockroom_naive::start(config).await?;
    Ok(Target {
        address: address_of(&running.urls.order),
        running: Running::Naive(running, directory),
    })
}

async fn serve_http(router: Router, stock: Option<Baseline>) -> anyhow::Result<Target> {
    let (listener, url) = system::bind("benchmark endpoint", [127, 0, 0, 1].into(), 0).await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(stockroom_http_kit::serve(
        listener,
        router,
        stop.clone().cancelled_owned(),
    ));
    Ok(Target {
        address: address_of(&url),
        running: Running::Http { stop, task, stock },
    })
}

/// The body every system receives.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BenchOrder {
    product_name: String,
    quantity: i64,
    customer_id: String,
}

fn noop_router() -> Router {
    // It parses the same JSON the real endpoint parses and answers a small
    // JSON document: the cost of HTTP and JSON, and nothing else.
    Router::new().route(
        "/api/orders",
        axum::routing::post(|JsonBody(order): JsonBody<BenchOrder>| async move {
            (
                StatusCode::CREATED,
                Json(json!({"order": {"status": "reserved", "productName": order.product_name}})),
            )
        }),
    )
}

/// A baseline's answer: 201 when the units were there, 409 when not, 503
/// when the database failed.
fn baseline_answer(placed: anyhow::Result<bool>) -> axum::response::Response {
    match placed {
        Ok(true) => (
            StatusCode::CREATED,
            Json(json!({"order": {"status": "reserved"}})),
        )
            .into_response(),
        Ok(false) => (
            StatusCode::CONFLICT,
            Json(json!({"error": "insufficient_stock"})),
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

fn baseline_router(stock: Arc<PerRequestStock>) -> Router {
    Router::new()
        .route(
            "/api/orders",
            axum::routing::post(
                |State(stock): State<Arc<PerRequestStock>>,
                 JsonBody(order): JsonBody<BenchOrder>| async move {
                    baseline_answer(stock.reserve(&order.product_name, order.quantity).await)
                },
            ),
        )
        .with_state(stock)
}

fn full_flow_router(stock: Arc<FullFlowStock>) -> Router {
    Router::new()
        .route(
            "/api/orders",
            axum::routing::post(
                |State(stock): State<Arc<FullFlowStock>>,
                 JsonBody(order): JsonBody<BenchOrder>| async move {
                    let placed = stock
                        .place(&order.customer_id, &order.product_name, order.quantity)
                        .await;
                    baseline_answer(placed)
                },
            ),
        )
        .with_state(stock)
}

impl Target {
    /// Stockroom's storage, whose statements a phase counts.
    pub fn storage(&self) -> Option<&Arc<dyn Storage>> {
        match &self.running {
            Running::Stockroom(running, _) | Running::StockroomPostgres { running, .. } => {
                Some(&running.storage)
            }
            _ => None,
        }
    }

    /// Units still available, per product, once the system is quiet.
    pub async fn available(&self, client: &reqwest::Client) -> anyhow::Result<Vec<i64>> {
        let data_url = match &self.running {
            Running::Stockroom(running, _) => running.urls.data.clone(),
            Running::StockroomPostgres { running, .. } => running.urls.data.clone(),
            Running::Naive(running, _) => running.urls.data.clone(),
            Running::Http {
                stock: Some(stock), ..
            } => return Ok(vec![stock.total_available().await?]),
            Running::Http { stock: None, .. } => return Ok(Vec::new()),
        };
        let inventory: serde_json::Value = client
            .get(format!("{data_url}/inventory"))
            .send()
            .await?
            .json()
            .await?;
        Ok(inventory["inventory"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| {
                        item["quantity"].as_i64().unwrap_or(0)
                            - item["reservedQuantity"].as_i64().unwrap_or(0)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn stop(self) {
        match self.running {
            Running::Stockroom(running, _directory) => {
                let _ = running.stop().await;
            }
            Running::StockroomPostgres {
                running,
                url,
                schema,
                rabbit,
            } => {
                let _ = running.stop().await;
                let _ = stockroom_storage_postgres::drop_schema(&url, &schema).await;
                if let Some((amqp, topology)) = rabbit
                    && let Ok(admin) = RabbitAdmin::connect(&amqp).await
                {
                    let _ = admin.delete(&topology).await;
                }
            }
            Running::Naive(running, _directory) => {
                let _ = running.stop().await;
            }
            Running::Http { stop, task, stock } => {
                stop.cancel();
                let _ = task.await;
                if let Some(stock) = stock {
                    let _ = stock.drop_schema().await;
                }
            }
        }
    }
}
