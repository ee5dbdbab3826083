//! The storage boundary: the one trait every Stockroom storage backend
//! implements, and the errors it may return.
//!
//! data-service depends on this trait only, never on a backend, so SQLite,
//! PostgreSQL and any later engine are interchangeable. Every method is one
//! atomic unit: it either happens completely and durably before it returns
//! `Ok`, or not at all. Batch methods apply each element in order and give each
//! its own result; one element's failure does not undo the others.
//!
//! The rules every change follows are decided in one place, [`batch`] over
//! [`stockroom_domain::rules`]; a backend only loads the rows a batch
//! touches, hands them to the rules, and writes what they decided.
//!
//! The contract each backend must keep (checked by the conformance suite):
//! - a reservation checks and holds stock in one step, for every item of the
//!   order or none, so no interleaving of callers can oversell;
//! - every order status change is conditional on the order's version, appends
//!   to its history, and never moves the status backwards;
//! - events are written to the outbox in the same transaction as the change
//!   they report, and each consumer's effect is recorded together with the
//!   event id it answers, so a redelivered event has no second effect.

pub mod batch;
mod error;
pub mod history;
pub mod lines;
mod write_stats;

use std::collections::HashMap;

use async_trait::async_trait;
use stockroom_contract::{
    DeadLetter, Delivery, EffectResult, Event, HistoryEntry, InventoryItem, Order, OrderList,
    PaymentRecord, ProviderCharge, ProviderStats, ProviderVerdict, Receipt, ReserveRequest,
    ReserveResult, Settlement, StockLine,
};
use stockroom_domain::rules::OrderRecord;
use stockroom_domain::{Consumer, OrderStatus, ProductName, ReleaseReason};

pub use batch::SweptOrder;
use batch::{Command, Reply};
pub use error::{Cause, StorageError, cause};
pub use write_stats::{WriteCounters, WriteStats};

/// How many times consumers may refuse one event as poison before it is
/// dead-lettered. A consumer refuses an event only when it can never handle
/// it (its request refused outright, or its order contradicting the stock),
/// so retrying changes nothing: one refusal dead-letters it, where it waits
/// for an operator to look and redrive it; RabbitMQ dead-letters a rejected
/// message at once too. Only an explicit refusal counts: an event given back
/// because a dependency was down, or whose lease ran out, is handed out again
/// without limit, so no outage ever dead-letters an event.
pub const MAX_REJECTIONS: u32 = 1;

/// What the retention pruner may delete, oldest first: rows older than each
/// cutoff, at most `limit` rows per table per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    /// Idempotency keys answered before this time (ms since the epoch).
    pub idempotency_keys_before_ms: i64,
    /// Processed-event records written before this time.
    pub processed_events_before_ms: i64,
    /// Rejected orders (with their history) created before this time.
    pub rejected_orders_before_ms: i64,
    pub limit: u32,
}

/// How many rows one prune deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub idempotency_keys: u64,
    pub processed_events: u64,
    pub rejected_orders: u64,
}

impl Pruned {
    /// Whether some table had more to delete than the limit allowed.
    pub fn hit_limit(&self, limit: u32) -> bool {
        let limit = u64::from(limit);
        self.idempotency_keys >= limit
            || self.processed_events >= limit
            || self.rejected_orders >= limit
    }
}

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

/// How a consumer settles deliveries it holds the lease of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The effect is committed: never hand the event out again.
    Acknowledge,
    /// Not handled now (a dependency is down): hand it out again at once,
    /// without counting an attempt.
    Release,
    /// Poison: no consumer can handle it. Counted; at [`MAX_REJECTIONS`] the
    /// event is dead-lettered.
    Reject,
}

/// The largest page `orders` returns.
pub const MAX_ORDERS_PER_PAGE: u32 = 500;

/// The most orders `order_counts` counts in one status: beyond it the count
/// says "at least this many". Counting walks the status index, so the cap is
/// what keeps a count (which the dashboard asks for every second) as cheap
/// with ten million orders stored as with a hundred thousand: on SQLite,
/// walking this many entries takes about 10 ms, where counting a million
/// orders without a cap took 0.8 s.
pub const MAX_COUNTED_ORDERS: u64 = 100_000;

/// How many orders are in one status, counted up to a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCount {
    pub status: OrderStatus,
    /// At most the cap given to `order_counts`.
    pub count: u64,
    /// Whether the count stopped at the cap (there may be more).
    pub capped: bool,
}

impl StatusCount {
    /// The count of a status from the rows a backend found when it asked
    /// for at most `cap + 1`: one row more than the cap means "capped".
    pub fn from_found(status: OrderStatus, found: u64, cap: u64) -> StatusCount {
        StatusCount {
            status,
            count: found.min(cap),
            capped: found > cap,
        }
    }
}

