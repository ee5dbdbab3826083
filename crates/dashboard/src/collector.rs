//! The collector: every [`POLL_INTERVAL_MS`] it reads the sources at once,
//! builds the [`Snapshot`] and publishes it, serialized, to every stream.
//! The invariant auditor runs beside it on the same interval, over the same
//! data-service, and the collector takes its latest report. Given the
//! operator token, it also follows the stock ledger (see [`crate::movements`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use stockroom_audit::Auditor;
use stockroom_contract::OrderCounts;
use stockroom_contract::stock_operations::MovementList;
use stockroom_http_kit::{Metrics, OperatorToken, PartStatus, Readiness};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::lab::LabControl;
use crate::movements::{Feed, LedgerRead, MovementPanel};
use crate::prometheus::Sample;
use crate::sale::SaleControl;
use crate::snapshot::{
    AuditPanel, OrdersPanel, ProductRow, ServicePanel, Snapshot, StockPanel, TrafficPanel,
};
use crate::sources::{HealthReading, Reader, SourceError, StockItem};
use crate::traffic::{OrderCounters, Traffic};
use crate::webhooks::WebhookPanel;
use crate::{POLL_INTERVAL_MS, Sources};

/// What the movement feed says without the operator token.
const NO_OPERATOR_TOKEN: &str = "the stock ledger needs the operator token; start the dashboard with --operator-token or STOCKROOM_OPERATOR_TOKEN";

/// What the movement feed says about a system whose stock has no ledger
/// (the naive system).
const NO_LEDGER: &str = "this system keeps no stock ledger";

/// What the handlers need from the last poll: the products the stock lists
/// (to check a sale's product) and order-service's answered-orders counter
/// (a sale's progress starts from it). Cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct Observed {
    inner: Arc<Mutex<Observation>>,
}

#[derive(Default)]
struct Observation {
    products: Vec<String>,
    answered: Option<f64>,
}

impl Observed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Observation> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn products(&self) -> Vec<String> {
        self.lock().products.clone()
    }

    pub fn answered(&self) -> Option<f64> {
        self.lock().answered
    }
}

pub(crate) struct Collector {
    sources: Sources,
    reader: Reader,
    auditor: Auditor,
    traffic: Traffic,
    audit: AuditPanel,
    sale: SaleControl,
    lab: LabControl,
    observed: Observed,
    readiness: Readiness,
    sequence: u64,
    /// Reads the ledger; `None` leaves the movement feed off.
    operator_token: Option<OperatorToken>,
    feed: Feed,
}

impl Collector {
    pub fn new(
        sources: Sources,
        operator_token: Option<OperatorToken>,
        sale: SaleControl,
        lab: LabControl,
        observed: Observed,
        readiness: Readiness,
        metrics: Metrics,
    ) -> Collector {
        let data_urls = sources.data.join(",");
        // With the operator token the auditor also replays every product's
        // ledger against its figures, as inventory-service's does.
        let auditor =
            Auditor::new(&data_urls, metrics).with_ledger(&data_urls, operator_token.as_ref());
        readiness.set("sources", PartStatus::Starting, serde_json::Value::Null);
        Collector {
            sources,
            reader: Reader::new(),
            auditor,
            traffic: Traffic::default(),
            audit: AuditPanel::default(),
            sale,
            lab,
            observed,
            readiness,
            sequence: 0,
            operator_token,
            feed: Feed::default(),
        }
    }

    /// Reads every source once, at the same time, and builds the snapshot.
    pub async fn collect(&mut self) -> Snapshot {
        let health = self.start_health_reads();
        let metrics = self.start_metrics_reads(&self.sources.order);
        let data_metrics = self.start_metrics_reads(&self.sources.data);
        let (inventory, counts) = tokio::join!(self.inventory(), self.order_counts());
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let positions = ledger_positions(&inventory);
        // The stock panel sets the dashboard's readiness: before the ledger
        // reads, so that they never delay the dashboard's first healthy answer.
        let stock = self.stock_panel(inventory, &now);
        let movements = self.movement_panel(positions).await;
        let services = services(health).await;
        let metrics_error = self.record_traffic(metrics).await;
        let webhooks = self.webhook_panel(data_metrics).await;
        self.audit.update(self.auditor.report(), &now);
        self.observe(&stock);
        self.sequence += 1;
        Snapshot {
            sequence: self.sequence,
            taken_at: now,
            stock,
            orders: orders_panel(counts),
            traffic: TrafficPanel {
                points: self.traffic.points(),
                error: metrics_error,
            },
            audit: self.audit.clone(),
            services,
            movements,
            webhooks,
            sale: self.sale.status(self.traffic.answered()),
            lab: self.lab.status(),
        }
    }

