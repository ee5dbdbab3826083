//! The reservation core without HTTP: single-unit orders on one hot product,
//! reserved through `SqliteStorage::reserve` by many concurrent callers, with
//! the writer's group commit on (`max_batch: 512`) and off (`max_batch: 1`).
//!
//! Each call is one order, as data-service makes it for one client request
//! that was not coalesced upstream, so the comparison shows what group commit
//! alone buys: with it, one transaction and one WAL fsync serve every order
//! queued meanwhile; without it, each order pays its own.
//!
//! Run it with `cargo bench -p stockroom-storage-sqlite --bench reserve`.
//! Criterion prints each mode's throughput (`thrpt`, orders per second).
//! `-- --quick` stops each benchmark as soon as its estimate is stable, and
//! `STOCKROOM_BENCH_MEASUREMENT_MS` shortens (or lengthens) the measurement
//! of each. `cargo test --benches` runs every routine once, as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stockroom_domain::rules::{ReserveAnswer, ReserveDecision};
use stockroom_domain::{
    CustomerId, MAX_STOCK_PER_PRODUCT, OrderItem, OrderItems, ProductName, Quantity,
};
use stockroom_storage::batch::Reservation;
use stockroom_storage::{InitialStock, OrderFlow};
use stockroom_storage_sqlite::{MAX_WRITE_BATCH, SqliteStorage, WriterConfig};
use tokio::runtime::Runtime;

/// How many callers reserve at the same time, as concurrent requests of a
/// flash sale would reach data-service.
const CONCURRENT_CALLERS: usize = 256;

/// The hot product every order wants.
const HOT_PRODUCT: &str = "Laptop";

/// Criterion's smallest sample count; each sample is one timed storm.
const SAMPLE_SIZE: usize = 10;

/// How long each benchmark warms up before it measures.
const WARM_UP_MS: u64 = 500;

/// How long each benchmark measures, unless the environment says otherwise.
const DEFAULT_MEASUREMENT_MS: u64 = 3_000;

/// The environment variable that overrides [`DEFAULT_MEASUREMENT_MS`], for a
/// quick smoke run.
const MEASUREMENT_VARIABLE: &str = "STOCKROOM_BENCH_MEASUREMENT_MS";

/// The tokio worker threads: one per core of the project's machines.
const WORKER_THREADS: usize = 2;

fn measurement_time() -> Duration {
    let ms = std::env::var(MEASUREMENT_VARIABLE)
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(DEFAULT_MEASUREMENT_MS);
    Duration::from_millis(ms)
}

fn order(customer: &CustomerId, product: &ProductName) -> Reservation {
    Reservation {
        order_id: uuid::Uuid::now_v7().to_string(),
        customer_id: customer.clone(),
        items: OrderItems::new(vec![OrderItem {
            product: product.clone(),
            quantity: Quantity::new(1).expect("one is a valid quantity"),
        }])
        .expect("one item is a valid order"),
        idempotency_key: None,
        fingerprint: None,
        trace_parent: None,
    }
}

/// A fresh database with the hot product stocked far beyond what any run
/// reserves, so that every order is a successful reservation.
fn open_storage(
    runtime: &Runtime,
    directory: &std::path::Path,
    max_batch: usize,
) -> Arc<SqliteStorage> {
    let storage = SqliteStorage::open_in_directory(
        directory,
        WriterConfig {
            max_batch,
            ..WriterConfig::default()
        },
    )
    .expect("open a fresh sqlite database");
    let product = ProductName::new(HOT_PRODUCT).expect("valid product name");
    runtime.block_on(async {
        storage
            .initialize_stock(vec![InitialStock {
                product,
                quantity: MAX_STOCK_PER_PRODUCT,
            }])
            .await
            .expect("initialize stock");
    });
    Arc::new(storage)
}

/// Reserves `orders` single-unit orders with [`CONCURRENT_CALLERS`] callers
/// at once and returns how long the storm took.
fn storm(runtime: &Runtime, storage: &Arc<SqliteStorage>, orders: u64) -> Duration {
    let product = ProductName::new(HOT_PRODUCT).expect("valid product name");
    let customer = CustomerId::new("bench").expect("valid customer id");
    runtime.block_on(async {
        let started = Instant::now();
        let callers: Vec<_> = (0..CONCURRENT_CALLERS as u64)
            .map(|caller| {
                // The orders are spread as evenly as they divide.
                let share = orders / CONCURRENT_CALLERS as u64
                    + u64::from(caller < orders % CONCURRENT_CALLERS as u64);
                let storage = Arc::clone(storage);
                let product = product.clone();
                let customer = customer.clone();
                tokio::spawn(async move {
                    for _ in 0..share {
                        let results = storage
                            .reserve(vec![order(&customer, &product)])
                            .await
                            .expect("reserve");
                        assert!(
                            matches!(
                                results[0],
                                ReserveDecision::Created(ReserveAnswer::Reserved(_))
                            ),
                            "the stock never runs out in this benchmark"
                        );
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.expect("caller task");
        }
        started.elapsed()
    })
}

fn reserve_hot_product(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let mut group = criterion.benchmark_group("reserve_hot_product");
    group
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_millis(WARM_UP_MS))
        .measurement_time(measurement_time())
        .throughput(Throughput::Elements(1));
    for (name, max_batch) in [
        ("group_commit_on", MAX_WRITE_BATCH),
        ("group_commit_off", 1),
    ] {
        let directory = tempfile::Builder::new()
            .prefix("stockroom-bench-reserve-")
            .tempdir()
            .expect("create a temporary directory");
        let storage = open_storage(&runtime, directory.path(), max_batch);
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|orders| storm(&runtime, &storage, orders))
        });
        runtime.block_on(storage.shut_down());
    }
    group.finish();
}

criterion_group!(benches, reserve_hot_product);
criterion_main!(benches);
