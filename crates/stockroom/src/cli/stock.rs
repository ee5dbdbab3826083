//! `stockroom stock create|limit|adjust|movements`: a shop operator's
//! commands, over data-service's operator routes (`stockroom-operator`'s
//! client). Each prints the answer's
//! JSON document on standard output; a refusal prints its message on
//! standard error and exits non-zero.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use stockroom_contract::stock_operations::DEFAULT_MOVEMENTS_PER_PAGE;
use stockroom_http_kit::OPERATOR_TOKEN_ENV;
use stockroom_operator::{OperatorClient, SettingsChange};

use super::shop_args::operator_token_for_client;

#[derive(Debug, Args)]
pub(super) struct StockArgs {
    #[command(subcommand)]
    action: Action,
    /// data-service's base URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:3002",
        env = "STOCKROOM_DATA_URL"
    )]
    data_url: String,
    /// The operator token; without it, the one `up` keeps in
    /// <data-dir>/operator-token.
    #[arg(long, global = true, env = OPERATOR_TOKEN_ENV, hide_env_values = true)]
    operator_token: Option<String>,
    /// The data directory `up` runs with, where it keeps the operator token.
    #[arg(
        long,
        global = true,
        default_value = "./data",
        env = "STOCKROOM_DATA_DIR"
    )]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Create a product with its first units.
    Create {
        /// The product's name.
        product: String,
        #[arg(long, default_value_t = 0)]
        quantity: u64,
        /// The most units one customer may hold in reserved and fulfilled
        /// orders together.
        #[arg(long)]
        max_per_customer: Option<u32>,
        /// Availability at or below which a stock.low webhook goes out.
        #[arg(long)]
        low_stock_threshold: Option<u64>,
    },
    /// Set or remove a product's purchase limit and low-stock threshold.
    Limit {
        product: String,
        #[arg(long, conflicts_with = "no_limit")]
        max_per_customer: Option<u32>,
        /// Remove the purchase limit.
        #[arg(long)]
        no_limit: bool,
        #[arg(long, conflicts_with = "no_threshold")]
        low_stock_threshold: Option<u64>,
        /// Remove the low-stock threshold.
        #[arg(long)]
        no_threshold: bool,
    },
    /// Receive (positive) or write off (negative) units, with a reason.
    Adjust {
        product: String,
        /// Units added or written off, e.g. 20 or -3.
        #[arg(long, allow_hyphen_values = true)]
        delta: i64,
        /// received, returned, correction, damaged, shrinkage or cycle_count.
        #[arg(long)]
        reason: String,
        /// A delivery note, a count sheet.
        #[arg(long)]
        reference: Option<String>,
        /// Apply only if the product still has this many on hand.
        #[arg(long)]
        expected_on_hand: Option<u64>,
        /// Retry with the same key after a lost answer; a new one is drawn
        /// when none is given.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// A product's ledger: every change of its figures, oldest first.
    Movements {
        product: String,
        /// Only movements after this number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = DEFAULT_MOVEMENTS_PER_PAGE)]
        limit: u32,
        /// Every page, as one list.
        #[arg(long)]
        all: bool,
    },
}

pub(super) async fn stock(args: StockArgs) -> anyhow::Result<()> {
    let token = operator_token_for_client(args.operator_token.as_deref(), &args.data_dir)?;
    let operator = OperatorClient::new(&args.data_url, token)?;
    let answer = match args.action {
        Action::Create {
            product,
            quantity,
            max_per_customer,
            low_stock_threshold,
        } => {
            operator
                .create(&product, quantity, max_per_customer, low_stock_threshold)
                .await?
        }
        Action::Limit {
            product,
            max_per_customer,
            no_limit,
            low_stock_threshold,
            no_threshold,
        } => {
            let change = SettingsChange {
                max_per_customer: (no_limit || max_per_customer.is_some())
                    .then_some(max_per_customer),
                low_stock_threshold: (no_threshold || low_stock_threshold.is_some())
                    .then_some(low_stock_threshold),
            };
            let document = change.document().context(
                "say what to change: --max-per-customer, --no-limit, --low-stock-threshold or --no-threshold",
            )?;
            operator.change_settings(&product, document).await?
        }
        Action::Adjust {
            product,
            delta,
            reason,
            reference,
            expected_on_hand,
            idempotency_key,
        } => {
            let mut body = json!({ "delta": delta, "reason": reason });
            if let Some(reference) = reference {
                body["reference"] = json!(reference);
            }
            if let Some(expected) = expected_on_hand {
                body["expectedOnHand"] = json!(expected);
            }
            operator.adjust(&product, body, idempotency_key).await?
        }
        Action::Movements {
            product,
            after,
            limit,
            all: false,
        } => operator.movements(&product, after, limit).await?,
        Action::Movements {
            product,
            after,
            limit,
            all: true,
        } => operator.all_movements(&product, after, limit).await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
