//! The argument groups several commands share: which system to run, where its
//! storage and bus are, and how payment and expiry behave.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use stockroom_data_service::Retention;
use stockroom_http_kit::InternalToken;
use stockroom_launcher::system;
use stockroom_naive::{Fix, NaiveFlow, RaceWindows};
use stockroom_storage_sqlite::WriterConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Mode {
    /// Stockroom: atomic reservations, idempotent consumers, no races.
    Fixed,
    /// The ORIGINAL system, racy on purpose: JSON files, lost updates,
    /// oversells, double charges. Only for the race lab.
    Naive,
}

#[derive(Debug, Args)]
pub(super) struct ModeArgs {
    /// Which system to run; naive is wrong on purpose and only for the lab.
    /// Only this flag selects it (no environment variable does), so a stray
    /// setting can never start the racy system in place of Stockroom.
    #[arg(long, global = true, value_enum, default_value_t = Mode::Fixed)]
    pub(super) mode: Mode,
    /// Naive mode: the pause at each spot where the original system races;
    /// wider makes every race happen.
    #[arg(long, global = true, default_value_t = stockroom_naive::DEFAULT_RACE_WINDOW_MS, env = "STOCKROOM_RACE_WINDOW_MS")]
    pub(super) race_window_ms: u64,
    /// Naive mode: also tear file writes (truncate, then write in chunks with
    /// a tenth of the race window between them). Most reads then fail.
    #[arg(long, global = true)]
    torn_writes: bool,
    /// Naive mode: how the inventory worker decides orders (two-calls,
    /// storage-check or pay-first), one version of the original each.
    #[arg(long, global = true, default_value = "two-calls")]
    pub(super) naive_flow: NaiveFlow,
    /// Naive mode (`up` only): run the original system with one of the fixes
    /// its authors proposed (see `stockroom lab --fixes`), e.g. redis-lock.
    #[arg(long, global = true, default_value = "no-fix")]
    pub(super) naive_fix: Fix,
    /// Naive mode: the Redis the Redis fixes use.
    #[arg(long, global = true, default_value = stockroom_lab::lab::DEFAULT_REDIS_URL)]
    pub(super) naive_redis_url: String,
}

impl ModeArgs {
    /// Refuses to run the naive system on an address other machines can
    /// reach: it oversells and corrupts its data on purpose.
    pub(super) fn refuse_exposed_naive(&self, host: IpAddr) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.mode != Mode::Naive || host.is_loopback(),
            "--mode naive runs the original, racy system and listens on loopback only; {host} is not a loopback address (use --host 127.0.0.1)"
        );
        Ok(())
    }

    pub(super) fn windows(&self) -> anyhow::Result<RaceWindows> {
        anyhow::ensure!(
            self.race_window_ms <= stockroom_naive::MAX_RACE_WINDOW_MS,
            "--race-window-ms may be at most {}",
            stockroom_naive::MAX_RACE_WINDOW_MS
        );
        let windows = RaceWindows::uniform(self.race_window_ms);
        Ok(if self.torn_writes {
            windows.with_torn_writes(self.race_window_ms)
        } else {
            windows
        })
    }
}

#[derive(Debug, Args)]
pub(super) struct StorageArgs {
    /// Where the SQLite database lives.
    #[arg(long, default_value = "./data", env = "STOCKROOM_DATA_DIR")]
    pub(super) data_dir: PathBuf,
    /// A postgres:// URL selects PostgreSQL (?schema=NAME for its own schema);
    /// a path or sqlite://DIR selects SQLite there. Default: SQLite in --data-dir.
    /// Prefer the environment variable when the URL holds a password: a
    /// command line is visible to every user of the machine.
    #[arg(
        long,
        env = stockroom_launcher::cluster::DATABASE_URL_ENV,
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Initial stock, shaped like GET /inventory; loaded on first start only.
    #[arg(long, env = "STOCKROOM_INVENTORY_FILE")]
    inventory: Option<PathBuf>,
    /// Delete the existing data first and load the stock again.
    #[arg(long)]
    pub(super) fresh: bool,
    /// Most writes per transaction (group commit); 1 turns batching off.
    #[arg(long, default_value_t = stockroom_storage_sqlite::MAX_WRITE_BATCH, env = "STOCKROOM_WRITE_BATCH")]
    write_batch: usize,
    #[command(flatten)]
    pub(super) retention: RetentionArgs,
}

