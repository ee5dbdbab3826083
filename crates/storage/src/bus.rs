//! The outbox's storage: bus calls, the entries they touch, and the
//! decisions of [`stockroom_domain::outbox::Outbox`] on them.
//!
//! Every backend runs a batch of bus calls the same way, in one transaction:
//!
//! 1. [`OutboxNeeds::of`] says which entries the calls touch: the entries due
//!    for each consumer's leases (at most as many as they ask for), and the
//!    entries the receipts and redrives name; the backend loads them (on
//!    PostgreSQL locking them, skipping entries another lease is taking);
//! 2. [`decide`] runs each call through the outbox in arrival order and
//!    returns each caller's [`OutboxReply`] and the batch's changes;
//! 3. the backend writes the changes with one statement per kind (delete,
//!    update, insert), each conditional on the entry being as loaded.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use stockroom_domain::Consumer;
use stockroom_domain::outbox::{
    DeadLetter, Delivery, DeliveryOutcome, Outbox, OutboxChanges, Receipt,
};
use stockroom_domain::rules::EventRecord;

use crate::StorageError;

/// One consumer's share of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxCounts {
    pub consumer: Consumer,
    /// Events not yet acknowledged (leased or waiting), dead letters apart.
    pub pending: u64,
    /// When the oldest of them happened, if any is waiting.
    pub oldest_pending_at_ms: Option<i64>,
    pub dead: u64,
}

/// A call the outbox decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxCommand {
    /// Hands out up to `max_events` due entries under a new lease.
    Lease {
        consumer: Consumer,
        max_events: u32,
        lease_ms: u64,
        /// The new lease's secret, drawn by [`EventOutbox::lease_events`].
        token: String,
    },
    /// Acknowledges, releases or rejects the entries the receipts prove.
    Finish {
        consumer: Consumer,
        outcome: DeliveryOutcome,
        receipts: Vec<Receipt>,
    },
    /// Puts dead letters back in line.
    Redrive { consumer: Consumer, seqs: Vec<i64> },
    /// Keeps events a consumer refused after a broker delivered them.
    Bury {
        consumer: Consumer,
        events: Vec<EventRecord>,
    },
}

/// The answer to one [`OutboxCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxReply {
    Leased(Vec<Delivery>),
    /// How many entries the call settled, redrove or kept.
    Count(u64),
}

/// The entries a batch of bus calls touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxNeeds {
    /// Per consumer, the most due entries the batch's leases may hand out:
    /// the backend loads that many of the consumer's due entries, oldest
    /// first.
    pub due: BTreeMap<Consumer, u32>,
    /// Per consumer, the entries receipts and redrives name, in `seq` order
    /// (the order in which PostgreSQL locks them).
    pub named: BTreeMap<Consumer, BTreeSet<i64>>,
}

impl OutboxNeeds {
    pub fn of(commands: &[OutboxCommand]) -> OutboxNeeds {
        let mut needs = OutboxNeeds::default();
        for command in commands {
            match command {
                OutboxCommand::Lease {
                    consumer,
                    max_events,
                    ..
                } => {
                    let due = needs.due.entry(*consumer).or_default();
                    *due = due.saturating_add(*max_events);
                }
                OutboxCommand::Finish {
                    consumer, receipts, ..
                } => needs
                    .named
                    .entry(*consumer)
                    .or_default()
                    .extend(receipts.iter().map(|receipt| receipt.seq)),
                OutboxCommand::Redrive { consumer, seqs } => needs
                    .named
                    .entry(*consumer)
                    .or_default()
                    .extend(seqs.iter().copied()),
                OutboxCommand::Bury { .. } => {}
            }
        }
        needs
    }
}

/// Runs every call through `outbox`, in order, and returns each one's reply
/// and what the batch writes.
pub fn decide(
    mut outbox: Outbox,
    commands: Vec<OutboxCommand>,
) -> (Vec<OutboxReply>, OutboxChanges) {
    let replies = commands
        .into_iter()
        .map(|command| match command {
            OutboxCommand::Lease {
                consumer,
                max_events,
                lease_ms,
                token,
            } => OutboxReply::Leased(outbox.lease(consumer, max_events, lease_ms, &token)),
            OutboxCommand::Finish {
                consumer,
                outcome,
                receipts,
            } => {
                let settled = outbox.finish(consumer, outcome, &receipts);
                if outcome == DeliveryOutcome::Reject && settled > 0 {
                    tracing::warn!(
                        consumer = consumer.as_str(),
                        count = settled,
                        "events rejected as poison"
                    );
                }
                OutboxReply::Count(settled)
            }
            OutboxCommand::Redrive { consumer, seqs } => {
                OutboxReply::Count(outbox.redrive(consumer, &seqs))
            }
            OutboxCommand::Bury { consumer, events } => {
                OutboxReply::Count(outbox.bury(consumer, events))
            }
        })
        .collect();
    (replies, outbox.into_changes())
}

