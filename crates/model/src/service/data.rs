//! data-service: the only service that touches the store. Each call loads
//! the rows into a `Book` or an `Outbox`, lets the real rules decide, and
//! writes the changes with the store's conditional writes, in one step: a
//! committed transaction is durable and serializable per row lock, which the
//! model assumes of the storage engines rather than checks.
//!
//! Its consumers' calls to lease work and the sweeper's call are long polls:
//! with nothing due, the call waits (its delivery is no step) until
//! something is, as a consumer's receive waits on the embedded bus.

use std::collections::{BTreeMap, BTreeSet};

use stateright::actor::{Id, Out, model_timeout};
use stockroom_domain::outbox::{Delivery, DeliveryOutcome, Receipt};
use stockroom_domain::rules::{
    Book, Effect, ReleaseDecision, ReserveAnswer, ReserveDecision, ReserveInput, Settle,
    SweepDecision,
};
use stockroom_domain::{
    Consumer, CustomerId, EventKind, OrderItem, OrderItems, OrderStatus, ProductName, Quantity,
    ReleaseReason,
};

use super::{
    PRODUCT_NAME, Service, Timer, UNITS_PER_ORDER, customer_id, idempotency_key, order_id,
};
use crate::clock::{LEASE_MS, sweep_cutoff_ms};
use crate::messages::{
    CancelAnswer, DeliveryNote, EffectNote, EventStep, Msg, Outcome, PlaceAnswer, Reply, Request,
};
use crate::mutants::{Mutant, StaleCall};
use crate::store::{ChargeRow, Store, WriteDiscipline};

/// The most events one lease hands out. Batching is a matter of speed; the
/// rules decide each event of a batch alone (the property tests cover
/// batches), so the model leases one at a time.
pub const MAX_EVENTS_PER_LEASE: u32 = 1;

/// The prefix of the provider's charge key: one key per order.
const CHARGE_KEY_PREFIX: &str = "order:";

#[derive(Clone, Debug)]
pub struct DataService {
    pub initial: Store,
    pub mutant: Option<Mutant>,
}

/// An event that took effect: the order it named, the settlement it made
/// (none for a payment), and how many times it took effect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppliedEvent {
    pub order_id: String,
    pub settlement: Option<Settle>,
    pub times: u8,
}

/// What the model watches beside the store, to state its properties: ghost
/// records that no decision reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Audit {
    /// Each event that took effect, by consumer and event id.
    pub applied: BTreeMap<(Consumer, String), AppliedEvent>,
    /// How many orders each idempotency key created, by (customer, key).
    pub orders_per_key: BTreeMap<(String, String), u8>,
    /// Orders the provider was asked to charge before their reservation
    /// committed.
    pub charged_unreserved: BTreeSet<String>,
    /// Whether an event was ever delivered again after it took effect and
    /// recognised as a duplicate.
    pub duplicates_recognised: bool,
}

/// A call read but not yet decided and written (broken variants only).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pending {
    pub snapshot: Store,
    pub src: Id,
    pub msg: Msg,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DataState {
    pub store: Store,
    pub audit: Audit,
    pub pending: Option<Pending>,
}

/// One call being served: the rows the rules see, and the state written.
struct Serving<'a> {
    read: &'a Store,
    next: &'a mut DataState,
    discipline: WriteDiscipline,
}

impl DataService {
    pub(super) fn start(&self, o: &mut Out<Service>) -> DataState {
        o.set_timer(Timer::Tick, model_timeout());
        DataState {
            store: self.initial.clone(),
            audit: Audit::default(),
            pending: None,
        }
    }

    fn discipline(&self) -> WriteDiscipline {
        self.mutant
            .map_or(WriteDiscipline::STOCKROOM, Mutant::discipline)
    }

