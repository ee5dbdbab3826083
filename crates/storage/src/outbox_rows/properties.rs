//! Property tests of the packed outbox: random sequences of bus calls run
//! through rows held in memory, loaded the way both backends' queries load
//! them and written back the way their statements write, with the rules
//! that must survive the packing checked after every call: no event is lost
//! or kept twice, none is handed out under a live lease, receipts settle
//! exactly what they prove, and every row's summary columns say what its
//! states say.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use stockroom_domain::outbox::{Delivery, DeliveryOutcome, MAX_LEASE_MS, MIN_LEASE_MS, Receipt};
use stockroom_domain::rules::event_id;

use super::*;
use crate::bus::{OutboxCommand, OutboxNeeds, OutboxReply, decide};

/// The outbox table, in memory: each row with its summary columns.
#[derive(Default)]
struct Table {
    rows: BTreeMap<i64, (StoredRow, Summary)>,
    next_seq: i64,
}

impl Table {
    /// What a batch loads: each consumer's rows with due events, oldest
    /// first, while the rows before hold fewer live events than its leases
    /// ask for (the backends' window query), and every row a call names.
    fn load(&self, needs: &OutboxNeeds, now_ms: i64) -> LoadedRows {
        let mut chosen: Vec<&StoredRow> = Vec::new();
        for (consumer, limit) in &needs.due {
            let mut before = 0;
            for (row, summary) in self.rows.values() {
                if row.consumer != consumer.as_str()
                    || summary.dead_at_ms.is_some()
                    || summary.due_at_ms > now_ms
                {
                    continue;
                }
                if before >= i64::from(*limit) {
                    break;
                }
                before += i64::from(summary.live);
                chosen.push(row);
            }
        }
        for (consumer, seqs) in &needs.named {
            for seq in seqs {
                if let Some((row, _)) = self.rows.get(&row_and_slot(*seq).0)
                    && row.consumer == consumer.as_str()
                {
                    chosen.push(row);
                }
            }
        }
        let mut loaded = LoadedRows::new(now_ms);
        loaded
            .unpack(chosen.into_iter().cloned())
            .expect("rows decode");
        loaded
    }

    /// Writes a batch's rows the way the backends' statements do; a row
    /// not as loaded would fail the statement's check.
    fn apply(&mut self, writes: RowWrites) {
        for delete in writes.deleted {
            let (row, _) = self.rows.remove(&delete.seq).expect("deleted rows exist");
            assert_eq!(
                row.states, delete.loaded_states,
                "a row changed under the batch"
            );
        }
        for update in writes.updated {
            let (row, summary) = self.rows.get_mut(&update.seq).expect("updated rows exist");
            assert_eq!(
                row.states, update.loaded_states,
                "a row changed under the batch"
            );
            row.states = update.states;
            *summary = update.summary;
        }
        for new in writes.inserted {
            self.next_seq += 1;
            let row = StoredRow {
                seq: self.next_seq,
                consumer: new.consumer.as_str().to_owned(),
                events: new.events,
                states: new.states,
            };
            self.rows.insert(self.next_seq, (row, new.summary));
        }
    }

    fn run(&mut self, command: OutboxCommand, now_ms: i64) -> OutboxReply {
        let commands = vec![command];
        let LoadedRows {
            outbox,
            rows: loaded,
        } = self.load(&OutboxNeeds::of(&commands), now_ms);
        let (mut replies, changes) = decide(outbox, commands);
        self.apply(writes(&loaded, &changes).expect("writes"));
        replies.pop().expect("one reply")
    }

