//! The JSON documents Stockroom's services exchange, and their OpenAPI schemas.
//!
//! Field names follow the original system's clients (`productName`,
//! `reservedQuantity`, `customerId`), so every type here is camelCase on the
//! wire. Requests that carry client input use the checked domain types, so a
//! document that deserialises is already valid.

use serde::{Deserialize, Serialize};
use stockroom_domain::{
    CustomerId, EventKind, OrderItem, OrderItems, OrderStatus, PaymentStatus, ProductName,
    Quantity, ReleaseReason,
};
use utoipa::ToSchema;

mod documents;
pub mod schemas;
pub mod stock_operations;
pub mod webhooks;
pub mod whole;

pub use documents::{EventTimeError, format_time, order_line, parse_time};

pub use schemas::{
    EventKindName, NAME_PATTERN, Name, OneProductOrder, OrderShape, OrderStatusName,
    ReleaseReasonName, ReserveItem, SeveralProductsOrder,
};

/// Every error any service returns: a stable machine code and a sentence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, snake_case code such as `insufficient_stock`.
    pub error: String,
    pub message: String,
}

/// One product's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryItem {
    pub product_name: String,
    /// Units on hand (not yet sold), reserved ones included.
    pub quantity: i64,
    /// Units held by reserved orders.
    pub reserved_quantity: i64,
    /// `quantity - reservedQuantity`: what a new order can still reserve.
    pub available: i64,
    /// Units sold: reservations committed after payment.
    pub sold: i64,
    /// Units ever received: the initial stock plus every restock. Conservation
    /// says `received == quantity + sold`.
    pub received: i64,
    /// The most units one customer may hold in reserved and fulfilled
    /// orders together; null for no limit.
    #[serde(default)]
    pub max_per_customer: Option<u32>,
    /// Availability at or below which a `stock.low` webhook goes out; null
    /// for none.
    #[serde(default)]
    pub low_stock_threshold: Option<u64>,
    /// The number of the product's last movement: these figures are those
    /// of its ledger up to it (absent where no ledger is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub movement_seq: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InventoryList {
    pub inventory: Vec<InventoryItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InventoryItemDocument {
    pub item: InventoryItem,
}

/// One product of a stock file: the shape of `GET /inventory`, where only the
/// name and quantity are read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockLine {
    #[schema(value_type = String)]
    pub product_name: ProductName,
    pub quantity: u64,
}

/// A stock file: `{"inventory":[{"productName":"Laptop","quantity":25}]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StockFile {
    pub inventory: Vec<StockLine>,
}

/// Units added to a product's stock.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestockRequest {
    #[serde(deserialize_with = "whole::whole")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub quantity: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductRef {
    pub name: String,
}

/// One line of an order as the original system's clients read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub product: ProductRef,
    pub quantity: u32,
}

/// One status change of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub version: i64,
    #[schema(value_type = String)]
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub at: String,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    #[schema(value_type = String, example = "reserved")]
    pub status: OrderStatus,
    /// Why the order was cancelled or rejected, when it was.
    pub reason: Option<String>,
    #[schema(value_type = String, example = "none")]
    pub payment_status: PaymentStatus,
    /// Incremented by every status change (optimistic locking).
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    /// The customer extended the unpaid reservation: it is kept at least
    /// until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_until: Option<String>,
    pub items: Vec<OrderLine>,
    /// Every status the order has had, oldest first.
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderDocument {
    pub order: Order,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderList {
    pub orders: Vec<Order>,
    /// Pass as `after` to read the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /orders/counts`: how many orders are in each status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCounts {
    /// One entry per status, in the order of the order's life.
    pub counts: Vec<StatusCount>,
    /// The most orders counted in one status, when counts stop at a cap.
    /// Stockroom counts exactly and leaves it out; a system that walks its
    /// orders to count them (the dashboard's own count of another system)
    /// says where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u64>,
}

/// The orders in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCount {
    #[schema(value_type = String, example = "fulfilled")]
    pub status: OrderStatus,
    pub count: u64,
    /// Whether counting stopped at the cap (there may be more); always false
    /// for Stockroom's exact counts.
    pub capped: bool,
}