    /// Starts reading every instance's `/health`, each in its own task.
    fn start_health_reads(&self) -> Vec<JoinHandle<(&'static str, String, HealthReading)>> {
        self.sources
            .services()
            .into_iter()
            .map(|(name, url)| {
                let reader = self.reader.clone();
                tokio::spawn(async move {
                    let reading = reader.health(&url).await;
                    (name, url, reading)
                })
            })
            .collect()
    }

    /// Starts reading the `/metrics` of every instance at `urls`, each in
    /// its own task.
    fn start_metrics_reads(
        &self,
        urls: &[String],
    ) -> Vec<JoinHandle<Result<Vec<Sample>, SourceError>>> {
        urls.iter()
            .map(|url| {
                let reader = self.reader.clone();
                let url = url.clone();
                tokio::spawn(async move { reader.metrics(&url).await })
            })
            .collect()
    }

    /// Adds the order counters of every instance's metrics to the traffic
    /// history, unless a read failed (a partial sum would look like a drop);
    /// answers that failure, as the traffic panel shows it.
    async fn record_traffic(
        &mut self,
        metrics: Vec<JoinHandle<Result<Vec<Sample>, SourceError>>>,
    ) -> Option<String> {
        let mut samples = Vec::new();
        let mut metrics_error = None;
        for task in metrics {
            match task.await {
                Ok(Ok(read)) => samples.extend(read),
                Ok(Err(error)) => metrics_error = Some(error.for_page()),
                Err(error) => metrics_error = Some(error.to_string()),
            }
        }
        if self.sources.order.is_empty() {
            metrics_error = Some(
                SourceError::NotGiven {
                    service: "order-service",
                }
                .for_page(),
            );
        }
        let counters = metrics_error
            .is_none()
            .then(|| OrderCounters::from_samples(&samples));
        self.traffic.record(now_ms(), counters);
        metrics_error
    }

    /// The webhook panel, from every data-service instance's metrics.
    async fn webhook_panel(
        &self,
        metrics: Vec<JoinHandle<Result<Vec<Sample>, SourceError>>>,
    ) -> WebhookPanel {
        let mut readings = Vec::with_capacity(metrics.len());
        for task in metrics {
            readings.push(match task.await {
                Ok(read) => read.map_err(|error| error.for_page()),
                Err(error) => Err(error.to_string()),
            });
        }
        if readings.is_empty() {
            let not_given = SourceError::NotGiven {
                service: "data-service",
            };
            readings.push(Err(not_given.for_page()));
        }
        WebhookPanel::from_instances(&readings)
    }

    /// The movement feed: reads the ledger of every product that moved
    /// since the last poll (see [`Feed::plan`]), at the same time.
    async fn movement_panel(
        &mut self,
        positions: Option<Vec<(String, Option<u64>)>>,
    ) -> MovementPanel {
        let Some(products) = positions else {
            // The stock panel says why; the feed keeps what it showed.
            return MovementPanel {
                entries: self.feed.entries(),
                ..MovementPanel::default()
            };
        };
        // Whether a ledger is kept shows in the public stock, so a system
        // without one (the naive system) says so even without a token.
        let unavailable = if !products.is_empty() && products.iter().all(|(_, last)| last.is_none())
        {
            Some(NO_LEDGER)
        } else if self.operator_token.is_none() {
            Some(NO_OPERATOR_TOKEN)
        } else {
            None
        };
        let (Some(token), None) = (self.operator_token.clone(), unavailable) else {
            return MovementPanel {
                unavailable: unavailable.map(str::to_owned),
                ..MovementPanel::default()
            };
        };
        let mut reads = JoinSet::new();
        for read in self.feed.plan(&products) {
            let (reader, urls, token) = (
                self.reader.clone(),
                self.sources.data.clone(),
                token.clone(),
            );
            reads.spawn(async move {
                let answer = read_ledger(&reader, &urls, &read, &token).await;
                (read.product, answer)
            });
        }
        let mut error = None;
        while let Some(joined) = reads.join_next().await {
            match joined {
                Ok((product, Ok(page))) => self.feed.take(&product, &page.movements),
                Ok((_, Err(failed))) => error = Some(failed.for_page()),
                Err(failed) => error = Some(failed.to_string()),
            }
        }
        MovementPanel {
            entries: self.feed.entries(),
            unavailable: None,
            error,
        }
    }

