//! `stockroom bench --growth`: reads cost the same however many orders are
//! stored. For each backend and each size, a fresh database is filled with
//! that many finished orders (and a few open reservations), data-service
//! serves it over HTTP, and the reads a client and the invariant auditor make
//! are timed: a customer with no orders, a customer's page, the reserved
//! orders, a page of fulfilled orders, the stock, and one whole audit round. The report shows each read's
//! median at every size and the ratio of the largest size to the smallest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use stockroom_domain::ProductName;
use stockroom_http_kit::Metrics;
use stockroom_launcher::system;
use stockroom_storage::Storage;
use stockroom_storage_postgres::{PostgresConfig, PostgresStorage};
use stockroom_storage_sqlite::{SqliteStorage, WriterConfig};

use crate::seed;

/// The open reservations every database holds besides its finished orders:
/// what the auditor and the sweep read each round.
pub const OPEN_RESERVATIONS: u64 = 100;

/// Timed repetitions of each read per database.
pub const REPETITIONS: usize = 200;

/// The sizes measured by default.
pub const DEFAULT_SIZES: [u64; 2] = [10_000, 1_000_000];

/// One read at one size.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthRead {
    pub backend: &'static str,
    pub read: &'static str,
    pub orders: u64,
    pub median_ms: f64,
    pub p99_ms: f64,
}

/// The whole growth measurement.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthReport {
    pub reads: Vec<GrowthRead>,
    /// Per backend and read: the largest size's median over the smallest's.
    pub ratios: Vec<GrowthRatio>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GrowthRatio {
    pub backend: &'static str,
    pub read: &'static str,
    pub ratio: f64,
}

/// The reads timed, as data-service paths (the audit round is separate).
/// Fulfilled orders are listed through the primary key (the status index
/// leaves them out), the others through the status index.
const READS: [(&str, &str); 5] = [
    ("unknown customer", "/orders?customerId=nobody&limit=10"),
    ("customer page", "/orders?customerId=c42&limit=10"),
    ("reserved orders", "/orders?status=reserved&limit=500"),
    ("fulfilled orders", "/orders?status=fulfilled&limit=500"),
    ("stock", "/inventory"),
];

/// Measures every size on SQLite, and on PostgreSQL when a URL is given.
pub async fn run(sizes: &[u64], postgres_url: Option<&str>) -> anyhow::Result<GrowthReport> {
    let mut reads = Vec::new();
    for &orders in sizes {
        let directory = tempfile::tempdir()?;
        let storage = SqliteStorage::open_in_directory(directory.path(), WriterConfig::default())?;
        seed::sqlite::seed_orders(storage.path(), &product(), orders, OPEN_RESERVATIONS).await?;
        reads.extend(measure("sqlite", orders, Arc::new(storage)).await?);
    }
    if let Some(url) = postgres_url {
        for &orders in sizes {
            let schema = format!("stockroom_growth_{}_{orders}", std::process::id());
            stockroom_storage_postgres::drop_schema(url, &schema).await?;
            let storage = PostgresStorage::connect(
                url,
                PostgresConfig {
                    schema: Some(schema.clone()),
                    pool_size: system::POSTGRES_POOL_SIZE,
                    ..PostgresConfig::default()
                },
            )
            .await?;
            seed::postgres::seed_orders(url, &schema, &product(), orders, OPEN_RESERVATIONS)
                .await?;
            let measured = measure("postgres", orders, Arc::new(storage)).await;
            stockroom_storage_postgres::drop_schema(url, &schema).await?;
            reads.extend(measured?);
        }
    }
    let ratios = ratios(&reads);
    Ok(GrowthReport { reads, ratios })
}

fn product() -> ProductName {
    ProductName::new("Laptop").expect("a valid name")
}

/// Serves `storage` with data-service and times each read.
async fn measure(
    backend: &'static str,
    orders: u64,
    storage: Arc<dyn Storage>,
) -> anyhow::Result<Vec<GrowthRead>> {
    let (listener, url) = system::bind("data-service", [127, 0, 0, 1].into(), 0).await?;
    let service = system::data_service(
        listener,
        Arc::clone(&storage),
        stockroom_http_kit::InternalToken::generate(),
    );
    let client = reqwest::Client::new();
    let mut measured = Vec::new();
    for (read, path) in READS {
        let mut times = Vec::with_capacity(REPETITIONS);
        for _ in 0..REPETITIONS {
            let started = Instant::now();
            let response = client.get(format!("{url}{path}")).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "GET {path}: {}",
                response.status()
            );
            response.bytes().await?;
            times.push(started.elapsed());
        }
        measured.push(summary(backend, read, orders, times));
    }
    // Nothing moves the stock here: the round is timed without the pause in
    // which a live auditor watches the stock hold still.
    let auditor = stockroom_audit::Auditor::new(&url, Metrics::new("growth-benchmark"))
        .with_max_stillness_window_ms(0);
    let mut times = Vec::with_capacity(REPETITIONS);
    for _ in 0..REPETITIONS {
        let started = Instant::now();
        let report = auditor.audit_once().await;
        anyhow::ensure!(
            report.error.is_none(),
            "the audit failed: {:?}",
            report.error
        );
        anyhow::ensure!(
            report.reserved_orders as u64 == OPEN_RESERVATIONS && report.healthy,
            "the audit saw {} reserved orders, healthy {}",
            report.reserved_orders,
            report.healthy
        );
        times.push(started.elapsed());
    }
    measured.push(summary(backend, "audit round", orders, times));
    service.stop().await?;
    storage.close().await;
    Ok(measured)
}

fn summary(
    backend: &'static str,
    read: &'static str,
    orders: u64,
    mut times: Vec<Duration>,
) -> GrowthRead {
    times.sort();
    let at = |share: f64| {
        let index = ((times.len() as f64 * share) as usize).min(times.len() - 1);
        times[index].as_secs_f64() * 1_000.0
    };
    GrowthRead {
        backend,
        read,
        orders,
        median_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

fn ratios(reads: &[GrowthRead]) -> Vec<GrowthRatio> {
    let mut ratios = Vec::new();
    for read in reads {
        let same = || {
            reads
                .iter()
                .filter(move |other| other.backend == read.backend && other.read == read.read)
        };
        let smallest = same().min_by_key(|other| other.orders);
        let largest = same().max_by_key(|other| other.orders);
        if let (Some(smallest), Some(largest)) = (smallest, largest)
            && std::ptr::eq(read, smallest)
            && largest.orders > smallest.orders
        {
            ratios.push(GrowthRatio {
                backend: read.backend,
                read: read.read,
                ratio: largest.median_ms / smallest.median_ms.max(1e-9),
            });
        }
    }
    ratios
}

/// The report as a person reads it.
pub fn render(report: &GrowthReport) -> String {
    let mut text = format!(
        "{:<10} {:<18} {:>10} {:>10} {:>10}\n",
        "backend", "read", "orders", "median ms", "p99 ms"
    );
    for read in &report.reads {
        text.push_str(&format!(
            "{:<10} {:<18} {:>10} {:>10.2} {:>10.2}\n",
            read.backend, read.read, read.orders, read.median_ms, read.p99_ms
        ));
    }
    text.push('\n');
    for ratio in &report.ratios {
        text.push_str(&format!(
            "{} {}: largest size / smallest size = {:.2}×\n",
            ratio.backend, ratio.read, ratio.ratio
        ));
    }
    text
}
