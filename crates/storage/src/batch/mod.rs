//! A batch of storage calls, from the calls to the rows to write: what to
//! load, what the rules decide, what to write and what to answer each caller.
//!
//! Every backend runs a batch the same way, in one transaction:
//!
//! 1. [`Needs::of`] says which rows the calls touch; the backend loads them
//!    (locking them where other processes write too) into a
//!    [`stockroom_domain::rules::Book`], in steps: idempotency keys and the
//!    sweep's candidates, then orders (whose lines add products to
//!    [`Needs::product_keys`]), then products, the holdings of limited products ([`Needs::holdings_to_load`]) and the
//!    orders a new limit counts;
//! 2. [`decide`] runs each call through the rules in arrival order and
//!    returns each caller's [`Answer`] and the batch's [`Writes`];
//! 3. the backend writes [`Writes`] with a fixed number of set-based
//!    statements, reads the orders a cancel answers with, and commits.
//!
//! Nothing here does I/O, and everything is a domain record: the services
//! turn the answers into documents. Both backends run batches through here,
//! so they cannot disagree.

mod calls;
mod decide;
mod needs;

use stockroom_domain::rules::{
    AdjustDecision, CreateDecision, Effect, ExtendDecision, ProductSettings, ReleaseDecision,
    ReserveDecision, RuleError, SettingsChange, SettingsDecision, StockRecord, StoredOrder,
    SweepDecision,
};
use stockroom_domain::{ProductName, ReleaseReason};

pub use calls::{Adjustment, PaymentVerdict, Reservation, SettlementCall};
pub use decide::{MAX_TRACE_CONTEXT_BYTES, Writes, decide};
pub use needs::{Needs, SweepQuery};

use crate::{ReleaseOutcome, StorageError};

/// A call the rules decide.
#[derive(Debug, Clone)]
pub enum Command {
    Reserve(Vec<Reservation>),
    RecordPayments(Vec<PaymentVerdict>),
    Settle(Vec<SettlementCall>),
    Release {
        order_id: String,
        reason: ReleaseReason,
    },
    /// Ends reservations whose next step is overdue (see
    /// [`stockroom_domain::rules::Book::sweep`]): at most `max_orders` of
    /// them.
    Sweep {
        older_than_ms: u64,
        max_orders: u32,
    },
    Restock {
        product: ProductName,
        quantity: u64,
    },
    /// An operator creates a product.
    CreateProduct {
        product: ProductName,
        quantity: u64,
        settings: ProductSettings,
    },
    /// An operator changes a product's limit or threshold.
    ChangeSettings {
        product_key: String,
        change: SettingsChange,
    },
    /// An operator adjusts a product's units.
    Adjust(Adjustment),
    /// A customer keeps their unpaid reservation until `until_ms`.
    Extend {
        order_id: String,
        customer_id: String,
        until_ms: i64,
    },
}

impl Command {
    /// How many requests, events or orders the call carries, for batch
    /// limits.
    pub fn size(&self) -> usize {
        match self {
            Command::Reserve(requests) => requests.len(),
            Command::RecordPayments(payments) => payments.len(),
            Command::Settle(settlements) => settlements.len(),
            Command::Sweep { max_orders, .. } => *max_orders as usize,
            Command::Release { .. }
            | Command::Restock { .. }
            | Command::CreateProduct { .. }
            | Command::ChangeSettings { .. }
            | Command::Adjust(_)
            | Command::Extend { .. } => 1,
        }
    }
}

/// One order the sweep ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptOrder {
    pub order_id: String,
    pub outcome: SweepDecision,
}

/// The answer to one [`Command`].
#[derive(Debug, Clone)]
pub enum Reply {
    Reserved(Vec<ReserveDecision>),
    /// One effect per event, in the order given; an error means the stored
    /// order contradicts the stock (a bug or damaged data) and nothing was
    /// changed for that event.
    Effects(Vec<Result<Effect, RuleError>>),
    Release(ReleaseOutcome),
    Swept(Vec<SweptOrder>),
    Item(StockRecord),
    Created(CreateDecision),
    Settings(SettingsDecision),
    Adjusted(AdjustDecision),
    Extended(ExtendDecision),
}

/// What [`decide`] answers a command with: a reply, or a cancel's decision
/// whose reply needs the order with its history, read after the writes.
#[derive(Debug, Clone)]
pub enum Answer {
    Ready(Reply),
    Release {
        order_id: String,
        decision: ReleaseDecision,
    },
}

impl Answer {
    /// The order the answer needs read, if any.
    pub fn order_needed(&self) -> Option<&str> {
        match self {
            Answer::Release {
                order_id,
                decision:
                    ReleaseDecision::Released
                    | ReleaseDecision::AlreadyCancelled
                    | ReleaseDecision::NotCancellable,
            } => Some(order_id),
            _ => None,
        }
    }

    /// The reply, given the order [`Answer::order_needed`] asked for.
    pub fn into_reply(self, order: Option<StoredOrder>) -> Result<Reply, StorageError> {
        match self {
            Answer::Ready(reply) => Ok(reply),
            Answer::Release { order_id, decision } => {
                let document = || {
                    order.ok_or_else(|| {
                        StorageError::Inconsistent(format!("order {order_id} vanished"))
                    })
                };
                Ok(Reply::Release(match decision {
                    ReleaseDecision::Released => ReleaseOutcome::Released(document()?),
                    ReleaseDecision::AlreadyCancelled => {
                        ReleaseOutcome::AlreadyCancelled(document()?)
                    }
                    ReleaseDecision::NotCancellable => ReleaseOutcome::NotCancellable(document()?),
                    ReleaseDecision::UnknownOrder => ReleaseOutcome::UnknownOrder,
                }))
            }
        }
    }
}
