//! The confirming publisher the outbox relay hands events to: persistent
//! messages, routed by event kind, each carrying its trace context, and
//! `publish` returning only once the broker confirmed every one.

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use stockroom_bus::{BusError, EventPublisher};
use stockroom_contract::Event;
use stockroom_http_kit::TRACEPARENT_HEADER;
use tokio::sync::Mutex;

use crate::topology::{Topology, connect, declare_topology};

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
        let channel = connection
            .create_channel()
            .await
            .map_err(BusError::broker("cannot open a channel"))?;
        declare_topology(&channel, &self.topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(BusError::broker("cannot turn on publisher confirms"))?;
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
            let payload = serde_json::to_vec(event).map_err(|source| BusError::Encode {
                event_id: event.event_id.clone(),
                source,
            })?;
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
                .map_err(BusError::broker("cannot publish an event"))?;
            confirms.push(confirm);
        }
        for (confirm, event) in confirms.into_iter().zip(events) {
            match confirm
                .await
                .map_err(BusError::broker("cannot wait for the broker's confirm"))?
            {
                Confirmation::Ack(_) => {}
                other => {
                    return Err(BusError::NotConfirmed {
                        event_id: event.event_id.clone(),
                        answer: format!("{other:?}"),
                    });
                }
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

/// The headers that carry an event's trace context as the W3C
/// `traceparent`, as any AMQP tracing client expects it.
pub(crate) fn trace_headers(event: &Event) -> Option<FieldTable> {
    let traceparent = event.trace_parent.as_deref()?;
    let mut headers = FieldTable::default();
    headers.insert(
        TRACEPARENT_HEADER.into(),
        AMQPValue::LongString(traceparent.into()),
    );
    Some(headers)
}