    pub(super) fn on_msg(
        &self,
        state: &DataState,
        src: Id,
        msg: Msg,
        o: &mut Out<Service>,
    ) -> Option<DataState> {
        let stale = self.mutant.and_then(Mutant::stale_call);
        if state.pending.is_none() && stale.is_some_and(|call| reads_stale(call, &msg)) {
            let mut next = state.clone();
            next.pending = Some(Pending {
                snapshot: state.store.clone(),
                src,
                msg,
            });
            o.set_timer(Timer::Commit, model_timeout());
            return Some(next);
        }
        self.serve(state, &state.store, src, msg, o)
    }

    pub(super) fn on_timeout(
        &self,
        state: &DataState,
        timer: Timer,
        o: &mut Out<Service>,
    ) -> Option<DataState> {
        let mut next = state.clone();
        match timer {
            Timer::Tick => {
                o.set_timer(Timer::Tick, model_timeout());
                next.store.age().then_some(next)
            }
            Timer::Commit => {
                let pending = next.pending.take()?;
                let served = self.serve(&next, &pending.snapshot, pending.src, pending.msg, o);
                Some(served.unwrap_or(next))
            }
            _ => None,
        }
    }

    /// Serves one call on the rows in `read` (the store itself, but for a
    /// broken variant's stale read), writing to `state`'s store.
    fn serve(
        &self,
        state: &DataState,
        read: &Store,
        src: Id,
        msg: Msg,
        o: &mut Out<Service>,
    ) -> Option<DataState> {
        let mut next = state.clone();
        let mut serving = Serving {
            read,
            next: &mut next,
            discipline: self.discipline(),
        };
        let answer = match msg {
            Msg::Reserve {
                client,
                order,
                attempt,
                boot,
            } => Some(Msg::ReserveAnswered {
                client,
                order,
                attempt,
                boot,
                answer: serving.reserve(client, order, attempt),
            }),
            Msg::Release {
                client,
                order,
                order_id,
                boot,
            } => Some(Msg::ReleaseAnswered {
                client,
                order,
                boot,
                answer: serving.release(&order_id),
            }),
            Msg::Call { tag, request } => serving
                .call(request)
                .map(|reply| Msg::Answer { tag, reply }),
            _ => None,
        };
        match answer {
            Some(answer) => {
                o.send(src, answer);
                Some(next)
            }
            None => (next != *state).then_some(next),
        }
    }
}

/// Whether a broken variant reads `msg`'s call before deciding it.
fn reads_stale(call: StaleCall, msg: &Msg) -> bool {
    matches!(
        (call, msg),
        (StaleCall::Reserve, Msg::Reserve { .. })
            | (StaleCall::Release, Msg::Release { .. })
            | (
                StaleCall::Settle,
                Msg::Call {
                    request: Request::Settle { .. },
                    ..
                },
            )
    )
}

fn items() -> OrderItems {
    OrderItems::new(vec![OrderItem {
        product: ProductName::new(PRODUCT_NAME).expect("the model's product name is valid"),
        quantity: Quantity::new(i128::from(UNITS_PER_ORDER)).expect("one unit is a quantity"),
    }])
    .expect("one item is an order")
}

fn bump<K: Ord>(counts: &mut BTreeMap<K, u8>, key: K) {
    let count = counts.entry(key).or_insert(0);
    *count = count.saturating_add(1);
}