/// How long data-service keeps rows nobody needs any more (see
/// `stockroom_data_service::retention`).
#[derive(Debug, Args)]
pub(super) struct RetentionArgs {
    /// Idempotency keys are kept this long (at least a day: clients may
    /// retry an order with its key within a day).
    #[arg(long, default_value = "2days", value_parser = humantime::parse_duration, env = "STOCKROOM_KEEP_IDEMPOTENCY_KEYS")]
    keep_idempotency_keys: Duration,
    /// Processed-event records written by earlier versions are kept this
    /// long (this version writes none: the order's state tells a redelivered
    /// event).
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration, env = "STOCKROOM_KEEP_PROCESSED_EVENTS")]
    keep_processed_events: Duration,
    /// Rejected orders are kept this long (at least as long as idempotency
    /// keys, whose replays are rebuilt from the order they created).
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration, env = "STOCKROOM_KEEP_REJECTED_ORDERS")]
    keep_rejected_orders: Duration,
    /// The simulated payment provider's charges are kept this long.
    #[arg(long, default_value = "30days", value_parser = humantime::parse_duration, env = "STOCKROOM_KEEP_PROVIDER_CHARGES")]
    keep_provider_charges: Duration,
    /// Dead letters are kept this long for an operator to redrive.
    #[arg(long, default_value = "30days", value_parser = humantime::parse_duration, env = "STOCKROOM_KEEP_DEAD_LETTERS")]
    keep_dead_letters: Duration,
}

/// The shortest window accepted for idempotency keys: a client's retries of
/// one order must always find its key.
pub(super) const MIN_KEEP_IDEMPOTENCY_KEYS: Duration = Duration::from_secs(24 * 3_600);

impl RetentionArgs {
    pub(super) fn retention(&self) -> anyhow::Result<Retention> {
        anyhow::ensure!(
            self.keep_idempotency_keys >= MIN_KEEP_IDEMPOTENCY_KEYS,
            "--keep-idempotency-keys must be at least a day: clients retry an order with its key within a day"
        );
        anyhow::ensure!(
            self.keep_rejected_orders >= self.keep_idempotency_keys,
            "--keep-rejected-orders must be at least --keep-idempotency-keys: a key's replay is rebuilt from the order it created"
        );
        let ms = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Ok(Retention {
            idempotency_keys_ms: ms(self.keep_idempotency_keys),
            processed_events_ms: ms(self.keep_processed_events),
            rejected_orders_ms: ms(self.keep_rejected_orders),
            provider_charges_ms: ms(self.keep_provider_charges),
            dead_letters_ms: ms(self.keep_dead_letters),
        })
    }
}

#[derive(Debug, Args)]
pub(super) struct BusArgs {
    /// An amqp:// URL carries events over RabbitMQ; without it consumers read
    /// data-service's outbox directly (the embedded bus). Prefer the
    /// environment variable when the URL holds a password.
    #[arg(
        long,
        env = stockroom_launcher::cluster::BUS_URL_ENV,
        hide_env_values = true
    )]
    pub(super) bus_url: Option<String>,
    /// The prefix of the RabbitMQ exchange and queue names.
    #[arg(long, default_value = stockroom_bus_rabbitmq::DEFAULT_PREFIX, env = "STOCKROOM_BUS_PREFIX")]
    pub(super) bus_prefix: String,
    /// How long a consumer holds the events it leased from the embedded bus
    /// before they go to another consumer (it is presumed dead).
    #[arg(long, default_value_t = stockroom_bus::LEASE_MS, env = "STOCKROOM_LEASE_MS")]
    pub(super) lease_ms: u64,
}

impl BusArgs {
    pub(super) fn choice(&self) -> anyhow::Result<system::BusChoice> {
        let (shortest, longest) = (
            stockroom_data_service::MIN_LEASE_MS,
            stockroom_data_service::MAX_LEASE_MS,
        );
        anyhow::ensure!(
            (shortest..=longest).contains(&self.lease_ms),
            "--lease-ms must be from {shortest} to {longest}"
        );
        system::BusChoice::from_url(self.bus_url.as_deref(), &self.bus_prefix)
    }
}

impl StorageArgs {
    pub(super) fn database(&self) -> system::DatabaseChoice {
        system::DatabaseChoice::from_url(self.database_url.as_deref(), &self.data_dir)
    }
}

#[derive(Debug, Args)]
pub(super) struct PaymentArgs {
    /// Simulated provider latency per charge.
    #[arg(long, default_value_t = 0, env = "STOCKROOM_PAYMENT_LATENCY_MS")]
    pub(super) payment_latency_ms: u64,
    /// Share of payments declined, 0 to 1.
    #[arg(long, default_value_t = 0.0, env = "STOCKROOM_PAYMENT_DECLINE_RATE")]
    pub(super) payment_decline_rate: f64,
}

