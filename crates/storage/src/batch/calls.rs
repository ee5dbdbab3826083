//! The calls a batch carries, as the services hand them to storage: already
//! checked values, plus what only rides along (trace contexts).

use std::num::NonZeroI64;

use stockroom_domain::rules::{AdjustReason, Settle};
use stockroom_domain::{CustomerId, OrderItems};

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

/// An operator's adjustment of a product's units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    /// The product's key (its lower-case name).
    pub product_key: String,
    /// Units added (positive) or written off (negative).
    pub delta: NonZeroI64,
    pub reason: AdjustReason,
    pub reference: Option<String>,
    /// The on-hand figure the operator saw (compare-and-swap).
    pub expected_on_hand: Option<u64>,
    pub idempotency_key: Option<String>,
    pub fingerprint: Option<String>,
}
