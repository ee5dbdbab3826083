//! `stockroom storm`: fires orders at order-service and records every request
//! and reply, for the checker and the lab.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use stockroom_lab::{RetryPolicy, StormConfig};

/// Default number of orders a storm places when no duration is given.
pub const DEFAULT_STORM_ORDERS: u64 = 1_000;

/// Default concurrent storm workers.
pub const DEFAULT_STORM_CONCURRENCY: usize = 32;

#[derive(Debug, Args)]
pub(super) struct StormArgs {
    /// order-service base URLs, comma-separated; orders go round-robin.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3001")]
    order_url: Vec<String>,
    /// Orders to place; without it (and with --duration) the storm runs until
    /// the duration ends. Defaults to 1000 when no duration is given.
    #[arg(long)]
    orders: Option<u64>,
    /// Orders in flight at once.
    #[arg(long, default_value_t = DEFAULT_STORM_CONCURRENCY)]
    concurrency: usize,
    /// One product to order (same as --products with one name).
    #[arg(long, conflicts_with = "products")]
    product: Option<String>,
    /// Products to order, comma-separated; the first is the hot SKU.
    #[arg(long, value_delimiter = ',')]
    products: Vec<String>,
    /// Units per order.
    #[arg(long, default_value_t = 1)]
    quantity: u32,
    /// Share of orders for the hot SKU (the first product), 0 to 1; the rest
    /// spread evenly over the others. Defaults to an even spread.
    #[arg(long)]
    hot_share: Option<f64>,
    /// Stop after this long (e.g. 10s, 1m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Send an Idempotency-Key with every order.
    #[arg(long)]
    idempotency: bool,
    /// Attempts per order when the answer is 503 or the connection fails,
    /// with the same key (needs --idempotency); 1 means no retry.
    #[arg(long, default_value_t = 1)]
    retry: u32,
    /// Pause before the first retry; each later one waits one step more.
    #[arg(long, default_value_t = stockroom_lab::storm::DEFAULT_RETRY_BACKOFF_MS)]
    retry_backoff_ms: u64,
    /// Record every request and reply here, one JSON object per line.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Longest one order request may take.
    #[arg(long, default_value_t = stockroom_lab::storm::DEFAULT_REQUEST_TIMEOUT_MS)]
    timeout_ms: u64,
    /// At most this many orders per second (default: as fast as the
    /// workers go).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Last-byte synchronisation: send the orders in waves of --concurrency,
    /// each request written but for its last byte on its own connection,
    /// then every last byte at once, so the wave reaches the server in the
    /// same instant. One http:// URL; no retries.
    #[arg(long, conflicts_with = "rate")]
    sync: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

// A clap value parser: clap shows the message as the whole answer to a bad
// value, so a sentence is the right error here.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of orders per second"
        )),
    }
}

pub(super) async fn storm(args: StormArgs) -> anyhow::Result<ExitCode> {
    let products = match (args.product, args.products.is_empty()) {
        (Some(product), _) => vec![product],
        (None, false) => args.products,
        (None, true) => vec!["Laptop".to_owned()],
    };
    let hot_share = args.hot_share.unwrap_or(1.0 / products.len() as f64);
    let config = StormConfig {
        order_urls: args.order_url,
        orders: match (args.orders, args.duration) {
            (None, None) => Some(DEFAULT_STORM_ORDERS),
            (orders, _) => orders,
        },
        concurrency: args.concurrency,
        products,
        quantity: args.quantity,
        hot_share,
        customer: None,
        duration: args.duration,
        idempotency: args.idempotency,
        retry: RetryPolicy {
            max_attempts: args.retry,
            backoff_ms: args.retry_backoff_ms,
        },
        history: args.history,
        keep_history: false,
        progress: true,
        request_timeout_ms: args.timeout_ms,
        rate_per_s: args.rate,
        sync: args.sync,
    };
    let report = stockroom_lab::run_storm(config).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report.summary)?);
    } else {
        println!("{}", report.summary.render());
    }
    Ok(ExitCode::SUCCESS)
}
