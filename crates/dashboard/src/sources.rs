//! The reads of one poll: each a public route of the system, each bounded by
//! [`SOURCE_TIMEOUT_MS`](crate::SOURCE_TIMEOUT_MS), each failing on its own
//! ([`SourceError`], with a short line for the page) instead of failing the
//! snapshot.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use stockroom_contract::OrderCounts;
use stockroom_domain::OrderStatus;
use stockroom_domain::invariants::StockFigures;

use crate::SOURCE_TIMEOUT_MS;
use crate::prometheus::{self, Sample};

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
    inventory: Vec<StockFigures>,
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
            SourceError::NotGiven { .. } | SourceError::Status { .. } => self.to_string(),
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

    /// Every product's stock figures.
    pub async fn inventory(&self, data_url: &str) -> Result<Vec<StockFigures>, SourceError> {
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
