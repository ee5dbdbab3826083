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

/// A name that names none of a kind's values (a stored status this build
/// does not know, a consumer in a path), with the names that do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name} (one of {})", choices.join(", "))]
pub struct UnknownName {
    /// What was named, such as `order status`.
    pub kind: &'static str,
    pub name: String,
    pub choices: Vec<&'static str>,
}

impl UnknownName {
    /// The value of `kind` among `values` whose name is `text`.
    pub fn find<T: Copy>(
        kind: &'static str,
        values: &[T],
        name_of: impl Fn(T) -> &'static str,
        text: &str,
    ) -> Result<T, UnknownName> {
        values
            .iter()
            .copied()
            .find(|value| name_of(*value) == text)
            .ok_or_else(|| UnknownName {
                kind,
                name: text.to_owned(),
                choices: values.iter().map(|value| name_of(*value)).collect(),
            })
    }
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
    /// what "a status never moves backwards" means in code, and the one place
    /// that order is written: the checker and the lab compare ranks too.
    pub fn rank(self) -> u8 {
        match self {
            OrderStatus::Pending => 0,
            OrderStatus::Reserved => 1,
            OrderStatus::Rejected | OrderStatus::Fulfilled | OrderStatus::Cancelled => 2,
        }
    }

    /// The rank of the final statuses.
    pub const FINAL_RANK: u8 = 2;

    pub fn is_final(self) -> bool {
        self.rank() == Self::FINAL_RANK
    }

    /// Whether `next` may follow `self` in an order's history: the same
    /// status again (a note such as a payment, which changes the version but
    /// not the status) or a later one; never an earlier one, and nothing but
    /// itself after a final status.
    pub fn may_be_followed_by(self, next: OrderStatus) -> bool {
        self == next || next.rank() > self.rank()
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
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        UnknownName::find("order status", &OrderStatus::ALL, OrderStatus::as_str, text)
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

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 3] = [
        PaymentStatus::None,
        PaymentStatus::Charged,
        PaymentStatus::Declined,
    ];
}

impl FromStr for PaymentStatus {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        UnknownName::find(
            "payment status",
            &PaymentStatus::ALL,
            PaymentStatus::as_str,
            text,
        )
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
        Reason::from(self).as_str()
    }
}

impl From<ReleaseReason> for Reason {
    fn from(reason: ReleaseReason) -> Reason {
        match reason {
            ReleaseReason::PaymentDeclined => Reason::PaymentDeclined,
            ReleaseReason::ReservationExpired => Reason::ReservationExpired,
            ReleaseReason::CancelledByCustomer => Reason::CancelledByCustomer,
        }
    }
}

/// Why an order changed: the reason an order ended (rejected or cancelled),
/// or the note of a step that changed its version but not its status (a
/// payment). Stored and shown as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Rejected: some item was short when the order was decided.
    InsufficientStock,
    /// A note in the history: the payment was taken.
    PaymentCharged,
    /// Cancelled (or, as a note, declined): the provider refused the payment.
    PaymentDeclined,
    /// Cancelled: not paid within the reservation's time to live.
    ReservationExpired,
    /// Cancelled at the customer's request.
    CancelledByCustomer,
    /// A note in the history: the customer extended the reservation.
    ReservationExtended,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::InsufficientStock,
        Reason::PaymentCharged,
        Reason::PaymentDeclined,
        Reason::ReservationExpired,
        Reason::CancelledByCustomer,
        Reason::ReservationExtended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InsufficientStock => "insufficient_stock",
            Reason::PaymentCharged => "payment_charged",
            Reason::PaymentDeclined => "payment_declined",
            Reason::ReservationExpired => "reservation_expired",
            Reason::CancelledByCustomer => "cancelled_by_customer",
            Reason::ReservationExtended => "reservation_extended",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        UnknownName::find("reason", &Reason::ALL, Reason::as_str, text)
    }
}

/// The consumer groups of the bus: each event kind has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consumer {
    /// payment-service, which consumes `OrderReserved`.
    Payment,
    /// inventory-service, which consumes `PaymentSucceeded` and `PaymentFailed`.
    Inventory,
    /// data-service's webhook dispatcher, which posts the notices for other
    /// systems (orders ended, stock low, sold out, back in stock). It reads
    /// the outbox itself, whatever carries the flow's events.
    Webhooks,
}

