//! `stockroom stock create|limit|adjust|movements`: a shop operator's
//! commands, over data-service's operator routes. Each prints the answer's
//! JSON document on standard output; a refusal prints its message on
//! standard error and exits non-zero.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockroom_contract::stock_operations::DEFAULT_MOVEMENTS_PER_PAGE;
use stockroom_http_kit::{INTERNAL_REQUEST_TIMEOUT_MS, OPERATOR_TOKEN_ENV, OperatorToken};

use super::shop_args::operator_token_for_client;

/// The most pages `movements --all` reads in one run.
const MAX_MOVEMENT_PAGES: u32 = 100_000;

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

/// One operator's connection to data-service.
struct Operator {
    http: reqwest::Client,
    base: String,
    token: OperatorToken,
}

impl Operator {
    /// Sends one request; the document of a 2xx answer, or the answer's
    /// message as the error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut request = self
            .http
            .request(method, &url)
            .header(reqwest::header::AUTHORIZATION, self.token.header_value());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach data-service at {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let document: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(document);
        }
        let message = document
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| document.to_string(), str::to_owned);
        if status == StatusCode::UNAUTHORIZED {
            anyhow::bail!(
                "{status}: {message} (is {OPERATOR_TOKEN_ENV} the system's operator token?)"
            );
        }
        anyhow::bail!("{status}: {message}\n{document}")
    }
}

/// The path of a product's routes: its name, percent-encoded.
fn product_path(product: &str) -> String {
    let encoded: String = product
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect();
    format!("/inventory/{encoded}")
}

pub(super) async fn stock(args: StockArgs) -> anyhow::Result<()> {
    let operator = Operator {
        http: stockroom_http_kit::direct_client()
            .timeout(Duration::from_millis(INTERNAL_REQUEST_TIMEOUT_MS))
            .build()?,
        base: args.data_url.clone(),
        token: operator_token_for_client(args.operator_token.as_deref(), &args.data_dir)?,
    };
    let answer = match args.action {
        Action::Create {
            product,
            quantity,
            max_per_customer,
            low_stock_threshold,
        } => {
            let body = json!({
                "productName": product,
                "quantity": quantity,
                "maxPerCustomer": max_per_customer,
                "lowStockThreshold": low_stock_threshold,
            });
            operator
                .send(Method::POST, "/inventory", Some(body), &[])
                .await?
        }
        Action::Limit {
            product,
            max_per_customer,
            no_limit,
            low_stock_threshold,
            no_threshold,
        } => {
            let change = settings_change(
                max_per_customer,
                no_limit,
                low_stock_threshold,
                no_threshold,
            )?;
            operator
                .send(Method::PATCH, &product_path(&product), Some(change), &[])
                .await?
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
            adjust(&operator, &product, body, idempotency_key).await?
        }
        Action::Movements {
            product,
            after,
            limit,
            all,
        } => movements(&operator, &product, after, limit, all).await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// The settings document of `stock limit`: only what the operator named.
fn settings_change(
    max_per_customer: Option<u32>,
    no_limit: bool,
    low_stock_threshold: Option<u64>,
    no_threshold: bool,
) -> anyhow::Result<Value> {
    let mut body = serde_json::Map::new();
    if no_limit || max_per_customer.is_some() {
        body.insert("maxPerCustomer".into(), json!(max_per_customer));
    }
    if no_threshold || low_stock_threshold.is_some() {
        body.insert("lowStockThreshold".into(), json!(low_stock_threshold));
    }
    anyhow::ensure!(
        !body.is_empty(),
        "say what to change: --max-per-customer, --no-limit, --low-stock-threshold or --no-threshold"
    );
    Ok(Value::Object(body))
}

/// Sends one adjustment under its key (drawn when none is given), naming
/// the key in any failure: it is what a retry after a lost answer needs.
async fn adjust(
    operator: &Operator,
    product: &str,
    body: Value,
    idempotency_key: Option<String>,
) -> anyhow::Result<Value> {
    let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let path = format!("{}/adjustments", product_path(product));
    operator
        .send(
            Method::POST,
            &path,
            Some(body),
            &[("idempotency-key", key.clone())],
        )
        .await
        .with_context(|| format!("the adjustment's Idempotency-Key was {key}"))
}

/// A page of movements, or with `all` every page from `after` on.
async fn movements(
    operator: &Operator,
    product: &str,
    mut after: u64,
    limit: u32,
    all: bool,
) -> anyhow::Result<Value> {
    let path = format!("{}/movements", product_path(product));
    let mut collected = Vec::new();
    for _ in 0..MAX_MOVEMENT_PAGES {
        let page = operator
            .send(
                Method::GET,
                &format!("{path}?after={after}&limit={limit}"),
                None,
                &[],
            )
            .await?;
        if !all {
            return Ok(page);
        }
        if let Some(Value::Array(movements)) = page.get("movements") {
            collected.extend(movements.iter().cloned());
        }
        match page.get("nextCursor").and_then(Value::as_u64) {
            Some(cursor) => after = cursor,
            None => return Ok(json!({ "movements": collected, "nextCursor": null })),
        }
    }
    anyhow::bail!("more than {MAX_MOVEMENT_PAGES} pages of movements")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names_are_encoded_in_paths() {
        assert_eq!(product_path("Laptop"), "/inventory/Laptop");
        assert_eq!(product_path("USB cable/2m"), "/inventory/USB%20cable%2F2m");
    }
}