    /// Every entry the table holds.
    fn entries(&self) -> Vec<Entry> {
        self.rows
            .values()
            .flat_map(|(row, _)| LoadedRow::decode(row.clone()).expect("rows decode").1)
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Call {
    /// A batch raising events, each for the consumer of its kind.
    Enqueue(Vec<EventKind>),
    Lease {
        consumer: Consumer,
        max_events: u32,
        lease_ms: u64,
    },
    /// Settles some of the deliveries handed out so far, by index, some
    /// with a forged token.
    Finish {
        consumer: Consumer,
        outcome: DeliveryOutcome,
        picks: Vec<(usize, bool)>,
    },
    /// Redrives the dead letters at these places of the listing.
    Redrive(Consumer, Vec<usize>),
    Wait(i64),
}

fn consumer() -> impl Strategy<Value = Consumer> {
    prop_oneof![Just(Consumer::Payment), Just(Consumer::Inventory)]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        3 => prop::collection::vec(
            prop_oneof![Just(EventKind::OrderReserved), Just(EventKind::PaymentSucceeded)],
            1..7
        )
        .prop_map(Call::Enqueue),
        3 => (consumer(), 1u32..6, 0u64..2_000).prop_map(|(consumer, max_events, lease_ms)| {
            Call::Lease { consumer, max_events, lease_ms }
        }),
        4 => (
            consumer(),
            prop_oneof![
                3 => Just(DeliveryOutcome::Acknowledge),
                1 => Just(DeliveryOutcome::Release),
                1 => Just(DeliveryOutcome::Reject),
                1 => (0u64..2_000).prop_map(|delay_ms| DeliveryOutcome::Postpone { delay_ms })
            ],
            prop::collection::vec((0usize..64, prop::bool::weighted(0.2)), 0..5)
        )
            .prop_map(|(consumer, outcome, picks)| Call::Finish { consumer, outcome, picks }),
        1 => (consumer(), prop::collection::vec(0usize..4, 0..3))
            .prop_map(|(consumer, picks)| Call::Redrive(consumer, picks)),
        2 => (0i64..1_500).prop_map(Call::Wait),
    ]
}

/// What the test knows from outside the table.
#[derive(Default)]
struct Witness {
    /// Every event added, by id, and whether a proven receipt acknowledged it.
    acknowledged: HashMap<String, bool>,
    handed: Vec<Delivery>,
    /// Per event id, the live lease last handed out: (token, until_ms).
    outstanding: HashMap<String, (String, i64)>,
}

/// The table, what the test knows, and the clock.
struct Harness {
    table: Table,
    witness: Witness,
    now_ms: i64,
    next_order: u32,
}

fn run(calls: Vec<Call>) {
    let mut harness = Harness {
        table: Table::default(),
        witness: Witness::default(),
        now_ms: 1_000,
        next_order: 0,
    };
    for call in calls {
        match call {
            Call::Enqueue(kinds) => harness.enqueue(kinds),
            Call::Lease {
                consumer,
                max_events,
                lease_ms,
            } => harness.lease(consumer, max_events, lease_ms),
            Call::Finish {
                consumer,
                outcome,
                picks,
            } => harness.finish(consumer, outcome, &picks),
            Call::Redrive(consumer, picks) => harness.redrive(consumer, &picks),
            Call::Wait(ms) => harness.now_ms += ms,
        }
        check(&harness.table, &harness.witness);
    }
}

impl Harness {
    fn enqueue(&mut self, kinds: Vec<EventKind>) {
        let entries: Vec<NewEntry> = kinds
            .into_iter()
            .map(|kind| {
                self.next_order += 1;
                let order_id = format!("o{}", self.next_order);
                let event = EventRecord {
                    event_id: event_id(kind, &order_id, 1),
                    kind,
                    order_id,
                    order_version: 1,
                    total_units: 1,
                    occurred_at_ms: self.now_ms,
                    trace_parent: None,
                    notice: None,
                };
                self.witness
                    .acknowledged
                    .insert(event.event_id.clone(), false);
                NewEntry::routed(event)
            })
            .collect();
        let changes = OutboxChanges {
            inserted: entries,
            ..OutboxChanges::default()
        };
        self.table
            .apply(writes(&BTreeMap::new(), &changes).expect("writes"));
    }

    fn lease(&mut self, consumer: Consumer, max_events: u32, lease_ms: u64) {
        let (now_ms, witness) = (self.now_ms, &mut self.witness);
        let token = format!("lease-{}", witness.handed.len());
        let command = OutboxCommand::Lease {
            consumer,
            max_events,
            lease_ms,
            token: token.clone(),
        };
        let OutboxReply::Leased(handed) = self.table.run(command, now_ms) else {
            panic!("a lease answers with deliveries");
        };
        assert!(handed.len() <= max_events as usize);
        let until_ms = now_ms + lease_ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS) as i64;
        for delivery in &handed {
            let id = &delivery.event.event_id;
            if let Some((_, held_until_ms)) = witness.outstanding.get(id) {
                assert!(
                    *held_until_ms <= now_ms,
                    "{id} handed out under a live lease"
                );
            }
            witness
                .outstanding
                .insert(id.clone(), (token.clone(), until_ms));
        }
        witness.handed.extend(handed);
    }