impl Consumer {
    pub const ALL: [Consumer; 3] = [Consumer::Payment, Consumer::Inventory, Consumer::Webhooks];

    /// The consumers of the order flow's events: the services, which read
    /// them from the bus (the embedded one or a broker).
    pub const FLOW: [Consumer; 2] = [Consumer::Payment, Consumer::Inventory];

    pub fn as_str(self) -> &'static str {
        match self {
            Consumer::Payment => CONSUMER_PAYMENT,
            Consumer::Inventory => CONSUMER_INVENTORY,
            Consumer::Webhooks => CONSUMER_WEBHOOKS,
        }
    }
}

impl fmt::Display for Consumer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Consumer {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        UnknownName::find("consumer", &Consumer::ALL, Consumer::as_str, text)
    }
}

/// The events of the order flow, and the notices for other systems. Each is
/// written to the outbox in the same transaction as the change it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    OrderReserved,
    PaymentSucceeded,
    PaymentFailed,
    /// Notice: an order was fulfilled.
    OrderFulfilled,
    /// Notice: an order was cancelled.
    OrderCancelled,
    /// Notice: a product's availability fell to or below its threshold.
    StockLow,
    /// Notice: a product's availability fell to zero.
    StockSoldOut,
    /// Notice: a product's availability rose from zero.
    StockBackInStock,
}

/// The consumer name payment-service uses on the bus.
pub const CONSUMER_PAYMENT: &str = "payment";
/// The consumer name inventory-service uses on the bus.
pub const CONSUMER_INVENTORY: &str = "inventory";
/// The consumer name of data-service's webhook dispatcher.
pub const CONSUMER_WEBHOOKS: &str = "webhooks";

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OrderReserved => "OrderReserved",
            EventKind::PaymentSucceeded => "PaymentSucceeded",
            EventKind::PaymentFailed => "PaymentFailed",
            EventKind::OrderFulfilled => "OrderFulfilled",
            EventKind::OrderCancelled => "OrderCancelled",
            EventKind::StockLow => "StockLow",
            EventKind::StockSoldOut => "StockSoldOut",
            EventKind::StockBackInStock => "StockBackInStock",
        }
    }

    /// The consumer that handles this kind of event. Routing is static: one
    /// consumer group per event kind.
    pub fn consumer(self) -> &'static str {
        self.consumer_group().as_str()
    }

    /// [`EventKind::consumer`] as the typed group.
    pub fn consumer_group(self) -> Consumer {
        match self {
            EventKind::OrderReserved => Consumer::Payment,
            EventKind::PaymentSucceeded | EventKind::PaymentFailed => Consumer::Inventory,
            EventKind::OrderFulfilled
            | EventKind::OrderCancelled
            | EventKind::StockLow
            | EventKind::StockSoldOut
            | EventKind::StockBackInStock => Consumer::Webhooks,
        }
    }
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::OrderReserved,
        EventKind::PaymentSucceeded,
        EventKind::PaymentFailed,
        EventKind::OrderFulfilled,
        EventKind::OrderCancelled,
        EventKind::StockLow,
        EventKind::StockSoldOut,
        EventKind::StockBackInStock,
    ];

    /// The webhook type of a notice (`order.fulfilled`, `stock.low`, …);
    /// `None` for the order flow's own events.
    pub fn webhook_type(self) -> Option<&'static str> {
        match self {
            EventKind::OrderFulfilled => Some("order.fulfilled"),
            EventKind::OrderCancelled => Some("order.cancelled"),
            EventKind::StockLow => Some("stock.low"),
            EventKind::StockSoldOut => Some("stock.sold_out"),
            EventKind::StockBackInStock => Some("stock.back_in_stock"),
            EventKind::OrderReserved | EventKind::PaymentSucceeded | EventKind::PaymentFailed => {
                None
            }
        }
    }
}

impl FromStr for EventKind {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        UnknownName::find("event kind", &EventKind::ALL, EventKind::as_str, text)
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
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
        }
        for consumer in Consumer::ALL {
            assert_eq!(consumer.as_str().parse::<Consumer>(), Ok(consumer));
        }
    }

    #[test]
    fn release_reasons_are_reasons() {
        for release in [
            ReleaseReason::PaymentDeclined,
            ReleaseReason::ReservationExpired,
            ReleaseReason::CancelledByCustomer,
        ] {
            assert_eq!(Reason::from(release).as_str(), release.as_str());
        }
    }
}
