//! After the heal: waiting, bounded, until no order is still pending or
//! reserved, and counting how the orders ended.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How often the campaign asks whether the system is quiet.
pub const QUIET_POLL_INTERVAL_MS: u64 = 500;

/// The longest one read of the settle phase may take.
const READ_TIMEOUT_MS: u64 = 10_000;

/// Page size when counting outcomes (data-service's largest page).
const OUTCOME_PAGE_SIZE: u32 = 500;

/// The most pages read when counting outcomes.
const MAX_OUTCOME_PAGES: u32 = 20_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    orders: Vec<Order>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Order {
    status: String,
    reason: Option<String>,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(READ_TIMEOUT_MS))
        .build()
        .unwrap_or_default()
}

async fn page(
    client: &reqwest::Client,
    data_url: &str,
    query: &[(&str, String)],
) -> anyhow::Result<Page> {
    let response = client
        .get(format!("{}/orders", data_url.trim_end_matches('/')))
        .query(query)
        .send()
        .await?
        .error_for_status()?;
    Ok(response.json().await?)
}

/// Waits until no order is pending or reserved, asking each data-service in
/// turn (one may still be recovering). Returns how long that took, or `None`
/// when `timeout_ms` passed first.
pub async fn wait_quiet(data_urls: &[String], timeout_ms: u64) -> Option<Duration> {
    let client = client();
    let began = Instant::now();
    let mut attempt = 0usize;
    while began.elapsed() < Duration::from_millis(timeout_ms) {
        let data_url = &data_urls[attempt % data_urls.len()];
        attempt += 1;
        let mut quiet = true;
        for status in ["pending", "reserved"] {
            let query = [("status", status.to_owned()), ("limit", "1".to_owned())];
            match page(&client, data_url, &query).await {
                Ok(page) if page.orders.is_empty() => {}
                _ => {
                    quiet = false;
                    break;
                }
            }
        }
        if quiet {
            return Some(began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(QUIET_POLL_INTERVAL_MS)).await;
    }
    None
}

/// How many orders ended in each status, cancelled and rejected ones by
/// reason (`cancelled:payment_declined`).
pub async fn outcomes(data_url: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let client = client();
    let mut counts = BTreeMap::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_OUTCOME_PAGES {
        let mut query = vec![("limit", OUTCOME_PAGE_SIZE.to_string())];
        if let Some(cursor) = &after {
            query.push(("after", cursor.clone()));
        }
        let page = page(&client, data_url, &query).await?;
        for order in &page.orders {
            let key = match &order.reason {
                Some(reason) if order.status == "cancelled" || order.status == "rejected" => {
                    format!("{}:{reason}", order.status)
                }
                _ => order.status.clone(),
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        match page.next_cursor {
            Some(cursor) if !page.orders.is_empty() => after = Some(cursor),
            _ => return Ok(counts),
        }
    }
    anyhow::bail!("GET /orders still had pages after {MAX_OUTCOME_PAGES}")
}
