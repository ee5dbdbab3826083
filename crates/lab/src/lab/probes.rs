//! The probes that look for races the checker cannot see from the final
//! state alone: the status watcher (reverting statuses and torn-file reads),
//! redelivery of events, the naive payment ledger's double charges and the
//! live monitor's alerts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use stockroom_domain::OrderStatus;

use super::{Anomaly, QUIESCE_TIMEOUT_MS, SystemUrls, WATCH_INTERVAL_MS};

/// What the status watcher saw.
#[derive(Debug, Clone, Default)]
pub(super) struct Watched {
    pub(super) reverted: usize,
    pub(super) first_reversion: Option<String>,
    pub(super) unreadable: usize,
    pub(super) first_unreadable: Option<String>,
}

/// Reads every order (and the stock) over and over while the load runs and
/// notes any status that moved backwards and any read that failed.
pub(super) struct Watcher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Watched>,
}

#[derive(Deserialize)]
struct WatchedOrder {
    id: String,
    status: String,
}

#[derive(Deserialize)]
struct WatchedPage {
    orders: Vec<WatchedOrder>,
}

impl Watcher {
    pub(super) fn start(http: reqwest::Client, data_url: String) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut watched = Watched::default();
            let mut last: HashMap<String, OrderStatus> = HashMap::new();
            let mut reverted: BTreeMap<String, String> = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_millis(QUIESCE_TIMEOUT_MS * 3);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                for path in ["/orders?limit=500", "/inventory"] {
                    let Ok(response) = http.get(format!("{data_url}{path}")).send().await else {
                        continue;
                    };
                    if response.status().is_server_error() {
                        watched.unreadable += 1;
                        if watched.first_unreadable.is_none() {
                            let body: serde_json::Value = response.json().await.unwrap_or_default();
                            watched.first_unreadable = body["message"].as_str().map(str::to_owned);
                        }
                        continue;
                    }
                    if path == "/inventory" {
                        continue;
                    }
                    let Ok(page) = response.json::<WatchedPage>().await else {
                        continue;
                    };
                    for order in page.orders {
                        let Ok(status) = order.status.parse::<OrderStatus>() else {
                            continue;
                        };
                        if let Some(before) = last.get(&order.id).copied()
                            && !before.may_be_followed_by(status)
                        {
                            let text = format!("{before}→{status}");
                            watched.first_reversion.get_or_insert(text.clone());
                            reverted.insert(order.id.clone(), text);
                        }
                        last.insert(order.id, status);
                    }
                }
                tokio::time::sleep(Duration::from_millis(WATCH_INTERVAL_MS)).await;
            }
            watched.reverted = reverted.len();
            watched
        });
        Watcher { stop, task }
    }

    pub(super) async fn stop(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Reads a JSON document.
pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, reqwest::Error> {
    http.get(url).send().await?.json().await
}

pub(super) struct Redelivery {
    pub(super) sent: usize,
    pub(super) ignored: usize,
    pub(super) applied: usize,
}

/// Hands every order event the naive bus delivered to its worker again, as a
/// broker does when an acknowledgement is lost.
pub(super) async fn redeliver_naive(
    http: &reqwest::Client,
    urls: &SystemUrls,
) -> Result<Redelivery, reqwest::Error> {
    let log: stockroom_naive::inventory::EventLog =
        get_json(http, &format!("{}/events", urls.inventory)).await?;
    let mut sent = 0;
    for event in &log.events {
        let response = http
            .post(format!("{}/events", urls.inventory))
            .json(event)
            .send()
            .await?;
        if response.status().is_success() {
            sent += 1;
        }
    }
    Ok(Redelivery {
        sent,
        ignored: 0,
        applied: sent,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EffectResults {
    results: Vec<EffectResult>,
}

#[derive(Deserialize)]
struct EffectResult {
    outcome: String,
}

/// Delivers every order's `OrderReserved` and `PaymentSucceeded` events to
/// data-service's consumers again, twice each, with the event ids the outbox
/// gave them.
pub(super) async fn redeliver_fixed(
    http: &reqwest::Client,
    urls: &SystemUrls,
    placed: &[String],
) -> Result<Redelivery, reqwest::Error> {
    let mut redelivery = Redelivery {
        sent: 0,
        ignored: 0,
        applied: 0,
    };
    for order_id in placed {
        let document: serde_json::Value =
            get_json(http, &format!("{}/orders/{order_id}", urls.data)).await?;
        let history = document["order"]["history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let version_of = |wanted: &dyn Fn(&serde_json::Value) -> bool| {
            history
                .iter()
                .find(|entry| wanted(entry))
                .and_then(|entry| entry["version"].as_i64())
        };
        let reserved =
            version_of(&|entry| entry["status"] == "reserved" && entry["reason"].is_null());
        let charged = version_of(&|entry| {
            entry["reason"] == stockroom_domain::Reason::PaymentCharged.as_str()
        });
        let mut deliveries = Vec::new();
        if let Some(version) = reserved {
            deliveries.push((
                "/payments",
                serde_json::json!({"payments": [{
                    "orderId": order_id,
                    "eventId": format!("OrderReserved:{order_id}:{version}"),
                    "approved": true,
                }]}),
            ));
        }
        if let Some(version) = charged {
            deliveries.push((
                "/settlements",
                serde_json::json!({"settlements": [{
                    "orderId": order_id,
                    "eventId": format!("PaymentSucceeded:{order_id}:{version}"),
                    "action": "commit",
                }]}),
            ));
        }
        for (path, body) in &deliveries {
            for _ in 0..2 {
                let results: EffectResults = http
                    .post(format!("{}{path}", urls.data))
                    .json(body)
                    .send()
                    .await?
                    .json()
                    .await?;
                for result in results.results {
                    redelivery.sent += 1;
                    if result.outcome == "applied" {
                        redelivery.applied += 1;
                    } else {
                        redelivery.ignored += 1;
                    }
                }
            }
        }
    }
    Ok(redelivery)
}

/// Orders the naive payment provider charged more than once.
pub(super) async fn double_charges(http: &reqwest::Client, urls: &SystemUrls) -> Vec<Anomaly> {
    let Ok(response) = http.get(format!("{}/charges", urls.payment)).send().await else {
        return Vec::new();
    };
    let Ok(ledger) = response.json::<stockroom_naive::payment::Ledger>().await else {
        return Vec::new();
    };
    let mut per_order: BTreeMap<String, usize> = BTreeMap::new();
    for charge in ledger.charges {
        *per_order.entry(charge.order_id).or_insert(0) += 1;
    }
    let twice = per_order.values().filter(|count| **count > 1).count();
    if twice == 0 {
        return Vec::new();
    }
    vec![Anomaly {
        kind: "charged_twice".into(),
        text: format!("order charged twice ({twice} orders)"),
    }]
}

/// Invariants that relate the orders to the stock figures. The naive
/// system keeps them in two files, which its monitor reads one after the
/// other, so an alert on one of them can come from reading the files at
/// two moments rather than from a state that ever existed; on that side
/// only the checker, at rest, decides them.
const CROSS_DOCUMENT_INVARIANTS: [&str; 2] = ["reserved_matches_orders", "sold_matches_fulfilled"];

/// What the system's live monitor (inventory-service's `/invariants`)
/// alerted on: its first violation. On the
/// naive side (`two_reads`), alerts on [`CROSS_DOCUMENT_INVARIANTS`] are
/// left to the checker.
pub(super) async fn monitor_anomalies(
    http: &reqwest::Client,
    urls: &SystemUrls,
    two_reads: bool,
) -> Vec<Anomaly> {
    let Ok(response) = http
        .get(format!("{}/invariants", urls.inventory))
        .send()
        .await
    else {
        return Vec::new();
    };
    let Ok(report) = response
        .json::<stockroom_inventory_report::InvariantReport>()
        .await
    else {
        return Vec::new();
    };
    report
        .violations
        .into_iter()
        .filter(|violation| {
            !(two_reads && CROSS_DOCUMENT_INVARIANTS.contains(&violation.invariant.as_str()))
        })
        .take(1)
        .map(|violation| Anomaly {
            kind: format!("monitor_{}", violation.invariant),
            text: format!(
                "monitor alerted: {} for {} ({})",
                violation.invariant, violation.product, violation.actual
            ),
        })
        .collect()
}

/// The shape of inventory-service's `/invariants`, read as any client would.
mod stockroom_inventory_report {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    pub struct Violation {
        pub invariant: String,
        pub product: String,
        pub actual: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct InvariantReport {
        pub violations: Vec<Violation>,
    }
}