    fn finish(&mut self, consumer: Consumer, outcome: DeliveryOutcome, picks: &[(usize, bool)]) {
        let (now_ms, witness) = (self.now_ms, &mut self.witness);
        if witness.handed.is_empty() {
            return;
        }
        // A forged receipt names a real delivery with a token it never had.
        let receipts: Vec<Receipt> = picks
            .iter()
            .map(|&(index, forged)| {
                let delivery = &witness.handed[index % witness.handed.len()];
                let token = match forged {
                    true => format!("{}-forged", delivery.token),
                    false => delivery.token.clone(),
                };
                Receipt {
                    seq: delivery.seq,
                    token,
                }
            })
            .collect();
        let proven: BTreeMap<i64, String> = self
            .table
            .entries()
            .into_iter()
            .filter(|entry| {
                entry.consumer == consumer
                    && receipts.iter().any(|receipt| entry.is_proven_by(receipt))
            })
            .map(|entry| (entry.seq, entry.event.event_id))
            .collect();
        let command = OutboxCommand::Finish {
            consumer,
            outcome,
            receipts,
        };
        assert_eq!(
            self.table.run(command, now_ms),
            OutboxReply::Count(proven.len() as u64),
            "only proven leases settle"
        );
        for id in proven.into_values() {
            match outcome {
                DeliveryOutcome::Postpone { delay_ms } => {
                    let until_ms = now_ms + delay_ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS) as i64;
                    if let Some(held) = witness.outstanding.get_mut(&id) {
                        held.1 = until_ms;
                    }
                }
                DeliveryOutcome::Acknowledge => {
                    witness.outstanding.remove(&id);
                    witness.acknowledged.insert(id, true);
                }
                DeliveryOutcome::Release | DeliveryOutcome::Reject => {
                    witness.outstanding.remove(&id);
                }
            }
        }
    }

    fn redrive(&mut self, consumer: Consumer, picks: &[usize]) {
        let dead: Vec<i64> = self
            .table
            .entries()
            .into_iter()
            .filter(|entry| entry.consumer == consumer && entry.dead_at_ms.is_some())
            .map(|entry| entry.seq)
            .collect();
        if dead.is_empty() {
            return;
        }
        let mut seqs: Vec<i64> = picks.iter().map(|pick| dead[pick % dead.len()]).collect();
        let command = OutboxCommand::Redrive {
            consumer,
            seqs: seqs.clone(),
        };
        let reply = self.table.run(command, self.now_ms);
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(reply, OutboxReply::Count(seqs.len() as u64));
    }
}

/// The rules that hold after every call.
fn check(table: &Table, witness: &Witness) {
    let mut stored: HashMap<String, usize> = HashMap::new();
    for entry in table.entries() {
        *stored.entry(entry.event.event_id.clone()).or_default() += 1;
        assert_eq!(
            entry.lease.is_some() && entry.dead_at_ms.is_none(),
            witness.outstanding.contains_key(&entry.event.event_id),
            "{}'s lease disagrees with what was handed out",
            entry.event.event_id
        );
    }
    for (id, acknowledged) in &witness.acknowledged {
        let copies = stored.get(id).copied().unwrap_or(0);
        assert_eq!(
            copies,
            usize::from(!acknowledged),
            "event {id}: {copies} copies stored, acknowledged: {acknowledged}"
        );
    }
    for (row, summary) in table.rows.values() {
        let (packed, entries) = LoadedRow::decode(row.clone()).expect("rows decode");
        assert!(
            !entries.is_empty(),
            "row {} holds no event and stayed",
            row.seq
        );
        let live: Vec<&Entry> = entries
            .iter()
            .filter(|entry| entry.dead_at_ms.is_none())
            .collect();
        let expected = Summary {
            live: live.len() as i32,
            due_at_ms: live
                .iter()
                .map(|entry| entry.lease.as_ref().map_or(0, |lease| lease.until_ms))
                .min()
                .unwrap_or(0),
            first_at_ms: live.iter().map(|entry| entry.event.occurred_at_ms).min(),
            dead_at_ms: entries.iter().find_map(|entry| entry.dead_at_ms),
        };
        assert_eq!(
            *summary, expected,
            "row {}'s columns disagree with its events",
            row.seq
        );
        let dead = entries.iter().filter(|entry| entry.dead_at_ms.is_some());
        if dead.count() > 0 {
            assert_eq!(
                entries.len(),
                1,
                "row {} keeps a dead letter among others",
                row.seq
            );
            assert_eq!(packed.states.len(), 1, "a dead letter has a row of its own");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_sequence_of_bus_calls_through_packed_rows_keeps_every_event(
        calls in prop::collection::vec(call(), 1..60)
    ) {
        run(calls);
    }
}