/// The outbox and its dead letters. Every change goes through
/// [`EventOutbox::run_outbox`], the one write path of the bus; the other
/// writing methods are that call for each kind of command.
#[async_trait]
pub trait EventOutbox: Send + Sync + 'static {
    /// Runs one bus call atomically and durably.
    async fn run_outbox(&self, command: OutboxCommand) -> Result<OutboxReply, StorageError>;

    /// Up to `limit` of a consumer's dead letters, oldest first.
    async fn dead_letters(
        &self,
        consumer: Consumer,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StorageError>;

    /// Per consumer: the events waiting, the oldest one's time, and the dead
    /// letters.
    async fn outbox_counts(&self) -> Result<Vec<OutboxCounts>, StorageError>;

    /// How many of a consumer's events are dead-lettered.
    async fn dead_letter_count(&self, consumer: Consumer) -> Result<u64, StorageError> {
        Ok(self
            .outbox_counts()
            .await?
            .into_iter()
            .find(|counts| counts.consumer == consumer)
            .map_or(0, |counts| counts.dead))
    }

    /// Leases up to `max_events` of a consumer's due events for `lease_ms`,
    /// under a new secret lease token. An event not settled before its lease
    /// ends is handed out again.
    async fn lease_events(
        &self,
        consumer: Consumer,
        max_events: u32,
        lease_ms: u64,
    ) -> Result<Vec<Delivery>, StorageError> {
        let command = OutboxCommand::Lease {
            consumer,
            max_events,
            lease_ms,
            token: uuid::Uuid::new_v4().simple().to_string(),
        };
        match self.run_outbox(command).await? {
            OutboxReply::Leased(deliveries) => Ok(deliveries),
            other => Err(wrong_reply(other)),
        }
    }

    /// Acknowledges, releases or rejects deliveries (see
    /// [`DeliveryOutcome`]). A receipt whose token is not the delivery's
    /// current lease (it ran out and the event went to another consumer)
    /// changes nothing. Returns how many deliveries matched.
    async fn finish_deliveries(
        &self,
        consumer: Consumer,
        outcome: DeliveryOutcome,
        receipts: Vec<Receipt>,
    ) -> Result<u64, StorageError> {
        if receipts.is_empty() {
            return Ok(0);
        }
        let command = OutboxCommand::Finish {
            consumer,
            outcome,
            receipts,
        };
        count(self.run_outbox(command).await?)
    }

    /// Keeps events a consumer refused as poison, as dead letters, when they
    /// reached it through a broker (their outbox entries left when they were
    /// published): one place lists and redrives dead letters, whatever the
    /// bus. Returns how many were kept.
    async fn bury_events(
        &self,
        consumer: Consumer,
        events: Vec<EventRecord>,
    ) -> Result<u64, StorageError> {
        if events.is_empty() {
            return Ok(0);
        }
        count(
            self.run_outbox(OutboxCommand::Bury { consumer, events })
                .await?,
        )
    }

    /// Puts dead-lettered events back in line, as if never refused. The
    /// orders' states still make each effect happen at most once (see
    /// `stockroom_domain::rules::payment_recorded`). Returns how many were
    /// redriven.
    async fn redrive(&self, consumer: Consumer, seqs: Vec<i64>) -> Result<u64, StorageError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        count(
            self.run_outbox(OutboxCommand::Redrive { consumer, seqs })
                .await?,
        )
    }
}

fn count(reply: OutboxReply) -> Result<u64, StorageError> {
    match reply {
        OutboxReply::Count(count) => Ok(count),
        other => Err(wrong_reply(other)),
    }
}

fn wrong_reply(reply: OutboxReply) -> StorageError {
    StorageError::Inconsistent(format!(
        "the outbox answered with the wrong kind of reply: {reply:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_add_up_leases_and_name_every_receipt_and_redrive() {
        let receipt = |seq| Receipt {
            seq,
            token: "t".into(),
        };
        let commands = [
            OutboxCommand::Lease {
                consumer: Consumer::Payment,
                max_events: 10,
                lease_ms: 1_000,
                token: "a".into(),
            },
            OutboxCommand::Lease {
                consumer: Consumer::Payment,
                max_events: 5,
                lease_ms: 1_000,
                token: "b".into(),
            },
            OutboxCommand::Finish {
                consumer: Consumer::Inventory,
                outcome: DeliveryOutcome::Acknowledge,
                receipts: vec![receipt(9), receipt(3)],
            },
            OutboxCommand::Redrive {
                consumer: Consumer::Inventory,
                seqs: vec![3, 4],
            },
        ];
        let needs = OutboxNeeds::of(&commands);
        assert_eq!(needs.due, BTreeMap::from([(Consumer::Payment, 15)]));
        assert_eq!(
            needs.named,
            BTreeMap::from([(Consumer::Inventory, BTreeSet::from([3, 4, 9]))])
        );
    }
}
