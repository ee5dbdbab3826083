//! The flash-sale control: `POST /api/sale {"product","orders","concurrency"}`
//! fires that many concurrent orders at the system's order-service with the
//! lab's load generator ([`stockroom_lab::run_storm`]), one sale at a time.
//! Its progress (orders answered so far, read from order-service's request
//! counter at every poll) and its result travel in every snapshot;
//! `GET /api/sale` answers them alone.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use stockroom_http_kit::{ErrorChain, JsonBody};
use stockroom_lab::{RetryPolicy, StormConfig, StormError, StormSummary};

use crate::DashboardState;
use crate::error::DashboardError;
use crate::guard::ControlAccess;
use crate::job::{Job, RunState};

/// The most orders one sale may place: enough to sell out any stock the
/// page shows many times over, few enough that a sale ends in seconds.
pub const MAX_SALE_ORDERS: u64 = 20_000;

/// The most concurrent buyers of one sale: a flash sale's crowd, well within
/// the connections one order-service accepts.
pub const MAX_SALE_CONCURRENCY: usize = 256;

/// A sale stops after this long even if it has not placed all its orders,
/// so a slow or stuck system cannot keep the control busy.
pub const MAX_SALE_DURATION_MS: u64 = 120_000;

/// Attempts per order: a 503 (overload) is retried with the same
/// idempotency key, as a careful client would.
pub const SALE_ATTEMPTS: u32 = 3;

/// The pause before the first retry of an order.
pub const SALE_RETRY_BACKOFF_MS: u64 = 50;

/// The longest the products named in a sale may be.
const MAX_PRODUCT_NAME_CHARS: usize = 100;

/// What the operator asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaleRequest {
    pub product: String,
    pub orders: u64,
    pub concurrency: usize,
}

impl SaleRequest {
    /// Checks the bounds; `products` are the names the stock lists (empty
    /// when the stock could not be read, and then any name passes).
    pub fn validate(&self, products: &[String]) -> Result<(), DashboardError> {
        let product = self.product.trim();
        if product.is_empty() || product.chars().count() > MAX_PRODUCT_NAME_CHARS {
            return Err(DashboardError::Invalid(format!(
                "product must be a name of 1 to {MAX_PRODUCT_NAME_CHARS} characters"
            )));
        }
        if !products.is_empty()
            && !products
                .iter()
                .any(|known| known.eq_ignore_ascii_case(product))
        {
            return Err(DashboardError::Invalid(format!(
                "no product named {product}; the stock lists {}",
                products.join(", ")
            )));
        }
        if !(1..=MAX_SALE_ORDERS).contains(&self.orders) {
            return Err(DashboardError::Invalid(format!(
                "orders must be from 1 to {MAX_SALE_ORDERS}"
            )));
        }
        if !(1..=MAX_SALE_CONCURRENCY).contains(&self.concurrency) {
            return Err(DashboardError::Invalid(format!(
                "concurrency must be from 1 to {MAX_SALE_CONCURRENCY}"
            )));
        }
        Ok(())
    }
}

/// The control's state as the page shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleStatus {
    pub state: RunState,
    pub request: Option<SaleRequest>,
    pub started_at: Option<String>,
    pub elapsed_ms: u64,
    /// Orders order-service answered since the sale started (any other
    /// traffic at the same time counts too), at most the sale's orders.
    pub answered: u64,
    pub summary: Option<StormSummary>,
    pub error: Option<String>,
    /// The bounds, so the page's form can state them.
    pub max_orders: u64,
    pub max_concurrency: usize,
}

impl SaleStatus {
    /// Before any sale.
    fn idle() -> SaleStatus {
        SaleStatus {
            state: RunState::Idle,
            request: None,
            started_at: None,
            elapsed_ms: 0,
            answered: 0,
            summary: None,
            error: None,
            max_orders: MAX_SALE_ORDERS,
            max_concurrency: MAX_SALE_CONCURRENCY,
        }
    }
}

/// The status and the answered-orders counter when the sale started.
struct Run {
    status: SaleStatus,
    baseline: Option<f64>,
}

/// The control, shared by the handlers and the collector. Cloning shares it.
#[derive(Clone)]
pub struct SaleControl {
    order_urls: Vec<String>,
    job: Job<Run>,
}

impl SaleControl {
    pub fn new(order_urls: Vec<String>) -> SaleControl {
        SaleControl {
            order_urls,
            job: Job::new(Run {
                status: SaleStatus::idle(),
                baseline: None,
            }),
        }
    }

    /// The status, with the progress brought up to date from order-service's
    /// answered-orders counter (`None` when it could not be read).
    pub fn status(&self, answered_now: Option<f64>) -> SaleStatus {
        let mut slot = self.job.lock();
        if slot.busy() {
            let elapsed_ms = slot.elapsed_ms();
            let run = &mut slot.status;
            run.status.elapsed_ms = elapsed_ms;
            match (run.baseline, answered_now) {
                (None, Some(now)) => run.baseline = Some(now),
                (Some(baseline), Some(now)) => {
                    let orders = run.status.request.as_ref().map_or(0, |r| r.orders);
                    run.status.answered = ((now - baseline).max(0.0) as u64).min(orders);
                }
                _ => {}
            }
        }
        slot.status.status.clone()
    }

