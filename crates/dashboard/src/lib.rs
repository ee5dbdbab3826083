//! The dashboard: a web page, served on its own port, that shows a running
//! Stockroom (or any system that speaks its HTTP contract) live, and runs a
//! flash sale or the race lab against it.
//!
//! Every [`POLL_INTERVAL_MS`] a collector reads the system's public routes
//! (data-service's `/inventory` and `/orders/counts`, every service's
//! `/health`, order-service's `/metrics`), runs the invariant auditor of
//! [`stockroom_audit`] over data-service, and turns all of it into one
//! snapshot (see [`snapshot`]). The page receives each snapshot over
//! server-sent events (`GET /api/stream`); `GET /api/snapshot` answers the
//! latest one as JSON. The page's assets are compiled into the binary
//! ([`assets`]): nothing is fetched from the network at run time.
//!
//! The dashboard reads routes that are open to any client, and it works
//! against the naive system too, where it shows the oversells in red. The
//! one exception is the stock ledger behind the movement feed
//! ([`movements`]), which it reads only when given the operator token.
//!
//! Why the operator token, and not the internal one or a new internal
//! route: the ledger (who adjusted what, with which reference) is the
//! operator's record, and the operator token is the credential that already
//! reads it. The internal token would let the dashboard reserve, settle and
//! lease events, far more than it needs, and an internal read route would
//! open the ledger to every service that holds that token. The dashboard
//! uses the token only for `GET`s of the ledger, from the collector; it never
//! reaches the page, which gets the movements inside the snapshot. Whoever can
//! open the page sees them, which is why the page is served only to the
//! allowed host names (loopback by default), as before.

mod assets;
mod collector;
mod error;
pub mod fix_matrix;
pub mod guard;
pub mod job;
pub mod lab;
pub mod movements;
pub mod prometheus;
pub mod sale;
pub mod snapshot;
mod sources;
pub mod stream;
pub mod traffic;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use stockroom_http_kit::{Metrics, OperatorToken, Readiness};
use stockroom_lab::FixedLauncher;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use error::DashboardError;

/// The pause between two snapshots: the page is never more than this stale.
pub const POLL_INTERVAL_MS: u64 = 1_000;

/// The longest one read of a service may take; shorter than the poll
/// interval, so that a hung service delays no snapshot by more than it.
pub const SOURCE_TIMEOUT_MS: u64 = 800;

/// The most pages open on the live stream at once. Each holds a connection
/// and gets a copy of every snapshot; an operator's team needs a handful
/// (and one address at most [`stream::MAX_STREAMS_PER_CLIENT`]).
pub const MAX_STREAM_CLIENTS: usize = 64;

/// The largest request body the dashboard accepts (its forms are tiny).
pub const MAX_BODY_BYTES: usize = 4 * 1024;

// A control's body, sent at the listener's minimum rate, arrives before the
// body's deadline.
const _: () = assert!(
    stockroom_http_kit::BODY_RATE_GRACE_MS
        + MAX_BODY_BYTES as u64 * 1_000 / stockroom_http_kit::MIN_BODY_BYTES_PER_SECOND
        <= stockroom_http_kit::BODY_DEADLINE_MS
);

/// Where the system's services are: one or more base URLs each.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub order: Vec<String>,
    pub data: Vec<String>,
    pub inventory: Vec<String>,
    pub payment: Vec<String>,
}

impl Sources {
    /// Every service instance, named, in the order the page lists them.
    pub fn services(&self) -> Vec<(&'static str, String)> {
        let named = [
            ("order-service", &self.order),
            ("data-service", &self.data),
            ("inventory-service", &self.inventory),
            ("payment-service", &self.payment),
        ];
        named
            .into_iter()
            .flat_map(|(name, urls)| urls.iter().map(move |url| (name, url.clone())))
            .collect()
    }
}

/// What the dashboard is started with.
#[derive(Clone)]
pub struct DashboardConfig {
    pub sources: Sources,
    /// Starts a fixed system for the race lab; without one the page's lab
    /// control says it is unavailable.
    pub lab: Option<Arc<dyn FixedLauncher>>,
    /// Reads the stock ledger for the movement feed; without it the feed
    /// says it needs one. Used for nothing else.
    pub operator_token: Option<OperatorToken>,
    /// The Redis the lab's fix matrix gives the Redis fixes; without one
    /// their rows say they were skipped.
    pub lab_redis_url: Option<String>,
}

/// What every handler shares.
#[derive(Clone)]
pub struct DashboardState {
    /// The latest snapshot, already serialized: every stream sends the same
    /// text, so it is made once.
    snapshots: watch::Receiver<Arc<str>>,
    streams: stream::StreamSlots,
    /// Who may use the controls, and the token the page carries.
    pub controls: guard::ControlGuard,
    /// The page, with this start's token in it.
    page: Arc<str>,
    pub sale: sale::SaleControl,
    pub lab: lab::LabControl,
    observed: collector::Observed,
    readiness: Readiness,
    metrics: Metrics,
}

impl DashboardState {
    /// The products the stock listed at the last poll.
    fn products(&self) -> Vec<String> {
        self.observed.products()
    }

    /// order-service's answered-orders counter at the last poll.
    fn answered(&self) -> Option<f64> {
        self.observed.answered()
    }
}

/// The dashboard's routes: the page and its assets, the snapshot and its
/// stream, the controls' token, the two controls, `/health` and `/metrics`.
pub fn router(state: DashboardState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::asset))
        .route("/api/csrf-token", get(assets::csrf_token))
        .route("/api/snapshot", get(stream::latest))
        .route("/api/stream", get(stream::stream))
        .route("/api/sale", post(sale::start).get(sale::status))
        .route("/api/lab", post(lab::start).get(lab::status))
        .route("/health", get(health))
        .fallback(stockroom_http_kit::fallback_not_found)
        .method_not_allowed_fallback(stockroom_http_kit::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(state.metrics.layer())
        .with_state(state)
}

async fn health(
    axum::extract::State(state): axum::extract::State<DashboardState>,
) -> axum::response::Response {
    state.readiness.health_response()
}

/// Serves the dashboard on `listener` until `shutdown` completes; the
/// collector polls the sources meanwhile. Open streams end at shutdown.
pub async fn run(
    listener: TcpListener,
    config: DashboardConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let metrics = Metrics::new("dashboard");
    let readiness = Readiness::ready("dashboard");
    let sale = sale::SaleControl::new(config.sources.order.clone());
    let lab = lab::LabControl::new(config.lab.clone(), config.lab_redis_url.clone());
    let observed = collector::Observed::default();
    let (sender, snapshots) = watch::channel(Arc::<str>::from("{}"));
    let collector = tokio::spawn(collector::run(
        collector::Collector::new(
            config.sources,
            config.operator_token,
            sale.clone(),
            lab.clone(),
            observed.clone(),
            readiness.clone(),
            metrics.clone(),
        ),
        sender,
        stop.clone(),
    ));
    let controls = guard::ControlGuard::new();
    let state = DashboardState {
        snapshots,
        streams: stream::StreamSlots::new(),
        page: assets::page(controls.token()),
        controls,
        sale,
        lab,
        observed,
        readiness,
        metrics,
    };
    let stop_serving = stop.clone();
    let served = stockroom_http_kit::serve(listener, router(state), async move {
        shutdown.await;
        // The collector drops the snapshot sender when it stops, which ends
        // every open stream, so the graceful shutdown does not wait for them.
        stop_serving.cancel();
    })
    .await;
    stop.cancel();
    let _ = collector.await;
    served
}
