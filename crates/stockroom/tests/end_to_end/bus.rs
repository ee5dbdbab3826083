//! The bus conformance suite: the same tests against the embedded bus (events
//! leased from data-service's outbox) and RabbitMQ (the outbox relayed to
//! quorum queues). Delivery is at least once, a redelivered event has one
//! effect, poison is dead-lettered, and a cut connection is survived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stockroom_bus::{EmbeddedEventSource, EventSource};
use stockroom_bus_rabbitmq::{RabbitAdmin, RabbitEventSource, Topology};
use stockroom_contract::Delivery;
use stockroom_launcher::system::{self, BusChoice, RunningService};
use stockroom_storage::Storage;

use crate::harness::post;

/// The longest a test waits for an event to arrive.
const DELIVERY_TIMEOUT_MS: u64 = 10_000;

/// The lease of the embedded test consumers: short, so a "crashed" consumer's
/// events come back quickly.
const TEST_LEASE_MS: u64 = 150;

enum Kind {
    Embedded,
    Rabbit { url: String, topology: Topology },
}

struct BusUnderTest {
    kind: Kind,
    bus: BusChoice,
    storage: Arc<dyn Storage>,
    data: Option<RunningService>,
    address: std::net::SocketAddr,
    data_url: String,
    client: reqwest::Client,
    token: stockroom_http_kit::InternalToken,
    _directory: tempfile::TempDir,
}

/// The RabbitMQ URL for tests (see [`crate::harness::server_url`]).
pub fn rabbit_url() -> Option<String> {
    crate::harness::server_url("STOCKROOM_TEST_AMQP_URL")
}

impl BusUnderTest {
    async fn start(kind: Kind) -> BusUnderTest {
        let directory = tempfile::tempdir().unwrap();
        let storage = crate::harness::open_sqlite_storage(directory.path()).await;
        let bus = match &kind {
            Kind::Embedded => BusChoice::Embedded,
            Kind::Rabbit { url, topology } => BusChoice::RabbitMq {
                url: url.clone(),
                topology: topology.clone(),
            },
        };
        let (listener, data_url) = system::bind("data-service", [127, 0, 0, 1].into(), 0)
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        let token = stockroom_http_kit::InternalToken::generate();
        let data = system::data_service_with_bus(listener, storage.clone(), &bus, token.clone());
        BusUnderTest {
            kind,
            bus,
            storage,
            data: Some(data),
            address,
            data_url,
            client: crate::harness::authorized_client(&token),
            token,
            _directory: directory,
        }
    }

    fn source(&self, consumer: &'static str) -> Arc<dyn EventSource> {
        match &self.kind {
            Kind::Embedded => Arc::new(
                EmbeddedEventSource::new(&self.data_url, consumer, self.token.clone())
                    .with_lease_ms(TEST_LEASE_MS)
                    .with_wait_ms(50),
            ),
            Kind::Rabbit { url, topology } => Arc::new(
                RabbitEventSource::new(url, topology.clone(), consumer)
                    .with_dead_letters(&self.data_url, self.token.clone()),
            ),
        }
    }

