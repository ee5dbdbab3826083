//! Coalescing of concurrent reservations into one batch per exchange.
//!
//! During a flash sale hundreds of `POST /api/orders` arrive at once, and
//! each used to cost its own exchange with inventory-service, its own
//! exchange with data-service and its own job for the storage writer. The
//! coalescer puts every order it is asked to reserve on a bounded queue; one
//! collector task takes what is queued (waiting at most a short window for
//! more) and sends it as one [`ReserveBatch`]. The batch travels
//! order → inventory → data as one exchange per hop and is applied in one
//! storage transaction, and each caller receives its own [`Reply`]:
//! results are positional, the n-th answer belongs to the n-th request.
//!
//! Batching changes nothing about what a reservation means. Every request of
//! a batch is still reserved atomically on its own (storage gives each its
//! own savepoint), so two orders in one batch can neither oversell nor see
//! each other half-done, and two requests with one idempotency key in one
//! batch still create one order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stockroom_contract::{ReserveBatch, ReserveRequest};
use stockroom_http_kit::ClientError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::OrderError;
use crate::reply::{Reply, ReplyBatch};

/// The most orders sent to inventory-service in one batch by default.
/// Larger batches share one commit among more orders but make each of them
/// wait for the whole batch.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// The most orders one batch may ever hold, whatever the configuration says.
/// One order body is at most [`crate::MAX_BODY_BYTES`] (16 KiB), so a batch
/// of this many stays well below the 8 MiB that inventory-service and
/// data-service accept in one body.
pub const MAX_BATCH_LIMIT: usize = 256;

/// How long the collector waits for more orders after the first one of a
/// batch arrived, by default. Short enough to be lost in the latency of the
/// exchange itself, long enough to gather a burst.
pub const DEFAULT_MAX_WAIT_MS: u64 = 2;

/// The longest wait the configuration may ask for. A longer window would
/// add more latency to every order than batching can save.
pub const MAX_WAIT_LIMIT_MS: u64 = 100;

/// The most orders that may wait for a batch. When the queue is full a new
/// order is answered 503 with `Retry-After` at once instead of waiting
/// without bound.
pub const QUEUE_CAPACITY: usize = 4_096;

/// The most batches on their way to inventory-service at once. While all are
/// out, newly queued orders gather into the next batch, which keeps the
/// number of connections bounded and the batches large under load.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;

/// How the coalescer groups orders. `max_batch: 1` turns coalescing off:
/// every order is then sent on its own, without the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// At most this many orders per batch (1 to [`MAX_BATCH_LIMIT`]).
    pub max_batch: usize,
    /// How long to wait for more orders after the first of a batch arrived;
    /// 0 sends whatever is queued at once.
    pub max_wait_ms: u64,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        CoalesceConfig {
            max_batch: DEFAULT_MAX_BATCH,
            max_wait_ms: DEFAULT_MAX_WAIT_MS,
        }
    }
}

impl CoalesceConfig {
    /// Coalescing switched off: one exchange per order, as without a
    /// coalescer.
    pub const OFF: CoalesceConfig = CoalesceConfig {
        max_batch: 1,
        max_wait_ms: 0,
    };

    /// Whether orders are batched at all.
    pub fn is_enabled(&self) -> bool {
        self.max_batch > 1
    }

    /// The configuration with its limits applied, so that a mistaken setting
    /// degrades to the nearest sane one instead of failing at startup.
    fn clamped(self) -> CoalesceConfig {
        CoalesceConfig {
            max_batch: self.max_batch.clamp(1, MAX_BATCH_LIMIT),
            max_wait_ms: self.max_wait_ms.min(MAX_WAIT_LIMIT_MS),
        }
    }
}

/// One order waiting for its batch.
struct Pending {
    request: ReserveRequest,
    reply: oneshot::Sender<Result<Reply, OrderError>>,
}

/// The handle requests are submitted through; cheap to clone. The collector
/// task stops when the last handle is dropped.
#[derive(Clone)]
pub struct Coalescer {
    queue: mpsc::Sender<Pending>,
}

impl Coalescer {
    /// Starts the collector task. `send` makes one exchange with
    /// inventory-service for a whole batch.
    pub fn start<F, Fut>(config: CoalesceConfig, send: F) -> Coalescer
    where
        F: Fn(ReserveBatch) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ReplyBatch, ClientError>> + Send + 'static,
    {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(collect(config.clamped(), receiver, Arc::new(send)));
        Coalescer { queue }
    }

