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
use tokio_util::sync::CancellationToken;

use crate::lab::LabControl;
use crate::sale::SaleControl;
use crate::snapshot::{
    AuditPanel, OrdersPanel, ProductRow, ServicePanel, Snapshot, StockPanel, TrafficPanel,
};
use crate::sources::{HealthReading, Reader};
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
        let reader = &self.reader;
        let health = self.sources.services().into_iter().map(|(name, url)| {
            let reader = reader.clone();
            tokio::spawn(async move {
                let reading = reader.health(&url).await;
                (name, url, reading)
            })
        });
        let health: Vec<_> = health.collect();
        let metrics: Vec<_> = self
            .sources
            .order
            .iter()
            .map(|url| {
                let reader = reader.clone();
                let url = url.clone();
                tokio::spawn(async move { reader.metrics(&url).await })
            })
            .collect();
        let (inventory, counts) = tokio::join!(self.inventory(), self.order_counts());

        let mut services = Vec::with_capacity(health.len());
        for task in health {
            if let Ok((name, url, HealthReading { status, document })) = task.await {
                services.push(ServicePanel::from_health(name, &url, &status, &document));
            }
        }
        let mut samples = Vec::new();
        let mut metrics_error = None;
        for task in metrics {
            match task.await {
                Ok(Ok(read)) => samples.extend(read),
                Ok(Err(error)) => metrics_error = Some(error),
                Err(error) => metrics_error = Some(error.to_string()),
            }
        }
        if self.sources.order.is_empty() {
            metrics_error = Some("no order-service URL was given".to_owned());
        }
        let counters = metrics_error
            .is_none()
            .then(|| OrderCounters::from_samples(&samples));
        self.traffic.record(now_ms(), counters);

        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        self.audit.update(self.auditor.report(), &now);
        let stock = match inventory {
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
        };
        {
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
        let orders = match counts {
            Ok(counts) => OrdersPanel {
                total: counts.counts.iter().map(|count| count.count).sum(),
                counts: counts.counts,
                error: None,
            },
            Err(error) => OrdersPanel {
                error: Some(error),
                ..OrdersPanel::default()
            },
        };
        self.sequence += 1;
        Snapshot {
            sequence: self.sequence,
            taken_at: now,
            stock,
            orders,
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

    /// The stock, from the first data-service instance that answers.
    async fn inventory(&self) -> Result<Vec<StockFigures>, String> {
        let mut last_error = "no data-service URL was given".to_owned();
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
    async fn order_counts(&self) -> Result<OrderCounts, String> {
        let mut last_error = "no data-service URL was given".to_owned();
        for url in &self.sources.data {
            match self.reader.order_counts(url).await {
                Ok(counts) => return Ok(counts),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
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
