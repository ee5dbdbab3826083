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

/// Each request's verdict, in the requests' order, from the verdicts the
/// ledger returned in any order; a key named twice gets the newest verdict
/// of its key both times. Looked up by key, because a batch carries up to
/// hundreds of charges and finding each in the list was quadratic (about a
/// hundredth of SQLite's single writer thread).
pub fn verdicts_in_request_order(
    charges: &[Charge],
    verdicts: &[Verdict],
) -> Result<Vec<Verdict>, StorageError> {
    // Later verdicts of a key replace earlier ones: the newest count wins.
    let by_key: std::collections::HashMap<&str, &Verdict> = verdicts
        .iter()
        .map(|verdict| (verdict.charge_key.as_str(), verdict))
        .collect();
    charges
        .iter()
        .map(|charge| {
            by_key
                .get(charge.charge_key.as_str())
                .map(|verdict| (*verdict).clone())
                .ok_or_else(|| {
                    StorageError::Inconsistent(format!(
                        "the provider gave no verdict for {}",
                        charge.charge_key
                    ))
                })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str) -> Charge {
        Charge {
            charge_key: key.to_owned(),
            order_id: key.to_owned(),
            units: 1,
            approved: true,
        }
    }

    fn verdict(key: &str, requests: u32) -> Verdict {
        Verdict {
            charge_key: key.to_owned(),
            approved: true,
            requests,
        }
    }

    #[test]
    fn verdicts_follow_the_requests_and_a_repeated_key_gets_its_newest() {
        let charges = [charge("b"), charge("a"), charge("b")];
        let verdicts = vec![verdict("a", 1), verdict("b", 1), verdict("b", 2)];
        let answered = verdicts_in_request_order(&charges, &verdicts).unwrap();
        let keys: Vec<(&str, u32)> = answered
            .iter()
            .map(|verdict| (verdict.charge_key.as_str(), verdict.requests))
            .collect();
        assert_eq!(keys, [("b", 2), ("a", 1), ("b", 2)]);
    }

    #[test]
    fn a_request_without_a_verdict_is_inconsistent() {
        let answered = verdicts_in_request_order(&[charge("a")], &[verdict("b", 1)]);
        assert!(matches!(answered, Err(StorageError::Inconsistent(_))));
    }
}
