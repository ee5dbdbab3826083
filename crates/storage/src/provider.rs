//! The simulated payment provider's ledger.
//!
//! A real provider keeps its charges by the idempotency key the merchant
//! sends: a repeated request gets the first verdict and charges nothing
//! more. The simulation keeps its ledger in the system's database, so that
//! every payment-service instance talks to one provider, as it would to a
//! real one; nothing else reads it.

use async_trait::async_trait;

use crate::StorageError;

/// A charge payment-service asks the provider for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The charge's idempotency key at the provider: one per order.
    pub charge_key: String,
    pub order_id: String,
    pub units: u64,
    /// The verdict, should this be the key's first request.
    pub approved: bool,
}

/// The provider's answer to one charge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub charge_key: String,
    /// The key's verdict: its first request's.
    pub approved: bool,
    /// How many requests the key has had, this one included.
    pub requests: u32,
}

/// What the provider's ledger holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Keys charged (approved) and declined: each key once.
    pub charged: u64,
    pub declined: u64,
    /// Requests for a key seen before, answered without a second charge.
    pub repeated_requests: u64,
    /// Orders charged under more than one key: always 0 while every charge
    /// is keyed by its order.
    pub orders_charged_twice: u64,
}

/// The provider's ledger: one entry per charge key, the first request's
/// verdict standing for every later request of the same key.
#[async_trait]
pub trait ProviderLedger: Send + Sync + 'static {
    /// Records each charge by its key and returns each key's verdict, one
    /// per request in the order given.
    async fn provider_charge(&self, charges: Vec<Charge>) -> Result<Vec<Verdict>, StorageError>;

    async fn provider_stats(&self) -> Result<LedgerStats, StorageError>;
}
