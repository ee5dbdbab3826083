//! Settlement: a paid reservation is sold, a declined one goes back on sale.

use crate::order::{EventKind, OrderStatus, PaymentStatus, Reason};
use crate::rules::limits::units_of;
use crate::rules::{
    Book, Effect, MovementKind, MovementOf, MovementReason, OrderRecord, RuleError,
};
use crate::stock::Stock;

/// inventory-service's decision for one paid or declined order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Settle {
    /// Payment succeeded: the reserved units are sold.
    Commit,
    /// Payment failed: the reserved units go back on sale.
    Release,
}

/// Whether a settlement applies to `order`: it is reserved, and charged for
/// a commit, not charged for a release. Once settled the order is final, so a
/// settlement applies at most once whatever the bus delivers.
pub fn settlement_applies(order: &OrderRecord, action: Settle) -> bool {
    order.status == OrderStatus::Reserved
        && match action {
            Settle::Commit => order.payment == PaymentStatus::Charged,
            Settle::Release => order.payment != PaymentStatus::Charged,
        }
}

/// Whether `event_id` already settled `order` as `action` settles: the order
/// ended as this settlement ends it (fulfilled, or cancelled for the declined
/// payment), one version after the payment event it names. Nothing changes a
/// paid or declined order between its payment and its settlement, and nothing
/// changes an order once it ended, so the order's state is the record that the
/// event was processed: no separate record is kept. A settlement the sweep
/// made first (see [`Book::sweep`]) counts as made: the event finds its effect
/// in place.
pub fn settlement_recorded(order: &OrderRecord, event_id: &str, action: Settle) -> bool {
    let (kind, ended) = match action {
        Settle::Commit => (
            EventKind::PaymentSucceeded,
            order.status == OrderStatus::Fulfilled,
        ),
        Settle::Release => (
            EventKind::PaymentFailed,
            order.status == OrderStatus::Cancelled && order.reason == Some(Reason::PaymentDeclined),
        ),
    };
    ended && super::is_event_id(event_id, kind, &order.id, order.version - 1)
}

impl Book {
    /// Settles `order_id` once for the payment event `event_id`.
    pub fn settle(
        &mut self,
        order_id: &str,
        event_id: &str,
        action: Settle,
    ) -> Result<Effect, RuleError> {
        let Some(order) = self.order(order_id) else {
            return Ok(Effect::UnknownOrder);
        };
        let (status, applies) = (order.status, settlement_applies(order, action));
        // Only the payment event that put the order where it is may settle
        // it: a settlement naming any other event changes nothing.
        let kind = match action {
            Settle::Commit => EventKind::PaymentSucceeded,
            Settle::Release => EventKind::PaymentFailed,
        };
        if settlement_recorded(order, event_id, action) {
            return Ok(Effect::Duplicate(status));
        }
        if !applies || !super::is_event_id(event_id, kind, order_id, order.version) {
            return Ok(Effect::NotApplicable(status));
        }
        let after = match action {
            Settle::Commit => self.fulfil(order_id)?,
            Settle::Release => self.cancel(order_id, Reason::PaymentDeclined)?,
        };
        Ok(Effect::Applied(after))
    }

    /// Sells a reserved order's units and marks it fulfilled.
    pub(crate) fn fulfil(&mut self, order_id: &str) -> Result<OrderStatus, RuleError> {
        let order = self
            .order(order_id)
            .expect("fulfil is called on orders in the book");
        let moved = self.moved_stock(order, Stock::sell)?;
        let payment = order.payment;
        for (product_key, after) in moved {
            let movement = MovementOf::order(MovementKind::Sold, order_id, None);
            self.change_stock(&product_key, after, movement);
        }
        let order = self
            .advance(order_id, OrderStatus::Fulfilled, payment, None)
            .clone();
        self.notice_order(&order);
        Ok(OrderStatus::Fulfilled)
    }

    /// Puts a reserved order's units back on sale and cancels it; its
    /// customer holds those units no more.
    pub(crate) fn cancel(
        &mut self,
        order_id: &str,
        reason: Reason,
    ) -> Result<OrderStatus, RuleError> {
        let order = self
            .order(order_id)
            .expect("cancel is called on orders in the book");
        let moved = self.moved_stock(order, Stock::release)?;
        let payment = order.payment;
        let customer_id = order.customer_id.clone();
        let units = units_of(order);
        for (product_key, after) in moved {
            let why = Some(MovementReason::Release(reason));
            let movement = MovementOf::order(MovementKind::Released, order_id, why);
            self.change_stock(&product_key, after, movement);
        }
        self.hold_for(&customer_id, &units, -1);
        let order = self
            .advance(order_id, OrderStatus::Cancelled, payment, Some(reason))
            .clone();
        self.notice_order(&order);
        Ok(OrderStatus::Cancelled)
    }
}
