//! The storage boundary: the traits every Stockroom storage backend
//! implements, one per concern, and the errors they may return.
//!
//! data-service depends on these traits only, never on a backend, so SQLite,
//! PostgreSQL and any later engine are interchangeable; each part of it takes
//! only the trait it uses:
//! - [`OrderFlow`]: stock and orders, read and changed through the rules;
//! - [`EventOutbox`]: the outbox, its leases and its dead letters;
//! - [`ProviderLedger`]: the simulated payment provider's ledger;
//! - [`Maintenance`]: retention, the write-path probe and statistics.
//!
//! Storage speaks the domain: it takes and returns the records of
//! [`stockroom_domain::rules`] and [`stockroom_domain::outbox`], keeps every
//! time as milliseconds since the epoch, and knows nothing of the HTTP
//! documents the services make of them.
//!
//! Every write is one atomic unit: it either happens completely and durably
//! before it returns `Ok`, or not at all. Batch methods apply each element
//! in order and give each its own result; one element's failure does not undo
//! the others. The rules every change follows are decided in one place, in
//! memory: the domain's [`stockroom_domain::rules::Book`] for the order flow
//! ([`batch`] turns calls into its inputs) and its
//! [`stockroom_domain::outbox::Outbox`] for the bus ([`bus`]). A backend only
//! loads the rows a batch touches, hands them to the rules, and writes what
//! they decided.
//!
//! The contract each backend must keep (checked by the conformance suite):
//! - a reservation checks and holds stock in one step, for every item of the
//!   order or none, so no interleaving of callers can oversell;
//! - every order status change is conditional on the order's version, appends
//!   to its history, and never moves the status backwards;
//! - events are written to the outbox in the same transaction as the change
//!   they report, and each consumer's effect is recorded together with the
//!   event id it answers, so a redelivered event has no second effect;
//! - every write of an existing row is conditional on the state it was
//!   loaded in, and checked.

pub mod batch;
pub mod bus;
mod error;
pub mod event_ids;
mod flow;
pub mod history;
pub mod keys;
pub mod ledger;
pub mod lines;
mod maintenance;
pub mod notices;
pub mod outbox_rows;
mod provider;
#[cfg(feature = "testing")]
pub mod testing;
mod write_stats;

pub use bus::{EventOutbox, OutboxCounts};
pub use error::{Cause, StorageError, cause};
pub use flow::{
    InitialStock, MAX_MOVEMENTS_PER_PAGE, MAX_ORDERS_PER_PAGE, MovementPage, OrderFilter,
    OrderFlow, OrderPage, ReleaseOutcome, StatusCount,
};
pub use maintenance::{MAX_REJECTED_ORDER_BYTES, Maintenance, Prune, Pruned};
pub use provider::{Charge, LedgerStats, ProviderLedger, Verdict, verdicts_in_request_order};
pub use write_stats::{WriteCounters, WriteStats};

/// Everything a storage backend is: what data-service is given, and splits
/// into the concerns its parts take.
pub trait Storage: OrderFlow + EventOutbox + ProviderLedger + Maintenance {}

impl<T: OrderFlow + EventOutbox + ProviderLedger + Maintenance> Storage for T {}
