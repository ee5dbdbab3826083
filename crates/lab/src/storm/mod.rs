//! `storm`: fires orders at one or more order-service URLs and records every
//! request and reply.
//!
//! The load generator is a library function ([`run_storm`]) so the benchmark
//! can reuse it. It keeps one keep-alive connection pool for all workers,
//! measures each operation's latency (retries included) in an HDR histogram,
//! and writes a Jepsen-shaped history ([`crate::history`]).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::history::{EventType, HistoryError, HistoryEvent, HistoryWriter, OpValue, PLACE_ORDER};
use crate::last_byte::TargetError;

mod sync;

/// The longest one order request may take before it counts as an error.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// The most attempts a retry policy may ask for.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// The pause before the first retry; each later retry waits one more step.
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 50;

/// How many customers a storm's orders are spread over, unless it is told
/// one customer: enough that no purchase limit of the lab is reached by
/// chance.
pub const STORM_CUSTOMERS: u64 = 1_000;

/// The most concurrent workers, so a typo cannot open a million sockets.
pub const MAX_CONCURRENCY: usize = 4_096;

/// The most history events kept in memory for a caller that asks for them.
pub const MAX_KEPT_EVENTS: usize = 2_000_000;

/// The largest latency the histogram records, in microseconds (one minute).
const MAX_LATENCY_US: u64 = 60_000_000;

/// How often the progress bar redraws.
const PROGRESS_TICK_MS: u64 = 100;

/// How 503s and connection errors are retried: with the same idempotency
/// key, at most `max_attempts` attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_ms: u64,
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        backoff_ms: 0,
    };
}

#[derive(Debug, Clone)]
pub struct StormConfig {
    pub order_urls: Vec<String>,
    /// How many orders to place; `None` places orders until `duration` ends.
    pub orders: Option<u64>,
    pub concurrency: usize,
    /// The first product is the hot SKU.
    pub products: Vec<String>,
    pub quantity: u32,
    /// The share of orders that go to the hot SKU, 0 to 1; the rest spread
    /// evenly over the other products.
    pub hot_share: f64,
    /// The one customer every order is placed for (a customer's purchase
    /// limit under load); `None` spreads the orders over
    /// [`STORM_CUSTOMERS`] customers.
    pub customer: Option<String>,
    pub duration: Option<Duration>,
    /// Send an `Idempotency-Key` with every order.
    pub idempotency: bool,
    pub retry: RetryPolicy,
    pub history: Option<PathBuf>,
    /// Keep the history in memory and return it in the report.
    pub keep_history: bool,
    /// Draw a progress bar (only ever on a terminal).
    pub progress: bool,
    pub request_timeout_ms: u64,
    /// At most this many new orders per second over the whole storm (`None`:
    /// as fast as the workers go), so that a long run stays a steady load.
    pub rate_per_s: Option<f64>,
    /// Last-byte synchronisation: orders go in waves of `concurrency`, each
    /// wave's requests written but for their last byte and then released
    /// together (see [`crate::last_byte`]). Needs one `http://` URL; sends
    /// each order once, without retries.
    pub sync: bool,
}

