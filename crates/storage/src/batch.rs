//! A batch of storage calls, from the calls to the rows to write: what to
//! load, what the rules decide, what to write and what to answer each caller.
//!
//! Every backend runs a batch the same way, in one transaction:
//!
//! 1. [`Needs::of`] says which rows the calls touch; the backend loads them
//!    (locking them where other processes write too) into a
//!    [`stockroom_domain::rules::Book`], in three steps: idempotency keys and
//!    the sweep's candidates, then orders (whose lines add products to
//!    [`Needs::product_keys`], and whose states say which processed records
//!    matter, [`Needs::orders_loaded`]), then stock and processed events;
//! 2. [`decide`] runs each call through the rules in arrival order and
//!    returns each caller's [`Answer`] and the batch's [`Writes`];
//! 3. the backend writes [`Writes`] with a fixed number of set-based
//!    statements, reads the documents a cancel answers with, and commits.
//!
//! Nothing here does I/O, and everything is a domain record: the services
//! turn the answers into documents. Both backends run batches through here,
//! so they cannot disagree.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use stockroom_domain::rules::{
    Book, Changes, Effect, OrderRecord, ReleaseDecision, ReserveDecision, ReserveInput, RuleError,
    Settle, StockRecord, StoredKey, StoredOrder, SweepDecision, payment_applies,
    settlement_applies,
};
use stockroom_domain::{Consumer, CustomerId, OrderItems, ProductName, ReleaseReason};

use crate::{ReleaseOutcome, StorageError};

/// One order to reserve, as order-service checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: String,
    pub customer_id: CustomerId,
    pub items: OrderItems,
    /// The client's `Idempotency-Key`, scoped to the customer.
    pub idempotency_key: Option<String>,
    /// A hash of the normalised request, to tell a retry from a different
    /// request that reuses the key.
    pub fingerprint: Option<String>,
    /// The W3C trace context of the order's request, carried to its
    /// `OrderReserved` event (see [`MAX_TRACE_CONTEXT_BYTES`]).
    pub trace_parent: Option<String>,
}

/// payment-service's verdict on one reserved order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentVerdict {
    pub order_id: String,
    /// The `OrderReserved` event this answers.
    pub event_id: String,
    pub approved: bool,
    /// The W3C trace context of the payment, carried to its verdict's event.
    pub trace_parent: Option<String>,
}

/// inventory-service's settlement of one paid or declined order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementCall {
    pub order_id: String,
    /// The payment event this answers.
    pub event_id: String,
    pub action: Settle,
}

/// A call the rules decide.
#[derive(Debug, Clone)]
pub enum Command {
    Reserve(Vec<Reservation>),
    RecordPayments(Vec<PaymentVerdict>),
    Settle(Vec<SettlementCall>),
    Release {
        order_id: String,
        reason: ReleaseReason,
    },
    /// Ends reservations whose next step is overdue (see
    /// [`Book::sweep`]): at most `max_orders` of them.
    Sweep {
        older_than_ms: u64,
        max_orders: u32,
    },
    Restock {
        product: ProductName,
        quantity: u64,
    },
}

impl Command {
    /// How many requests, events or orders the call carries, for batch
    /// limits.
    pub fn size(&self) -> usize {
        match self {
            Command::Reserve(requests) => requests.len(),
            Command::RecordPayments(payments) => payments.len(),
            Command::Settle(settlements) => settlements.len(),
            Command::Sweep { max_orders, .. } => *max_orders as usize,
            Command::Release { .. } | Command::Restock { .. } => 1,
        }
    }
}

/// One order the sweep ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptOrder {
    pub order_id: String,
    pub outcome: SweepDecision,
}

/// The answer to one [`Command`].
#[derive(Debug, Clone)]
pub enum Reply {
    Reserved(Vec<ReserveDecision>),
    /// One effect per event, in the order given; an error means the stored
    /// order contradicts the stock (a bug or damaged data) and nothing was
    /// changed for that event.
    Effects(Vec<Result<Effect, RuleError>>),
    Release(ReleaseOutcome),
    Swept(Vec<SweptOrder>),
    Item(StockRecord),
}

/// What [`decide`] answers a command with: a reply, or a cancel's decision
/// whose reply needs the order with its history, read after the writes.
#[derive(Debug, Clone)]
pub enum Answer {
    Ready(Reply),
    Release {
        order_id: String,
        decision: ReleaseDecision,
    },
}

impl Answer {
    /// The order the answer needs read, if any.
    pub fn order_needed(&self) -> Option<&str> {
        match self {
            Answer::Release {
                order_id,
                decision:
                    ReleaseDecision::Released
                    | ReleaseDecision::AlreadyCancelled
                    | ReleaseDecision::NotCancellable,
            } => Some(order_id),
            _ => None,
        }
    }

