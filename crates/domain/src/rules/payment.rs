//! Payment: the provider's verdict on a reserved order, recorded once.

use crate::order::{EventKind, OrderStatus, PaymentStatus, Reason};
use crate::rules::{Book, OrderRecord};

/// What became of one event a consumer handed to storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The effect happened now; the order has this status.
    Applied(OrderStatus),
    /// This event was applied before (the order already carries its
    /// effect); nothing changed.
    Duplicate(OrderStatus),
    /// The order is no longer in a state this event applies to (a payment
    /// for an order that expired, say); nothing changed and nothing is
    /// recorded, so the event keeps no claim on the order.
    NotApplicable(OrderStatus),
    /// No order has this id.
    UnknownOrder,
}

/// Whether a payment verdict applies to `order`: it is reserved and unpaid.
/// Once a verdict is recorded the order is no longer unpaid, so a payment
/// applies at most once whatever the bus delivers.
pub fn payment_applies(order: &OrderRecord) -> bool {
    order.status == OrderStatus::Reserved && order.payment == PaymentStatus::None
}

/// Whether the verdict answering `event_id` is already recorded on `order`.
/// Only the order's own reservation event records a verdict, and nothing
/// clears one, so the order's payment status is the record that the event
/// was processed: no separate record is kept.
pub fn payment_recorded(order: &OrderRecord, event_id: &str) -> bool {
    order.payment != PaymentStatus::None && answers_reservation(event_id, &order.id)
}

/// Whether `event_id` is the event a payment of `order_id` answers: a
/// reservation is version 1 of its order. Notes such as an extension may
/// follow before the payment, so the event is named by that version, not by
/// the order's current one.
fn answers_reservation(event_id: &str, order_id: &str) -> bool {
    super::is_event_id(event_id, EventKind::OrderReserved, order_id, 1)
}

impl Book {
    /// Records payment-service's verdict for `order_id`, answering the
    /// `OrderReserved` event `event_id`. A reservation is paid at most once:
    /// a charge for an order that is no longer reserved and unpaid (it
    /// expired or was cancelled meanwhile) is voided, never taken.
    pub fn record_payment(&mut self, order_id: &str, event_id: &str, approved: bool) -> Effect {
        let Some(order) = self.order(order_id) else {
            return Effect::UnknownOrder;
        };
        let status = order.status;
        if payment_recorded(order, event_id) {
            return Effect::Duplicate(status);
        }
        // Only the order's own reservation event is answered: a verdict
        // naming any other event (a forged or mistaken id) changes nothing
        // and records nothing.
        if !payment_applies(order) || !answers_reservation(event_id, order_id) {
            return Effect::NotApplicable(status);
        }
        let (payment, kind, note) = if approved {
            (
                PaymentStatus::Charged,
                EventKind::PaymentSucceeded,
                Reason::PaymentCharged,
            )
        } else {
            (
                PaymentStatus::Declined,
                EventKind::PaymentFailed,
                Reason::PaymentDeclined,
            )
        };
        let order = self
            .advance(order_id, OrderStatus::Reserved, payment, Some(note))
            .clone();
        self.emit(kind, &order);
        Effect::Applied(OrderStatus::Reserved)
    }
}
