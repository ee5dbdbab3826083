//! The storage boundary: the one trait every Stockroom storage backend
//! implements, and the errors it may return.
//!
//! data-service depends on this trait only, never on a backend, so SQLite,
//! PostgreSQL and any later engine are interchangeable. Every method is one
//! atomic unit: it either happens completely and durably before it returns
//! `Ok`, or not at all. Batch methods apply each element in order and give each
//! its own result; one element's failure does not undo the others.
//!
//! The contract each backend must keep (checked by the conformance suite):
//! - a reservation checks and holds stock in one step, for every item of the
//!   order or none, so no interleaving of callers can oversell;
//! - every order status change is conditional on the order's version, appends
//!   to its history, and never moves the status backwards;
//! - events are written to the outbox in the same transaction as the change
//!   they report, and each consumer's effect is recorded together with the
//!   event id it answers, so a redelivered event has no second effect.

use async_trait::async_trait;
use stockroom_contract::{
    Delivery, EffectResult, InventoryItem, Order, OrderList, PaymentRecord, ReserveRequest,
    ReserveResult, Settlement, StockLine,
};
use stockroom_domain::{OrderStatus, ProductName, ReleaseReason};

/// How many times the bus hands out one event before it is moved to the
/// dead-letter table as poison.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 10;

/// The largest page `orders` returns.
pub const MAX_ORDERS_PER_PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Too much work is queued; the caller should retry later.
    #[error("storage is overloaded, retry later")]
    Overloaded,
    /// The database cannot be reached or refused the operation.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The request names a product that does not exist.
    #[error("unknown product {0}")]
    UnknownProduct(String),
    /// The request is valid JSON but impossible (for example a restock that
    /// would exceed the stock limit).
    #[error("{0}")]
    Invalid(String),
    /// The stored data breaks an invariant the code relies on. Never caused by
    /// a client; always a bug or a damaged database.
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
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

    /// Adds units to an existing product, or creates the product.
    async fn restock(
        &self,
        product: ProductName,
        quantity: u64,
    ) -> Result<InventoryItem, StorageError>;

    /// Reserves each request's items atomically and creates its order.
    async fn reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResult>, StorageError>;

    async fn order(&self, order_id: &str) -> Result<Option<Order>, StorageError>;

    async fn orders(&self, filter: OrderFilter) -> Result<OrderList, StorageError>;

    /// Records payment-service's verdicts and emits `PaymentSucceeded` or
    /// `PaymentFailed` for each.
    async fn record_payments(
        &self,
        payments: Vec<PaymentRecord>,
    ) -> Result<Vec<EffectResult>, StorageError>;

    /// Commits or releases reservations after payment.
    async fn settle(&self, settlements: Vec<Settlement>)
    -> Result<Vec<EffectResult>, StorageError>;

    /// Releases one unpaid reservation (customer cancel).
    async fn release(
        &self,
        order_id: &str,
        reason: ReleaseReason,
    ) -> Result<ReleaseOutcome, StorageError>;

    /// Releases up to `max_orders` unpaid reservations created more than
    /// `older_than_ms` ago, with reason `reservation_expired`.
    async fn expire(
        &self,
        older_than_ms: u64,
        max_orders: u32,
    ) -> Result<Vec<String>, StorageError>;

    /// Leases up to `max_events` undelivered events of one consumer for
    /// `lease_ms`. An event not acknowledged before its lease ends is handed
    /// out again; after [`MAX_DELIVERY_ATTEMPTS`] it is dead-lettered.
    async fn lease_events(
        &self,
        consumer: &str,
        max_events: u32,
        lease_ms: u64,
    ) -> Result<Vec<Delivery>, StorageError>;

    /// Marks deliveries as done so they are never handed out again.
    async fn acknowledge_events(
        &self,
        consumer: &str,
        delivery_ids: Vec<i64>,
    ) -> Result<(), StorageError>;

    /// Events moved to the dead-letter table, per consumer.
    async fn dead_letter_count(&self, consumer: &str) -> Result<u64, StorageError>;

    /// Finishes queued work and closes the database. Calls made after it
    /// fail with [`StorageError::Unavailable`]. The default does nothing,
    /// for backends whose connections need no orderly close.
    async fn close(&self) {}
}
