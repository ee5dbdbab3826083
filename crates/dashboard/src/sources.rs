//! The reads of one poll: each a public route of the system (but the
//! ledger, read with the operator's token), each bounded by
//! [`SOURCE_TIMEOUT_MS`](crate::SOURCE_TIMEOUT_MS), each failing on its own
//! ([`SourceError`], with a short line for the page) instead of failing the
//! snapshot.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use stockroom_contract::OrderCounts;
use stockroom_contract::stock_operations::MovementList;
use stockroom_domain::OrderStatus;
use stockroom_domain::invariants::StockFigures;

use stockroom_http_kit::OperatorToken;

use crate::SOURCE_TIMEOUT_MS;
use crate::prometheus::{self, Sample};
use crate::snapshot::ProductSettings;

/// The most pages of orders read to count them when data-service has no
/// `/orders/counts` (the naive system, or an older release): the count then
/// covers at most this many pages and says so.
pub const MAX_FALLBACK_COUNT_PAGES: usize = 4;

/// The page size of that fallback count (data-service's largest).
pub const FALLBACK_COUNT_PAGE_SIZE: u32 = 500;

#[derive(Clone)]
pub(crate) struct Reader {
    client: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct InventoryDocument {
    inventory: Vec<StockItem>,
}

/// One item of `GET /inventory`: its figures and its settings.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct StockItem {
    #[serde(flatten)]
    pub figures: StockFigures,
    #[serde(flatten)]
    pub settings: ProductSettings,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderPage {
    orders: Vec<StatusOnly>,
    next_cursor: Option<String>,
}

#[derive(serde::Deserialize)]
struct StatusOnly {
    status: OrderStatus,
}

/// Why one source could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// No instance of the service was given to read from.
    #[error("no {service} URL was given")]
    NotGiven { service: &'static str },
    /// The request failed: refused, timed out, cut.
    #[error("{url} did not answer")]
    NoAnswer {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The route answered with a status that is not a success.
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    /// The route refused the credential it was given.
    #[error("{url} refused the operator token ({status})")]
    Refused {
        url: String,
        status: reqwest::StatusCode,
    },
    /// The route answered with something that is not its document.
    #[error("{url} answered with an unexpected document")]
    Unexpected {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl SourceError {
    /// The line a panel shows: the URL and the gist of the cause, since the
    /// page has little room for a whole chain.
    pub fn for_page(&self) -> String {
        match self {
            SourceError::NoAnswer { url, source } => format!("{url}: {}", short(source)),
            SourceError::Unexpected { url, source } => {
                format!("{url}: unexpected answer: {}", short(source))
            }
            SourceError::NotGiven { .. }
            | SourceError::Status { .. }
            | SourceError::Refused { .. } => self.to_string(),
        }
    }
}

/// A service instance's `/health` as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct HealthReading {
    /// The status the service gave, or `unreachable`.
    pub status: String,
    pub document: Value,
}

impl Reader {
    pub fn new() -> Reader {
        let client = stockroom_http_kit::direct_client()
            .timeout(Duration::from_millis(SOURCE_TIMEOUT_MS))
            .build()
            .unwrap_or_default();
        Reader { client }
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, SourceError> {
        self.client
            .get(url)
            .send()
            .await
            .map_err(|source| SourceError::NoAnswer {
                url: url.to_owned(),
                source,
            })
    }

    async fn json<T: DeserializeOwned>(&self, url: &str) -> Result<T, SourceError> {
        let response = self.get(url).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(SourceError::Status {
                url: url.to_owned(),
                status,
            });
        }
        response
            .json()
            .await
            .map_err(|source| SourceError::Unexpected {
                url: url.to_owned(),
                source,
            })
    }

    /// Every product's stock figures and settings.
    pub async fn inventory(&self, data_url: &str) -> Result<Vec<StockItem>, SourceError> {
        let document: InventoryDocument = self.json(&format!("{data_url}/inventory")).await?;
        Ok(document.inventory)
    }

    /// Orders per status: data-service's counts route, or, where it has
    /// none, a count over the first pages of orders.
    pub async fn order_counts(&self, data_url: &str) -> Result<OrderCounts, SourceError> {
        let url = format!("{data_url}/orders/counts");
        let response = self.get(&url).await?;
        if response.status().is_success() {
            return response
                .json()
                .await
                .map_err(|source| SourceError::Unexpected { url, source });
        }
        if response.status() != reqwest::StatusCode::NOT_FOUND {
            return Err(SourceError::Status {
                url,
                status: response.status(),
            });
        }
        self.count_pages(data_url).await
    }

    async fn count_pages(&self, data_url: &str) -> Result<OrderCounts, SourceError> {
        let mut counts = [0u64; OrderStatus::ALL.len()];
        let mut after: Option<String> = None;
        let mut complete = false;
        for _ in 0..MAX_FALLBACK_COUNT_PAGES {
            let mut url = format!("{data_url}/orders?limit={FALLBACK_COUNT_PAGE_SIZE}");
            if let Some(cursor) = &after {
                url.push_str(&format!("&after={cursor}"));
            }
            let page: OrderPage = self.json(&url).await?;
            for order in &page.orders {
                if let Some(slot) = OrderStatus::ALL.iter().position(|s| *s == order.status) {
                    counts[slot] += 1;
                }
            }
            match page.next_cursor {
                Some(cursor) if !page.orders.is_empty() => after = Some(cursor),
                _ => {
                    complete = true;
                    break;
                }
            }
        }
        let cap = Some(counts.iter().sum());
        Ok(OrderCounts {
            counts: OrderStatus::ALL
                .into_iter()
                .zip(counts)
                .map(|(status, count)| stockroom_contract::StatusCount {
                    status,
                    count,
                    capped: !complete,
                })
                .collect(),
            cap,
        })
    }

    /// A page of `product`'s ledger, read with the operator's `token`.
    pub async fn movements(
        &self,
        data_url: &str,
        product: &str,
        after: u64,
        limit: u32,
        token: &OperatorToken,
    ) -> Result<MovementList, SourceError> {
        let url = format!(
            "{data_url}/inventory/{}/movements?after={after}&limit={limit}",
            path_segment(product)
        );
        let response = self
            .client
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, token.header_value())
            .send()
            .await
            .map_err(|source| SourceError::NoAnswer {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(SourceError::Refused { url, status });
        }
        if !status.is_success() {
            return Err(SourceError::Status { url, status });
        }
        response
            .json()
            .await
            .map_err(|source| SourceError::Unexpected { url, source })
    }

    /// An instance's `/health`: its document whatever its status code (a
    /// 503 still says which part is down).
    pub async fn health(&self, url: &str) -> HealthReading {
        let answer = match self.get(&format!("{url}/health")).await {
            Ok(response) => response
                .json::<Value>()
                .await
                .map_err(|error| short(&error)),
            Err(error) => Err(error.for_page()),
        };
        match answer {
            Ok(document) => HealthReading {
                status: document["status"].as_str().unwrap_or("unknown").to_owned(),
                document,
            },
            Err(error) => HealthReading {
                status: "unreachable".to_owned(),
                document: serde_json::json!({ "error": error }),
            },
        }
    }

    /// An instance's `/metrics` samples.
    pub async fn metrics(&self, url: &str) -> Result<Vec<Sample>, SourceError> {
        let url = format!("{url}/metrics");
        let response = self.get(&url).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(SourceError::Status { url, status });
        }
        let text = response
            .text()
            .await
            .map_err(|source| SourceError::NoAnswer { url, source })?;
        Ok(prometheus::parse(&text))
    }
}

/// A product name as one path segment: every byte but the unreserved ones
/// percent-encoded, so that a name with a space or a slash reads its own
/// ledger.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// An HTTP client error without its long chain: the page has little room.
fn short(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused".to_owned()
    } else if error.is_decode() {
        "not the expected JSON".to_owned()
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_name_is_one_path_segment() {
        assert_eq!(path_segment("Laptop"), "Laptop");
        assert_eq!(path_segment("USB-C cable/2m"), "USB-C%20cable%2F2m");
        assert_eq!(path_segment("café"), "caf%C3%A9");
    }

    #[test]
    fn an_item_keeps_its_settings_beside_its_figures() {
        let item: StockItem = serde_json::from_value(serde_json::json!({
            "productName": "Laptop", "quantity": 25, "reservedQuantity": 5, "available": 20,
            "maxPerCustomer": 2, "lowStockThreshold": null, "movementSeq": 9
        }))
        .unwrap();
        assert_eq!(item.figures.movement_seq, Some(9));
        assert_eq!(item.settings.max_per_customer, Some(2));
        assert_eq!(item.settings.low_stock_threshold, None);
        let naive: StockItem = serde_json::from_value(serde_json::json!({
            "productName": "Laptop", "quantity": 25, "reservedQuantity": 5
        }))
        .unwrap();
        assert_eq!(naive.settings, ProductSettings::default());
    }
}
