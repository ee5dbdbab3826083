//! [`OperatorClient`]: data-service's operator routes, each answer's JSON
//! document in, a typed error out. A refusal keeps the service's message and
//! document; an adjustment's error names the idempotency key a retry needs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockroom_http_kit::{INTERNAL_REQUEST_TIMEOUT_MS, OPERATOR_TOKEN_ENV, OperatorToken};

/// The most pages [`OperatorClient::all_movements`] reads in one call.
pub const MAX_MOVEMENT_PAGES: u32 = 100_000;

/// Why an operator call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot reach data-service at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{status}: {message} (is {OPERATOR_TOKEN_ENV} the system's operator token?)")]
    Unauthorized { status: StatusCode, message: String },
    #[error("{status}: {message}\n{document}")]
    Refused {
        status: StatusCode,
        message: String,
        document: Value,
    },
    #[error("the adjustment's Idempotency-Key was {key}")]
    Adjustment {
        key: String,
        #[source]
        source: Box<OperatorError>,
    },
    #[error("more than {MAX_MOVEMENT_PAGES} pages of movements")]
    TooManyPages,
}

/// What `PATCH /inventory/{product}` changes: only what is named; `Some(None)`
/// removes a limit or a threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub max_per_customer: Option<Option<u32>>,
    pub low_stock_threshold: Option<Option<u64>>,
}

impl SettingsChange {
    /// The request document, or `None` when nothing is named.
    pub fn document(&self) -> Option<Value> {
        let mut body = serde_json::Map::new();
        if let Some(limit) = self.max_per_customer {
            body.insert("maxPerCustomer".into(), json!(limit));
        }
        if let Some(threshold) = self.low_stock_threshold {
            body.insert("lowStockThreshold".into(), json!(threshold));
        }
        (!body.is_empty()).then_some(Value::Object(body))
    }
}

/// One operator's connection to data-service.
pub struct OperatorClient {
    http: reqwest::Client,
    base: String,
    token: OperatorToken,
}

impl OperatorClient {
    /// A client of the data-service at `base`, never through a proxy, each
    /// call bounded by the internal request timeout.
    pub fn new(base: &str, token: OperatorToken) -> Result<OperatorClient, OperatorError> {
        let http = stockroom_http_kit::direct_client()
            .timeout(Duration::from_millis(INTERNAL_REQUEST_TIMEOUT_MS))
            .build()
            .map_err(OperatorError::Client)?;
        Ok(OperatorClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// `POST /inventory`: a new product with its first units.
    pub async fn create(
        &self,
        product: &str,
        quantity: u64,
        max_per_customer: Option<u32>,
        low_stock_threshold: Option<u64>,
    ) -> Result<Value, OperatorError> {
        let body = json!({
            "productName": product,
            "quantity": quantity,
            "maxPerCustomer": max_per_customer,
            "lowStockThreshold": low_stock_threshold,
        });
        self.send(Method::POST, "/inventory", Some(body), &[]).await
    }

    /// `PATCH /inventory/{product}` with `change`'s document.
    pub async fn change_settings(
        &self,
        product: &str,
        change: Value,
    ) -> Result<Value, OperatorError> {
        self.send(Method::PATCH, &product_path(product), Some(change), &[])
            .await
    }

    /// `POST /inventory/{product}/adjustments` under `key` (drawn when none
    /// is given); the error names the key, which a retry after a lost
    /// answer needs.
    pub async fn adjust(
        &self,
        product: &str,
        body: Value,
        key: Option<String>,
    ) -> Result<Value, OperatorError> {
        let key = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let path = format!("{}/adjustments", product_path(product));
        let headers = [("idempotency-key", key.clone())];
        self.send(Method::POST, &path, Some(body), &headers)
            .await
            .map_err(|source| OperatorError::Adjustment {
                key,
                source: Box::new(source),
            })
    }

    /// One page of `product`'s movements after `after`.
    pub async fn movements(
        &self,
        product: &str,
        after: u64,
        limit: u32,
    ) -> Result<Value, OperatorError> {
        let path = format!(
            "{}/movements?after={after}&limit={limit}",
            product_path(product)
        );
        self.send(Method::GET, &path, None, &[]).await
    }

    /// Every movement of `product` after `after`, page after page, as one
    /// page with no next cursor.
    pub async fn all_movements(
        &self,
        product: &str,
        mut after: u64,
        limit: u32,
    ) -> Result<Value, OperatorError> {
        let mut collected = Vec::new();
        for _ in 0..MAX_MOVEMENT_PAGES {
            let page = self.movements(product, after, limit).await?;
            if let Some(Value::Array(movements)) = page.get("movements") {
                collected.extend(movements.iter().cloned());
            }
            match page.get("nextCursor").and_then(Value::as_u64) {
                Some(cursor) => after = cursor,
                None => return Ok(json!({ "movements": collected, "nextCursor": null })),
            }
        }
        Err(OperatorError::TooManyPages)
    }

    /// Sends one request; the document of a 2xx answer, or the refusal.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, OperatorError> {
        let url = format!("{}{path}", self.base);
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
            .map_err(|source| OperatorError::Unreachable { url, source })?;
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
            return Err(OperatorError::Unauthorized { status, message });
        }
        Err(OperatorError::Refused {
            status,
            message,
            document,
        })
    }
}

/// The path of a product's routes: its name, percent-encoded.
pub fn product_path(product: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names_are_encoded_in_paths() {
        assert_eq!(product_path("Laptop"), "/inventory/Laptop");
        assert_eq!(product_path("USB cable/2m"), "/inventory/USB%20cable%2F2m");
    }

    #[test]
    fn a_settings_change_names_only_what_changes() {
        assert_eq!(SettingsChange::default().document(), None);
        let change = SettingsChange {
            max_per_customer: Some(None),
            low_stock_threshold: Some(Some(5)),
        };
        assert_eq!(
            change.document(),
            Some(json!({"maxPerCustomer": null, "lowStockThreshold": 5}))
        );
    }
}
