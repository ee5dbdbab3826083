//! Prometheus metrics for every service, on the `metrics` crates: one
//! registry per service (a [`PrometheusRecorder`] of its own, never the
//! process-wide one, since `stockroom up` runs four services in one process),
//! the request layer that feeds it ([`layer`]), and the bounded labels it
//! uses ([`labels`]).
//!
//! Counters are atomics and histograms are lock-free buckets that are folded
//! into their distributions when `/metrics` is read or on the periodic
//! upkeep, so recording a request takes no lock (see [`layer`] for how its
//! handles are found without one). Every label comes from a bounded set:
//! routes are the router's templates, methods a fixed list, and the other
//! labels (consumer, product, invariant …) come from the system's own
//! configuration, never from what a client sends.

pub mod labels;
mod layer;
pub mod names;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub use self::layer::{METRICS_PATH, MetricsLayer, MetricsService};
use self::names::*;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Upper bounds of the batch-size histogram buckets (calls or events per
/// batch): powers of two up to the largest batch any stage forms.
pub const BATCH_SIZE_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

/// Upper bounds of the settlement-lag histogram buckets, in seconds: from a
/// payment settled at once to one that waited out an outage.
pub const LAG_BUCKETS_SECONDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 120.0,
];

/// How often recorded histogram samples are folded into their buckets when
/// nobody reads `/metrics`, which bounds the memory unread samples take.
pub const UPKEEP_INTERVAL_MS: u64 = 5_000;

/// Gives each registry an identity for the request layer's handle cache.
static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(1);

/// The metadata every handle is registered with; the Prometheus recorder
/// does not use it, but the recorder interface asks for it.
static METADATA: Metadata<'static> = Metadata::new("stockroom", Level::INFO, None);

struct Registry {
    id: u64,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The counters moved once per order, held so that counting an order
    /// is one atomic addition: looking a series up by name and labels
    /// hashes the key and takes the registry's lock, which cost order-service
    /// 2 % of the embedded default's CPU when done per order.
    reservations: metrics::Counter,
    rejections: metrics::Counter,
    violations: metrics::Counter,
}

/// One service's metrics. Cloning shares the registry.
#[derive(Clone)]
pub struct Metrics {
    service: &'static str,
    registry: Arc<Registry>,
}

impl Metrics {
    /// A registry of its own for `service`, whose name every series carries
    /// as its `service` label.
    pub fn new(service: &'static str) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .add_global_label("service", service)
            .set_buckets_for_metric(
                Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_owned()),
                &LATENCY_BUCKETS_SECONDS,
            )
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Suffix("_batch_size".to_owned()),
                    &BATCH_SIZE_BUCKETS,
                )
            })
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(SETTLEMENT_LAG_SECONDS.to_owned()),
                    &LAG_BUCKETS_SECONDS,
                )
            })
            .expect("the bucket lists are constant and not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Registered now, so that every service shows them even at zero and
        // dashboards need no special cases for services that never reserve
        // or audit.
        let [reservations, rejections, violations] = [
            RESERVATIONS_TOTAL,
            REJECTIONS_TOTAL,
            INVARIANT_VIOLATIONS_TOTAL,
        ]
        .map(|name| {
            recorder.describe_counter(
                KeyName::from(name),
                None,
                SharedString::from(names::help(name)),
            );
            recorder.register_counter(&Self::key(name, &[]), &METADATA)
        });
        let metrics = Metrics {
            service,
            registry: Arc::new(Registry {
                id: NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed),
                recorder,
                handle,
                reservations,
                rejections,
                violations,
            }),
        };
        metrics.start_upkeep();
        metrics
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The layer that records this service's requests into these metrics and
    /// answers `GET /metrics`.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer::from_metrics(self.clone())
    }

    /// Folds histogram samples into their buckets every
    /// [`UPKEEP_INTERVAL_MS`] while the registry lives, when a runtime runs.
    fn start_upkeep(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let registry: Weak<Registry> = Arc::downgrade(&self.registry);
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(UPKEEP_INTERVAL_MS));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                registry.handle.run_upkeep();
            }
        });
    }

    fn key(name: &'static str, labels: &[(&str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(label, value)| Label::new(label.to_string(), value.to_string()))
            .collect();
        Key::from_parts(name, labels)
    }

    /// The counter `name` with `labels`, registered (with its help text) on
    /// first use. Not for the request path: it looks the series up.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> metrics::Counter {
        let recorder = &self.registry.recorder;
        recorder.describe_counter(KeyName::from(name), None, SharedString::from(help));
        recorder.register_counter(&Self::key(name, labels), &METADATA)
    }

    /// The histogram `name` with `labels`, registered on first use.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> metrics::Histogram {
        let recorder = &self.registry.recorder;
        recorder.describe_histogram(KeyName::from(name), None, SharedString::from(help));
        recorder.register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// Adds `by` to a counter; `labels` must come from a bounded set.
    pub fn increment(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        by: u64,
    ) {
        self.counter(name, help, labels).increment(by);
    }

    /// Sets a counter to a total kept elsewhere (a storage's own count).
    pub fn set_counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        total: u64,
    ) {
        self.counter(name, help, labels).absolute(total);
    }

    /// Sets a gauge; `labels` must come from a bounded set.
    pub fn set_gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: i64,
    ) {
        let recorder = &self.registry.recorder;
        recorder.describe_gauge(KeyName::from(name), None, SharedString::from(help));
        recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
            .set(value as f64);
    }

    /// Records one observation of a histogram; `labels` must come from a
    /// bounded set.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.histogram(name, help, labels).record(value);
    }

    /// Counts orders placed and reserved.
    pub fn record_reservations(&self, count: u64) {
        self.registry.reservations.increment(count);
    }

    /// Counts orders rejected for insufficient stock.
    pub fn record_rejections(&self, count: u64) {
        self.registry.rejections.increment(count);
    }

    /// Counts one invariant violation found by an auditor.
    pub fn record_violation(&self, invariant: &str) {
        self.registry.violations.increment(1);
        self.increment(
            INVARIANT_VIOLATIONS_BY_KIND_TOTAL,
            names::help(INVARIANT_VIOLATIONS_BY_KIND_TOTAL),
            &[("invariant", invariant)],
            1,
        );
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        self.registry.handle.render()
    }

    fn registry_id(&self) -> u64 {
        self.registry.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms_with_the_service_label() {
        let metrics = Metrics::new("order-service");
        metrics.record_reservations(1);
        metrics.record_rejections(2);
        metrics.record_violation("available_non_negative");
        metrics.set_gauge(
            OUTBOX_PENDING,
            names::help(OUTBOX_PENDING),
            &[("consumer", "payment")],
            3,
        );
        metrics.observe(
            SETTLEMENT_LAG_SECONDS,
            names::help(SETTLEMENT_LAG_SECONDS),
            &[],
            0.02,
        );
        let text = metrics.render();
        assert!(
            text.contains("stockroom_reservations_total{service=\"order-service\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("stockroom_rejections_total{service=\"order-service\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("stockroom_invariant_violations_total{service=\"order-service\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "stockroom_outbox_pending{service=\"order-service\",consumer=\"payment\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "stockroom_settlement_lag_seconds_bucket{service=\"order-service\",le=\"0.025\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn registries_are_separate() {
        let first = Metrics::new("data-service");
        let second = Metrics::new("payment-service");
        first.record_reservations(4);
        assert!(
            second
                .render()
                .contains("stockroom_reservations_total{service=\"payment-service\"} 0")
        );
        assert!(!second.render().contains("data-service"));
    }
}