#[derive(Debug, Args)]
pub(super) struct ExpiryArgs {
    /// Unpaid reservations are released after this long.
    #[arg(long, default_value_t = stockroom_inventory_service::DEFAULT_RESERVATION_TTL_MS, env = "STOCKROOM_RESERVATION_TTL_MS")]
    pub(super) reservation_ttl_ms: u64,
    /// Pause between two expiry sweeps.
    #[arg(long, default_value_t = stockroom_inventory_service::DEFAULT_SWEEP_INTERVAL_MS, env = "STOCKROOM_SWEEP_INTERVAL_MS")]
    pub(super) sweep_interval_ms: u64,
}

pub(super) fn writer_config(storage: &StorageArgs) -> anyhow::Result<WriterConfig> {
    anyhow::ensure!(
        (1..=stockroom_storage_sqlite::MAX_WRITE_BATCH).contains(&storage.write_batch),
        "--write-batch must be from 1 to {}",
        stockroom_storage_sqlite::MAX_WRITE_BATCH
    );
    Ok(WriterConfig {
        max_batch: storage.write_batch,
        ..WriterConfig::default()
    })
}

pub(super) fn read_stock(
    storage: &StorageArgs,
) -> anyhow::Result<Option<Vec<stockroom_contract::StockLine>>> {
    storage
        .inventory
        .as_deref()
        .map(stockroom_launcher::stock::read_stock_file)
        .transpose()
        .map_err(anyhow::Error::from)
}

/// The secret the services' internal routes require.
#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// The secret internal routes require (`Authorization: Bearer <token>`),
    /// at least 32 characters. `up` and `cluster` generate one when none is
    /// given; `serve` requires it. Prefer the environment variable: a
    /// command line is visible to every user of the machine.
    #[arg(
        long,
        global = true,
        env = stockroom_http_kit::INTERNAL_TOKEN_ENV,
        hide_env_values = true
    )]
    internal_token: Option<String>,
}

impl TokenArgs {
    /// The token given, refusing to go on without one.
    pub(super) fn required(&self) -> anyhow::Result<InternalToken> {
        match &self.internal_token {
            Some(text) => Ok(InternalToken::parse(text)?),
            None => anyhow::bail!(
                "an internal token is required: set {} (or --internal-token) to the same secret of at least {} characters on every service of the system, e.g. `export {}=$(openssl rand -hex 32)`",
                stockroom_http_kit::INTERNAL_TOKEN_ENV,
                stockroom_http_kit::MIN_INTERNAL_TOKEN_CHARS,
                stockroom_http_kit::INTERNAL_TOKEN_ENV,
            ),
        }
    }

    /// The token given, or a new random one.
    pub(super) fn or_generate(&self) -> anyhow::Result<InternalToken> {
        match &self.internal_token {
            Some(text) => Ok(InternalToken::parse(text)?),
            None => Ok(InternalToken::generate()),
        }
    }

    /// The token given, if any (for commands that call internal routes of a
    /// system someone else started).
    pub(super) fn optional(&self) -> anyhow::Result<Option<InternalToken>> {
        self.internal_token
            .as_deref()
            .map(InternalToken::parse)
            .transpose()
            .map_err(Into::into)
    }
}

/// The host names the services answer to besides their own.
#[derive(Debug, Args)]
pub(super) struct AllowedHostsArgs {
    /// Host names every service and the dashboard also serve, comma-separated
    /// (`shop.example.com,.example.org`; a leading dot allows every name
    /// under it), for a deployment behind a load balancer that keeps the
    /// public name in `Host`. Without it only `localhost`, loopback addresses
    /// and the address a service is bound to are served: any other name is
    /// answered with 421, so that no web page can reach the services by DNS
    /// rebinding.
    #[arg(
        long,
        global = true,
        env = stockroom_http_kit::ALLOWED_HOSTS_ENV,
        value_parser = parse_allowed_hosts
    )]
    allowed_hosts: Option<String>,
}

/// Checks a list of host names, keeping it as written.
fn parse_allowed_hosts(list: &str) -> Result<String, stockroom_http_kit::HostListError> {
    stockroom_http_kit::AllowedHosts::parse(list).map(|_| list.to_owned())
}

impl AllowedHostsArgs {
    /// Makes every listener of this process serve the names given.
    pub(super) fn install(&self) -> anyhow::Result<()> {
        let list = self.allowed_hosts.as_deref().unwrap_or("");
        stockroom_http_kit::AllowedHosts::parse(list)?.install()?;
        Ok(())
    }

    /// The variable that hands the names to a child process, if any were
    /// given.
    pub(super) fn for_children(&self) -> Option<(String, String)> {
        self.allowed_hosts.as_ref().map(|list| {
            (
                stockroom_http_kit::ALLOWED_HOSTS_ENV.to_owned(),
                list.clone(),
            )
        })
    }
}
