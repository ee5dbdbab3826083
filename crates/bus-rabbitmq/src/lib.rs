//! Stockroom's event bus on RabbitMQ.
//!
//! Topology (declared by every publisher and consumer, idempotently; names in
//! [`Topology`]):
//! - a durable direct exchange `stockroom.events`, routing by event kind;
//! - one durable quorum queue per consumer group (`stockroom.payment`,
//!   `stockroom.inventory`), bound to the kinds that consumer handles, whose
//!   rejected messages go to the dead-letter exchange and queue
//!   `stockroom.dead-letter`. The queues have no delivery limit: a message
//!   returned because a connection broke or a dependency was down is
//!   delivered again however often that happens; only a consumer's explicit
//!   rejection (poison) dead-letters it.
//!
//! Publishing ([`RabbitPublisher`]) uses persistent messages and publisher
//! confirms: `publish` returns only after the broker has taken every message.
//! Consuming ([`RabbitEventSource`]) uses manual acks with a bounded prefetch;
//! a message is acknowledged only after its effect committed, a batch that
//! could not be handled is given back at once (nack with requeue), and poison
//! is rejected (nack without requeue, to the dead letters). A lost connection
//! is reopened on the next call, with the caller's backoff; the broker hands
//! whatever was unacknowledged on the old connection to another consumer.
//!
//! Queues declared by an earlier Stockroom with a delivery limit cannot be
//! redeclared without one (the broker refuses changed arguments): drain and
//! delete them when upgrading (docs/deployment.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use stockroom_bus::{BusError, EventPublisher, EventSource};
use stockroom_contract::{BuryRequest, Delivery, Event, Receipt};
use stockroom_domain::{CONSUMER_INVENTORY, CONSUMER_PAYMENT, EventKind};
use stockroom_http_kit::{ServiceClient, TRACEPARENT_HEADER};
use tokio::sync::Mutex;

/// The names of the exchanges and queues. Every name starts with a prefix,
/// `stockroom` unless told otherwise, so that tests (or two systems) can share
/// one broker without sharing queues.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::with_prefix(DEFAULT_PREFIX)
    }
}

impl Topology {
    pub fn with_prefix(prefix: &str) -> Topology {
        Topology {
            prefix: prefix.to_owned(),
        }
    }

    /// The exchange every event is published to, routed by its kind.
    pub fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead-letter", self.prefix)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.prefix)
    }

    /// The queue of one consumer group.
    pub fn queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.prefix)
    }

    /// Every queue, for tests that clean up after themselves.
    pub fn queues(&self) -> Vec<String> {
        vec![
            self.queue(CONSUMER_PAYMENT),
            self.queue(CONSUMER_INVENTORY),
            self.dead_letter_queue(),
        ]
    }
}

/// The prefix of every exchange and queue name in production.
pub const DEFAULT_PREFIX: &str = "stockroom";

/// Unacknowledged messages the broker sends one consumer ahead.
pub const PREFETCH_COUNT: u16 = 512;

/// How long one receive waits for the first message.
pub const RECEIVE_WAIT_MS: u64 = 1_000;

/// How long connecting may take before it counts as a failure.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Delivery ids carry the connection generation in their high bits, so an ack
/// for a delivery of a connection that has since been replaced is recognised
/// and dropped (the broker already requeued it).
const GENERATION_SHIFT: u32 = 40;

fn kinds_of(consumer: &str) -> &'static [EventKind] {
    match consumer {
        CONSUMER_PAYMENT => &[EventKind::OrderReserved],
        CONSUMER_INVENTORY => &[EventKind::PaymentSucceeded, EventKind::PaymentFailed],
        _ => &[],
    }
}

/// The headers that carry an event's trace context as the W3C
/// `traceparent`, as any AMQP tracing client expects it.
fn trace_headers(event: &Event) -> Option<FieldTable> {
    let traceparent = event.trace_parent.as_deref()?;
    let mut headers = FieldTable::default();
    headers.insert(
        TRACEPARENT_HEADER.into(),
        AMQPValue::LongString(traceparent.into()),
    );
    Some(headers)
}