    /// The stock panel, and the `sources` part of the dashboard's health,
    /// which follows whether the stock could be read.
    fn stock_panel(&self, inventory: Result<Vec<StockItem>, SourceError>, now: &str) -> StockPanel {
        match inventory {
            Ok(items) => {
                let products: Vec<ProductRow> = items
                    .iter()
                    .map(|item| ProductRow::judge(&item.figures).with_settings(&item.settings))
                    .collect();
                self.readiness
                    .set("sources", PartStatus::Ok, json!({"lastPoll": now}));
                StockPanel {
                    oversold: products.iter().any(|row| row.oversold),
                    products,
                    error: None,
                }
            }
            Err(error) => {
                let error = error.for_page();
                self.readiness.set(
                    "sources",
                    PartStatus::Degraded,
                    json!({"lastPoll": now, "error": error}),
                );
                StockPanel {
                    error: Some(error),
                    ..StockPanel::default()
                }
            }
        }
    }

    /// Keeps what the handlers need from this poll: the products (when the
    /// stock could be read) and the answered-orders counter.
    fn observe(&self, stock: &StockPanel) {
        let mut observed = self.observed.lock();
        if stock.error.is_none() {
            observed.products = stock
                .products
                .iter()
                .map(|row| row.product.clone())
                .collect();
        }
        observed.answered = self.traffic.answered();
    }

    /// The stock, from the first data-service instance that answers.
    async fn inventory(&self) -> Result<Vec<StockItem>, SourceError> {
        let mut last_error = SourceError::NotGiven {
            service: "data-service",
        };
        for url in &self.sources.data {
            match self.reader.inventory(url).await {
                Ok(figures) => return Ok(figures),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// The orders per status, from the first data-service instance that
    /// answers.
    async fn order_counts(&self) -> Result<OrderCounts, SourceError> {
        let mut last_error = SourceError::NotGiven {
            service: "data-service",
        };
        for url in &self.sources.data {
            match self.reader.order_counts(url).await {
                Ok(counts) => return Ok(counts),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }
}

/// Each product with the number of its last movement (`None` where the
/// system keeps no ledger); `None` when the stock could not be read.
fn ledger_positions(
    inventory: &Result<Vec<StockItem>, SourceError>,
) -> Option<Vec<(String, Option<u64>)>> {
    let items = inventory.as_ref().ok()?;
    let positions = items
        .iter()
        .map(|item| {
            let last = item
                .figures
                .movement_seq
                .and_then(|seq| u64::try_from(seq).ok());
            (item.figures.product.clone(), last)
        })
        .collect();
    Some(positions)
}

/// A page of one product's ledger, from the first data-service instance
/// that answers.
async fn read_ledger(
    reader: &Reader,
    urls: &[String],
    read: &LedgerRead,
    token: &OperatorToken,
) -> Result<MovementList, SourceError> {
    let mut last_error = SourceError::NotGiven {
        service: "data-service",
    };
    for url in urls {
        match reader
            .movements(url, &read.product, read.after, read.limit, token)
            .await
        {
            Ok(page) => return Ok(page),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// Every instance's health panel, in the order the reads were started; a
/// read whose task failed has no panel.
async fn services(
    health: Vec<JoinHandle<(&'static str, String, HealthReading)>>,
) -> Vec<ServicePanel> {
    let mut services = Vec::with_capacity(health.len());
    for task in health {
        if let Ok((name, url, HealthReading { status, document })) = task.await {
            services.push(ServicePanel::from_health(name, &url, &status, &document));
        }
    }
    services
}

/// The orders panel: the count per status and their total.
fn orders_panel(counts: Result<OrderCounts, SourceError>) -> OrdersPanel {
    match counts {
        Ok(counts) => OrdersPanel {
            total: counts.counts.iter().map(|count| count.count).sum(),
            counts: counts.counts,
            error: None,
        },
        Err(error) => OrdersPanel {
            error: Some(error.for_page()),
            ..OrdersPanel::default()
        },
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Polls until `stop` is cancelled, publishing each snapshot; then stops
/// the auditor, a sale or lab run under way, and drops the sender, which
/// ends every open stream.
pub(crate) async fn run(
    mut collector: Collector,
    sender: watch::Sender<Arc<str>>,
    stop: CancellationToken,
) {
    let auditor = tokio::spawn(
        collector
            .auditor
            .clone()
            .run(POLL_INTERVAL_MS, stop.clone()),
    );
    let mut ticker = tokio::time::interval(Duration::from_millis(POLL_INTERVAL_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let snapshot = tokio::select! {
            _ = stop.cancelled() => break,
            snapshot = collector.collect() => snapshot,
        };
        match serde_json::to_string(&snapshot) {
            Ok(text) => {
                sender.send_replace(Arc::from(text));
            }
            Err(error) => tracing::error!(%error, "cannot serialize a snapshot"),
        }
    }
    collector.sale.abort();
    collector.lab.abort();
    let _ = auditor.await;
    drop(sender);
}