    /// Starts a sale unless one is under way.
    pub fn start(
        &self,
        request: SaleRequest,
        answered_now: Option<f64>,
    ) -> Result<SaleStatus, DashboardError> {
        let mut slot = self.job.lock();
        if slot.busy() {
            return Err(DashboardError::Busy(
                "a flash sale is already running; wait for its result".to_owned(),
            ));
        }
        let mut config = StormConfig::new("", request.orders);
        config.order_urls = self.order_urls.clone();
        config.concurrency = request.concurrency;
        config.products = vec![request.product.trim().to_owned()];
        config.duration = Some(Duration::from_millis(MAX_SALE_DURATION_MS));
        config.idempotency = true;
        config.retry = RetryPolicy {
            max_attempts: SALE_ATTEMPTS,
            backoff_ms: SALE_RETRY_BACKOFF_MS,
        };
        let control = self.clone();
        let started_at = slot.begin(async move {
            let outcome = stockroom_lab::run_storm(config).await;
            control.finish(outcome.map(|report| report.summary));
        });
        slot.status = Run {
            status: SaleStatus {
                state: RunState::Running,
                request: Some(request),
                started_at: Some(started_at),
                ..SaleStatus::idle()
            },
            baseline: answered_now,
        };
        Ok(slot.status.status.clone())
    }

    fn finish(&self, outcome: Result<StormSummary, StormError>) {
        let mut slot = self.job.lock();
        let elapsed_ms = slot.end();
        let status = &mut slot.status.status;
        status.elapsed_ms = elapsed_ms;
        match outcome {
            Ok(summary) => {
                status.state = RunState::Finished;
                status.answered = summary.orders;
                status.summary = Some(summary);
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "flash sale failed"
                );
                status.state = RunState::Failed;
                status.error = Some(ErrorChain(&error).to_string());
            }
        }
    }

    /// Stops a sale under way (the dashboard is shutting down).
    pub fn abort(&self) {
        self.job.abort();
    }
}

/// `POST /api/sale`: starts a flash sale; 202 with its status.
pub(crate) async fn start(
    State(state): State<DashboardState>,
    _access: ControlAccess,
    JsonBody(request): JsonBody<SaleRequest>,
) -> Result<(StatusCode, Json<SaleStatus>), DashboardError> {
    request.validate(&state.products())?;
    let status = state.sale.start(request, state.answered())?;
    tracing::info!(request = ?status.request, "flash sale started");
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// `GET /api/sale`: the sale's status (also in every snapshot).
pub(crate) async fn status(State(state): State<DashboardState>) -> Json<SaleStatus> {
    Json(state.sale.status(state.answered()))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn request(product: &str, orders: u64, concurrency: usize) -> SaleRequest {
        SaleRequest {
            product: product.into(),
            orders,
            concurrency,
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let products = vec!["Laptop".to_owned(), "Phone".to_owned()];
        assert!(request("laptop", 100, 16).validate(&products).is_ok());
        assert!(
            request("Laptop", MAX_SALE_ORDERS, MAX_SALE_CONCURRENCY)
                .validate(&products)
                .is_ok()
        );
        for bad in [
            request("", 100, 16),
            request("Tractor", 100, 16),
            request("Laptop", 0, 16),
            request("Laptop", MAX_SALE_ORDERS + 1, 16),
            request("Laptop", 100, 0),
            request("Laptop", 100, MAX_SALE_CONCURRENCY + 1),
        ] {
            assert!(bad.validate(&products).is_err(), "{bad:?}");
        }
        // Without a readable stock, any name passes (the orders will say).
        assert!(request("Tractor", 1, 1).validate(&[]).is_ok());
    }

    #[tokio::test]
    async fn one_sale_at_a_time_and_progress_from_the_counter() {
        // Nothing listens on port 9: every order fails at once, which is
        // enough to see the control's states.
        let control = SaleControl::new(vec!["http://127.0.0.1:9".to_owned()]);
        let started = control.start(request("Laptop", 5, 1), Some(100.0)).unwrap();
        assert_eq!(started.state, RunState::Running);
        let again = control.start(request("Laptop", 5, 1), Some(100.0));
        assert!(matches!(again, Err(DashboardError::Busy(_))));
        assert_eq!(control.status(Some(103.0)).answered, 3);
        assert_eq!(
            control.status(Some(1_000.0)).answered,
            5,
            "at most the sale's orders"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while control.status(None).state == RunState::Running {
            assert!(Instant::now() < deadline, "the sale never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let finished = control.status(None);
        assert_eq!(finished.state, RunState::Finished);
        let summary = finished.summary.unwrap();
        assert_eq!(summary.orders, 5);
        assert_eq!(summary.errors, 5);
        assert!(
            control.start(request("Laptop", 1, 1), None).is_ok(),
            "idle again"
        );
        control.abort();
    }
}