impl StormConfig {
    pub fn new(order_url: &str, orders: u64) -> StormConfig {
        StormConfig {
            order_urls: vec![order_url.to_owned()],
            orders: Some(orders),
            concurrency: 32,
            products: vec!["Laptop".to_owned()],
            quantity: 1,
            hot_share: 1.0,
            customer: None,
            duration: None,
            idempotency: false,
            retry: RetryPolicy::NONE,
            history: None,
            keep_history: false,
            progress: false,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            rate_per_s: None,
            sync: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StormError {
    #[error("invalid storm settings: {0}")]
    Invalid(String),
    /// A synchronised storm's order URL cannot take waves.
    #[error("invalid storm settings")]
    SyncTarget(#[from] TargetError),
    #[error("cannot build the storm's HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// What a storm did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormSummary {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Orders attempted.
    pub orders: u64,
    /// Orders acknowledged with a 2xx.
    pub reserved: u64,
    /// Orders refused for insufficient stock (409).
    pub rejected: u64,
    /// Orders that ended in any other way (4xx, 5xx, timeouts, connection errors).
    pub errors: u64,
    pub retries: u64,
    pub elapsed_s: f64,
    pub orders_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl StormSummary {
    /// The human summary, several lines.
    pub fn render(&self) -> String {
        format!(
            "orders: {} ({} requests, {} retries) in {:.2} s: {:.0} orders/s\n\
             reserved: {}  rejected: {}  errors: {}\n\
             latency ms: p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}",
            self.orders,
            self.requests,
            self.retries,
            self.elapsed_s,
            self.orders_per_s,
            self.reserved,
            self.rejected,
            self.errors,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms
        )
    }
}

/// The summary and, when asked for, the history.
#[derive(Debug, Clone, Default)]
pub struct StormReport {
    pub summary: StormSummary,
    pub history: Vec<HistoryEvent>,
}

struct Shared {
    config: StormConfig,
    client: reqwest::Client,
    started: Instant,
    deadline: Option<Instant>,
    issued: AtomicU64,
    run_id: String,
    writer: Option<HistoryWriter>,
    progress: indicatif::ProgressBar,
}

#[derive(Default)]
struct WorkerTally {
    requests: u64,
    orders: u64,
    reserved: u64,
    rejected: u64,
    errors: u64,
    retries: u64,
    events: Vec<HistoryEvent>,
}

fn validate(config: &StormConfig) -> Result<(), StormError> {
    let invalid = |message: &str| Err(StormError::Invalid(message.to_owned()));
    if config.order_urls.is_empty() {
        return invalid("at least one order URL is needed");
    }
    if config.products.is_empty() {
        return invalid("at least one product is needed");
    }
    if config.concurrency == 0 || config.concurrency > MAX_CONCURRENCY {
        return Err(StormError::Invalid(format!(
            "concurrency must be from 1 to {MAX_CONCURRENCY}"
        )));
    }
    if !(0.0..=1.0).contains(&config.hot_share) {
        return invalid("hot share must be from 0 to 1");
    }
    if config.quantity == 0 {
        return invalid("quantity must be at least 1");
    }
    if config.orders.is_none() && config.duration.is_none() {
        return invalid("give a number of orders, a duration, or both");
    }
    if config
        .rate_per_s
        .is_some_and(|rate| !rate.is_finite() || rate <= 0.0)
    {
        return invalid("the rate must be a positive number of orders per second");
    }
    if config.retry.max_attempts == 0 || config.retry.max_attempts > MAX_RETRY_ATTEMPTS {
        return Err(StormError::Invalid(format!(
            "retry attempts must be from 1 to {MAX_RETRY_ATTEMPTS}"
        )));
    }
    if config.sync {
        if config.order_urls.len() != 1 {
            return invalid("a synchronised storm takes exactly one order URL");
        }
        if config.rate_per_s.is_some() {
            return invalid("a synchronised storm sends waves, not a rate");
        }
        crate::last_byte::SyncTarget::parse(&config.order_urls[0])?;
    }
    if config.retry.max_attempts > 1 && !config.idempotency {
        return invalid(
            "retrying without an idempotency key could place an order twice; add idempotency",
        );
    }
    Ok(())
}

fn progress_bar(config: &StormConfig) -> indicatif::ProgressBar {
    if !config.progress || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        config.orders,
        indicatif::ProgressDrawTarget::stderr(),
    );
    let template = if config.orders.is_some() {
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} orders ({per_sec}) {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {pos} orders ({per_sec}) {msg}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(PROGRESS_TICK_MS));
    bar
}

/// Runs a storm to its end (order count or duration, whichever comes first).
pub async fn run_storm(config: StormConfig) -> Result<StormReport, StormError> {
    validate(&config)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .pool_max_idle_per_host(config.concurrency)
        .tcp_nodelay(true)
        .build()
        .map_err(StormError::Client)?;
    let writer = config
        .history
        .as_deref()
        .map(HistoryWriter::create)
        .transpose()?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        progress: progress_bar(&config),
        deadline: config.duration.map(|duration| started + duration),
        client,
        started,
        issued: AtomicU64::new(0),
        run_id: format!("{:016x}", rand::rng().random::<u64>()),
        writer,
        config,
    });
    let (mut total, latency, write_error) = gather(start_workers(&shared)).await;
    let elapsed = started.elapsed();
    shared.progress.finish_and_clear();
    if let Some(writer) = &shared.writer {
        writer.flush()?;
    }
    if let Some(error) = write_error {
        return Err(error.into());
    }
    total.events.sort_by_key(|event| event.time);
    Ok(StormReport {
        summary: summary(&total, &latency, elapsed),
        history: total.events,
    })
}

/// What each worker task answers: its tally, its latencies, and the first
/// history write that failed.
type WorkerResult = (WorkerTally, Histogram<u64>, Option<HistoryError>);

/// Starts the storm's workers: one that sends synchronised waves, or
/// `concurrency` that each send one order at a time.
fn start_workers(shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<WorkerResult>> {
    let mut workers = Vec::with_capacity(shared.config.concurrency);
    if shared.config.sync {
        let shared = Arc::clone(shared);
        workers.push(tokio::spawn(async move { sync::waves(&shared).await }));
    }
    for process in (0..shared.config.concurrency).filter(|_| !shared.config.sync) {
        let shared = Arc::clone(shared);
        workers.push(tokio::spawn(async move {
            worker(&shared, process as u64).await
        }));
    }
    workers
}

/// Waits for every worker and adds up their tallies and latencies, keeping
/// at most [`MAX_KEPT_EVENTS`] events and the first failed history write.
async fn gather(workers: Vec<tokio::task::JoinHandle<WorkerResult>>) -> WorkerResult {
    let mut total = WorkerTally::default();
    let mut latency = new_histogram();
    let mut write_error = None;
    for handle in workers {
        let Ok((tally, histogram, error)) = handle.await else {
            continue;
        };
        total.requests += tally.requests;
        total.orders += tally.orders;
        total.reserved += tally.reserved;
        total.rejected += tally.rejected;
        total.errors += tally.errors;
        total.retries += tally.retries;
        if total.events.len() + tally.events.len() <= MAX_KEPT_EVENTS {
            total.events.extend(tally.events);
        }
        let _ = latency.add(&histogram);
        if write_error.is_none() {
            write_error = error;
        }
    }
    (total, latency, write_error)
}

/// The storm's figures: counts, throughput over `elapsed`, and latency
/// quantiles.
fn summary(total: &WorkerTally, latency: &Histogram<u64>, elapsed: Duration) -> StormSummary {
    let quantile_ms = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1_000.0;
    let elapsed_s = elapsed.as_secs_f64();
    StormSummary {
        requests: total.requests,
        orders: total.orders,
        reserved: total.reserved,
        rejected: total.rejected,
        errors: total.errors,
        retries: total.retries,
        elapsed_s,
        orders_per_s: if elapsed_s > 0.0 {
            total.orders as f64 / elapsed_s
        } else {
            0.0
        },
        p50_ms: quantile_ms(0.5),
        p99_ms: quantile_ms(0.99),
        p999_ms: quantile_ms(0.999),
        max_ms: latency.max() as f64 / 1_000.0,
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("the bounds are valid constants")
}

/// One worker: takes the next order number until the storm is over.
async fn worker(shared: &Shared, process: u64) -> WorkerResult {
    let config = &shared.config;
    let mut tally = WorkerTally::default();
    let mut latency = new_histogram();
    let mut write_error = None;
    loop {
        if shared
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            break;
        }
        let number = shared.issued.fetch_add(1, Ordering::Relaxed);
        if let Some(rate) = config.rate_per_s {
            // Order n is due n/rate seconds after the start, whichever
            // worker takes it.
            let due = shared.started + Duration::from_secs_f64(number as f64 / rate);
            if shared.deadline.is_some_and(|deadline| due >= deadline) {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        if config.orders.is_some_and(|orders| number >= orders) {
            break;
        }
        let request = order_request(shared, number);
        let first_url = number as usize;
        let invoke = HistoryEvent {
            kind: EventType::Invoke,
            process,
            time: shared.started.elapsed().as_nanos() as u64,
            f: PLACE_ORDER.to_owned(),
            value: request.clone(),
        };
        let began = Instant::now();
        let (kind, value, attempts) = place(shared, first_url, request).await;
        latency.saturating_record(began.elapsed().as_micros().max(1) as u64);
        let done = HistoryEvent {
            kind,
            process,
            time: shared.started.elapsed().as_nanos() as u64,
            f: PLACE_ORDER.to_owned(),
            value,
        };
        tally.record(shared, invoke, done, attempts, &mut write_error);
    }
    (tally, latency, write_error)
}

/// Order number `number`'s request: a product (the hot one at the hot
/// share), the quantity, a customer, and an idempotency key when asked.
fn order_request(shared: &Shared, number: u64) -> OpValue {
    let config = &shared.config;
    let product = {
        let mut random = rand::rng();
        if config.products.len() == 1 || random.random::<f64>() < config.hot_share {
            config.products[0].clone()
        } else {
            config.products[random.random_range(1..config.products.len())].clone()
        }
    };
    OpValue {
        product: Some(product),
        quantity: Some(config.quantity),
        customer_id: Some(
            config
                .customer
                .clone()
                .unwrap_or_else(|| format!("storm-{}", number % STORM_CUSTOMERS)),
        ),
        idempotency_key: config
            .idempotency
            .then(|| format!("storm-{}-{number}", shared.run_id)),
        ..OpValue::default()
    }
}

impl WorkerTally {
    /// Counts one completed order and keeps (or writes) its two events.
    fn record(
        &mut self,
        shared: &Shared,
        invoke: HistoryEvent,
        done: HistoryEvent,
        attempts: u32,
        write_error: &mut Option<HistoryError>,
    ) {
        self.orders += 1;
        self.requests += u64::from(attempts);
        self.retries += u64::from(attempts.saturating_sub(1));
        match done.value.outcome.as_deref() {
            Some("reserved") => self.reserved += 1,
            Some("rejected") => self.rejected += 1,
            _ => self.errors += 1,
        }
        if let Some(writer) = &shared.writer {
            for event in [&invoke, &done] {
                if let Err(error) = writer.append(event) {
                    write_error.get_or_insert(error);
                }
            }
        }
        if shared.config.keep_history {
            self.events.push(invoke);
            self.events.push(done);
        }
        shared.progress.inc(1);
    }
}

/// Fills `value` from an order-service answer; `None` when the answer is a
/// 503 or a 5xx, whose outcome is unknown (retryable when it is a 503).
fn settle_answer(
    value: &mut OpValue,
    status: u16,
    document: &serde_json::Value,
    attempt: u32,
) -> Result<EventType, bool> {
    value.status_code = Some(status);
    value.order_id = document["order"]["id"].as_str().map(str::to_owned);
    value.order_status = document["order"]["status"].as_str().map(str::to_owned);
    value.error = document["error"].as_str().map(str::to_owned);
    let (outcome, kind) = match status {
        200..=299 => ("reserved", EventType::Ok),
        409 => ("rejected", EventType::Fail),
        400..=499 => ("refused", EventType::Fail),
        503 => return Err(true),
        _ => return Err(false),
    };
    value.outcome = Some(outcome.into());
    value.attempts = Some(attempt);
    Ok(kind)
}

/// Places one order, retrying as the policy allows; returns the completion
/// type, the completed value and the number of attempts. The orders go
/// round-robin over the URLs, starting at `first_url`, and each retry goes to
/// the next URL, so that a retry does not wait for a dead instance.
async fn place(shared: &Shared, first_url: usize, mut value: OpValue) -> (EventType, OpValue, u32) {
    let config = &shared.config;
    let body = serde_json::json!({
        "productName": value.product,
        "quantity": value.quantity,
        "customerId": value.customer_id,
    });
    let mut attempt = 0;
    loop {
        attempt += 1;
        let url = &config.order_urls[(first_url + attempt as usize - 1) % config.order_urls.len()];
        let endpoint = format!("{}/api/orders", url.trim_end_matches('/'));
        let mut request = shared.client.post(&endpoint).json(&body);
        if let Some(key) = &value.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let retryable = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let document: serde_json::Value = response.json().await.unwrap_or_default();
                match settle_answer(&mut value, status, &document, attempt) {
                    Ok(kind) => return (kind, value, attempt),
                    Err(retryable) => retryable,
                }
            }
            // No answer (a refused or cut connection, a timeout): the same
            // key makes a retry safe whatever happened to the first request.
            Err(error) => {
                value.status_code = None;
                value.error = Some(error.to_string());
                error.is_connect() || error.is_timeout() || error.is_request()
            }
        };
        if !retryable || attempt >= config.retry.max_attempts {
            value.outcome = Some("error".into());
            value.attempts = Some(attempt);
            // A 5xx or a lost connection may or may not have created the
            // order: the outcome is unknown, which Jepsen calls `info`.
            return (EventType::Info, value, attempt);
        }
        tokio::time::sleep(Duration::from_millis(
            config.retry.backoff_ms * u64::from(attempt),
        ))
        .await;
    }
}
