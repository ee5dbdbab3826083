//! Releasing reservations: a customer's cancel, and the sweep that ends
//! reservations nobody settled in time.

use crate::order::{OrderStatus, PaymentStatus, Reason, ReleaseReason};
use crate::rules::{Book, RuleError};

/// What a request to cancel an unpaid reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseDecision {
    /// The reservation was released now.
    Released,
    /// The order was already cancelled; cancelling twice is harmless.
    AlreadyCancelled,
    /// The order is paid, fulfilled or was rejected: it cannot be cancelled.
    NotCancellable,
    UnknownOrder,
}

/// What the sweep did with one reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SweepDecision {
    /// Not paid within its time to live: released, `reservation_expired`.
    Expired,
    /// Declined, but the release never came: released, `payment_declined`.
    Declined,
    /// Charged, but the settlement never came: the money is taken, so the
    /// units are sold and the order fulfilled.
    Fulfilled,
    /// Not due yet, or no longer reserved.
    Kept,
}

impl Book {
    /// Cancels an unpaid reservation for `reason`. A charged reservation can
    /// no longer be cancelled: only fulfilment may follow a taken payment,
    /// which closes the race between a late payment and a cancel.
    pub fn release(
        &mut self,
        order_id: &str,
        reason: ReleaseReason,
    ) -> Result<ReleaseDecision, RuleError> {
        let Some(order) = self.order(order_id) else {
            return Ok(ReleaseDecision::UnknownOrder);
        };
        match (order.status, order.payment) {
            (OrderStatus::Cancelled, _) => Ok(ReleaseDecision::AlreadyCancelled),
            (OrderStatus::Reserved, payment) if payment != PaymentStatus::Charged => {
                self.cancel(order_id, Reason::from(reason))?;
                Ok(ReleaseDecision::Released)
            }
            _ => Ok(ReleaseDecision::NotCancellable),
        }
    }

    /// Ends a reservation whose next step is overdue: unpaid since before
    /// `cutoff_ms` (it expires), or paid or declined before `cutoff_ms` but
    /// never settled (the settlement the event would have made is made here).
    /// No order stays `reserved` forever, whatever happened to its events.
    pub fn sweep(&mut self, order_id: &str, cutoff_ms: i64) -> Result<SweepDecision, RuleError> {
        let Some(order) = self.order(order_id) else {
            return Ok(SweepDecision::Kept);
        };
        if order.status != OrderStatus::Reserved {
            return Ok(SweepDecision::Kept);
        }
        match order.payment {
            PaymentStatus::None
                if order.created_at_ms <= cutoff_ms
                    && order
                        .extended_until_ms
                        .is_none_or(|until| until <= self.now_ms()) =>
            {
                self.cancel(order_id, Reason::ReservationExpired)?;
                Ok(SweepDecision::Expired)
            }
            PaymentStatus::Declined if order.updated_at_ms <= cutoff_ms => {
                self.cancel(order_id, Reason::PaymentDeclined)?;
                Ok(SweepDecision::Declined)
            }
            PaymentStatus::Charged if order.updated_at_ms <= cutoff_ms => {
                self.fulfil(order_id)?;
                Ok(SweepDecision::Fulfilled)
            }
            _ => Ok(SweepDecision::Kept),
        }
    }
}