    /// Reserves one order as part of the next batch and returns its own
    /// result. A full queue is [`OrderError::Overloaded`] at once.
    pub async fn reserve(&self, request: ReserveRequest) -> Result<Reply, OrderError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Pending { request, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(OrderError::Overloaded),
            Err(TrySendError::Closed(_)) => return Err(OrderError::Stopped),
        }
        // The collector answers every order it took; a dropped reply means
        // the collector itself is gone.
        answer.await.unwrap_or(Err(OrderError::Stopped))
    }
}

/// The collector: forms batches from the queue and sends each one, until
/// every [`Coalescer`] handle is gone.
async fn collect<F, Fut>(config: CoalesceConfig, mut queue: mpsc::Receiver<Pending>, send: Arc<F>)
where
    F: Fn(ReserveBatch) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ReplyBatch, ClientError>> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    let max_wait = Duration::from_millis(config.max_wait_ms);
    loop {
        // Taking the permit before the first order means that, while every
        // batch slot is busy, orders pile up in the queue and leave together
        // as soon as a slot frees.
        let permit = Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let Some(first) = queue.recv().await else {
            break;
        };
        let mut batch = Vec::with_capacity(config.max_batch);
        batch.push(first);
        let deadline = Instant::now() + max_wait;
        while batch.len() < config.max_batch {
            // What is already queued joins without any wait; only then does
            // the window hold the batch back for more.
            if let Ok(pending) = queue.try_recv() {
                batch.push(pending);
                continue;
            }
            if max_wait.is_zero() {
                break;
            }
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(pending)) => batch.push(pending),
                Ok(None) | Err(_) => break,
            }
        }
        let send = Arc::clone(&send);
        tokio::spawn(async move {
            dispatch(batch, send.as_ref()).await;
            drop(permit);
        });
    }
}