/// Which orders to list.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<String>,
    /// Only orders whose id sorts after this one (ids are time-ordered).
    pub after: Option<String>,
    pub limit: u32,
}

impl OrderFilter {
    /// One filter of every shape a listing can take (each condition present
    /// or absent), for tests that check every shape is served by an index.
    pub fn every_shape() -> Vec<OrderFilter> {
        let mut shapes = Vec::with_capacity(8);
        for status in [None, Some(OrderStatus::Reserved)] {
            for customer_id in [None, Some("c1".to_owned())] {
                for after in [None, Some("x".to_owned())] {
                    shapes.push(OrderFilter {
                        status,
                        customer_id: customer_id.clone(),
                        after,
                        limit: 10,
                    });
                }
            }
        }
        shapes
    }
}

/// The result of asking to release one unpaid reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The reservation was released now.
    Released(Order),
    /// The order was already cancelled; nothing changed. Cancelling twice is
    /// harmless.
    AlreadyCancelled(Order),
    /// The order cannot be cancelled any more: it is paid, fulfilled or was
    /// rejected.
    NotCancellable(Order),
    UnknownOrder,
}

/// A storage backend. See the crate documentation for the contract.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A short name for logs and reports, such as `sqlite`.
    fn backend_name(&self) -> &'static str;

    /// Loads the initial stock if no stock was ever loaded. Returns whether it
    /// loaded anything.
    async fn initialize_stock(&self, lines: Vec<StockLine>) -> Result<bool, StorageError>;

    async fn inventory(&self) -> Result<Vec<InventoryItem>, StorageError>;

    /// One product, matched without regard to case.
    async fn inventory_item(&self, product: &str) -> Result<Option<InventoryItem>, StorageError>;

    /// Runs one call of the rules (see [`batch`]) atomically and durably:
    /// the one write path of every backend. The methods below are this call
    /// for each kind of command.
    async fn run(&self, command: Command) -> Result<Reply, StorageError>;

    /// Adds units to an existing product, or creates the product.
    async fn restock(
        &self,
        product: ProductName,
        quantity: u64,
    ) -> Result<InventoryItem, StorageError> {
        match self.run(Command::Restock { product, quantity }).await? {
            Reply::Item(item) => Ok(item),
            other => Err(wrong_reply(other)),
        }
    }

    /// Reserves each request's items atomically and creates its order.
    async fn reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResult>, StorageError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        match self.run(Command::Reserve(requests)).await? {
            Reply::Reserved(results) => Ok(results),
            other => Err(wrong_reply(other)),
        }
    }

    async fn order(&self, order_id: &str) -> Result<Option<Order>, StorageError>;

    async fn orders(&self, filter: OrderFilter) -> Result<OrderList, StorageError>;

    /// How many orders are in each status (every status, in
    /// [`OrderStatus::ALL`] order), each count stopping at `cap`, so the
    /// cost is bounded by the cap whatever the number of orders stored.
    async fn order_counts(&self, cap: u64) -> Result<Vec<StatusCount>, StorageError>;

    /// Records payment-service's verdicts and emits `PaymentSucceeded` or
    /// `PaymentFailed` for each.
    async fn record_payments(
        &self,
        payments: Vec<PaymentRecord>,
    ) -> Result<Vec<EffectResult>, StorageError> {
        if payments.is_empty() {
            return Ok(Vec::new());
        }
        match self.run(Command::RecordPayments(payments)).await? {
            Reply::Effects(results) => Ok(results),
            other => Err(wrong_reply(other)),
        }
    }

    /// Commits or releases reservations after payment.
    async fn settle(
        &self,
        settlements: Vec<Settlement>,
    ) -> Result<Vec<EffectResult>, StorageError> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        match self.run(Command::Settle(settlements)).await? {
            Reply::Effects(results) => Ok(results),
            other => Err(wrong_reply(other)),
        }
    }

    /// Releases one unpaid reservation (customer cancel).
    async fn release(
        &self,
        order_id: &str,
        reason: ReleaseReason,
    ) -> Result<ReleaseOutcome, StorageError> {
        let command = Command::Release {
            order_id: order_id.to_owned(),
            reason,
        };
        match self.run(command).await? {
            Reply::Release(outcome) => Ok(outcome),
            other => Err(wrong_reply(other)),
        }
    }

    /// Ends up to `max_orders` reservations whose next step is overdue by
    /// `older_than_ms`: unpaid ones expire (`reservation_expired`), declined
    /// ones are released, charged ones are fulfilled (see
    /// [`stockroom_domain::rules::Book::sweep`]).
    async fn sweep(
        &self,
        older_than_ms: u64,
        max_orders: u32,
    ) -> Result<Vec<SweptOrder>, StorageError> {
        let command = Command::Sweep {
            older_than_ms,
            max_orders,
        };
        match self.run(command).await? {
            Reply::Swept(swept) => Ok(swept),
            other => Err(wrong_reply(other)),
        }
    }

    /// Leases up to `max_events` undelivered events of one consumer for
    /// `lease_ms`, under a new secret lease token. An event not settled
    /// before its lease ends is handed out again.
    async fn lease_events(
        &self,
        consumer: Consumer,
        max_events: u32,
        lease_ms: u64,
    ) -> Result<Vec<Delivery>, StorageError>;

    /// Acknowledges, releases or rejects deliveries (see
    /// [`DeliveryOutcome`]). A receipt whose token is not the delivery's
    /// current lease (it ran out and the event went to another consumer)
    /// changes nothing. Returns how many deliveries matched.
    async fn finish_deliveries(
        &self,
        consumer: Consumer,
        outcome: DeliveryOutcome,
        receipts: Vec<Receipt>,
    ) -> Result<u64, StorageError>;

    /// Keeps events a consumer refused as poison, as dead letters, when they
    /// reached it through a broker (their outbox rows were deleted once
    /// published): one place lists and redrives dead letters, whatever the
    /// bus. Returns how many were kept.
    async fn bury_events(
        &self,
        consumer: Consumer,
        events: Vec<Event>,
    ) -> Result<u64, StorageError>;

    /// Up to `limit` of a consumer's dead-lettered events, oldest first.
    async fn dead_letters(
        &self,
        consumer: Consumer,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StorageError>;

    /// Puts dead-lettered events back in line, as if never refused. The
    /// consumers' processed-event records still make each effect happen at
    /// most once. Returns how many were redriven.
    async fn redrive(
        &self,
        consumer: Consumer,
        delivery_ids: Vec<i64>,
    ) -> Result<u64, StorageError>;

    /// Events dead-lettered, per consumer.
    async fn dead_letter_count(&self, consumer: Consumer) -> Result<u64, StorageError>;

    /// The simulated payment provider's ledger: records each charge by its
    /// key, the first request's verdict standing for every later request
    /// of the same key. Kept in the system's database so that every
    /// payment-service instance talks to one provider, as it would to a real
    /// one; nothing else reads it.
    async fn provider_charge(
        &self,
        charges: Vec<ProviderCharge>,
    ) -> Result<Vec<ProviderVerdict>, StorageError>;

    /// What the provider's ledger holds.
    async fn provider_stats(&self) -> Result<ProviderStats, StorageError>;

    /// Deletes, oldest first, the rows retention no longer keeps (see
    /// [`Prune`]). Safe for the flow: a key's retries are long over; an event
    /// delivered again after its processed record is gone finds its order
    /// moved on and changes nothing; a rejected order holds no stock.
    async fn prune(&self, prune: Prune) -> Result<Pruned, StorageError>;

    /// Writes and commits a tiny change through the same path every write
    /// takes: `Ok` means the storage accepts writes now (the writer is alive,
    /// the disk is neither full nor read-only, the database answers).
    async fn probe(&self) -> Result<(), StorageError>;

    /// Per consumer: the events waiting, the oldest one's age, and the dead
    /// letters.
    async fn outbox_counts(&self) -> Result<Vec<OutboxCounts>, StorageError>;

    /// SQL statements executed since the storage was opened, transaction
    /// control included: what a benchmark divides by the orders it placed.
    fn statements_executed(&self) -> u64;

    /// The write path's queue depth and batch counts, for the metrics. A
    /// backend without a write queue reports zeros.
    fn write_stats(&self) -> WriteStats {
        WriteStats::default()
    }

    /// Runs one statement of the backend's SQL outside the rules and maps its
    /// failure like any other. Only for tests that inject faults (a broken
    /// constraint, damaged rows); the system never calls it.
    #[doc(hidden)]
    async fn execute_unchecked(&self, statement: &str) -> Result<u64, StorageError>;

    /// Finishes queued work and closes the database. Calls made after it
    /// fail with [`StorageError::Unavailable`]. The default does nothing,
    /// for backends whose connections need no orderly close.
    async fn close(&self) {}
}

/// Order documents from the records and history entries a backend read for
/// `ids`, in the order of `ids` (ids of no record are left out).
pub fn assemble_documents(
    ids: &[String],
    records: Vec<OrderRecord>,
    mut histories: HashMap<String, Vec<HistoryEntry>>,
) -> Vec<Order> {
    let mut by_id: HashMap<String, Order> = records
        .into_iter()
        .map(|record| {
            let history = histories.remove(&record.id).unwrap_or_default();
            (record.id.clone(), Order::from_record(&record, history))
        })
        .collect();
    ids.iter().filter_map(|id| by_id.remove(id)).collect()
}

fn wrong_reply(reply: Reply) -> StorageError {
    StorageError::Inconsistent(format!(
        "the rules answered with the wrong kind of reply: {reply:?}"
    ))
}
