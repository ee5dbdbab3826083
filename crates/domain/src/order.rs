//! Order statuses, the transitions between them, and the events of the flow.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where an order is in its life.
///
/// `Reserved` is the only status that holds stock. `Rejected`, `Fulfilled` and
/// `Cancelled` are final. `Pending` exists only for the lab's naive mode, where
/// the original system decided stock after answering the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Reserved,
    Rejected,
    Fulfilled,
    Cancelled,
}

/// A status change that the rules forbid, such as `fulfilled → reserved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("order cannot move from {from} to {to}")]
pub struct TransitionError {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl OrderStatus {
    /// Position in the order's life; a status change must increase it. This is
    /// what "a status never moves backwards" means in code.
    fn rank(self) -> u8 {
        match self {
            OrderStatus::Pending => 0,
            OrderStatus::Reserved => 1,
            OrderStatus::Rejected | OrderStatus::Fulfilled | OrderStatus::Cancelled => 2,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 2
    }

    /// Whether an order in this status holds reserved stock.
    pub fn holds_stock(self) -> bool {
        self == OrderStatus::Reserved
    }

    /// Checks that moving from `self` to `next` goes forward.
    pub fn transition_to(self, next: OrderStatus) -> Result<OrderStatus, TransitionError> {
        if next.rank() > self.rank() {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self,
                to: next,
            })
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Reserved => "reserved",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Reserved,
        OrderStatus::Rejected,
        OrderStatus::Fulfilled,
        OrderStatus::Cancelled,
    ];
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| format!("unknown order status {text}"))
    }
}

/// Whether the customer has paid for a reserved order.
///
/// A reservation that is `Charged` can no longer be cancelled or expire: the
/// money is taken, so only fulfilment may follow. This closes the race between
/// a late payment and the reservation timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    None,
    Charged,
    Declined,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::None => "none",
            PaymentStatus::Charged => "charged",
            PaymentStatus::Declined => "declined",
        }
    }
}

impl FromStr for PaymentStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(PaymentStatus::None),
            "charged" => Ok(PaymentStatus::Charged),
            "declined" => Ok(PaymentStatus::Declined),
            other => Err(format!("unknown payment status {other}")),
        }
    }
}

/// Why a reservation was released and its order cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    PaymentDeclined,
    ReservationExpired,
    CancelledByCustomer,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::PaymentDeclined => "payment_declined",
            ReleaseReason::ReservationExpired => "reservation_expired",
            ReleaseReason::CancelledByCustomer => "cancelled_by_customer",
        }
    }
}

/// The events of the order flow. Each is written to the outbox in the same
/// transaction as the change it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    OrderReserved,
    PaymentSucceeded,
    PaymentFailed,
}

/// The consumer name payment-service uses on the bus.
pub const CONSUMER_PAYMENT: &str = "payment";
/// The consumer name inventory-service uses on the bus.
pub const CONSUMER_INVENTORY: &str = "inventory";

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OrderReserved => "OrderReserved",
            EventKind::PaymentSucceeded => "PaymentSucceeded",
            EventKind::PaymentFailed => "PaymentFailed",
        }
    }

    /// The consumer that handles this kind of event. Routing is static: one
    /// consumer group per event kind.
    pub fn consumer(self) -> &'static str {
        match self {
            EventKind::OrderReserved => CONSUMER_PAYMENT,
            EventKind::PaymentSucceeded | EventKind::PaymentFailed => CONSUMER_INVENTORY,
        }
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "OrderReserved" => Ok(EventKind::OrderReserved),
            "PaymentSucceeded" => Ok(EventKind::PaymentSucceeded),
            "PaymentFailed" => Ok(EventKind::PaymentFailed),
            other => Err(format!("unknown event kind {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        use OrderStatus::*;
        assert!(Reserved.transition_to(Fulfilled).is_ok());
        assert!(Reserved.transition_to(Cancelled).is_ok());
        assert!(Pending.transition_to(Reserved).is_ok());
        for final_status in [Rejected, Fulfilled, Cancelled] {
            for next in OrderStatus::ALL {
                assert!(
                    final_status.transition_to(next).is_err(),
                    "{final_status} -> {next}"
                );
            }
        }
        assert!(Reserved.transition_to(Reserved).is_err());
        assert!(Reserved.transition_to(Pending).is_err());
    }

    #[test]
    fn status_names_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
        }
    }
}