/// An order as clients send it: one product (`productName` and `quantity`,
/// the original system's shape) or several (`items`), never both.
///
/// The schema is [`OrderShape`]: exactly one of the two shapes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrderRequest {
    customer_id: CustomerId,
    product_name: Option<ProductName>,
    quantity: Option<Quantity>,
    items: Option<Vec<ItemRequest>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemRequest {
    #[schema(value_type = Name, example = "Laptop")]
    product_name: ProductName,
    #[schema(value_type = u32, minimum = 1, maximum = 1000, example = 2)]
    quantity: Quantity,
}

/// Why an order request is not an order; shown to the client as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderShapeError {
    #[error("send either productName and quantity, or items, not both")]
    BothShapes,
    #[error("missing field `quantity`")]
    MissingQuantity,
    #[error("missing field `productName`")]
    MissingProductName,
    #[error("an order needs productName and quantity, or items")]
    NeitherShape,
    #[error(transparent)]
    Items(#[from] stockroom_domain::DomainError),
}

impl PlaceOrderRequest {
    /// The customer and the checked items.
    pub fn into_parts(self) -> Result<(CustomerId, OrderItems), OrderShapeError> {
        let lines = match (self.product_name, self.quantity, self.items) {
            (Some(product), Some(quantity), None) => vec![OrderItem { product, quantity }],
            (None, None, Some(items)) => items
                .into_iter()
                .map(|item| OrderItem {
                    product: item.product_name,
                    quantity: item.quantity,
                })
                .collect(),
            (_, _, Some(_)) => return Err(OrderShapeError::BothShapes),
            (Some(_), None, None) => return Err(OrderShapeError::MissingQuantity),
            (None, Some(_), None) => return Err(OrderShapeError::MissingProductName),
            (None, None, None) => return Err(OrderShapeError::NeitherShape),
        };
        Ok((self.customer_id, OrderItems::new(lines)?))
    }
}

/// A product that could not be reserved in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shortage {
    pub product_name: String,
    pub requested: u32,
    pub available: i64,
}

/// One order to reserve, already validated by order-service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub order_id: String,
    #[schema(value_type = Name)]
    pub customer_id: CustomerId,
    /// Each product at most once.
    #[schema(value_type = Vec<ReserveItem>, min_items = 1, max_items = 50)]
    pub items: OrderItems,
    /// The client's `Idempotency-Key`, when it sent one.
    pub idempotency_key: Option<String>,
    /// A hash of the normalised request, to tell a retry from a different
    /// request that reuses a key.
    pub request_fingerprint: Option<String>,
    /// The W3C `traceparent` of this order's request, carried to the
    /// `OrderReserved` event so that the order stays one trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

/// Many reservations in one exchange; each gets its own outcome, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBatch {
    pub requests: Vec<ReserveRequest>,
}

