//! Deliberately broken variants of Stockroom, each run through the same
//! model: a checker that passes them all would prove nothing.
//!
//! Each breaks the system where a real bug would sit, at the boundary the
//! real code has (the store's writes, a service's order of calls), so the
//! rules in `stockroom_domain` stay untouched and are still the code that
//! decides.

use crate::store::WriteDiscipline;

/// A broken variant of Stockroom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutant {
    /// A reservation is decided on stock read before other calls committed
    /// (no row lock), and written without checking the stock is still as
    /// read: check-then-reserve on a stale read.
    StaleStockRead,
    /// The store writes a changed order without its payment status, the
    /// record that the order's payment event took effect.
    ForgetPaymentStatus,
    /// A settlement is decided on the order as read before other calls
    /// committed, and written without the version check.
    SettleWithoutVersionCheck,
    /// A cancel is decided on the order as read before other calls
    /// committed, written without the version check, and its release
    /// applied to the current stock (`reserved = reserved - units`): a
    /// cancel and an expiry both release.
    DoubleRelease,
    /// order-service asks the provider to charge as it forwards the order,
    /// before the reservation commits (pay before reserve).
    ChargeBeforeReservation,
}

/// Which call a mutant decides on a stale read: data-service reads the rows
/// when the call arrives and decides and writes at a later step, while other
/// calls commit in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StaleCall {
    Reserve,
    Settle,
    Release,
}

impl Mutant {
    pub const ALL: [Mutant; 5] = [
        Mutant::StaleStockRead,
        Mutant::ForgetPaymentStatus,
        Mutant::SettleWithoutVersionCheck,
        Mutant::DoubleRelease,
        Mutant::ChargeBeforeReservation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::StaleStockRead => "stale-stock-read",
            Mutant::ForgetPaymentStatus => "forget-payment-status",
            Mutant::SettleWithoutVersionCheck => "settle-without-version-check",
            Mutant::DoubleRelease => "double-release",
            Mutant::ChargeBeforeReservation => "charge-before-reservation",
        }
    }

    /// The call this mutant decides on a stale read, if any.
    pub fn stale_call(self) -> Option<StaleCall> {
        match self {
            Mutant::StaleStockRead => Some(StaleCall::Reserve),
            Mutant::SettleWithoutVersionCheck => Some(StaleCall::Settle),
            Mutant::DoubleRelease => Some(StaleCall::Release),
            Mutant::ForgetPaymentStatus | Mutant::ChargeBeforeReservation => None,
        }
    }

    /// How this mutant's store writes.
    pub fn discipline(self) -> WriteDiscipline {
        let stockroom = WriteDiscipline::STOCKROOM;
        match self {
            Mutant::StaleStockRead | Mutant::SettleWithoutVersionCheck => WriteDiscipline {
                conditional: false,
                ..stockroom
            },
            Mutant::DoubleRelease => WriteDiscipline {
                conditional: false,
                stock_as_deltas: true,
                ..stockroom
            },
            Mutant::ForgetPaymentStatus => WriteDiscipline {
                write_payment: false,
                ..stockroom
            },
            Mutant::ChargeBeforeReservation => stockroom,
        }
    }
}
