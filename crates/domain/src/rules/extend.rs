//! Extending a reservation: a customer whose payment is slow keeps the units
//! held a while longer. The sweep expires an unpaid reservation only once it
//! is past both its time to live and its extension, and both decisions are
//! made by the rules on the order's row, one after the other, so an
//! extension never races the sweep: it is decided before the sweep looks
//! (and the sweep keeps the order), or after (and the order has expired).

use crate::order::{OrderStatus, PaymentStatus, Reason};
use crate::rules::{Book, OrderRecord};

/// What a request to extend a reservation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendDecision {
    /// The reservation is now kept until the given time at least.
    Extended(OrderRecord),
    /// The order is not an unpaid reservation (paid, declined, rejected,
    /// fulfilled or cancelled): nothing changed.
    NotExtendable(OrderRecord),
    /// The order is another customer's: nothing changed.
    NotYours,
    UnknownOrder,
}

impl Book {
    /// Keeps `order_id`'s unpaid reservation until `until_ms` at least, for
    /// its own customer. An extension never shortens: a later `until_ms`
    /// than the order has wins, an earlier one changes nothing but is still
    /// answered as extended (the order is kept at least that long).
    pub fn extend(&mut self, order_id: &str, customer_id: &str, until_ms: i64) -> ExtendDecision {
        let Some(order) = self.order(order_id) else {
            return ExtendDecision::UnknownOrder;
        };
        if order.customer_id != customer_id {
            return ExtendDecision::NotYours;
        }
        if order.status != OrderStatus::Reserved || order.payment != PaymentStatus::None {
            return ExtendDecision::NotExtendable(order.clone());
        }
        if order
            .extended_until_ms
            .is_some_and(|until| until >= until_ms)
        {
            return ExtendDecision::Extended(order.clone());
        }
        let payment = order.payment;
        self.advance(
            order_id,
            OrderStatus::Reserved,
            payment,
            Some(Reason::ReservationExtended),
        );
        let slot = self
            .orders
            .get_mut(order_id)
            .expect("the order was just advanced");
        slot.record.extended_until_ms = Some(until_ms);
        ExtendDecision::Extended(slot.record.clone())
    }
}
