//! Tests of the outbox: examples of each decision, and property tests that
//! run random sequences of bus calls through the outbox, write the changes to
//! an in-memory store the way a backend would, and check the outbox's rules
//! after each call.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::order::EventKind;

fn event(order: u32, kind: EventKind) -> EventRecord {
    EventRecord {
        event_id: crate::rules::event_id(kind, &format!("o{order}"), 1),
        kind,
        order_id: format!("o{order}"),
        order_version: 1,
        total_units: 1,
        occurred_at_ms: 0,
        trace_parent: None,
        notice: None,
    }
}

/// What a backend stores, kept in memory, with the same conditional writes.
#[derive(Default)]
struct Store {
    entries: BTreeMap<i64, Entry>,
    next_seq: i64,
}

impl Store {
    /// Every entry, loaded: a backend loads only what a call touches, and the
    /// outbox must not care.
    fn outbox(&self, now_ms: i64) -> Outbox {
        let mut outbox = Outbox::new(now_ms);
        for entry in self.entries.values() {
            outbox.load(entry.clone());
        }
        outbox
    }

    fn apply(&mut self, changes: OutboxChanges) {
        for entry in changes.deleted {
            assert_eq!(
                self.entries.remove(&entry.seq).as_ref(),
                Some(&entry),
                "an entry changed under the batch"
            );
        }
        for change in changes.updated {
            let stored = self
                .entries
                .get_mut(&change.loaded.seq)
                .expect("updated entries exist");
            assert_eq!(*stored, change.loaded, "an entry changed under the batch");
            *stored = change.after;
        }
        for new in changes.inserted {
            self.next_seq += 1;
            self.entries.insert(
                self.next_seq,
                Entry {
                    seq: self.next_seq,
                    consumer: new.consumer,
                    event: new.event,
                    deliveries: 0,
                    rejections: new.rejections,
                    lease: None,
                    dead_at_ms: new.dead_at_ms,
                },
            );
        }
    }
}

#[test]
fn a_lease_hands_out_due_entries_oldest_first_and_only_once_while_live() {
    let mut store = Store::default();
    let mut outbox = store.outbox(0);
    outbox.enqueue([
        event(1, EventKind::OrderReserved),
        event(2, EventKind::OrderReserved),
        event(3, EventKind::PaymentSucceeded),
    ]);
    store.apply(outbox.into_changes());

    let mut outbox = store.outbox(1_000);
    let first = outbox.lease(Consumer::Payment, 10, 5_000, "a");
    assert_eq!(
        first.iter().map(|d| d.seq).collect::<Vec<_>>(),
        [1, 2],
        "only the payment consumer's entries, in line"
    );
    assert!(first.iter().all(|d| d.attempt == 1));
    let again = outbox.lease(Consumer::Payment, 10, 5_000, "b");
    assert!(again.is_empty(), "a live lease is not handed out twice");
    store.apply(outbox.into_changes());

    let mut outbox = store.outbox(6_000);
    let after_expiry = outbox.lease(Consumer::Payment, 1, 5_000, "c");
    assert_eq!(after_expiry.len(), 1, "at most the asked number");
    assert_eq!(
        after_expiry[0].attempt, 2,
        "a run-out lease is handed out again"
    );
}

#[test]
fn receipts_settle_only_their_own_current_lease() {
    let mut store = Store::default();
    let mut outbox = store.outbox(0);
    outbox.enqueue([event(1, EventKind::OrderReserved)]);
    store.apply(outbox.into_changes());
    let mut outbox = store.outbox(0);
    let old = outbox.lease(Consumer::Payment, 1, 100, "old").remove(0);
    store.apply(outbox.into_changes());
    let mut outbox = store.outbox(1_000);
    let new = outbox.lease(Consumer::Payment, 1, 100, "new").remove(0);
    assert_eq!(
        outbox.finish(
            Consumer::Payment,
            DeliveryOutcome::Acknowledge,
            &[old.receipt()]
        ),
        0,
        "a replaced lease proves nothing"
    );
    assert_eq!(
        outbox.finish(
            Consumer::Inventory,
            DeliveryOutcome::Acknowledge,
            &[new.receipt()]
        ),
        0,
        "another consumer's receipt proves nothing"
    );
    assert_eq!(
        outbox.finish(
            Consumer::Payment,
            DeliveryOutcome::Acknowledge,
            &[new.receipt()]
        ),
        1
    );
    let changes = outbox.into_changes();
    assert_eq!(changes.deleted.len(), 1);
    assert_eq!(
        changes.deleted[0]
            .lease
            .as_ref()
            .map(|lease| lease.token.as_str()),
        Some("old"),
        "deleted only if still as loaded, before this batch's lease"
    );
    assert!(changes.updated.is_empty());
    store.apply(changes);
    assert!(store.entries.is_empty(), "acknowledged, so gone");
}

