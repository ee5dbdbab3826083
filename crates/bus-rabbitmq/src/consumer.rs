//! The manual-ack consumer of one consumer group's queue: a bounded
//! prefetch, a batch taken from whatever has arrived, acknowledgement only
//! after the effect committed, batches given back at once (nack with
//! requeue), poison kept as dead letters in data-service (or, without it,
//! nacked to the broker's dead-letter queue), and a connection reopened on
//! the next call after it broke.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use stockroom_bus::{BusError, EventSource};
use stockroom_contract::{BuryRequest, Delivery, Event, Receipt};
use stockroom_http_kit::{ServiceClient, TRACEPARENT_HEADER};
use tokio::sync::Mutex;

use crate::topology::{Topology, connect, declare_topology};

/// Unacknowledged messages the broker sends one consumer ahead.
pub const PREFETCH_COUNT: u16 = 512;

/// How long one receive waits for the first message.
pub const RECEIVE_WAIT_MS: u64 = 1_000;

/// Delivery ids carry the connection generation in their high bits, so an ack
/// for a delivery of a connection that has since been replaced is recognised
/// and dropped (the broker already requeued it).
const GENERATION_SHIFT: u32 = 40;

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
        let channel = connection
            .create_channel()
            .await
            .map_err(BusError::broker("cannot open a channel"))?;
        declare_topology(&channel, &self.topology).await?;
        channel
            .basic_qos(PREFETCH_COUNT, BasicQosOptions::default())
            .await
            .map_err(BusError::broker("cannot set the prefetch count"))?;
        let consumer = channel
            .basic_consume(
                self.topology.queue(self.consumer).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BusError::broker("cannot start consuming the queue"))?;
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

    /// The delivery a message of connection `generation` is, or why it is
    /// no event at all.
    fn to_delivery(
        generation: u64,
        message: lapin::message::Delivery,
    ) -> Result<Delivery, serde_json::Error> {
        let mut event: Event = serde_json::from_slice(&message.data)?;
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

    /// Dead-letters a message no consumer can read: left in the queue, it
    /// would block it forever.
    async fn refuse_unreadable(
        &self,
        session: &ConsumeSession,
        tag: u64,
        error: serde_json::Error,
    ) {
        tracing::error!(
            consumer = self.consumer,
            error = &error as &dyn std::error::Error,
            "dead-lettering an unreadable message"
        );
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
                .map_err(BusError::broker("cannot give a message back"))?;
        }
        Ok(())
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
                        Err(error) => self.refuse_unreadable(session, tag, error).await,
                    }
                }
                Some(Err(error)) => {
                    *guard = None;
                    if deliveries.is_empty() {
                        return Err(BusError::broker("cannot receive from the queue")(error));
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
                .map_err(BusError::broker("cannot acknowledge a message"))?;
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
                Err(BusError::DeadLetters(error))
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use stockroom_domain::EventKind;

    use super::*;
    use crate::publisher::trace_headers;

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
