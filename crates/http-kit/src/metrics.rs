//! Prometheus text metrics for every service: a small hand-written registry
//! and the middleware layer that feeds it.
//!
//! The registry is deliberately tiny (a mutex over a few maps) because its
//! label sets are bounded: routes come from the router's matched paths, never
//! from raw URLs, so a client cannot grow it by inventing paths. One
//! [`MetricsLayer`] added to a service's router records every request's route,
//! status and latency, counts reservations and rejections of
//! `POST /api/orders`, and answers `GET /metrics` itself, so each service needs
//! exactly one extra line to be observable.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

/// The path the layer answers with the text exposition format.
pub const METRICS_PATH: &str = "/metrics";

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The route label of requests no route matched, so unknown paths share one
/// series instead of creating one each.
const UNMATCHED_ROUTE: &str = "unmatched";

/// The route whose answers count as reservations (201) and rejections (409).
const PLACE_ORDER_ROUTE: &str = "/api/orders";

#[derive(Default)]
struct Histogram {
    /// Cumulative counts are computed when rendering; these are per bucket,
    /// with one extra slot for observations above the last bound.
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let slot = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[slot] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

#[derive(Default)]
struct Registry {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    /// Named counters with their help text and an optional label set.
    counters: BTreeMap<(&'static str, String), (&'static str, u64)>,
    gauges: BTreeMap<(&'static str, String), (&'static str, i64)>,
}

/// One service's metrics. Cloning shares the registry.
#[derive(Clone)]
pub struct Metrics {
    service: &'static str,
    registry: Arc<Mutex<Registry>>,
}

/// Counters every service shows, even at zero, so dashboards need no special
/// cases for services that never reserve.
const RESERVATIONS_TOTAL: &str = "stockroom_reservations_total";
const REJECTIONS_TOTAL: &str = "stockroom_rejections_total";
const VIOLATIONS_TOTAL: &str = "stockroom_invariant_violations_total";

impl Metrics {
    pub fn new(service: &'static str) -> Metrics {
        let metrics = Metrics {
            service,
            registry: Arc::new(Mutex::new(Registry::default())),
        };
        metrics.increment(RESERVATIONS_TOTAL, "orders placed and reserved", &[], 0);
        metrics.increment(
            REJECTIONS_TOTAL,
            "orders rejected for insufficient stock",
            &[],
            0,
        );
        metrics.increment(
            VIOLATIONS_TOTAL,
            "invariant violations found by the auditor",
            &[],
            0,
        );
        metrics
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The layer that records this service's requests into these metrics.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters for counters, so a poisoned lock is still used.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `by` to a counter; `labels` must come from a bounded set.
    pub fn increment(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        by: u64,
    ) {
        let mut registry = self.lock();
        let entry = registry
            .counters
            .entry((name, render_labels(labels)))
            .or_insert((help, 0));
        entry.1 += by;
    }

    /// Sets a gauge; `labels` must come from a bounded set.
    pub fn set_gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: i64,
    ) {
        self.lock()
            .gauges
            .insert((name, render_labels(labels)), (help, value));
    }

    /// Counts one invariant violation found by an auditor.
    pub fn record_violation(&self, invariant: &str) {
        self.increment(
            VIOLATIONS_TOTAL,
            "invariant violations found by the auditor",
            &[],
            1,
        );
        self.increment(
            "stockroom_invariant_violations_by_kind_total",
            "invariant violations found by the auditor, by invariant",
            &[("invariant", invariant)],
            1,
        );
    }