    /// The reply, given the order [`Answer::order_needed`] asked for.
    pub fn into_reply(self, order: Option<StoredOrder>) -> Result<Reply, StorageError> {
        match self {
            Answer::Ready(reply) => Ok(reply),
            Answer::Release { order_id, decision } => {
                let document = || {
                    order.ok_or_else(|| {
                        StorageError::Inconsistent(format!("order {order_id} vanished"))
                    })
                };
                Ok(Reply::Release(match decision {
                    ReleaseDecision::Released => ReleaseOutcome::Released(document()?),
                    ReleaseDecision::AlreadyCancelled => {
                        ReleaseOutcome::AlreadyCancelled(document()?)
                    }
                    ReleaseDecision::NotCancellable => ReleaseOutcome::NotCancellable(document()?),
                    ReleaseDecision::UnknownOrder => ReleaseOutcome::UnknownOrder,
                }))
            }
        }
    }
}

/// The sweep's candidates, found by the backend before the orders are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepQuery {
    /// Reservations not advanced since this time are due.
    pub cutoff_ms: i64,
    pub limit: u32,
    /// The due reservations' ids, filled in by the backend.
    pub found: Vec<String>,
}

/// The rows a batch touches. Sorted sets, so that backends lock rows in one
/// global order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Orders to load: those the calls name, and the ids new orders would
    /// take (a taken id is found by loading it).
    pub order_ids: BTreeSet<String>,
    /// Stock rows to load: the products requests name, and (after
    /// [`Needs::add_lines`]) those of the loaded orders.
    pub product_keys: BTreeSet<String>,
    /// Events whose processed record to look up, per consumer: filled in by
    /// [`Needs::orders_loaded`].
    pub processed: BTreeMap<Consumer, BTreeSet<String>>,
    /// Every event the calls carry, for [`Needs::orders_loaded`].
    events: Vec<CarriedEvent>,
    /// Idempotency keys to look up, as (customer id, key).
    pub keys: BTreeSet<(String, String)>,
    /// One query per sweep call.
    pub sweeps: Vec<SweepQuery>,
}

impl Needs {
    /// What `commands` touch, before anything is loaded.
    pub fn of(commands: &[Command], now_ms: i64) -> Needs {
        let mut needs = Needs::default();
        for command in commands {
            match command {
                Command::Reserve(requests) => {
                    for request in requests {
                        needs.order_ids.insert(request.order_id.clone());
                        needs
                            .product_keys
                            .extend(request.items.iter().map(|item| item.product.key()));
                        if let Some(key) = &request.idempotency_key {
                            needs
                                .keys
                                .insert((request.customer_id.as_str().to_owned(), key.clone()));
                        }
                    }
                }
                Command::RecordPayments(payments) => {
                    for payment in payments {
                        needs.order_ids.insert(payment.order_id.clone());
                        needs.events.push(CarriedEvent {
                            event_id: payment.event_id.clone(),
                            order_id: payment.order_id.clone(),
                            step: Step::Payment,
                        });
                    }
                }
                Command::Settle(settlements) => {
                    for settlement in settlements {
                        needs.order_ids.insert(settlement.order_id.clone());
                        needs.events.push(CarriedEvent {
                            event_id: settlement.event_id.clone(),
                            order_id: settlement.order_id.clone(),
                            step: Step::Settlement(settlement.action),
                        });
                    }
                }
                Command::Release { order_id, .. } => {
                    needs.order_ids.insert(order_id.clone());
                }
                Command::Sweep {
                    older_than_ms,
                    max_orders,
                } => needs.sweeps.push(SweepQuery {
                    cutoff_ms: now_ms
                        .saturating_sub(i64::try_from(*older_than_ms).unwrap_or(i64::MAX)),
                    limit: *max_orders,
                    found: Vec::new(),
                }),
                Command::Restock { product, .. } => {
                    needs.product_keys.insert(product.key());
                }
            }
        }
        needs
    }

    /// Names the processed records worth looking up, once the orders are in
    /// the book: only those of events whose order's state says they no longer
    /// apply. An event that still applies was never applied (applying it moves
    /// the order on), so in the steady flow of a sale no record is read; a
    /// redelivered event is recognised by its record and answered
    /// `duplicate`.
    pub fn orders_loaded(&mut self, book: &Book) {
        for event in &self.events {
            let Some(order) = book.order(&event.order_id) else {
                continue;
            };
            let (consumer, applies) = match event.step {
                Step::Payment => (Consumer::Payment, payment_applies(order)),
                Step::Settlement(action) => {
                    (Consumer::Inventory, settlement_applies(order, action))
                }
            };
            if !applies {
                self.processed
                    .entry(consumer)
                    .or_default()
                    .insert(event.event_id.clone());
            }
        }
    }

