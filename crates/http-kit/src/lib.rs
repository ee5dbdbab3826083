//! HTTP plumbing every Stockroom service shares: JSON error bodies, a JSON body
//! extractor whose failures are client errors in the same shape, binding and
//! serving with graceful shutdown, a client for calling the other services,
//! the bounded wait for a dependency's `/health`, and Prometheus metrics
//! (one registry per service, lock-free on the request path), and the W3C
//! trace context carried from service to service.
//!
//! Each service keeps its own error enum and its own single mapping to HTTP;
//! this crate only supplies the body shape they all answer with.

mod body;
mod client;
pub mod metrics;
mod readiness;
mod serve;
pub mod trace;

pub use body::{BodyError, JsonBody};
pub use client::{ClientError, INTERNAL_REQUEST_TIMEOUT_MS, ServiceClient, split_urls};
pub use metrics::{Metrics, MetricsLayer, names as metric_names};
pub use readiness::{
    DEPENDENCY_LOG_INTERVAL_MS, MAX_DEPENDENCY_BACKOFF_MS, MIN_DEPENDENCY_BACKOFF_MS, PartStatus,
    Readiness,
};
pub use serve::{
    BindError, HEALTH_POLL_ATTEMPTS, HEALTH_POLL_INTERVAL_MS, HealthWait, RETRY_AFTER_SECONDS,
    bind, error_response, fallback_not_found, method_not_allowed, serve, wait_for_health,
    with_openapi_and_fallbacks,
};
pub use trace::{
    TRACEPARENT_HEADER, TraceLayer, current_traceparent, event_span, follow, traceparent_of,
};
