//! The outbox's decisions: which entries a lease hands out, what a receipt
//! settles, what a redrive restores, and the changes a backend writes.

use std::collections::BTreeMap;

use crate::order::Consumer;
use crate::outbox::{
    Delivery, DeliveryOutcome, Entry, Lease, MAX_LEASE_MS, MAX_REJECTIONS, MIN_LEASE_MS, NewEntry,
    Receipt,
};
use crate::rules::EventRecord;

/// An entry as it was loaded, and as the batch has left it (`None` once it
/// was acknowledged and leaves the outbox).
struct Slot {
    loaded: Entry,
    current: Option<Entry>,
}

/// The entries a batch of bus calls touches, and every decision made on them
/// so far. Each call is decided atomically in memory, in arrival order, so a
/// later call of the batch sees exactly what an earlier one left.
pub struct Outbox {
    now_ms: i64,
    entries: BTreeMap<i64, Slot>,
    inserted: Vec<NewEntry>,
}

/// An existing entry's state after the batch, and the state it was loaded
/// in: the write is conditional on the row still being as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChange {
    pub loaded: Entry,
    pub after: Entry,
}

/// Everything a batch of bus calls writes, each list in `seq` order (new
/// entries in the order they were added), so backends touch rows in one
/// global order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxChanges {
    /// Acknowledged entries, as loaded: deleted if still so.
    pub deleted: Vec<Entry>,
    pub updated: Vec<EntryChange>,
    pub inserted: Vec<NewEntry>,
}

impl OutboxChanges {
    pub fn is_empty(&self) -> bool {
        self.deleted.is_empty() && self.updated.is_empty() && self.inserted.is_empty()
    }
}

impl Outbox {
    /// An empty outbox; `now_ms` is the time of every decision of the batch.
    pub fn new(now_ms: i64) -> Outbox {
        Outbox {
            now_ms,
            entries: BTreeMap::new(),
            inserted: Vec::new(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Adds an entry read from storage. Loading one twice keeps the first
    /// copy, which the batch may already have changed.
    pub fn load(&mut self, entry: Entry) {
        self.entries.entry(entry.seq).or_insert_with(|| Slot {
            current: Some(entry.clone()),
            loaded: entry,
        });
    }

    /// An entry as the batch has left it.
    pub fn entry(&self, seq: i64) -> Option<&Entry> {
        self.entries.get(&seq)?.current.as_ref()
    }

    /// Hands out up to `max_entries` of `consumer`'s due entries, oldest
    /// first, under a new lease proven by `token` that lasts `lease_ms`
    /// (held within [`MIN_LEASE_MS`]..=[`MAX_LEASE_MS`]). `token` must be a
    /// secret no earlier lease had; the backend draws it.
    pub fn lease(
        &mut self,
        consumer: Consumer,
        max_entries: u32,
        lease_ms: u64,
        token: &str,
    ) -> Vec<Delivery> {
        let lease_ms = lease_ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS);
        let until_ms = self
            .now_ms
            .saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
        let now_ms = self.now_ms;
        let mut handed = Vec::new();
        for slot in self.entries.values_mut() {
            if handed.len() >= max_entries as usize {
                break;
            }
            let Some(entry) = slot.current.as_mut() else {
                continue;
            };
            if entry.consumer != consumer || !entry.is_due(now_ms) {
                continue;
            }
            entry.deliveries = entry.deliveries.saturating_add(1);
            entry.lease = Some(Lease {
                token: token.to_owned(),
                until_ms,
            });
            handed.push(Delivery {
                seq: entry.seq,
                token: token.to_owned(),
                attempt: entry.deliveries,
                event: entry.event.clone(),
            });
        }
        handed
    }

    /// Settles the entries of `consumer` whose current lease the receipts
    /// prove; a receipt that proves nothing (its lease was replaced, the
    /// entry is dead or gone, another consumer's) changes nothing. Returns
    /// how many entries were settled.
    pub fn finish(
        &mut self,
        consumer: Consumer,
        outcome: DeliveryOutcome,
        receipts: &[Receipt],
    ) -> u64 {
        let now_ms = self.now_ms;
        let mut settled = std::collections::BTreeSet::new();
        for receipt in receipts {
            // A receipt named twice settles its entry once.
            if settled.contains(&receipt.seq) {
                continue;
            }
            let Some(slot) = self.entries.get_mut(&receipt.seq) else {
                continue;
            };
            let Some(entry) = slot.current.as_mut() else {
                continue;
            };
            if entry.consumer != consumer || !entry.is_proven_by(receipt) {
                continue;
            }
            match outcome {
                DeliveryOutcome::Acknowledge => slot.current = None,
                DeliveryOutcome::Release => entry.lease = None,
                DeliveryOutcome::Postpone { delay_ms } => {
                    let delay_ms = delay_ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS);
                    if let Some(lease) = entry.lease.as_mut() {
                        lease.until_ms =
                            now_ms.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
                    }
                }
                DeliveryOutcome::Reject => {
                    entry.lease = None;
                    entry.rejections = entry.rejections.saturating_add(1);
                    if entry.rejections >= MAX_REJECTIONS {
                        entry.dead_at_ms = Some(now_ms);
                    }
                }
            }
            settled.insert(receipt.seq);
        }
        settled.len() as u64
    }

    /// Puts `consumer`'s dead entries among `seqs` back in line with a clean
    /// slate (no lease, no rejections), as if never refused. Returns how many
    /// were dead.
    pub fn redrive(&mut self, consumer: Consumer, seqs: &[i64]) -> u64 {
        let mut redriven = 0;
        for seq in seqs {
            let Some(entry) = self
                .entries
                .get_mut(seq)
                .and_then(|slot| slot.current.as_mut())
            else {
                continue;
            };
            if entry.consumer != consumer || entry.dead_at_ms.is_none() {
                continue;
            }
            entry.dead_at_ms = None;
            entry.rejections = 0;
            entry.lease = None;
            redriven += 1;
        }
        redriven
    }

    /// Keeps events that `consumer` refused after a broker delivered them
    /// (their entries left the outbox when they were published) as dead
    /// letters: a broker dead-letters a refused message at the first refusal,
    /// so each was refused once. Returns how many were kept.
    pub fn bury(&mut self, consumer: Consumer, events: Vec<EventRecord>) -> u64 {
        let count = events.len() as u64;
        let now_ms = self.now_ms;
        self.inserted
            .extend(events.into_iter().map(|event| NewEntry {
                consumer,
                event,
                rejections: 1,
                dead_at_ms: Some(now_ms),
            }));
        count
    }

    /// Adds events of the flow, each for the consumer its kind is routed to.
    pub fn enqueue(&mut self, events: impl IntoIterator<Item = EventRecord>) {
        self.inserted
            .extend(events.into_iter().map(NewEntry::routed));
    }

    /// Everything the batch decided, for the backend to write.
    pub fn into_changes(self) -> OutboxChanges {
        let mut changes = OutboxChanges {
            inserted: self.inserted,
            ..OutboxChanges::default()
        };
        for slot in self.entries.into_values() {
            match slot.current {
                None => changes.deleted.push(slot.loaded),
                Some(after) if after != slot.loaded => changes.updated.push(EntryChange {
                    loaded: slot.loaded,
                    after,
                }),
                Some(_) => {}
            }
        }
        changes
    }
}
