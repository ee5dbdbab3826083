//! The order flow's storage: stock and orders, read as domain records and
//! changed only through the rules (see [`crate::batch`]).

use async_trait::async_trait;
use stockroom_domain::rules::{
    AdjustDecision, CreateDecision, Effect, ExtendDecision, Movement, ProductSettings,
    ReserveDecision, RuleError, SettingsChange, SettingsDecision, StockRecord, StoredOrder,
};
use stockroom_domain::{OrderStatus, ProductName, ReleaseReason};

use crate::StorageError;
use crate::batch::{
    Adjustment, Command, PaymentVerdict, Reply, Reservation, SettlementCall, SweptOrder,
};

/// The largest page of a product's movements.
pub const MAX_MOVEMENTS_PER_PAGE: u32 = 1_000;

/// One page of a product's ledger, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementPage {
    pub movements: Vec<Movement>,
    /// The seq to read after for the next page; `None` on the last page.
    pub next_cursor: Option<u64>,
}

/// The largest page [`OrderFlow::orders`] returns.
pub const MAX_ORDERS_PER_PAGE: u32 = 500;

/// How many orders are in one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCount {
    pub status: OrderStatus,
    pub count: u64,
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

/// One page of orders, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<StoredOrder>,
    /// The id to list after for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// One product of the initial stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialStock {
    pub product: ProductName,
    pub quantity: u64,
}

/// The result of asking to release one unpaid reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The reservation was released now.
    Released(StoredOrder),
    /// The order was already cancelled; nothing changed. Cancelling twice is
    /// harmless.
    AlreadyCancelled(StoredOrder),
    /// The order cannot be cancelled any more: it is paid, fulfilled or was
    /// rejected.
    NotCancellable(StoredOrder),
    UnknownOrder,
}

/// Stock and orders. Every change goes through [`OrderFlow::run`], the one
/// write path; the other writing methods are that call for each kind of
/// command.
#[async_trait]
pub trait OrderFlow: Send + Sync + 'static {
    /// Loads the initial stock if no stock was ever loaded. Returns whether it
    /// loaded anything.
    async fn initialize_stock(&self, lines: Vec<InitialStock>) -> Result<bool, StorageError>;

    /// Every product's stock, by product key.
    async fn inventory(&self) -> Result<Vec<StockRecord>, StorageError>;

    /// One product, matched without regard to case.
    async fn inventory_item(&self, product: &str) -> Result<Option<StockRecord>, StorageError>;

    /// One order with its history.
    async fn order(&self, order_id: &str) -> Result<Option<StoredOrder>, StorageError>;

    /// A page of orders with their histories.
    async fn orders(&self, filter: OrderFilter) -> Result<OrderPage, StorageError>;

    /// How many orders are in each status (every status, in
    /// [`OrderStatus::ALL`] order), exactly: read from counters that every
    /// write keeps in the same transaction as its orders (see
    /// [`stockroom_domain::rules::Changes::status_deltas`]), so a count
    /// costs a few rows whatever the number of orders stored.
    async fn order_counts(&self) -> Result<Vec<StatusCount>, StorageError>;

    /// A page of a product's movements after `after` (0 for the first),
    /// oldest first; `None` when no such product exists.
    async fn movements(
        &self,
        product: &str,
        after: u64,
        limit: u32,
    ) -> Result<Option<MovementPage>, StorageError>;

    /// Runs one call of the rules (see [`crate::batch`]) atomically and
    /// durably: the one write path of the order flow.
    async fn run(&self, command: Command) -> Result<Reply, StorageError>;

    /// Creates a product, unless one of that name exists.
    async fn create_product(
        &self,
        product: ProductName,
        quantity: u64,
        settings: ProductSettings,
    ) -> Result<CreateDecision, StorageError> {
        let command = Command::CreateProduct {
            product,
            quantity,
            settings,
        };
        match self.run(command).await? {
            Reply::Created(decision) => Ok(decision),
            other => Err(wrong_reply(other)),
        }
    }

    /// Changes a product's limit or threshold (the name in any case).
    async fn change_settings(
        &self,
        product: &str,
        change: SettingsChange,
    ) -> Result<SettingsDecision, StorageError> {
        let command = Command::ChangeSettings {
            product_key: product.trim().to_lowercase(),
            change,
        };
        match self.run(command).await? {
            Reply::Settings(decision) => Ok(decision),
            other => Err(wrong_reply(other)),
        }
    }

    /// Adjusts a product's units for an operator.
    async fn adjust(&self, adjustment: Adjustment) -> Result<AdjustDecision, StorageError> {
        match self.run(Command::Adjust(adjustment)).await? {
            Reply::Adjusted(decision) => Ok(decision),
            other => Err(wrong_reply(other)),
        }
    }

    /// Keeps a customer's unpaid reservation until `until_ms` at least.
    async fn extend(
        &self,
        order_id: &str,
        customer_id: &str,
        until_ms: i64,
    ) -> Result<ExtendDecision, StorageError> {
        let command = Command::Extend {
            order_id: order_id.to_owned(),
            customer_id: customer_id.to_owned(),
            until_ms,
        };
        match self.run(command).await? {
            Reply::Extended(decision) => Ok(decision),
            other => Err(wrong_reply(other)),
        }
    }

    /// Adds units to an existing product, or creates the product.
    async fn restock(
        &self,
        product: ProductName,
        quantity: u64,
    ) -> Result<StockRecord, StorageError> {
        match self.run(Command::Restock { product, quantity }).await? {
            Reply::Item(item) => Ok(item),
            other => Err(wrong_reply(other)),
        }
    }

    /// Reserves each request's items atomically and creates its order.
    async fn reserve(
        &self,
        requests: Vec<Reservation>,
    ) -> Result<Vec<ReserveDecision>, StorageError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        match self.run(Command::Reserve(requests)).await? {
            Reply::Reserved(results) => Ok(results),
            other => Err(wrong_reply(other)),
        }
    }

    /// Records payment-service's verdicts and emits `PaymentSucceeded` or
    /// `PaymentFailed` for each.
    async fn record_payments(
        &self,
        payments: Vec<PaymentVerdict>,
    ) -> Result<Vec<Result<Effect, RuleError>>, StorageError> {
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
        settlements: Vec<SettlementCall>,
    ) -> Result<Vec<Result<Effect, RuleError>>, StorageError> {
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
}

fn wrong_reply(reply: Reply) -> StorageError {
    StorageError::Inconsistent(format!(
        "the rules answered with the wrong kind of reply: {reply:?}"
    ))
}