    async fn reserve(&self, order_id: &str) {
        let (status, body) = post(
            &self.client,
            &format!("{}/reservations", self.data_url),
            json!({"requests": [{"orderId": order_id, "customerId": "c1",
                "items": [{"product": "Laptop", "quantity": 1}]}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn pay(&self, delivery: &Delivery) -> String {
        let (status, body) = post(
            &self.client,
            &format!("{}/payments", self.data_url),
            json!({"payments": [{"orderId": delivery.event.order_id, "eventId": delivery.event.event_id, "approved": true}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["results"][0]["outcome"].as_str().unwrap().to_owned()
    }

    /// Dead letters of payment-service, which storage keeps whatever the bus.
    async fn dead_letters(&self) -> u64 {
        self.storage
            .dead_letter_count(stockroom_domain::Consumer::Payment)
            .await
            .unwrap()
    }

    /// Cuts the consumer's connection: the broker's, or data-service's HTTP
    /// server restarted on the same address for the embedded bus.
    async fn cut(
        &mut self,
        source: &Arc<dyn EventSource>,
        rabbit_source: Option<&RabbitEventSource>,
    ) {
        let _ = source;
        match &self.kind {
            Kind::Rabbit { .. } => {
                rabbit_source
                    .expect("a rabbit source")
                    .cut_connection()
                    .await
            }
            Kind::Embedded => {
                self.data.take().unwrap().stop().await.unwrap();
                // The test's own client must not reuse a keep-alive
                // connection to the stopped server (it may not have seen the
                // close yet); the consumer under test gets no such help.
                self.client = crate::harness::authorized_client(&self.token);
                let listener = tokio::net::TcpListener::bind(self.address).await.unwrap();
                self.data = Some(system::data_service_with_bus(
                    listener,
                    self.storage.clone(),
                    &self.bus,
                    self.token.clone(),
                ));
            }
        }
    }

    async fn stop(mut self) {
        if let Some(data) = self.data.take() {
            data.stop().await.unwrap();
        }
        self.storage.close().await;
        if let Kind::Rabbit { url, topology } = &self.kind {
            RabbitAdmin::connect(url)
                .await
                .unwrap()
                .delete(topology)
                .await
                .unwrap();
        }
    }
}

/// Receives until `count` deliveries arrived, tolerating errors (a cut
/// connection) until the deadline.
async fn receive(source: &Arc<dyn EventSource>, count: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_millis(DELIVERY_TIMEOUT_MS);
    let mut received = Vec::new();
    while received.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} events arrived",
            received.len()
        );
        if let Ok(batch) = source.receive(100).await {
            received.extend(batch);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    received
}

/// Asserts that nothing more arrives for a while.
async fn nothing_more(source: &Arc<dyn EventSource>) {
    let quiet_until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < quiet_until {
        let batch = source.receive(100).await.unwrap();
        assert!(batch.is_empty(), "unexpected delivery: {batch:?}");
    }
}

const ORDER_1: &str = "01a20055-0000-7000-8000-000000000001";
const ORDER_2: &str = "01a20055-0000-7000-8000-000000000002";

async fn at_least_once_after_a_consumer_crash(mut bus: BusUnderTest) {
    bus.reserve(ORDER_1).await;
    let rabbit = rabbit_source(&bus, "payment");
    let crashed: Arc<dyn EventSource> = match &rabbit {
        Some(source) => source.clone(),
        None => bus.source("payment"),
    };
    let first = receive(&crashed, 1).await;
    assert_eq!(first[0].event.order_id, ORDER_1);
    // The consumer dies before acknowledging.
    match &rabbit {
        Some(source) => bus.cut(&crashed, Some(source)).await,
        None => drop(crashed),
    }
    let survivor = bus.source("payment");
    let again = receive(&survivor, 1).await;
    assert_eq!(again[0].event.event_id, first[0].event.event_id);
    assert!(
        again[0].attempt >= 2,
        "a redelivery says so: {:?}",
        again[0]
    );
    survivor.acknowledge(&[again[0].receipt()]).await.unwrap();
    nothing_more(&survivor).await;
    bus.stop().await;
}

async fn a_redelivered_event_has_one_effect(mut bus: BusUnderTest) {
    bus.reserve(ORDER_1).await;
    let rabbit = rabbit_source(&bus, "payment");
    let payments: Arc<dyn EventSource> = match &rabbit {
        Some(source) => source.clone(),
        None => bus.source("payment"),
    };
    let first = receive(&payments, 1).await;
    assert_eq!(bus.pay(&first[0]).await, "applied");
    // Crash after the effect committed, before the acknowledgement.
    if let Some(source) = &rabbit {
        bus.cut(&payments, Some(source)).await;
    }
    let again = receive(&payments, 1).await;
    assert_eq!(again[0].event.event_id, first[0].event.event_id);
    assert_eq!(bus.pay(&again[0]).await, "duplicate");
    payments.acknowledge(&[again[0].receipt()]).await.unwrap();

    let inventory = bus.source("inventory");
    let settled = receive(&inventory, 1).await;
    assert_eq!(settled[0].event.kind.as_str(), "PaymentSucceeded");
    inventory
        .acknowledge(&[settled[0].receipt()])
        .await
        .unwrap();
    nothing_more(&inventory).await;
    bus.stop().await;
}

async fn poison_is_dead_lettered(bus: BusUnderTest) {
    bus.reserve(ORDER_1).await;
    let source = bus.source("payment");
    let batch = receive(&source, 1).await;
    // The handler refuses it as poison: it goes to the dead letters at once.
    source.reject(&batch).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(DELIVERY_TIMEOUT_MS);
    while bus.dead_letters().await == 0 {
        assert!(
            Instant::now() < deadline,
            "a rejected event was never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bus.dead_letters().await, 1);
    nothing_more(&source).await;
    bus.stop().await;
}

/// A dead letter redriven is delivered again, and still has one effect: the
/// handler applied it before refusing it, and applying it again changes
/// nothing.
async fn a_redriven_event_has_one_effect(bus: BusUnderTest) {
    bus.reserve(ORDER_1).await;
    let source = bus.source("payment");
    let first = receive(&source, 1).await;
    assert_eq!(bus.pay(&first[0]).await, "applied");
    source.reject(&first).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(DELIVERY_TIMEOUT_MS);
    while bus.dead_letters().await == 0 {
        assert!(
            Instant::now() < deadline,
            "the refused event was never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = crate::harness::get(
        &bus.client,
        &format!("{}/events/payment/dead-letters", bus.data_url),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let letters = body["deadLetters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0]["event"]["eventId"],
        first[0].event.event_id.as_str()
    );
    let (status, body) = post(
        &bus.client,
        &format!("{}/events/payment/redrive", bus.data_url),
        json!({"deliveryIds": [letters[0]["deliveryId"]]}),
    )
    .await;
    assert_eq!(
        (status, body["redriven"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    assert_eq!(bus.dead_letters().await, 0);
    let again = receive(&source, 1).await;
    assert_eq!(again[0].event.event_id, first[0].event.event_id);
    assert_eq!(bus.pay(&again[0]).await, "duplicate", "one effect only");
    source.acknowledge(&[again[0].receipt()]).await.unwrap();
    nothing_more(&source).await;
    bus.stop().await;
}

/// An event given back again and again (a dependency down for a long time)
/// is delivered again every time and never dead-lettered.
async fn released_events_are_never_dead_lettered(bus: BusUnderTest) {
    bus.reserve(ORDER_1).await;
    let source = bus.source("payment");
    for round in 0..15 {
        let batch = receive(&source, 1).await;
        assert_eq!(batch[0].event.order_id, ORDER_1, "round {round}");
        let receipts: Vec<_> = batch.iter().map(Delivery::receipt).collect();
        source.release(&receipts).await.unwrap();
    }
    assert_eq!(bus.dead_letters().await, 0);
    let last = receive(&source, 1).await;
    source.acknowledge(&[last[0].receipt()]).await.unwrap();
    nothing_more(&source).await;
    bus.stop().await;
}

/// A handler that fails (its dependency is down) gets its batch again, and
/// the queue keeps moving behind it: every event is handled, none is
/// dead-lettered, and well before a broker's consumer timeout.
async fn a_failed_handler_batch_is_redelivered_and_the_queue_moves(bus: BusUnderTest) {
    const ORDERS: usize = 6;
    const FAILURES: usize = 4;
    let orders: Vec<String> = (1..=ORDERS)
        .map(|n| format!("01a20055-0000-7000-8000-{n:012}"))
        .collect();
    for order in &orders {
        bus.reserve(order).await;
    }
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handled = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(stockroom_bus::consume(
        "payment",
        bus.source("payment"),
        shutdown.clone(),
        stockroom_http_kit::Readiness::ready("payment-service"),
        {
            let calls = Arc::clone(&calls);
            let handled = Arc::clone(&handled);
            move |batch: Vec<Delivery>| {
                let calls = Arc::clone(&calls);
                let handled = Arc::clone(&handled);
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < FAILURES {
                        return Err(stockroom_bus::HandlerError::Dependency {
                            action: "charge the orders",
                            source: stockroom_http_kit::ClientError::Status {
                                service: "the provider".to_owned(),
                                status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
                                code: "unavailable".to_owned(),
                                message: "the provider is down".to_owned(),
                            },
                        });
                    }
                    let mut handled = handled.lock().unwrap();
                    handled.extend(batch.iter().map(|delivery| delivery.event.order_id.clone()));
                    Ok(stockroom_bus::Handled::default())
                }
            }
        },
    ));
    // The consumer backs off between failures, doubling its pause; four
    // failures cost it well under the deadline.
    let deadline = Instant::now() + Duration::from_millis(DELIVERY_TIMEOUT_MS * 3);
    while handled.lock().unwrap().len() < ORDERS {
        assert!(
            Instant::now() < deadline,
            "only {:?} of {ORDERS} orders were handled after {} failed batches",
            handled.lock().unwrap(),
            FAILURES
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) > FAILURES);
    shutdown.cancel();
    consumer.await.unwrap();
    assert_eq!(bus.dead_letters().await, 0, "a failure is not poison");
    let source = bus.source("payment");
    nothing_more(&source).await;
    bus.stop().await;
}

async fn a_cut_connection_is_survived(mut bus: BusUnderTest) {
    let rabbit = rabbit_source(&bus, "payment");
    let source: Arc<dyn EventSource> = match &rabbit {
        Some(source) => source.clone(),
        None => bus.source("payment"),
    };
    bus.reserve(ORDER_1).await;
    let first = receive(&source, 1).await;
    source.acknowledge(&[first[0].receipt()]).await.unwrap();
    bus.cut(&source, rabbit.as_deref()).await;
    bus.reserve(ORDER_2).await;
    let after = receive(&source, 1).await;
    assert_eq!(after[0].event.order_id, ORDER_2);
    source.acknowledge(&[after[0].receipt()]).await.unwrap();
    nothing_more(&source).await;
    bus.stop().await;
}

fn rabbit_source(bus: &BusUnderTest, consumer: &'static str) -> Option<Arc<RabbitEventSource>> {
    match &bus.kind {
        Kind::Rabbit { url, topology } => Some(Arc::new(RabbitEventSource::new(
            url,
            topology.clone(),
            consumer,
        ))),
        Kind::Embedded => None,
    }
}

fn unique_topology(test: &str) -> Topology {
    Topology::with_prefix(&format!("stockroom-test-{test}-{}", uuid_like()))
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

macro_rules! bus_conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::BusUnderTest::start(super::Kind::Embedded).await).await;
                }
            )*
        }
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(url) = super::rabbit_url() else { return };
                    let _servers = crate::harness::using_shared_servers().await;
                    let topology = super::unique_topology(stringify!($name));
                    super::$name(super::BusUnderTest::start(super::Kind::Rabbit { url, topology }).await).await;
                }
            )*
        }
    };
}

bus_conformance!(
    at_least_once_after_a_consumer_crash,
    a_redelivered_event_has_one_effect,
    poison_is_dead_lettered,
    released_events_are_never_dead_lettered,
    a_redriven_event_has_one_effect,
    a_cut_connection_is_survived,
    a_failed_handler_batch_is_redelivered_and_the_queue_moves,
);
