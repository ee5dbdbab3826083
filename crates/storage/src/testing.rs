//! What only tests use, behind the `testing` feature: never compiled into
//! the system.

use async_trait::async_trait;
use stockroom_domain::OrderStatus;

use crate::{OrderFilter, Storage, StorageError};

/// Raw access to a backend's database, to inject faults (a broken
/// constraint, damaged rows) that the rules would never write.
#[async_trait]
pub trait FaultInjection: Send + Sync + 'static {
    /// Runs one statement of the backend's SQL outside the rules and maps its
    /// failure like any other.
    async fn execute_unchecked(&self, statement: &str) -> Result<u64, StorageError>;
}

/// A backend as its tests see it: a store, and raw access to it.
pub trait TestStorage: Storage + FaultInjection {}

impl<T: Storage + FaultInjection> TestStorage for T {}

impl OrderFilter {
    /// One filter of every shape a listing can take (each condition present
    /// or absent), for tests that check every shape is served by an index.
    pub fn every_shape() -> Vec<OrderFilter> {
        let mut shapes = Vec::with_capacity(20);
        for status in [
            None,
            Some(OrderStatus::Reserved),
            Some(OrderStatus::Fulfilled),
            Some(OrderStatus::Rejected),
            Some(OrderStatus::Cancelled),
        ] {
            for customer_id in [None, Some("c1".to_owned())] {
                for after in [None, Some("x".to_owned())] {
                    shapes.push(OrderFilter {
                        status,
                        customer_id: customer_id.clone(),
                        after,
                        limit: 10,
                    });
                }
            }
        }
        shapes
    }
}