impl Serving<'_> {
    fn book(&self) -> Option<Book> {
        self.read.book().ok()
    }

    fn reserve(&mut self, client: u8, order: u8, attempt: u8) -> PlaceAnswer {
        let Some(mut book) = self.book() else {
            return PlaceAnswer::Failed;
        };
        let id = order_id(client, order, attempt);
        let customer = CustomerId::new(&customer_id(client)).expect("model customers are valid");
        let (key, fingerprint, items) = (idempotency_key(order), format!("f{order}"), items());
        let decision = book.reserve(ReserveInput {
            order_id: &id,
            customer_id: &customer,
            items: &items,
            idempotency_key: Some(&key),
            fingerprint: Some(&fingerprint),
        });
        let answer = match &decision {
            ReserveDecision::Created(answer) | ReserveDecision::Replay(answer) => match answer {
                ReserveAnswer::Reserved(order) => PlaceAnswer::Reserved(order.id.clone()),
                ReserveAnswer::Rejected { order, .. } => PlaceAnswer::Rejected(order.id.clone()),
            },
            _ => PlaceAnswer::Refused,
        };
        if self
            .next
            .store
            .apply(book.into_changes(), self.discipline)
            .is_err()
        {
            return PlaceAnswer::Failed;
        }
        if let ReserveDecision::Created(_) = decision {
            bump(
                &mut self.next.audit.orders_per_key,
                (customer_id(client), key),
            );
        }
        answer
    }

    fn release(&mut self, order_id: &str) -> CancelAnswer {
        let Some(mut book) = self.book() else {
            return CancelAnswer::Failed;
        };
        let Ok(decision) = book.release(order_id, ReleaseReason::CancelledByCustomer) else {
            return CancelAnswer::Failed;
        };
        if self
            .next
            .store
            .apply(book.into_changes(), self.discipline)
            .is_err()
        {
            return CancelAnswer::Failed;
        }
        match decision {
            ReleaseDecision::Released => CancelAnswer::Released,
            ReleaseDecision::AlreadyCancelled => CancelAnswer::AlreadyCancelled,
            ReleaseDecision::NotCancellable => CancelAnswer::NotCancellable,
            ReleaseDecision::UnknownOrder => CancelAnswer::Unknown,
        }
    }

    /// A consumer's or the sweeper's call; `None` while a long poll waits.
    fn call(&mut self, request: Request) -> Option<Reply> {
        match request {
            Request::Lease(consumer) => self.lease(consumer),
            Request::Finish {
                consumer,
                outcome,
                seq,
                token,
            } => Some(self.finish(consumer, outcome, Receipt { seq, token })),
            Request::Charge { order_id, approved } => Some(self.charge(&order_id, approved)),
            Request::RecordPayment {
                order_id,
                event_id,
                approved,
            } => Some(self.record_payment(&order_id, &event_id, approved)),
            Request::Settle {
                order_id,
                event_id,
                step,
            } => Some(self.settle(&order_id, &event_id, step)),
            Request::Sweep => self.sweep(),
        }
    }

    fn lease(&mut self, consumer: Consumer) -> Option<Reply> {
        let mut outbox = self.read.outbox();
        let token = format!("t{}", self.next.store.leases_granted + 1);
        let delivery = outbox
            .lease(consumer, MAX_EVENTS_PER_LEASE, LEASE_MS, &token)
            .into_iter()
            .next()?;
        self.next.store.leases_granted += 1;
        if self.next.store.apply_outbox(outbox.into_changes()).is_err() {
            return Some(Reply::Failed);
        }
        Some(Reply::Leased(note(delivery)))
    }

    fn finish(&mut self, consumer: Consumer, outcome: Outcome, receipt: Receipt) -> Reply {
        let mut outbox = self.read.outbox();
        let outcome = match outcome {
            Outcome::Acknowledge => DeliveryOutcome::Acknowledge,
            Outcome::Release => DeliveryOutcome::Release,
            Outcome::Reject => DeliveryOutcome::Reject,
        };
        let settled = outbox.finish(consumer, outcome, &[receipt]);
        match self.next.store.apply_outbox(outbox.into_changes()) {
            Ok(()) => Reply::Finished(settled as u8),
            Err(_) => Reply::Failed,
        }
    }

    /// The provider's ledger: one entry per charge key, the first verdict
    /// standing for every later request of the key.
    fn charge(&mut self, order_id: &str, approved: bool) -> Reply {
        if order_id.is_empty() {
            return Reply::Refused;
        }
        let reservation_committed = self.read.history.get(order_id).is_some_and(|history| {
            history
                .iter()
                .any(|entry| entry.status == OrderStatus::Reserved)
        });
        if !reservation_committed {
            self.next
                .audit
                .charged_unreserved
                .insert(order_id.to_owned());
        }
        let row = self
            .next
            .store
            .ledger
            .entry(format!("{CHARGE_KEY_PREFIX}{order_id}"))
            .and_modify(|row| row.requests = row.requests.saturating_add(1))
            .or_insert_with(|| ChargeRow {
                order_id: order_id.to_owned(),
                approved,
                requests: 1,
            });
        Reply::Verdict(row.approved)
    }

    fn record_payment(&mut self, order_id: &str, event_id: &str, approved: bool) -> Reply {
        if order_id.is_empty() {
            return Reply::Refused;
        }
        let Some(mut book) = self.book() else {
            return Reply::Failed;
        };
        let effect = book.record_payment(order_id, event_id, approved);
        self.effect(book, Consumer::Payment, (order_id, event_id, None), effect)
    }

    fn settle(&mut self, order_id: &str, event_id: &str, step: EventStep) -> Reply {
        if order_id.is_empty() {
            return Reply::Refused;
        }
        let Some(mut book) = self.book() else {
            return Reply::Failed;
        };
        let action = match step {
            EventStep::Release => Settle::Release,
            EventStep::Commit | EventStep::Pay => Settle::Commit,
        };
        match book.settle(order_id, event_id, action) {
            Ok(effect) => {
                let event = (order_id, event_id, Some(action));
                self.effect(book, Consumer::Inventory, event, effect)
            }
            Err(_) => Reply::Effect(EffectNote::Inconsistent),
        }
    }

    /// Writes what an event did and answers with it.
    /// Writes what an event (its order, its id, the settlement it asks for)
    /// did and answers with it.
    fn effect(
        &mut self,
        book: Book,
        consumer: Consumer,
        (order_id, event_id, settlement): (&str, &str, Option<Settle>),
        effect: Effect,
    ) -> Reply {
        if self
            .next
            .store
            .apply(book.into_changes(), self.discipline)
            .is_err()
        {
            return Reply::Failed;
        }
        let note = match effect {
            Effect::Applied(_) => {
                let applied = self
                    .next
                    .audit
                    .applied
                    .entry((consumer, event_id.to_owned()))
                    .or_insert_with(|| AppliedEvent {
                        order_id: order_id.to_owned(),
                        settlement,
                        times: 0,
                    });
                applied.times = applied.times.saturating_add(1);
                EffectNote::Applied
            }
            Effect::Duplicate(_) => {
                self.next.audit.duplicates_recognised = true;
                EffectNote::Duplicate
            }
            Effect::NotApplicable(_) => EffectNote::NotApplicable,
            Effect::UnknownOrder => EffectNote::UnknownOrder,
        };
        Reply::Effect(note)
    }

    /// Ends every overdue reservation; `None` (the sweeper waits) while none
    /// is due.
    fn sweep(&mut self) -> Option<Reply> {
        let read = self.read;
        let mut book = read.book().ok()?;
        let cutoff_ms = sweep_cutoff_ms();
        let due: Vec<&String> = read
            .orders
            .values()
            .filter(|order| {
                order.status == OrderStatus::Reserved && order.updated_at_ms <= cutoff_ms
            })
            .map(|order| &order.id)
            .collect();
        let swept = due
            .into_iter()
            .filter(|id| !matches!(book.sweep(id, cutoff_ms), Ok(SweepDecision::Kept) | Err(_)))
            .count();
        if swept == 0 {
            return None;
        }
        if self
            .next
            .store
            .apply(book.into_changes(), self.discipline)
            .is_err()
        {
            return Some(Reply::Failed);
        }
        Some(Reply::Swept(swept as u8))
    }
}

fn note(delivery: Delivery) -> DeliveryNote {
    DeliveryNote {
        seq: delivery.seq,
        token: delivery.token,
        step: match delivery.event.kind {
            EventKind::OrderReserved => EventStep::Pay,
            EventKind::PaymentSucceeded => EventStep::Commit,
            EventKind::PaymentFailed => EventStep::Release,
            // Notices for webhooks: the model's rules raise none (its book
            // is not notifying) and no model consumer leases them.
            other => unreachable!("the model never writes a {other:?} event"),
        },
        order_id: delivery.event.order_id,
        event_id: delivery.event.event_id,
    }
}
