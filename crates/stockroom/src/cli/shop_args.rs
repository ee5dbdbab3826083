//! The argument groups of a shop's own operations: the operator's token,
//! webhooks, and how long a customer may extend a reservation.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use stockroom_data_service::webhooks::WebhookConfig;
use stockroom_http_kit::{OPERATOR_TOKEN_ENV, OperatorToken};
use stockroom_operator::token_file;

/// The environment variable holding the webhooks' secret.
pub(super) const WEBHOOK_SECRET_ENV: &str = "STOCKROOM_WEBHOOK_SECRET";

/// The environment variable holding the webhooks' URLs, comma-separated.
pub(super) const WEBHOOK_URLS_ENV: &str = "STOCKROOM_WEBHOOK_URLS";

/// What data-service needs to serve a shop's operator and its other
/// systems.
#[derive(Debug, Args)]
pub(super) struct ShopArgs {
    /// The secret the operator's routes require (creating products, limits,
    /// adjustments, the ledger), 32 to 256 visible ASCII characters, never
    /// the internal token. `up` keeps one in <data-dir>/operator-token
    /// (generated on first start) when none is given; without one, `serve
    /// data` refuses every operator request.
    #[arg(long, env = OPERATOR_TOKEN_ENV, hide_env_values = true)]
    operator_token: Option<String>,
    /// Send the rules' notices (order.fulfilled, order.cancelled, stock.low,
    /// stock.sold_out, stock.back_in_stock) to this URL, signed, at least
    /// once. Repeatable; needs --webhook-secret.
    #[arg(long = "webhook-url", env = WEBHOOK_URLS_ENV, value_delimiter = ',')]
    webhook_urls: Vec<String>,
    /// The secret webhooks are signed with (HMAC-SHA256), 16 to 256 visible
    /// ASCII characters, shared with the receivers.
    #[arg(long, env = WEBHOOK_SECRET_ENV, hide_env_values = true)]
    webhook_secret: Option<String>,
}

impl ShopArgs {
    /// The operator token given, if any.
    pub(super) fn operator_token(&self) -> anyhow::Result<Option<OperatorToken>> {
        self.operator_token
            .as_deref()
            .map(OperatorToken::parse)
            .transpose()
            .map_err(Into::into)
    }

    /// The token given, or the one kept in `data_dir`, or a new one kept
    /// there for the next start and for `stockroom stock`.
    pub(super) fn operator_token_or_keep(&self, data_dir: &Path) -> anyhow::Result<OperatorToken> {
        if let Some(token) = self.operator_token()? {
            return Ok(token);
        }
        let path = token_file::path_in(data_dir);
        if let Some(token) = token_file::read(&path)? {
            return Ok(token);
        }
        let token = OperatorToken::generate();
        token_file::write(&path, &token)?;
        tracing::info!(path = %path.display(), "generated an operator token for the stock routes and `stockroom stock`");
        Ok(token)
    }

    /// Where webhooks go, if anywhere.
    pub(super) fn webhooks(&self) -> anyhow::Result<Option<WebhookConfig>> {
        Ok(WebhookConfig::parse(
            &self.webhook_urls,
            self.webhook_secret.as_deref(),
        )?)
    }

    /// The variables that hand the webhooks' settings to a data-service
    /// child process: in its environment, never on its command line.
    pub(super) fn for_children(&self) -> Vec<(String, String)> {
        let mut variables = Vec::new();
        if !self.webhook_urls.is_empty() {
            variables.push((WEBHOOK_URLS_ENV.to_owned(), self.webhook_urls.join(",")));
        }
        if let Some(secret) = &self.webhook_secret {
            variables.push((WEBHOOK_SECRET_ENV.to_owned(), secret.clone()));
        }
        variables
    }
}

/// The operator token a command that calls the operator's routes uses:
/// from the environment (or `--operator-token`), else from the file `up`
/// keeps in `data_dir`.
pub(super) fn operator_token_for_client(
    given: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<OperatorToken> {
    if let Some(text) = given {
        return Ok(OperatorToken::parse(text)?);
    }
    let path = token_file::path_in(data_dir);
    token_file::read(&path)?.with_context(|| {
        format!(
            "no operator token: set {OPERATOR_TOKEN_ENV}, or run `stockroom up` with this data directory (it keeps one in {})",
            path.display()
        )
    })
}

/// How long a customer may extend an unpaid reservation.
#[derive(Debug, Args)]
pub(super) struct ExtensionArgs {
    /// The longest `ttlMs` `POST /api/orders/{id}/extend` accepts, in
    /// milliseconds (at most a day).
    #[arg(
        long,
        default_value_t = stockroom_order_service::DEFAULT_MAX_RESERVATION_TTL_MS,
        env = "STOCKROOM_MAX_RESERVATION_TTL_MS",
        value_parser = clap::value_parser!(u64).range(1..=stockroom_order_service::MAX_RESERVATION_TTL_LIMIT_MS)
    )]
    pub(super) max_reservation_ttl_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_token_is_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let args = ShopArgs {
            operator_token: None,
            webhook_urls: Vec::new(),
            webhook_secret: None,
        };
        let first = args.operator_token_or_keep(directory.path()).unwrap();
        let path = token_file::path_in(directory.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = args.operator_token_or_keep(directory.path()).unwrap();
        assert_eq!(first, again, "a restart keeps the operator's token");
        assert_eq!(
            operator_token_for_client(None, directory.path()).unwrap(),
            first
        );
        assert!(operator_token_for_client(None, &directory.path().join("nowhere")).is_err());
    }
}