    /// Adds the orders that stored idempotency keys answered with, so that a
    /// replay can rebuild its answer; call it with the keys before loading
    /// the orders.
    pub fn keys_loaded<'a>(&mut self, keys: impl IntoIterator<Item = &'a StoredKey>) {
        self.order_ids
            .extend(keys.into_iter().map(|key| key.answer.order_id().to_owned()));
    }

    /// Adds the sweep candidates the backend found for sweep `index`.
    pub fn add_swept(&mut self, index: usize, ids: Vec<String>) {
        self.order_ids.extend(ids.iter().cloned());
        self.sweeps[index].found = ids;
    }

    /// Adds the products of a loaded order's lines.
    pub fn add_lines(&mut self, order: &OrderRecord) {
        self.product_keys
            .extend(order.lines.iter().map(|line| line.product_key.clone()));
    }
}

/// An event a call carries, and the step of the flow it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CarriedEvent {
    event_id: String,
    order_id: String,
    step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Payment,
    Settlement(Settle),
}

/// Everything a batch writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writes {
    pub changes: Changes,
    pub created_at_ms: i64,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether the batch wrote events, so that waiting consumers should look.
    pub fn has_events(&self) -> bool {
        !self.changes.events.is_empty()
    }
}

/// Runs every command through the rules, in order, and returns each one's
/// answer and what the whole batch writes. One call's refusal never undoes
/// another's effect: each decision of the book is all or nothing.
pub fn decide(
    mut book: Book,
    commands: &[Command],
    needs: &Needs,
) -> (Vec<Result<Answer, StorageError>>, Writes) {
    let mut sweeps = needs.sweeps.iter();
    let answers = commands
        .iter()
        .map(|command| match command {
            Command::Reserve(requests) => {
                Ok(Answer::Ready(Reply::Reserved(reserve(&mut book, requests))))
            }
            Command::RecordPayments(payments) => Ok(Answer::Ready(Reply::Effects(
                record_payments(&mut book, payments),
            ))),
            Command::Settle(settlements) => Ok(Answer::Ready(Reply::Effects(settle(
                &mut book,
                settlements,
            )))),
            Command::Release { order_id, reason } => release(&mut book, order_id, *reason),
            Command::Sweep { .. } => {
                let query = sweeps
                    .next()
                    .expect("Needs::of made one sweep query per sweep command");
                Ok(Answer::Ready(Reply::Swept(sweep(&mut book, query))))
            }
            Command::Restock { product, quantity } => restock(&mut book, product, *quantity),
        })
        .collect();
    let created_at_ms = book.now_ms();
    let mut changes = book.into_changes();
    carry_trace_context(commands, &mut changes);
    (
        answers,
        Writes {
            changes,
            created_at_ms,
        },
    )
}

fn reserve(book: &mut Book, requests: &[Reservation]) -> Vec<ReserveDecision> {
    requests
        .iter()
        .map(|request| {
            let decision = book.reserve(ReserveInput {
                order_id: &request.order_id,
                customer_id: &request.customer_id,
                items: &request.items,
                idempotency_key: request.idempotency_key.as_deref(),
                fingerprint: request.fingerprint.as_deref(),
            });
            match &decision {
                ReserveDecision::AnswerGone { order_id } => tracing::error!(
                    order_id,
                    "an idempotency key's order is no longer stored; its answer cannot be replayed"
                ),
                decision => {
                    tracing::debug!(order_id = %request.order_id, ?decision, "reservation decided")
                }
            }
            decision
        })
        .collect()
}

fn record_payments(book: &mut Book, payments: &[PaymentVerdict]) -> Vec<Result<Effect, RuleError>> {
    payments
        .iter()
        .map(|payment| {
            let effect = book.record_payment(&payment.order_id, &payment.event_id, payment.approved);
            tracing::debug!(order_id = %payment.order_id, approved = payment.approved, ?effect, "payment recorded");
            Ok(effect)
        })
        .collect()
}

fn settle(book: &mut Book, settlements: &[SettlementCall]) -> Vec<Result<Effect, RuleError>> {
    settlements
        .iter()
        .map(|settlement| {
            let effect = book.settle(&settlement.order_id, &settlement.event_id, settlement.action);
            match &effect {
                Ok(effect) => tracing::debug!(order_id = %settlement.order_id, action = ?settlement.action, ?effect, "settlement decided"),
                Err(error) => tracing::error!(order_id = %settlement.order_id, error = error as &dyn std::error::Error, "stored order is inconsistent; event not applied"),
            }
            effect
        })
        .collect()
}

