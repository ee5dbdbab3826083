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
//!
//! The exchanges and queues, and connecting to the broker, are in
//! `topology`; publishing in `publisher`; consuming in `consumer`.

mod consumer;
mod publisher;
mod topology;

pub use consumer::{PREFETCH_COUNT, RECEIVE_WAIT_MS, RabbitEventSource};
pub use publisher::RabbitPublisher;
pub use topology::{CONNECT_TIMEOUT_MS, DEFAULT_PREFIX, RabbitAdmin, Topology};