/// The `traceparent` header of a message, when it has a readable one.
fn trace_header(properties: &BasicProperties) -> Option<String> {
    match properties
        .headers()
        .as_ref()?
        .inner()
        .get(TRACEPARENT_HEADER)?
    {
        AMQPValue::LongString(value) => String::from_utf8(value.as_bytes().to_vec()).ok(),
        _ => None,
    }
}

fn unavailable(error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(error.to_string())
}

async fn connect(url: &str, name: &str) -> Result<Connection, BusError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        Connection::connect(url, properties),
    )
    .await
    .map_err(|_| unavailable("connecting to rabbitmq timed out"))?
    .map_err(unavailable)
}

/// Declares the exchanges and every consumer queue with its bindings.
async fn declare_topology(channel: &Channel, topology: &Topology) -> Result<(), BusError> {
    let exchange = topology.exchange();
    let dead_letter_exchange = topology.dead_letter_exchange();
    let dead_letter_queue = topology.dead_letter_queue();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    channel
        .exchange_declare(
            dead_letter_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            dead_letter_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum.clone(),
        )
        .await
        .map_err(unavailable)?;
    channel
        .queue_bind(
            dead_letter_queue.as_str().into(),
            dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    let mut arguments = quorum;
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_letter_exchange.as_str().into()),
    );
    for consumer in [CONSUMER_PAYMENT, CONSUMER_INVENTORY] {
        let queue = topology.queue(consumer);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments.clone(),
            )
            .await
            .map_err(unavailable)?;
        for kind in kinds_of(consumer) {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    kind.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

struct PublishSession {
    _connection: Connection,
    channel: Channel,
}

/// Publishes events with confirms (used by the outbox relay).
pub struct RabbitPublisher {
    url: String,
    topology: Topology,
    session: Mutex<Option<PublishSession>>,
}

impl RabbitPublisher {
    pub fn new(url: &str, topology: Topology) -> RabbitPublisher {
        RabbitPublisher {
            url: url.to_owned(),
            topology,
            session: Mutex::new(None),
        }
    }

    async fn open(&self) -> Result<PublishSession, BusError> {
        let connection = connect(&self.url, "stockroom-relay").await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        declare_topology(&channel, &self.topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        Ok(PublishSession {
            _connection: connection,
            channel,
        })
    }

    async fn publish_on(
        channel: &Channel,
        exchange: &str,
        events: &[Event],
    ) -> Result<(), BusError> {
        let mut confirms = Vec::with_capacity(events.len());
        for event in events {
            let payload = serde_json::to_vec(event).map_err(unavailable)?;
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(event.event_id.as_str().into());
            if let Some(headers) = trace_headers(event) {
                properties = properties.with_headers(headers);
            }
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    event.kind.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    properties,
                )
                .await
                .map_err(unavailable)?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await.map_err(unavailable)? {
                Confirmation::Ack(_) => {}
                other => return Err(unavailable(format!("broker did not confirm: {other:?}"))),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventPublisher for RabbitPublisher {
    async fn publish(&self, events: &[Event]) -> Result<(), BusError> {
        let mut session = self.session.lock().await;
        if session.is_none() {
            *session = Some(self.open().await?);
        }
        let channel = &session.as_ref().expect("opened above").channel;
        let result = Self::publish_on(channel, &self.topology.exchange(), events).await;
        if result.is_err() {
            // Reconnect on the next call; the events stay leased in the
            // outbox and are published again.
            *session = None;
        }
        result
    }
}

struct ConsumeSession {
    connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    generation: u64,
}

impl ConsumeSession {
    /// The delivery tags of those ids that belong to this connection. Ids of
    /// an earlier connection are skipped: the broker already requeued them
    /// when that connection closed, and their tags mean nothing here.
    fn live_tags<'a>(&'a self, deliveries: &'a [Receipt]) -> impl Iterator<Item = u64> + 'a {
        deliveries.iter().filter_map(move |receipt| {
            let (generation, tag) = RabbitEventSource::split(receipt.delivery_id);
            (generation == self.generation).then_some(tag)
        })
    }
}

/// Consumes one consumer group's queue with manual acks.
pub struct RabbitEventSource {
    url: String,
    topology: Topology,
    consumer: &'static str,
    session: Mutex<Option<ConsumeSession>>,
    generations: AtomicU64,
    /// data-service, where refused events are kept as dead letters.
    dead_letters: Option<ServiceClient>,
}

impl RabbitEventSource {
    pub fn new(url: &str, topology: Topology, consumer: &'static str) -> RabbitEventSource {
        RabbitEventSource {
            url: url.to_owned(),
            topology,
            consumer,
            session: Mutex::new(None),
            generations: AtomicU64::new(0),
            dead_letters: None,
        }
    }

    /// Keeps refused events as dead letters in data-service's storage, which
    /// lists and redrives them whatever the bus; without it they go to the
    /// broker's dead-letter queue.
    /// `token` is data-service's internal token.
    pub fn with_dead_letters(
        mut self,
        data_url: &str,
        token: stockroom_http_kit::InternalToken,
    ) -> RabbitEventSource {
        self.dead_letters = Some(ServiceClient::new("data-service", data_url).with_token(token));
        self
    }

    async fn open(&self) -> Result<ConsumeSession, BusError> {
        let connection = connect(&self.url, &format!("stockroom-{}", self.consumer)).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        declare_topology(&channel, &self.topology).await?;
        channel
            .basic_qos(PREFETCH_COUNT, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let consumer = channel
            .basic_consume(
                self.topology.queue(self.consumer).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(
            consumer = self.consumer,
            generation,
            "connected to rabbitmq"
        );
        Ok(ConsumeSession {
            connection,
            channel,
            consumer,
            generation,
        })
    }

    /// Closes the current connection, as a broker restart or a network cut
    /// would. The next call reconnects. For fault-injection tests.
    pub async fn cut_connection(&self) {
        if let Some(session) = self.session.lock().await.as_ref() {
            let _ = session.connection.close(320, "cut by a test".into()).await;
        }
    }

    fn to_delivery(
        generation: u64,
        message: lapin::message::Delivery,
    ) -> Result<Delivery, BusError> {
        let mut event: Event = serde_json::from_slice(&message.data)
            .map_err(|error| unavailable(format!("unreadable event on the bus: {error}")))?;
        if let Some(traceparent) = trace_header(&message.properties) {
            event.trace_parent = Some(traceparent);
        }
        let earlier_deliveries = message
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-delivery-count").cloned())
            .and_then(|value| match value {
                AMQPValue::LongLongInt(count) => u32::try_from(count).ok(),
                AMQPValue::LongInt(count) => u32::try_from(count).ok(),
                AMQPValue::LongUInt(count) => Some(count),
                _ => None,
            })
            .unwrap_or(u32::from(message.redelivered));
        Ok(Delivery {
            delivery_id: ((generation << GENERATION_SHIFT) | message.delivery_tag) as i64,
            // The broker's delivery tag already belongs to this connection
            // alone; the token only names the connection, for logs.
            lease_token: format!("connection-{generation}"),
            attempt: earlier_deliveries + 1,
            event,
        })
    }

    fn split(delivery_id: i64) -> (u64, u64) {
        let id = delivery_id as u64;
        (id >> GENERATION_SHIFT, id & ((1 << GENERATION_SHIFT) - 1))
    }
}

#[async_trait]
impl EventSource for RabbitEventSource {
    async fn receive(&self, max_events: u32) -> Result<Vec<Delivery>, BusError> {
        let mut guard = self.session.lock().await;
        if guard
            .as_ref()
            .is_none_or(|session| !session.connection.status().connected())
        {
            *guard = None;
            *guard = Some(self.open().await?);
        }
        let session = guard.as_mut().expect("opened above");
        let mut deliveries = Vec::new();
        let first = tokio::time::timeout(
            Duration::from_millis(RECEIVE_WAIT_MS),
            session.consumer.next(),
        )
        .await;
        let mut next = match first {
            Err(_) => return Ok(deliveries),
            Ok(next) => next,
        };
        loop {
            match next {
                Some(Ok(message)) => {
                    let tag = message.delivery_tag;
                    match Self::to_delivery(session.generation, message) {
                        Ok(delivery) => deliveries.push(delivery),
                        Err(error) => {
                            // A message no consumer can read would block the
                            // queue forever: send it to the dead letters.
                            tracing::error!(consumer = self.consumer, %error, "dead-lettering an unreadable message");
                            let _ = session
                                .channel
                                .basic_nack(
                                    tag,
                                    BasicNackOptions {
                                        multiple: false,
                                        requeue: false,
                                    },
                                )
                                .await;
                        }
                    }
                }
                Some(Err(error)) => {
                    *guard = None;
                    if deliveries.is_empty() {
                        return Err(unavailable(error));
                    }
                    return Ok(deliveries);
                }
                None => {
                    *guard = None;
                    return Ok(deliveries);
                }
            }
            if deliveries.len() >= max_events as usize {
                return Ok(deliveries);
            }
            // Take what has already arrived, without waiting for more.
            match futures_lite::future::poll_once(session.consumer.next()).await {
                Some(more) => next = more,
                None => return Ok(deliveries),
            }
        }
    }

    async fn acknowledge(&self, deliveries: &[Receipt]) -> Result<(), BusError> {
        let guard = self.session.lock().await;
        let Some(session) = guard.as_ref() else {
            return Ok(());
        };
        for tag in session.live_tags(deliveries) {
            session
                .channel
                .basic_ack(tag, BasicAckOptions::default())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn release(&self, deliveries: &[Receipt]) -> Result<(), BusError> {
        self.nack(deliveries, true).await
    }

    async fn reject(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let receipts: Vec<Receipt> = deliveries.iter().map(Delivery::receipt).collect();
        let Some(dead_letters) = &self.dead_letters else {
            // No storage to keep them in: the broker's dead-letter queue.
            return self.nack(&receipts, false).await;
        };
        let events: Vec<Event> = deliveries
            .iter()
            .map(|delivery| delivery.event.clone())
            .collect();
        match dead_letters
            .post::<(), _>(
                &format!("/events/{}/dead-letters", self.consumer),
                &BuryRequest { events },
            )
            .await
        {
            // Kept in storage: the broker may forget them.
            Ok(()) => self.acknowledge(&receipts).await,
            Err(error) => {
                self.nack(&receipts, true).await?;
                Err(BusError::Unavailable(format!(
                    "cannot keep dead letters: {error}"
                )))
            }
        }
    }
}

impl RabbitEventSource {
    /// Gives messages back: to the queue (`requeue`) or to the dead letters.
    async fn nack(&self, deliveries: &[Receipt], requeue: bool) -> Result<(), BusError> {
        let guard = self.session.lock().await;
        let Some(session) = guard.as_ref() else {
            return Ok(());
        };
        let options = BasicNackOptions {
            multiple: false,
            requeue,
        };
        for tag in session.live_tags(deliveries) {
            session
                .channel
                .basic_nack(tag, options)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// Broker-side facts for tests and operators: queue depths, and deleting a
/// topology that is no longer used.
pub struct RabbitAdmin {
    _connection: Connection,
    channel: Channel,
}

impl RabbitAdmin {
    pub async fn connect(url: &str) -> Result<RabbitAdmin, BusError> {
        let connection = connect(url, "stockroom-admin").await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        Ok(RabbitAdmin {
            _connection: connection,
            channel,
        })
    }

    /// Declares every exchange and queue of `topology` (idempotent).
    pub async fn declare(&self, topology: &Topology) -> Result<(), BusError> {
        declare_topology(&self.channel, topology).await
    }

    /// Messages ready in a queue (not counting those delivered and unacked).
    pub async fn ready_messages(&self, queue: &str) -> Result<u32, BusError> {
        let declared = self
            .channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(declared.message_count())
    }

    pub async fn delete(&self, topology: &Topology) -> Result<(), BusError> {
        for queue in topology.queues() {
            self.channel
                .queue_delete(
                    queue.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        for exchange in [topology.exchange(), topology.dead_letter_exchange()] {
            self.channel
                .exchange_delete(
                    exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_context_travels_in_the_message_headers() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut event = Event {
            event_id: "OrderReserved:a:1".into(),
            kind: EventKind::OrderReserved,
            order_id: "a".into(),
            order_version: 1,
            occurred_at: "2026-01-01T00:00:00.000Z".into(),
            total_units: 1,
            trace_parent: Some(traceparent.into()),
        };
        let headers = trace_headers(&event).expect("a traced event has headers");
        let properties = BasicProperties::default().with_headers(headers);
        assert_eq!(trace_header(&properties).as_deref(), Some(traceparent));

        event.trace_parent = None;
        assert!(trace_headers(&event).is_none());
        assert_eq!(trace_header(&BasicProperties::default()), None);
    }
}