#[test]
fn a_rejection_dead_letters_and_a_redrive_restores_a_clean_slate() {
    let mut store = Store::default();
    let mut outbox = store.outbox(0);
    outbox.enqueue([event(1, EventKind::OrderReserved)]);
    store.apply(outbox.into_changes());
    let mut outbox = store.outbox(10);
    let delivery = outbox.lease(Consumer::Payment, 1, 1_000, "t").remove(0);
    outbox.finish(
        Consumer::Payment,
        DeliveryOutcome::Reject,
        &[delivery.receipt()],
    );
    store.apply(outbox.into_changes());
    let entry = &store.entries[&1];
    assert_eq!(entry.dead_at_ms, Some(10));
    assert_eq!(DeadLetter::of(entry).map(|dead| dead.rejections), Some(1));

    let mut outbox = store.outbox(20);
    assert!(
        outbox.lease(Consumer::Payment, 1, 1_000, "u").is_empty(),
        "dead"
    );
    assert_eq!(
        outbox.redrive(Consumer::Inventory, &[1]),
        0,
        "not its consumer"
    );
    assert_eq!(outbox.redrive(Consumer::Payment, &[1, 1, 7]), 1);
    store.apply(outbox.into_changes());
    let entry = &store.entries[&1];
    assert_eq!(
        (entry.dead_at_ms, entry.rejections, &entry.lease),
        (None, 0, &None)
    );
    assert_eq!(entry.deliveries, 1, "the delivery count is history, kept");
}

#[test]
fn a_release_hands_the_entry_out_again_at_once_without_counting() {
    let mut store = Store::default();
    let mut outbox = store.outbox(0);
    outbox.enqueue([event(1, EventKind::PaymentFailed)]);
    let delivery = outbox.lease(Consumer::Inventory, 1, 60_000, "t");
    assert!(
        delivery.is_empty(),
        "entries enqueued by the batch are not loaded yet"
    );
    store.apply(outbox.into_changes());
    let mut outbox = store.outbox(0);
    let delivery = outbox.lease(Consumer::Inventory, 1, 60_000, "t").remove(0);
    outbox.finish(
        Consumer::Inventory,
        DeliveryOutcome::Release,
        &[delivery.receipt()],
    );
    let again = outbox.lease(Consumer::Inventory, 1, 60_000, "u");
    assert_eq!(again.len(), 1, "due at once");
    assert_eq!(outbox.entry(1).map(|entry| entry.rejections), Some(0));
}

#[test]
fn a_postponed_entry_stays_with_its_holder_until_the_delay_ends() {
    let mut store = Store::default();
    let mut outbox = store.outbox(0);
    outbox.enqueue([event(1, EventKind::OrderFulfilled)]);
    store.apply(outbox.into_changes());
    let mut outbox = store.outbox(0);
    let delivery = outbox.lease(Consumer::Webhooks, 1, 1_000, "t").remove(0);
    outbox.finish(
        Consumer::Webhooks,
        DeliveryOutcome::Postpone { delay_ms: 30_000 },
        &[delivery.receipt()],
    );
    store.apply(outbox.into_changes());
    let mut outbox = store.outbox(29_999);
    assert!(outbox.lease(Consumer::Webhooks, 1, 1_000, "u").is_empty());
    let mut outbox = store.outbox(30_000);
    let again = outbox.lease(Consumer::Webhooks, 1, 1_000, "u").remove(0);
    assert_eq!(
        again.attempt, 2,
        "the delivery counts, the postponement does not"
    );
}

#[test]
fn buried_events_are_born_dead() {
    let mut store = Store::default();
    let mut outbox = store.outbox(5);
    assert_eq!(
        outbox.bury(Consumer::Payment, vec![event(1, EventKind::OrderReserved)]),
        1
    );
    store.apply(outbox.into_changes());
    let entry = &store.entries[&1];
    assert_eq!((entry.dead_at_ms, entry.rejections), (Some(5), 1));
}