/// Sends one batch and hands each caller its own answer.
async fn dispatch<F, Fut>(batch: Vec<Pending>, send: &F)
where
    F: Fn(ReserveBatch) -> Fut,
    Fut: Future<Output = Result<ReplyBatch, ClientError>>,
{
    // A caller that went away before its order left (the client hung up) is
    // dropped here: nothing was reserved for it, exactly as if the request
    // had never arrived, and no stock is held for nobody.
    let (requests, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .filter(|pending| !pending.reply.is_closed())
        .map(|pending| (pending.request, pending.reply))
        .unzip();
    if requests.is_empty() {
        return;
    }
    let sent = requests.len();
    // The exchange continues the first order's trace; every order still
    // carries its own trace context to its event.
    let span = tracing::debug_span!("reserve batch", orders = sent);
    stockroom_http_kit::follow(&span, requests[0].trace_parent.as_deref());
    match send(ReserveBatch { requests }).instrument(span).await {
        Ok(result) if result.results.len() == sent => {
            for (reply, result) in replies.into_iter().zip(result.results) {
                let _ = reply.send(Ok(result));
            }
        }
        Ok(result) => {
            let message = format!(
                "inventory-service returned {} results for {sent} requests",
                result.results.len()
            );
            for reply in replies {
                let _ = reply.send(Err(OrderError::Protocol(message.clone())));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(OrderError::Dependency(error.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

    use crate::reply::Outcome;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use stockroom_domain::{CustomerId, OrderItem, OrderItems, ProductName, Quantity};
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    use super::*;

    /// How many callers the concurrency test starts at once.
    const CALLERS: usize = 200;

    fn request(order_id: &str) -> ReserveRequest {
        ReserveRequest {
            order_id: order_id.to_owned(),
            customer_id: CustomerId::new("c1").expect("valid customer"),
            items: OrderItems::new(vec![OrderItem {
                product: ProductName::new("Laptop").expect("valid product"),
                quantity: Quantity::new(1).expect("valid quantity"),
            }])
            .expect("valid items"),
            idempotency_key: None,
            request_fingerprint: None,
            trace_parent: None,
        }
    }

    /// An answer that names the request it belongs to, so that a caller can
    /// tell its own answer from another's.
    fn echo(request: &ReserveRequest) -> Reply {
        Reply {
            replayed: false,
            outcome: Outcome::UnknownProduct {
                product_name: request.order_id.clone(),
            },
        }
    }

    fn answered_id(result: &Reply) -> &str {
        match &result.outcome {
            Outcome::UnknownProduct { product_name } => product_name,
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    /// The error of a connection nothing accepts: a port just freed.
    async fn refused_connection() -> reqwest::Error {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        drop(listener);
        reqwest::get(format!("http://{address}/"))
            .await
            .expect_err("nothing listens on a freed port")
    }

    /// Starts one caller task per id, in the order given.
    fn spawn_callers(
        coalescer: &Coalescer,
        ids: impl IntoIterator<Item = String>,
    ) -> Vec<JoinHandle<Result<Reply, OrderError>>> {
        ids.into_iter()
            .map(|id| {
                let coalescer = coalescer.clone();
                tokio::spawn(async move { coalescer.reserve(request(&id)).await })
            })
            .collect()
    }

    /// Many concurrent callers are sent in far fewer exchanges than callers,
    /// each batch within the limit, and every caller gets the answer to its
    /// own request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_batches_and_get_their_own_answers() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&sizes);
        let config = CoalesceConfig {
            max_batch: 64,
            max_wait_ms: 5,
        };
        let coalescer = Coalescer::start(config, move |batch: ReserveBatch| {
            recorded.lock().unwrap().push(batch.requests.len());
            async move {
                // A little latency, as a real exchange has, lets the next
                // batch gather while this one is out.
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(ReplyBatch {
                    results: batch.requests.iter().map(echo).collect(),
                })
            }
        });
        let ids: Vec<String> = (0..CALLERS).map(|index| format!("order-{index}")).collect();
        let callers = spawn_callers(&coalescer, ids.clone());
        for (id, caller) in ids.iter().zip(callers) {
            let result = caller.await.expect("caller task").expect("reserved");
            assert_eq!(answered_id(&result), id, "a caller got another's answer");
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(
            sizes.iter().sum::<usize>(),
            CALLERS,
            "every order sent once"
        );
        assert!(
            sizes.iter().all(|&size| size <= config.max_batch),
            "a batch exceeded the limit: {sizes:?}"
        );
        assert!(
            sizes.len() <= CALLERS / 4,
            "concurrent orders were not coalesced: {sizes:?}"
        );
    }

    /// Orders queued one after another inside the window leave as one batch
    /// in that order, and the n-th result goes to the n-th caller.
    #[tokio::test]
    async fn one_batch_keeps_the_callers_order() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&batches);
        let coalescer = Coalescer::start(
            CoalesceConfig {
                max_batch: 8,
                max_wait_ms: 50,
            },
            move |batch: ReserveBatch| {
                let ids: Vec<String> = batch
                    .requests
                    .iter()
                    .map(|request| request.order_id.clone())
                    .collect();
                recorded.lock().unwrap().push(ids);
                async move {
                    Ok(ReplyBatch {
                        results: batch.requests.iter().map(echo).collect(),
                    })
                }
            },
        );
        let ids: Vec<String> = (0..8).map(|index| format!("order-{index}")).collect();
        // On this single-threaded runtime the callers run in the order they
        // were spawned, so they queue in that order.
        let callers = spawn_callers(&coalescer, ids.clone());
        for (id, caller) in ids.iter().zip(callers) {
            let result = caller.await.expect("caller task").expect("reserved");
            assert_eq!(answered_id(&result), id);
        }
        assert_eq!(*batches.lock().unwrap(), vec![ids]);
    }

    /// The longest the queue test waits for its callers to be queued or
    /// taken: thousands of tasks on a loaded machine can take a while.
    const QUEUEING_WAIT_MS: u64 = 5_000;

    /// Lets the callers and the collector run until `done` holds or
    /// [`QUEUEING_WAIT_MS`] have passed; the caller asserts what it needs.
    async fn wait_until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_millis(QUEUEING_WAIT_MS);
        while !done() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// When every batch slot is busy and the queue is full, a new order is
    /// refused at once with 503 and `Retry-After`, and the orders already
    /// queued are still answered once the slots free up.
    #[tokio::test]
    async fn a_full_queue_is_a_503_with_retry_after() {
        let (open, gate) = watch::channel(false);
        let sent_batches = Arc::new(AtomicUsize::new(0));
        let sent = Arc::clone(&sent_batches);
        let coalescer = Coalescer::start(
            CoalesceConfig {
                max_batch: 2,
                max_wait_ms: 0,
            },
            move |batch: ReserveBatch| {
                let mut gate = gate.clone();
                sent.fetch_add(1, AtomicOrdering::SeqCst);
                async move {
                    // Every batch waits until the test opens the gate, so
                    // that the queue behind them fills up.
                    gate.wait_for(|open| *open)
                        .await
                        .expect("gate sender alive");
                    Ok(ReplyBatch {
                        results: batch.requests.iter().map(echo).collect(),
                    })
                }
            },
        );
        // First enough orders to occupy every batch slot with a batch of
        // two, then enough to fill the queue behind them.
        let in_slots = MAX_BATCHES_IN_FLIGHT * 2;
        let mut callers = spawn_callers(
            &coalescer,
            (0..in_slots).map(|index| format!("slot-{index}")),
        );
        // Let the callers and the collector run until every slot is busy.
        wait_until(|| sent_batches.load(AtomicOrdering::SeqCst) == MAX_BATCHES_IN_FLIGHT).await;
        assert_eq!(
            coalescer.queue.capacity(),
            QUEUE_CAPACITY,
            "the slots took every order"
        );
        callers.extend(spawn_callers(
            &coalescer,
            (0..QUEUE_CAPACITY).map(|index| format!("queued-{index}")),
        ));
        wait_until(|| coalescer.queue.capacity() == 0).await;
        assert_eq!(coalescer.queue.capacity(), 0, "the queue is full");
        let refused = tokio::time::timeout(
            Duration::from_millis(100),
            coalescer.reserve(request("one-too-many")),
        )
        .await
        .expect("a full queue answers at once")
        .expect_err("a full queue refuses");
        assert!(matches!(refused, OrderError::Overloaded), "got {refused:?}");
        let response = refused.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));

        open.send(true).expect("gate receivers alive");
        for caller in callers {
            caller
                .await
                .expect("caller task")
                .expect("every queued order is answered");
        }
    }

    /// A failed exchange fails every order of the batch with the error it
    /// would have had alone: unreachable is a 503, an error document passes
    /// through.
    #[tokio::test]
    async fn a_failed_batch_fails_each_caller_with_the_same_error() {
        let coalescer = Coalescer::start(
            CoalesceConfig {
                max_batch: 4,
                max_wait_ms: 50,
            },
            |batch: ReserveBatch| async move {
                if batch
                    .requests
                    .iter()
                    .any(|request| request.order_id == "down")
                {
                    Err(ClientError::Unreachable {
                        service: "inventory-service".into(),
                        source: Arc::new(refused_connection().await),
                    })
                } else {
                    Err(ClientError::Status {
                        service: "inventory-service".into(),
                        status: StatusCode::CONFLICT,
                        code: "conflict".into(),
                        message: "passed through".into(),
                    })
                }
            },
        );
        let callers = spawn_callers(&coalescer, ["down", "a", "b"].map(String::from));
        for caller in callers {
            let error = caller.await.expect("caller task").expect_err("failed");
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key("retry-after"));
        }
        let callers = spawn_callers(&coalescer, ["c", "d"].map(String::from));
        for caller in callers {
            let error = caller.await.expect("caller task").expect_err("failed");
            assert_eq!(error.into_response().status(), StatusCode::CONFLICT);
        }
    }

    /// A wrong number of results is a protocol error for every caller, never
    /// an answer handed to the wrong one.
    #[tokio::test]
    async fn a_short_result_list_is_a_protocol_error() {
        let coalescer = Coalescer::start(CoalesceConfig::default(), |_batch: ReserveBatch| async {
            Ok(ReplyBatch {
                results: Vec::new(),
            })
        });
        let error = coalescer
            .reserve(request("a"))
            .await
            .expect_err("no result");
        assert!(matches!(error, OrderError::Protocol(_)), "got {error:?}");
    }

    #[test]
    fn configuration_is_clamped_to_the_limits() {
        let clamped = CoalesceConfig {
            max_batch: 0,
            max_wait_ms: u64::MAX,
        }
        .clamped();
        assert_eq!(clamped.max_batch, 1);
        assert_eq!(clamped.max_wait_ms, MAX_WAIT_LIMIT_MS);
        assert_eq!(
            CoalesceConfig {
                max_batch: usize::MAX,
                max_wait_ms: 0
            }
            .clamped()
            .max_batch,
            MAX_BATCH_LIMIT
        );
        assert!(!CoalesceConfig::OFF.is_enabled());
        assert!(CoalesceConfig::default().is_enabled());
    }
}