/// What became of one reservation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReserveOutcome {
    /// Every item is held; the order is `reserved`.
    Reserved { order: Order },
    /// Some item was short, so nothing is held; the order is `rejected`.
    Rejected {
        order: Order,
        shortages: Vec<Shortage>,
    },
    /// An item names a product the stock does not have.
    #[serde(rename_all = "camelCase")]
    UnknownProduct { product_name: String },
    /// An item would take the customer past the product's purchase limit:
    /// they already hold `already_held` units of it in reserved and
    /// fulfilled orders. Nothing was created.
    #[serde(rename_all = "camelCase")]
    LimitExceeded {
        product_name: String,
        max_per_customer: u32,
        already_held: u64,
    },
    /// The idempotency key was used before for a different request.
    IdempotencyKeyReused,
    /// Another order already has this id; nothing was created. order-service
    /// never sends a taken id, so this is a caller's bug.
    #[serde(rename_all = "camelCase")]
    OrderIdTaken { order_id: String },
    /// The idempotency key was answered before, but the order its answer
    /// created is no longer stored, so the answer cannot be given again;
    /// nothing was created. Retention keeps orders longer than keys, so
    /// this means damaged data.
    #[serde(rename_all = "camelCase")]
    AnswerGone { order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReserveResult {
    /// True when this is the stored answer to an earlier request with the same
    /// idempotency key; nothing new was created.
    pub replayed: bool,
    pub outcome: ReserveOutcome,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReserveBatchResult {
    pub results: Vec<ReserveResult>,
}

/// An event of the order flow as it travels on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique per event; consumers de-duplicate on it.
    pub event_id: String,
    #[schema(value_type = EventKindName)]
    pub kind: EventKind,
    pub order_id: String,
    /// The order's version right after the change this event reports.
    #[serde(deserialize_with = "whole::integer")]
    pub order_version: i64,
    pub occurred_at: String,
    /// Units of the order, for the payment amount and for logs.
    #[serde(deserialize_with = "whole::whole")]
    pub total_units: u64,
    /// The W3C `traceparent` of the call that caused the event: the consumer
    /// handles it as part of the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

/// An event handed to one consumer under a lease; acknowledge, release or
/// reject it with its [`Receipt`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub delivery_id: i64,
    /// The lease's secret: only the holder of the lease can settle it.
    pub lease_token: String,
    /// How many times this event has been handed out, this time included.
    pub attempt: u32,
    pub event: Event,
}

impl Delivery {
    pub fn receipt(&self) -> Receipt {
        Receipt {
            delivery_id: self.delivery_id,
            lease_token: self.lease_token.clone(),
        }
    }
}

/// Proof of holding the lease of one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    #[serde(deserialize_with = "whole::integer")]
    pub delivery_id: i64,
    pub lease_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollRequest {
    #[serde(deserialize_with = "whole::whole")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_events: u32,
    /// How long to wait for an event when none is ready.
    #[serde(deserialize_with = "whole::whole")]
    #[schema(minimum = 0, maximum = 5000)]
    pub wait_ms: u64,
    /// How long the events stay leased to this caller before they are handed
    /// to another (the caller is presumed dead).
    #[serde(deserialize_with = "whole::whole")]
    #[schema(minimum = 100, maximum = 600000)]
    pub lease_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryBatch {
    pub deliveries: Vec<Delivery>,
}

/// Deliveries a consumer acknowledges (their effect is committed), releases
/// (it could not handle them now: hand them out again, no penalty) or
/// rejects (poison: counted towards dead-lettering).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AckRequest {
    pub deliveries: Vec<Receipt>,
}

/// A consumer's dead letters, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetter>,
}

/// Dead letters to put back in line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedriveRequest {
    #[serde(deserialize_with = "whole::integers")]
    pub delivery_ids: Vec<i64>,
}

/// How many dead letters were put back in line (ids that were not dead
/// letters are skipped).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedriveResult {
    pub redriven: u64,
}

/// Events a consumer refused as poison after a broker delivered them, to be
/// kept as dead letters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuryRequest {
    pub events: Vec<Event>,
}

/// An event moved aside as poison, kept for inspection and redrive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub delivery_id: i64,
    pub consumer: String,
    pub deliveries: u32,
    pub rejections: u32,
    pub dead_at: String,
    pub event: Event,
}

/// payment-service's verdict on one reserved order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentRecord {
    #[schema(min_length = 1, max_length = 100)]
    pub order_id: String,
    /// The `OrderReserved` event this answers; the record is de-duplicated on it.
    pub event_id: String,
    pub approved: bool,
    /// The W3C `traceparent` of the payment, carried to its verdict's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

/// A charge payment-service asks the simulated provider for. The provider
/// keeps its charges by key: a request with a key it has seen returns the
/// first verdict and charges nothing more.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderCharge {
    /// The charge's idempotency key at the provider: one per order.
    pub charge_key: String,
    pub order_id: String,
    #[serde(deserialize_with = "whole::whole")]
    pub units: u64,
    /// The verdict, should this be the key's first request.
    pub approved: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderChargeBatch {
    pub charges: Vec<ProviderCharge>,
}

