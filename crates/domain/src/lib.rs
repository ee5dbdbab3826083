//! Stockroom's domain: the values an order is made of and the rules they obey.
//!
//! This crate does no I/O. Its types are built so that an invalid state cannot be
//! represented: a [`Quantity`] is never zero, negative or above
//! [`MAX_QUANTITY_PER_ITEM`]; an [`OrderItems`] list is never empty, never longer
//! than [`MAX_ITEMS_PER_ORDER`] and never names a product twice; an
//! [`OrderStatus`] only moves forward; a [`Stock`] is never oversold or
//! unbalanced. Every other crate receives these values already checked, so the
//! checks live in exactly one place.
//!
//! [`rules`] decides every step of the order flow in memory, and [`outbox`]
//! every lease and settlement of its events, for storage backends that only
//! load and store; [`invariants`] states what must hold of
//! any system's figures, for the auditor, the checker and the tests.

pub mod invariants;
mod order;
pub mod outbox;
pub mod rules;
mod stock;
mod values;

pub use order::{
    CONSUMER_INVENTORY, CONSUMER_PAYMENT, CONSUMER_WEBHOOKS, Consumer, EventKind, OrderStatus,
    PaymentStatus, Reason, ReleaseReason, TransitionError, UnknownName,
};
pub use stock::{Stock, StockError};
pub use values::{
    CustomerId, DomainError, MAX_CUSTOMER_ID_LENGTH, MAX_ITEMS_PER_ORDER, MAX_PRODUCT_NAME_LENGTH,
    MAX_QUANTITY_PER_ITEM, MAX_STOCK_PER_PRODUCT, OrderItem, OrderItems, ProductName, Quantity,
};