fn release(book: &mut Book, order_id: &str, reason: ReleaseReason) -> Result<Answer, StorageError> {
    let decision = book
        .release(order_id, reason)
        .map_err(|error| StorageError::Inconsistent(error.to_string()))?;
    tracing::info!(
        operation = "release",
        order_id,
        reason = reason.as_str(),
        ?decision,
        "release decided"
    );
    Ok(Answer::Release {
        order_id: order_id.to_owned(),
        decision,
    })
}

fn restock(book: &mut Book, product: &ProductName, quantity: u64) -> Result<Answer, StorageError> {
    let stock = book
        .restock(product, quantity)
        .map_err(|error| StorageError::Refused(error.to_string()))?;
    let key = product.key();
    let (name, _) = book
        .stock(&key)
        .expect("a restocked product is in the book");
    tracing::info!(
        operation = "restock",
        product = name,
        quantity,
        on_hand_after = stock.on_hand(),
        "inventory restocked"
    );
    Ok(Answer::Ready(Reply::Item(StockRecord {
        product_name: name.to_owned(),
        product_key: key,
        stock,
    })))
}

/// The longest trace context an event carries into the outbox: a W3C
/// `traceparent` is 55 bytes; anything much longer is not one and is dropped
/// rather than stored with every event.
pub const MAX_TRACE_CONTEXT_BYTES: usize = 128;

/// Gives each event the trace context of the call that caused it (the
/// order's request or the payment verdict), so that its consumer continues
/// the order's trace. The rules never see it: it only rides along.
fn carry_trace_context(commands: &[Command], changes: &mut Changes) {
    let mut by_order: HashMap<&str, &str> = HashMap::new();
    for command in commands {
        match command {
            Command::Reserve(requests) => by_order.extend(requests.iter().filter_map(|request| {
                Some((
                    request.order_id.as_str(),
                    bounded(request.trace_parent.as_deref())?,
                ))
            })),
            Command::RecordPayments(payments) => {
                by_order.extend(payments.iter().filter_map(|payment| {
                    Some((
                        payment.order_id.as_str(),
                        bounded(payment.trace_parent.as_deref())?,
                    ))
                }))
            }
            _ => {}
        }
    }
    if by_order.is_empty() {
        return;
    }
    for event in &mut changes.events {
        event.trace_parent = by_order
            .get(event.order_id.as_str())
            .map(|traceparent| (*traceparent).to_owned());
    }
}

fn bounded(trace_context: Option<&str>) -> Option<&str> {
    trace_context.filter(|value| value.len() <= MAX_TRACE_CONTEXT_BYTES)
}

fn sweep(book: &mut Book, query: &SweepQuery) -> Vec<SweptOrder> {
    let mut swept = Vec::new();
    for order_id in &query.found {
        match book.sweep(order_id, query.cutoff_ms) {
            Ok(SweepDecision::Kept) => {}
            Ok(outcome) => {
                tracing::info!(
                    operation = "sweep",
                    order_id,
                    ?outcome,
                    "overdue reservation ended"
                );
                swept.push(SweptOrder {
                    order_id: order_id.clone(),
                    outcome,
                });
            }
            Err(error) => {
                tracing::error!(order_id, %error, "stored order is inconsistent; left reserved");
            }
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use stockroom_domain::EventKind;
    use stockroom_domain::rules::EventRecord;

    use super::*;

    fn event(order_id: &str) -> EventRecord {
        EventRecord {
            event_id: format!("PaymentSucceeded:{order_id}:2"),
            kind: EventKind::PaymentSucceeded,
            order_id: order_id.to_owned(),
            order_version: 2,
            total_units: 1,
            occurred_at_ms: 0,
            trace_parent: None,
        }
    }

    fn payment(order_id: &str, trace_parent: Option<String>) -> PaymentVerdict {
        PaymentVerdict {
            order_id: order_id.to_owned(),
            event_id: format!("OrderReserved:{order_id}:1"),
            approved: true,
            trace_parent,
        }
    }

    #[test]
    fn each_event_gets_its_own_calls_trace_context_if_it_is_bounded() {
        let traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let commands = [
            Command::RecordPayments(vec![payment("a", Some(traced.into())), payment("b", None)]),
            Command::RecordPayments(vec![payment(
                "c",
                Some("x".repeat(MAX_TRACE_CONTEXT_BYTES + 1)),
            )]),
        ];
        let mut changes = Changes {
            events: vec![event("a"), event("b"), event("c")],
            ..Changes::default()
        };
        carry_trace_context(&commands, &mut changes);
        let carried: Vec<Option<&str>> = changes
            .events
            .iter()
            .map(|event| event.trace_parent.as_deref())
            .collect();
        assert_eq!(carried, [Some(traced), None, None]);
    }
}
