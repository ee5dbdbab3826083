//! The collector: every [`POLL_INTERVAL_MS`] it reads the sources at once,
//! builds the [`Snapshot`] and publishes it, serialized, to every stream.
//! The invariant auditor runs beside it on the same interval, over the same
//! data-service, and the collector takes its latest report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use stockroom_audit::Auditor;
use stockroom_contract::OrderCounts;
use stockroom_domain::invariants::StockFigures;
use stockroom_http_kit::{Metrics, PartStatus, Readiness};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::lab::LabControl;
use crate::prometheus::Sample;
use crate::sale::SaleControl;
use crate::snapshot::{
    AuditPanel, OrdersPanel, ProductRow, ServicePanel, Snapshot, StockPanel, TrafficPanel,
};
use crate::sources::{HealthReading, Reader, SourceError};
use crate::traffic::{OrderCounters, Traffic};
use crate::{POLL_INTERVAL_MS, Sources};

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
}

impl Collector {
    pub fn new(
        sources: Sources,
        sale: SaleControl,
        lab: LabControl,
        observed: Observed,
        readiness: Readiness,
        metrics: Metrics,
    ) -> Collector {
        let auditor = Auditor::new(&sources.data.join(","), metrics);
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
        }
    }

    /// Reads every source once, at the same time, and builds the snapshot.
    pub async fn collect(&mut self) -> Snapshot {
        let health = self.start_health_reads();
        let metrics = self.start_metrics_reads();
        let (inventory, counts) = tokio::join!(self.inventory(), self.order_counts());
        let services = services(health).await;
        let metrics_error = self.record_traffic(metrics).await;
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        self.audit.update(self.auditor.report(), &now);
        let stock = self.stock_panel(inventory, &now);
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

    /// Starts reading every order-service instance's `/metrics`, each in its
    /// own task.
    fn start_metrics_reads(&self) -> Vec<JoinHandle<Result<Vec<Sample>, SourceError>>> {
        self.sources
            .order
            .iter()
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

    /// The stock panel, and the `sources` part of the dashboard's health,
    /// which follows whether the stock could be read.
    fn stock_panel(
        &self,
        inventory: Result<Vec<StockFigures>, SourceError>,
        now: &str,
    ) -> StockPanel {
        match inventory {
            Ok(figures) => {
                let products: Vec<ProductRow> = figures.iter().map(ProductRow::judge).collect();
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
    async fn inventory(&self) -> Result<Vec<StockFigures>, SourceError> {
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