/// The provider's answer to one charge request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderVerdict {
    pub charge_key: String,
    /// The key's verdict: its first request's.
    pub approved: bool,
    /// How many requests the key has had, this one included: more than one
    /// means a repeated request, answered without a second charge.
    pub requests: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderVerdictBatch {
    pub verdicts: Vec<ProviderVerdict>,
}

/// What the simulated provider's ledger holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStats {
    /// Keys charged (approved) and declined: each key once.
    pub charged: u64,
    pub declined: u64,
    /// Requests for a key seen before, answered without a second charge.
    pub repeated_requests: u64,
    /// Orders charged under more than one key: always 0 while every charge
    /// is keyed by its order.
    pub orders_charged_twice: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentBatch {
    pub payments: Vec<PaymentRecord>,
}

/// What became of one event a consumer handed to data-service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EffectOutcome {
    /// The effect happened now.
    Applied,
    /// This event was handled before; nothing changed.
    Duplicate,
    /// The order is no longer in a state this event applies to (for example a
    /// payment for an order that expired); nothing changed.
    NotApplicable,
    /// No order has this id.
    UnknownOrder,
    /// The stored order does not agree with the stock (a bug or a damaged
    /// database); nothing changed. The consumer treats the event as poison.
    Inconsistent,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectResult {
    pub order_id: String,
    pub outcome: EffectOutcome,
    /// The order's status after this request.
    #[schema(value_type = Option<String>)]
    pub status: Option<OrderStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EffectBatchResult {
    pub results: Vec<EffectResult>,
}

/// inventory-service's decision for one paid or declined order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettlementAction {
    /// Payment succeeded: the reserved units are sold.
    Commit,
    /// Payment failed: the reserved units go back on sale.
    Release,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settlement {
    #[schema(min_length = 1, max_length = 100)]
    pub order_id: String,
    /// The payment event this answers; the settlement is de-duplicated on it.
    pub event_id: String,
    pub action: SettlementAction,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettlementBatch {
    pub settlements: Vec<Settlement>,
}

/// Release a reservation that has not been paid.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[schema(value_type = ReleaseReasonName)]
    pub reason: ReleaseReason,
}

/// A customer's request to keep their unpaid reservation longer, while a
/// slow payment completes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtendRequest {
    #[schema(value_type = String, min_length = 1, max_length = 100)]
    pub customer_id: CustomerId,
    /// How much longer to keep it, from now.
    #[serde(deserialize_with = "whole::whole")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub ttl_ms: u64,
}

/// Keep a customer's unpaid reservation until a time (internal: order-
/// service computes the time and bounds it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtendCall {
    #[schema(value_type = String)]
    pub customer_id: CustomerId,
    /// Milliseconds since the epoch.
    #[serde(deserialize_with = "whole::whole")]
    #[schema(minimum = 0)]
    pub until_ms: u64,
}

/// Release every unpaid reservation older than a cutoff.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpireRequest {
    #[serde(deserialize_with = "whole::whole")]
    pub older_than_ms: u64,
    #[serde(deserialize_with = "whole::whole")]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_orders: u32,
}

/// What one sweep ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpireResult {
    /// Unpaid past their time to live: released, `reservation_expired`.
    pub expired_order_ids: Vec<String>,
    /// Declined, with the release overdue: released, `payment_declined`.
    pub released_order_ids: Vec<String>,
    /// Charged, with the settlement overdue: sold and fulfilled.
    pub fulfilled_order_ids: Vec<String>,
}

impl ExpireResult {
    /// How many orders the sweep ended.
    pub fn len(&self) -> usize {
        self.expired_order_ids.len()
            + self.released_order_ids.len()
            + self.fulfilled_order_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `GET /health` of every service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub service: String,
}