/// One bus call of a random run.
#[derive(Debug, Clone)]
enum Call {
    Enqueue(EventKind),
    Lease {
        consumer: Consumer,
        max_entries: u32,
        lease_ms: u64,
    },
    /// Settles some of the deliveries handed out so far (by index, wrapped),
    /// some with a forged token.
    Finish {
        consumer: Consumer,
        outcome: DeliveryOutcome,
        picks: Vec<(usize, bool)>,
    },
    Redrive {
        consumer: Consumer,
        seqs: Vec<i64>,
    },
    Bury(Consumer),
    Wait(i64),
}

fn consumer() -> impl Strategy<Value = Consumer> {
    prop_oneof![
        Just(Consumer::Payment),
        Just(Consumer::Inventory),
        Just(Consumer::Webhooks)
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        3 => prop_oneof![
            Just(EventKind::OrderReserved),
            Just(EventKind::PaymentSucceeded),
            Just(EventKind::PaymentFailed)
        ]
        .prop_map(Call::Enqueue),
        3 => (consumer(), 1u32..4, 0u64..2_000).prop_map(|(consumer, max_entries, lease_ms)| {
            Call::Lease { consumer, max_entries, lease_ms }
        }),
        3 => (
            consumer(),
            prop_oneof![
                Just(DeliveryOutcome::Acknowledge),
                Just(DeliveryOutcome::Release),
                Just(DeliveryOutcome::Reject),
                (0u64..2_000).prop_map(|delay_ms| DeliveryOutcome::Postpone { delay_ms })
            ],
            prop::collection::vec((0usize..32, prop::bool::weighted(0.2)), 0..4)
        )
            .prop_map(|(consumer, outcome, picks)| Call::Finish { consumer, outcome, picks }),
        1 => (consumer(), prop::collection::vec(1i64..12, 0..4))
            .prop_map(|(consumer, seqs)| Call::Redrive { consumer, seqs }),
        1 => consumer().prop_map(Call::Bury),
        2 => (0i64..1_500).prop_map(Call::Wait),
    ]
}

/// What the test knows from outside the outbox, to check it against.
#[derive(Default)]
struct Witness {
    /// Every event ever added, by event id, and whether it was acknowledged.
    events: HashMap<String, bool>,
    /// Every delivery handed out, in order.
    handed: Vec<Delivery>,
    /// Per entry, the lease handed out last and not given back since:
    /// (token, until_ms).
    outstanding: HashMap<i64, (String, i64)>,
    /// Per entry, explicit rejections since it was added or last redriven.
    rejections: HashMap<i64, u32>,
    /// Entries that were born dead (buried).
    buried: BTreeSet<i64>,
    leases: u64,
}

