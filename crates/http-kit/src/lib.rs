//! HTTP plumbing every Stockroom service shares: JSON error bodies, a JSON body
//! extractor whose failures are client errors in the same shape, binding and
//! serving with graceful shutdown and the listener's limits and checks (the
//! host names it serves, requests from other sites' pages), a client for
//! calling the other services,
//! the bounded wait for a dependency's `/health`, and Prometheus metrics
//! (one registry per service, lock-free on the request path), and the W3C
//! trace context carried from service to service.
//!
//! Each service keeps its own error enum and its own single mapping to HTTP;
//! this crate only supplies the body shape they all answer with, and
//! [`ErrorChain`], which renders an error with its causes where it must
//! travel as text.

mod auth;
mod body;
mod client;
pub mod cross_site;
mod error_chain;
pub mod hosts;
mod idempotency;
mod listener;
pub mod metrics;
mod readiness;
mod routes;
mod serve;
pub mod trace;

pub use auth::{
    INTERNAL_TOKEN_ENV, INTERNAL_TOKEN_SCHEME, InternalToken, MAX_INTERNAL_TOKEN_CHARS,
    MIN_INTERNAL_TOKEN_CHARS, OPERATOR_TOKEN_ENV, OPERATOR_TOKEN_SCHEME, OperatorToken, TokenError,
    TokenRole, require_internal_token, require_operator_token,
};
pub use body::{BodyError, JsonBody, JsonBytes, require_json};
pub use client::{
    ClientError, INTERNAL_REQUEST_TIMEOUT_MS, ServiceClient, direct_client, split_urls,
};
pub use error_chain::ErrorChain;
pub use hosts::{ALLOWED_HOSTS_ENV, AllowedHosts, HostListError};
pub use idempotency::{
    IDEMPOTENCY_KEY_HEADER, InvalidIdempotencyKey, MAX_IDEMPOTENCY_KEY_LENGTH, idempotency_key,
};
pub use listener::{
    ACCEPT_ERROR_PAUSE_MS, BODY_DEADLINE_MS, BODY_RATE_GRACE_MS, BodyLimits, BodyReadError,
    CONNECTION_BUFFER_BYTES, CONNECTIONS_PER_PEER_SHARE, HEADER_READ_TIMEOUT_MS, ListenerLimits,
    MAX_CONNECTIONS_PER_LISTENER, MAX_REQUEST_HEAD_BYTES, MAX_REQUEST_HEADERS,
    MIN_BODY_BYTES_PER_SECOND, OPEN_FILES_PER_LISTENER_SHARE, PeerKey, REFUSAL_WRITE_TIMEOUT_MS,
    WRITE_STALL_TIMEOUT_MS, raise_open_file_limit, serve, serve_with,
};
pub use metrics::{Metrics, MetricsLayer, names as metric_names};
pub use readiness::{
    DEPENDENCY_LOG_INTERVAL_MS, MAX_DEPENDENCY_BACKOFF_MS, MIN_DEPENDENCY_BACKOFF_MS, PartStatus,
    Readiness,
};
pub use routes::ServiceRoutes;
pub use serve::{
    BindError, HEALTH_POLL_ATTEMPTS, HEALTH_POLL_INTERVAL_MS, HEALTH_POLL_TIMEOUT_MS, HealthAnswer,
    HealthWait, RETRY_AFTER_SECONDS, bind, error_response, fallback_not_found, method_not_allowed,
    wait_for_health, with_openapi_and_fallbacks,
};
pub use trace::{
    TRACEPARENT_HEADER, TraceLayer, current_traceparent, event_span, follow, traceparent_of,
};
