//! The layer that records every request of a service (method, matched
//! route, status, latency) and answers `GET /metrics`.
//!
//! The series a request lands in are found without a lock: each worker
//! thread keeps its own cache of handles, keyed by registry, method, route
//! and status, and only a label set this thread has not seen yet goes to the
//! registry (once). Handles are atomics, so recording is lock-free. Each
//! cache is as bounded as the labels are.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::Metrics;
use super::labels::{UNMATCHED_ROUTE, method_label};
use super::names::{self, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};

/// The path the layer answers with the text exposition format.
pub const METRICS_PATH: &str = "/metrics";

/// The handles one thread has looked up: counters by registry, method and
/// status, then route; latency histograms by registry, then route.
#[derive(Default)]
struct HandleCache {
    requests: HashMap<(u64, &'static str, u16), HashMap<Box<str>, metrics::Counter>>,
    latency: HashMap<u64, HashMap<Box<str>, metrics::Histogram>>,
}

thread_local! {
    static HANDLES: RefCell<HandleCache> = RefCell::new(HandleCache::default());
}

impl Metrics {
    /// Records one answered request.
    fn record_request(&self, method: &Method, route: &str, status: StatusCode, seconds: f64) {
        let method = method_label(method);
        let status = status.as_u16();
        let id = self.registry_id();
        HANDLES.with(|cache| {
            let mut cache = cache.borrow_mut();
            let by_route = cache.requests.entry((id, method, status)).or_default();
            match by_route.get(route) {
                Some(counter) => counter.increment(1),
                None => {
                    let status = status.to_string();
                    let counter = self.counter(
                        HTTP_REQUESTS_TOTAL,
                        names::help(HTTP_REQUESTS_TOTAL),
                        &[("method", method), ("route", route), ("status", &status)],
                    );
                    counter.increment(1);
                    by_route.insert(route.into(), counter);
                }
            }
            let by_route = cache.latency.entry(id).or_default();
            match by_route.get(route) {
                Some(histogram) => histogram.record(seconds),
                None => {
                    let histogram = self.histogram(
                        HTTP_REQUEST_DURATION_SECONDS,
                        names::help(HTTP_REQUEST_DURATION_SECONDS),
                        &[("route", route)],
                    );
                    histogram.record(seconds);
                    by_route.insert(route.into(), histogram);
                }
            }
        });
    }
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

    pub(super) fn from_metrics(metrics: Metrics) -> MetricsLayer {
        MetricsLayer { metrics }
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
        let route = request.extensions().get::<MatchedPath>().cloned();
        let metrics = self.metrics.clone();
        // The clone that was made ready is the one to call; the fresh clone
        // stays for the next request (the usual tower idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        Box::pin(async move {
            let response = inner.call(request).await?;
            let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
            metrics.record_request(
                &method,
                route,
                response.status(),
                started.elapsed().as_secs_f64(),
            );
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app(metrics: &Metrics) -> Router {
        Router::new()
            .route("/api/orders/{id}", get(|| async { "an order" }))
            .layer(metrics.layer())
    }

    async fn send(router: Router, method: &str, path: &str) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn labels_are_route_templates_and_known_methods() {
        let metrics = Metrics::new("order-service");
        assert_eq!(
            send(app(&metrics), "GET", "/api/orders/42").await,
            StatusCode::OK
        );
        send(app(&metrics), "GET", "/api/orders/43").await;
        send(app(&metrics), "ANYTHING", "/api/orders/44").await;
        send(app(&metrics), "GET", "/no/such/path/0b5c").await;
        send(app(&metrics), "BREW", "/no/such/path/0b5d").await;
        let text = metrics.render();
        assert!(
            text.contains(
                "stockroom_http_requests_total{service=\"order-service\",method=\"GET\",route=\"/api/orders/{id}\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("method=\"other\",route=\"/api/orders/{id}\""),
            "{text}"
        );
        assert!(
            text.contains("method=\"GET\",route=\"unmatched\",status=\"404\""),
            "{text}"
        );
        assert!(
            text.contains("method=\"other\",route=\"unmatched\""),
            "{text}"
        );
        assert!(
            !text.contains("ANYTHING") && !text.contains("BREW"),
            "{text}"
        );
        assert!(
            !text.contains("/api/orders/4") && !text.contains("0b5"),
            "{text}"
        );
        assert!(
            text.contains(
                "stockroom_http_request_duration_seconds_count{service=\"order-service\",route=\"/api/orders/{id}\"} 3"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_layer_answers_metrics() {
        let metrics = Metrics::new("payment-service");
        let response = app(&metrics)
            .oneshot(Request::get(METRICS_PATH).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
