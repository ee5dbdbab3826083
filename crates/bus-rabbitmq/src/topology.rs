//! The broker's exchanges and queues: their names ([`Topology`]), declaring
//! them (idempotently, by every publisher and consumer), opening a
//! connection to the broker that holds them, and [`RabbitAdmin`], the
//! broker-side view of them for tests and operators.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use stockroom_bus::BusError;
use stockroom_domain::{CONSUMER_INVENTORY, CONSUMER_PAYMENT, EventKind};

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

/// How long connecting may take before it counts as a failure.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The event kinds a consumer group's queue is bound to.
fn kinds_of(consumer: &str) -> &'static [EventKind] {
    match consumer {
        CONSUMER_PAYMENT => &[EventKind::OrderReserved],
        CONSUMER_INVENTORY => &[EventKind::PaymentSucceeded, EventKind::PaymentFailed],
        _ => &[],
    }
}

/// Opens a connection named `name` (as the broker's management lists it),
/// giving up after [`CONNECT_TIMEOUT_MS`].
pub(crate) async fn connect(url: &str, name: &str) -> Result<Connection, BusError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        Connection::connect(url, properties),
    )
    .await
    .map_err(BusError::broker("timed out connecting to rabbitmq"))?
    .map_err(BusError::broker("cannot connect to rabbitmq"))
}

/// Declares the exchanges and every consumer queue with its bindings.
pub(crate) async fn declare_topology(
    channel: &Channel,
    topology: &Topology,
) -> Result<(), BusError> {
    declare_exchanges(channel, topology).await?;
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let dead_letter_exchange = topology.dead_letter_exchange();
    let dead_letter_queue = topology.dead_letter_queue();
    declare_queue(channel, &dead_letter_queue, quorum.clone()).await?;
    bind(channel, &dead_letter_queue, &dead_letter_exchange, "").await?;
    let mut arguments = quorum;
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_letter_exchange.as_str().into()),
    );
    let exchange = topology.exchange();
    for consumer in [CONSUMER_PAYMENT, CONSUMER_INVENTORY] {
        let queue = topology.queue(consumer);
        declare_queue(channel, &queue, arguments.clone()).await?;
        for kind in kinds_of(consumer) {
            bind(channel, &queue, &exchange, kind.as_str()).await?;
        }
    }
    Ok(())
}

/// Declares the events exchange (direct, by kind) and the dead-letter
/// exchange (fanout), both durable.
async fn declare_exchanges(channel: &Channel, topology: &Topology) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (exchange, kind) in [
        (topology.exchange(), ExchangeKind::Direct),
        (topology.dead_letter_exchange(), ExchangeKind::Fanout),
    ] {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                kind,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(BusError::broker("cannot declare an exchange"))?;
    }
    Ok(())
}

async fn declare_queue(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
) -> Result<(), BusError> {
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .map_err(BusError::broker("cannot declare a queue"))?;
    Ok(())
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), BusError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(BusError::broker("cannot bind a queue to an exchange"))
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
        let channel = connection
            .create_channel()
            .await
            .map_err(BusError::broker("cannot open a channel"))?;
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
            .map_err(BusError::broker("cannot read a queue's depth"))?;
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
                .map_err(BusError::broker("cannot delete a queue"))?;
        }
        for exchange in [topology.exchange(), topology.dead_letter_exchange()] {
            self.channel
                .exchange_delete(
                    exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await
                .map_err(BusError::broker("cannot delete an exchange"))?;
        }
        Ok(())
    }
}
