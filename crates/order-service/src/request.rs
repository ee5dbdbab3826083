//! Reading and checking what a client sends to `POST /api/orders`.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use stockroom_domain::{CustomerId, OrderItems};

use crate::OrderError;

/// The `Idempotency-Key` header, checked: visible ASCII, 1 to 255 characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, OrderError> {
    stockroom_http_kit::idempotency_key(headers)
        .map_err(|error| OrderError::InvalidHeader(error.to_string()))
}

/// A hash of the normalised request (customer, and items sorted by product
/// key), so that the same order written differently (item order, letter case,
/// single-item or `items` form) counts as the same request.
pub fn fingerprint(customer_id: &CustomerId, items: &OrderItems) -> String {
    let mut hasher = Sha256::new();
    hasher.update(customer_id.as_str().as_bytes());
    for item in items.iter() {
        hasher.update([0]);
        hasher.update(item.product.key().as_bytes());
        hasher.update([0]);
        hasher.update(item.quantity.get().to_be_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Order ids are UUIDs; anything else cannot name an order.
pub fn check_order_id(order_id: &str) -> Result<(), OrderError> {
    uuid::Uuid::parse_str(order_id)
        .map(|_| ())
        .map_err(|_| OrderError::NotFound(format!("no order with id {order_id}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockroom_contract::PlaceOrderRequest;

    fn parse(json: &str) -> Result<(CustomerId, OrderItems), String> {
        serde_json::from_str::<PlaceOrderRequest>(json)
            .map_err(|error| error.to_string())?
            .into_parts()
            .map_err(|error| error.to_string())
    }

    #[test]
    fn both_shapes_give_the_same_fingerprint() {
        let (customer, single) =
            parse(r#"{"customerId":"c1","productName":"Laptop","quantity":2}"#).unwrap();
        let (_, multi) =
            parse(r#"{"customerId":"c1","items":[{"productName":"laptop","quantity":2}]}"#)
                .unwrap();
        assert_eq!(
            fingerprint(&customer, &single),
            fingerprint(&customer, &multi)
        );
        let (_, other) =
            parse(r#"{"customerId":"c1","productName":"Laptop","quantity":3}"#).unwrap();
        assert_ne!(
            fingerprint(&customer, &single),
            fingerprint(&customer, &other)
        );
    }

    #[test]
    fn refuses_mixed_and_partial_shapes() {
        assert!(parse(r#"{"customerId":"c1","productName":"Laptop"}"#).is_err());
        assert!(parse(r#"{"customerId":"c1","quantity":2}"#).is_err());
        assert!(parse(r#"{"customerId":"c1"}"#).is_err());
        assert!(
            parse(r#"{"customerId":"c1","productName":"Laptop","quantity":1,"items":[]}"#).is_err()
        );
        assert!(parse(r#"{"customerId":"c1","items":[]}"#).is_err());
    }
}