fn run(calls: Vec<Call>) {
    let mut store = Store::default();
    let mut witness = Witness::default();
    let mut now_ms = 1_000;
    let mut next_order = 0;
    for call in calls {
        let mut outbox = store.outbox(now_ms);
        match call {
            Call::Enqueue(kind) => {
                next_order += 1;
                let event = event(next_order, kind);
                witness.events.insert(event.event_id.clone(), false);
                outbox.enqueue([event]);
            }
            Call::Lease {
                consumer,
                max_entries,
                lease_ms,
            } => {
                witness.leases += 1;
                let token = format!("lease-{}", witness.leases);
                let handed = outbox.lease(consumer, max_entries, lease_ms, &token);
                assert!(handed.len() <= max_entries as usize);
                for delivery in &handed {
                    let entry = &store.entries[&delivery.seq];
                    assert_eq!(entry.consumer, consumer);
                    assert!(entry.dead_at_ms.is_none(), "a dead entry was handed out");
                    if let Some((_, until_ms)) = witness.outstanding.get(&delivery.seq) {
                        assert!(
                            *until_ms <= now_ms,
                            "entry {} handed out under a live lease",
                            delivery.seq
                        );
                    }
                    let until_ms = now_ms + lease_ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS) as i64;
                    witness
                        .outstanding
                        .insert(delivery.seq, (token.clone(), until_ms));
                }
                // Nothing due was left behind while there was room.
                if handed.len() < max_entries as usize {
                    let handed_seqs: BTreeSet<i64> = handed.iter().map(|d| d.seq).collect();
                    for entry in store.entries.values() {
                        assert!(
                            entry.consumer != consumer
                                || !entry.is_due(now_ms)
                                || handed_seqs.contains(&entry.seq),
                            "a due entry was left behind"
                        );
                    }
                }
                witness.handed.extend(handed);
            }
            Call::Finish {
                consumer,
                outcome,
                picks,
            } => {
                if witness.handed.is_empty() {
                    continue;
                }
                let receipts: Vec<Receipt> = picks
                    .iter()
                    .map(|(index, forged)| {
                        let mut receipt = witness.handed[index % witness.handed.len()].receipt();
                        if *forged {
                            receipt.token.push('x');
                        }
                        receipt
                    })
                    .collect();
                let mut proven = BTreeSet::new();
                for receipt in &receipts {
                    if let Some(entry) = store.entries.get(&receipt.seq)
                        && entry.consumer == consumer
                        && entry.is_proven_by(receipt)
                    {
                        proven.insert(receipt.seq);
                    }
                }
                let settled = outbox.finish(consumer, outcome, &receipts);
                assert_eq!(settled, proven.len() as u64, "only proven leases settle");
                for seq in proven {
                    if let DeliveryOutcome::Postpone { delay_ms } = outcome {
                        // The holder keeps its lease, which now runs out
                        // later: nobody else gets the entry until then.
                        let until_ms = now_ms + delay_ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS) as i64;
                        if let Some(held) = witness.outstanding.get_mut(&seq) {
                            held.1 = until_ms;
                        }
                        continue;
                    }
                    witness.outstanding.remove(&seq);
                    match outcome {
                        DeliveryOutcome::Acknowledge => {
                            let id = &store.entries[&seq].event.event_id;
                            witness.events.insert(id.clone(), true);
                        }
                        DeliveryOutcome::Release | DeliveryOutcome::Postpone { .. } => {}
                        DeliveryOutcome::Reject => {
                            *witness.rejections.entry(seq).or_default() += 1;
                        }
                    }
                }
            }
            Call::Redrive { consumer, seqs } => {
                let dead: BTreeSet<i64> = seqs
                    .iter()
                    .copied()
                    .filter(|seq| {
                        store.entries.get(seq).is_some_and(|entry| {
                            entry.consumer == consumer && entry.dead_at_ms.is_some()
                        })
                    })
                    .collect();
                let before = store.entries.clone();
                assert_eq!(outbox.redrive(consumer, &seqs), dead.len() as u64);
                store.apply(outbox.into_changes());
                for (seq, entry) in &store.entries {
                    if dead.contains(seq) {
                        let was = &before[seq];
                        assert_eq!(
                            (entry.dead_at_ms, entry.rejections, &entry.lease),
                            (None, 0, &None),
                            "a redrive restores a clean slate"
                        );
                        assert_eq!(
                            (&entry.event, entry.deliveries),
                            (&was.event, was.deliveries)
                        );
                        witness.rejections.remove(seq);
                        witness.buried.remove(seq);
                    } else {
                        assert_eq!(entry, &before[seq], "a redrive touched a live entry");
                    }
                }
                check(&store, &witness);
                continue;
            }
            Call::Bury(consumer) => {
                next_order += 1;
                let kind = match consumer {
                    Consumer::Payment => EventKind::OrderReserved,
                    Consumer::Inventory => EventKind::PaymentSucceeded,
                    Consumer::Webhooks => EventKind::OrderFulfilled,
                };
                let event = event(next_order, kind);
                witness.events.insert(event.event_id.clone(), false);
                outbox.bury(consumer, vec![event]);
                witness.buried.insert(store.next_seq + 1);
            }
            Call::Wait(ms) => now_ms += ms,
        }
        store.apply(outbox.into_changes());
        check(&store, &witness);
    }
}

/// The rules that hold after every call.
fn check(store: &Store, witness: &Witness) {
    let stored: HashMap<&str, &Entry> = store
        .entries
        .values()
        .map(|entry| (entry.event.event_id.as_str(), entry))
        .collect();
    for (event_id, acknowledged) in &witness.events {
        assert!(
            *acknowledged || stored.contains_key(event_id.as_str()),
            "event {event_id} was lost without an acknowledgement"
        );
        assert!(
            !(*acknowledged && stored.contains_key(event_id.as_str())),
            "event {event_id} stayed after its acknowledgement"
        );
    }
    for entry in store.entries.values() {
        if entry.dead_at_ms.is_some() && !witness.buried.contains(&entry.seq) {
            assert!(
                witness.rejections.get(&entry.seq).copied().unwrap_or(0) >= MAX_REJECTIONS,
                "entry {} dead without {MAX_REJECTIONS} explicit rejections",
                entry.seq
            );
        }
        assert_eq!(
            entry.lease.is_some() && entry.dead_at_ms.is_none(),
            witness.outstanding.contains_key(&entry.seq),
            "entry {}'s lease disagrees with what was handed out",
            entry.seq
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_sequence_of_bus_calls_keeps_the_outbox_rules(
        calls in prop::collection::vec(call(), 1..60)
    ) {
        run(calls);
    }
}
