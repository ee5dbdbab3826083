//! data-service: the only process that touches storage.
//!
//! It turns the storage traits into HTTP for the other services and for
//! clients of the original system (`GET /inventory`, `GET /orders`): storage
//! speaks domain records, and this service makes the contract's documents of
//! them ([`documents`]) and storage calls of the documents it receives
//! ([`calls`]). It holds no state of its own besides the storage handles, so
//! any number of instances may run over one shared database. It also serves
//! the embedded event bus: consumers lease events from the outbox over HTTP
//! and acknowledge them once their effect is committed. Its `/health` reports
//! its parts ([`monitor`]): whether the storage accepts writes, the outbox's
//! backlog, dead letters, and the relay when a broker carries the events.

mod calls;
mod documents;
mod error;
pub mod monitor;
mod relay;
pub mod retention;
mod routes;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use stockroom_http_kit::{InternalToken, Metrics, OperatorToken, Readiness, metric_names};
use stockroom_storage::{EventOutbox, Maintenance, OrderFlow, ProviderLedger, Storage};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use error::DataError;
pub use relay::{
    RELAY_BATCH_SIZE, RELAY_LEASE_MS, RELAY_POLL_INTERVAL_MS, RelaySettings, relay_outbox,
};
pub use retention::Retention;

/// The largest request body data-service accepts. Internal batches of
/// reservations are larger than any client request, hence the larger limit.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The longest a consumer's lease request waits for an event to appear.
pub const MAX_LEASE_WAIT_MS: u64 = 5_000;

/// The most events one lease request returns, and the most receipts one
/// acknowledgement carries.
pub const MAX_EVENTS_PER_LEASE: u32 = 1_000;

/// The shortest and longest lease a consumer may ask for: the outbox's own
/// bounds (see [`stockroom_domain::outbox`]).
pub use stockroom_domain::outbox::{MAX_LEASE_MS, MIN_LEASE_MS};

/// What every handler shares: the storage, as one handle per concern, so
/// that each part of the service takes only what it uses.
#[derive(Clone)]
pub struct DataState {
    /// Stock and orders.
    pub flow: Arc<dyn OrderFlow>,
    /// The outbox and its dead letters.
    pub outbox: Arc<dyn EventOutbox>,
    /// The simulated payment provider's ledger.
    pub ledger: Arc<dyn ProviderLedger>,
    /// Retention, the probe and the write path's statistics.
    pub maintenance: Arc<dyn Maintenance>,
    /// Woken whenever a write may have added events, so that waiting lease
    /// requests answer at once instead of at their timeout.
    pub events_written: Arc<Notify>,
    /// The service's parts, for `/health`.
    pub readiness: Readiness,
    pub metrics: Metrics,
    /// How long old rows are kept.
    pub retention: Retention,
    /// What internal routes require.
    pub internal_token: InternalToken,
    /// What operator routes require; `None` refuses every operator request.
    pub operator_token: Option<OperatorToken>,
    /// Where the rules' notices are sent; `None` for no webhooks.
    pub webhooks: Option<webhooks::WebhookConfig>,
}

impl DataState {
    pub fn new(storage: Arc<dyn Storage>, internal_token: InternalToken) -> DataState {
        let readiness = Readiness::ready("data-service");
        // Until the first look, the storage is not known to accept writes.
        readiness.set(
            "storage",
            stockroom_http_kit::PartStatus::Starting,
            serde_json::Value::Null,
        );
        DataState {
            flow: storage.clone(),
            outbox: storage.clone(),
            ledger: storage.clone(),
            maintenance: storage,
            events_written: Arc::new(Notify::new()),
            readiness,
            metrics: Metrics::new("data-service"),
            retention: Retention::default(),
            internal_token,
            operator_token: None,
            webhooks: None,
        }
    }

    /// The same, sending the rules' notices as `webhooks` says. The storage
    /// must raise them (its writer configured to notify) for any to be sent.
    pub fn with_webhooks(mut self, webhooks: Option<webhooks::WebhookConfig>) -> DataState {
        self.webhooks = webhooks;
        self
    }

    /// The same, serving the operator's routes to holders of `token`.
    pub fn with_operator_token(mut self, token: Option<OperatorToken>) -> DataState {
        self.operator_token = token;
        self
    }

    /// The same, keeping old rows as `retention` says.
    pub fn with_retention(mut self, retention: Retention) -> DataState {
        self.retention = retention;
        self
    }
}

/// The service's routes, with `/openapi.json` generated from them.
pub fn router(state: DataState) -> Router {
    routes::router(state)
}

/// The OpenAPI document of this service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::openapi()
}

/// Serves data-service on `listener`, looks at its storage every
/// [`monitor::MONITOR_INTERVAL_MS`], prunes old rows every
/// [`retention::PRUNE_INTERVAL_MS`] and sends webhooks when configured,
/// until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    state: DataState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let monitor = tokio::spawn(monitor::run(
        Arc::clone(&state.maintenance),
        Arc::clone(&state.outbox),
        state.readiness.clone(),
        state.metrics.clone(),
        stop.clone(),
    ));
    let pruner = tokio::spawn(retention::run(
        Arc::clone(&state.maintenance),
        state.retention,
        state.metrics.clone(),
        stop.clone(),
    ));
    let dispatcher = match state.webhooks.clone() {
        Some(config) => {
            // Tells a reader of the metrics (the dashboard) that webhooks
            // are configured, before any delivery has been counted.
            state.metrics.set_gauge(
                metric_names::WEBHOOK_RECEIVERS,
                metric_names::help(metric_names::WEBHOOK_RECEIVERS),
                &[],
                i64::try_from(config.urls.len()).unwrap_or(i64::MAX),
            );
            let dispatcher = webhooks::WebhookDispatcher::new(
                Arc::clone(&state.outbox),
                config,
                state.metrics.clone(),
                Arc::clone(&state.events_written),
            )
            .map_err(std::io::Error::other)?;
            Some(tokio::spawn(dispatcher.run(stop.clone())))
        }
        None => None,
    };
    let served = stockroom_http_kit::serve(listener, router(state), shutdown).await;
    stop.cancel();
    let _ = monitor.await;
    let _ = pruner.await;
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.await;
    }
    served
}