    fn record_request(&self, method: &Method, route: &str, status: StatusCode, seconds: f64) {
        let mut registry = self.lock();
        *registry
            .requests
            .entry((
                method.as_str().to_owned(),
                route.to_owned(),
                status.as_u16(),
            ))
            .or_insert(0) += 1;
        registry
            .latency
            .entry(route.to_owned())
            .or_default()
            .observe(seconds);
        drop(registry);
        if method == Method::POST && route == PLACE_ORDER_ROUTE {
            if status == StatusCode::CREATED {
                self.increment(RESERVATIONS_TOTAL, "orders placed and reserved", &[], 1);
            } else if status == StatusCode::CONFLICT {
                self.increment(
                    REJECTIONS_TOTAL,
                    "orders rejected for insufficient stock",
                    &[],
                    1,
                );
            }
        }
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        let registry = self.lock();
        let service = self.service;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# HELP stockroom_http_requests_total HTTP requests answered\n# TYPE stockroom_http_requests_total counter"
        );
        for ((method, route, status), count) in &registry.requests {
            let _ = writeln!(
                text,
                "stockroom_http_requests_total{{service=\"{service}\",method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(route)
            );
        }
        let _ = writeln!(
            text,
            "# HELP stockroom_http_request_duration_seconds HTTP request latency\n# TYPE stockroom_http_request_duration_seconds histogram"
        );
        for (route, histogram) in &registry.latency {
            let route = escape(route);
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "stockroom_http_request_duration_seconds_bucket{{service=\"{service}\",route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "stockroom_http_request_duration_seconds_bucket{{service=\"{service}\",route=\"{route}\",le=\"+Inf\"}} {}\nstockroom_http_request_duration_seconds_sum{{service=\"{service}\",route=\"{route}\"}} {}\nstockroom_http_request_duration_seconds_count{{service=\"{service}\",route=\"{route}\"}} {}",
                histogram.count, histogram.sum_seconds, histogram.count
            );
        }
        let mut last_name = "";
        for ((name, labels), (help, value)) in &registry.counters {
            if *name != last_name {
                let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
                last_name = name;
            }
            let _ = writeln!(text, "{name}{{service=\"{service}\"{labels}}} {value}");
        }
        let mut last_name = "";
        for ((name, labels), (help, value)) in &registry.gauges {
            if *name != last_name {
                let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
                last_name = name;
            }
            let _ = writeln!(text, "{name}{{service=\"{service}\"{labels}}} {value}");
        }
        text
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Extra labels after the `service` label, each preceded by a comma.
fn render_labels(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(name, value)| format!(",{name}=\"{}\"", escape(value)))
        .collect()
}

/// Records requests into a [`Metrics`] and answers `GET /metrics`.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl MetricsLayer {
    /// A layer with a registry of its own, for services that record nothing
    /// beyond their requests.
    pub fn new(service: &'static str) -> MetricsLayer {
        Metrics::new(service).layer()
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S> Service<Request> for MetricsService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.uri().path() == METRICS_PATH && request.method() == Method::GET {
            let text = self.metrics.render();
            return Box::pin(async move {
                Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
            });
        }
        let method = request.method().clone();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|path| path.as_str().to_owned())
            .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
        let metrics = self.metrics.clone();
        // The clone that was made ready is the one to call; the fresh clone
        // stays for the next request (the usual tower idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        Box::pin(async move {
            let response = inner.call(request).await?;
            metrics.record_request(
                &method,
                &route,
                response.status(),
                started.elapsed().as_secs_f64(),
            );
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::new("order-service");
        metrics.record_request(&Method::POST, "/api/orders", StatusCode::CREATED, 0.002);
        metrics.record_request(&Method::POST, "/api/orders", StatusCode::CONFLICT, 0.2);
        metrics.record_violation("available_non_negative");
        let text = metrics.render();
        assert!(text.contains("stockroom_reservations_total{service=\"order-service\"} 1"));
        assert!(text.contains("stockroom_rejections_total{service=\"order-service\"} 1"));
        assert!(text.contains("stockroom_invariant_violations_total{service=\"order-service\"} 1"));
        assert!(text.contains(
            "stockroom_http_request_duration_seconds_count{service=\"order-service\",route=\"/api/orders\"} 2"
        ));
    }
}
