//! `stockroom check`: verifies the invariants against running services and
//! turns the verdict into the exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use stockroom_lab::{CheckConfig, HistorySource};

use super::{EXIT_BAD_INPUT, print_verdict};

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    order_url: String,
    #[arg(long, default_value = "http://127.0.0.1:3002")]
    data_url: String,
    /// A storm history to compare with (every acknowledged order exists once,
    /// no order the history never saw).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Initial stock (shaped like GET /inventory), for conservation when the
    /// service has no received/sold fields.
    #[arg(long)]
    initial_stock: Option<PathBuf>,
    /// An order still pending or reserved this long after its last change is stuck.
    #[arg(long, default_value_t = stockroom_lab::check::DEFAULT_STUCK_AFTER_MS)]
    stuck_after_ms: u64,
    /// A data directory whose orders.json and inventory.json, if present, must parse.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// The operator token, to read and check every product's ledger (and
    /// the purchase limits through it); also read from <data-dir>/operator-
    /// token when --data-dir is given.
    #[arg(long, env = stockroom_http_kit::OPERATOR_TOKEN_ENV, hide_env_values = true)]
    operator_token: Option<String>,
}

pub(super) async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut config = CheckConfig::new(&args.order_url, &args.data_url);
    config.history = args
        .history
        .map_or(HistorySource::None, HistorySource::File);
    config.stuck_after_ms = args.stuck_after_ms;
    config.operator_token = match (&args.operator_token, &args.data_dir) {
        (Some(text), _) => Some(stockroom_http_kit::OperatorToken::parse(text)?),
        (None, Some(directory)) => stockroom_operator::token_file::read(
            &stockroom_operator::token_file::path_in(directory),
        )?,
        (None, None) => None,
    };
    config.data_dir = args.data_dir;
    let outcome = match &args.initial_stock {
        Some(path) => stockroom_lab::check::read_initial_stock(path).map(Some),
        None => Ok(None),
    };
    let outcome = match outcome {
        Ok(stock) => {
            config.initial_stock = stock;
            stockroom_lab::run_check(&config).await
        }
        Err(error) => Err(error),
    };
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("stockroom check: {error}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    print_verdict(args.json, &report, report.render(), report.passed)
}
