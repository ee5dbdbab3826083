//! The outbox as a state machine, decided in memory like the order flow.
//!
//! Every event of the flow waits in the outbox, addressed to the one consumer
//! its kind is routed to, until that consumer acknowledges it. A storage
//! backend loads the entries a batch of bus calls touches into an [`Outbox`]
//! (the entries due for a lease, or those the receipts name), the outbox
//! decides each call in arrival order, and the backend writes the
//! [`OutboxChanges`] with one statement per kind of change, each conditional
//! on the entry being as it was loaded. Leases, acknowledgements, releases,
//! rejections, dead letters and redrives are decided here and only here, so
//! the backends cannot disagree and the property tests cover every rule:
//!
//! - an event is never lost: it leaves the outbox only when the holder of
//!   its current lease acknowledges it;
//! - no event is held by two live leases: an entry is handed out only when
//!   it has no lease or its lease ran out, and a lease is proven by a token
//!   that a new lease replaces;
//! - only explicit rejections dead-letter an event, and only at
//!   [`MAX_REJECTIONS`]: an outage, a released batch or a lease that ran out
//!   never count;
//! - a redrive puts back exactly what was dead, with a clean slate.

mod decide;
#[cfg(test)]
mod tests;

use crate::order::Consumer;
use crate::rules::EventRecord;

pub use decide::{EntryChange, Outbox, OutboxChanges};

/// How many times consumers may refuse one event as poison before it is
/// dead-lettered. A consumer refuses an event only when it can never handle
/// it (its request refused outright, or its order contradicting the stock),
/// so retrying changes nothing: one refusal dead-letters it, where it waits
/// for an operator to look and redrive it; RabbitMQ dead-letters a rejected
/// message at once too. Only an explicit refusal counts: an event given back
/// because a dependency was down, or whose lease ran out, is handed out again
/// without limit, so no outage ever dead-letters an event.
pub const MAX_REJECTIONS: u32 = 1;

/// The shortest lease the outbox grants: shorter ones would run out while
/// the consumer is still handling the events.
pub const MIN_LEASE_MS: u64 = 100;

/// The longest lease the outbox grants: a consumer that dies holding its
/// events delays them by at most this much.
pub const MAX_LEASE_MS: u64 = 600_000;

const _: () = assert!(MIN_LEASE_MS < MAX_LEASE_MS);
const _: () = assert!(MAX_REJECTIONS >= 1);

/// A consumer's claim on an entry until `until_ms`, proven by `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease's secret: only its holder can settle the entry.
    pub token: String,
    /// When the lease runs out (ms since the epoch); from then on the entry
    /// is handed out again, though its holder may still settle it until
    /// another lease replaces this one.
    pub until_ms: i64,
}

/// One event waiting in the outbox for its consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's place in line, unique in the outbox: the delivery id a
    /// consumer's receipt names.
    pub seq: i64,
    pub consumer: Consumer,
    pub event: EventRecord,
    /// How many times it was handed out.
    pub deliveries: u32,
    /// How many times a consumer refused it as poison since it was last
    /// redriven: only these count towards dead-lettering.
    pub rejections: u32,
    /// The latest lease, live or run out; `None` when it was never leased or
    /// was given back.
    pub lease: Option<Lease>,
    /// When it was dead-lettered; a dead entry is never handed out until an
    /// operator redrives it.
    pub dead_at_ms: Option<i64>,
}

impl Entry {
    /// Whether a lease asked for at `now_ms` may hand this entry out: it is
    /// alive and nobody holds a live lease on it.
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.dead_at_ms.is_none()
            && self
                .lease
                .as_ref()
                .is_none_or(|lease| lease.until_ms <= now_ms)
    }

    /// Whether `receipt` proves the latest lease of this live entry. A lease
    /// that ran out still proves itself until another replaces it: its holder
    /// finished late, but nobody else has the entry.
    pub fn is_proven_by(&self, receipt: &Receipt) -> bool {
        self.dead_at_ms.is_none()
            && self.seq == receipt.seq
            && self
                .lease
                .as_ref()
                .is_some_and(|lease| lease.token == receipt.token)
    }
}

/// An entry to add to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub consumer: Consumer,
    pub event: EventRecord,
    pub rejections: u32,
    pub dead_at_ms: Option<i64>,
}

impl NewEntry {
    /// An event of the flow, addressed to the consumer its kind is routed to,
    /// waiting to be leased.
    pub fn routed(event: EventRecord) -> NewEntry {
        NewEntry {
            consumer: event.kind.consumer_group(),
            event,
            rejections: 0,
            dead_at_ms: None,
        }
    }
}

/// An entry handed to a consumer under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub token: String,
    /// How many times the entry has been handed out, this time included.
    pub attempt: u32,
    pub event: EventRecord,
}

impl Delivery {
    pub fn receipt(&self) -> Receipt {
        Receipt {
            seq: self.seq,
            token: self.token.clone(),
        }
    }
}

/// Proof of holding the lease of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub seq: i64,
    pub token: String,
}

/// How a consumer settles entries it holds the lease of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The effect is committed: the entry leaves the outbox.
    Acknowledge,
    /// Not handled now (a dependency is down): handed out again at once,
    /// nothing counted.
    Release,
    /// Poison: counted; at [`MAX_REJECTIONS`] the entry is dead-lettered.
    Reject,
    /// Not handled now, and not worth trying again at once (a receiver
    /// that failed): the holder keeps its lease, which now runs out
    /// `delay_ms` from now (held within [`MIN_LEASE_MS`]..=[`MAX_LEASE_MS`]),
    /// and the entry is handed out again then. Nothing counted besides the
    /// delivery itself, so a consumer backs off by the attempt number.
    Postpone { delay_ms: u64 },
}

/// An event kept aside as poison, for an operator to inspect and redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: i64,
    pub consumer: Consumer,
    pub deliveries: u32,
    pub rejections: u32,
    pub dead_at_ms: i64,
    pub event: EventRecord,
}

impl DeadLetter {
    /// The dead letter an entry is, if it is dead.
    pub fn of(entry: &Entry) -> Option<DeadLetter> {
        Some(DeadLetter {
            seq: entry.seq,
            consumer: entry.consumer,
            deliveries: entry.deliveries,
            rejections: entry.rejections,
            dead_at_ms: entry.dead_at_ms?,
            event: entry.event.clone(),
        })
    }
}
