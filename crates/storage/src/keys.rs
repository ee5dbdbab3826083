//! How both backends store an idempotency key's answer: the decision it
//! replays, never a rendered document. A key's row keeps the order the first
//! request created (`order_id`) and, when that order was rejected, what was
//! short (`shortages`, a JSON array of `[product name, requested,
//! available]`); a replay rebuilds the whole answer from the order (see
//! [`stockroom_domain::rules::ReserveAnswer::first`]) and the service renders
//! it as it renders any answer.

use stockroom_domain::rules::{KeptAnswer, Shortage};

use crate::StorageError;

/// The `shortages` column of a kept answer: `None` for a reservation.
pub fn encode_shortages(answer: &KeptAnswer) -> Option<String> {
    match answer {
        KeptAnswer::Reserved { .. } => None,
        KeptAnswer::Rejected { shortages, .. } => {
            let rows: Vec<(&str, u32, u64)> = shortages
                .iter()
                .map(|shortage| {
                    (
                        shortage.product_name.as_str(),
                        shortage.requested,
                        shortage.available,
                    )
                })
                .collect();
            Some(serde_json::to_string(&rows).expect("plain values always serialise"))
        }
    }
}

/// The kept answer of a stored key's `order_id` and `shortages` columns.
pub fn decode(order_id: String, shortages: Option<&str>) -> Result<KeptAnswer, StorageError> {
    let Some(text) = shortages else {
        return Ok(KeptAnswer::Reserved { order_id });
    };
    let rows: Vec<(String, u32, u64)> = serde_json::from_str(text).map_err(|error| {
        StorageError::Inconsistent(format!(
            "the idempotency key of order {order_id} keeps unreadable shortages: {error}"
        ))
    })?;
    Ok(KeptAnswer::Rejected {
        order_id,
        shortages: rows
            .into_iter()
            .map(|(product_name, requested, available)| Shortage {
                product_name,
                requested,
                available,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_answers_round_trip_and_damage_is_reported() {
        let reserved = KeptAnswer::Reserved {
            order_id: "a".into(),
        };
        assert_eq!(encode_shortages(&reserved), None);
        assert_eq!(decode("a".into(), None).unwrap(), reserved);
        let rejected = KeptAnswer::Rejected {
            order_id: "b".into(),
            shortages: vec![Shortage {
                product_name: "Laptop \"Pro\"".into(),
                requested: 3,
                available: 1,
            }],
        };
        let text = encode_shortages(&rejected).unwrap();
        assert_eq!(decode("b".into(), Some(&text)).unwrap(), rejected);
        assert!(decode("b".into(), Some("not json")).is_err());
    }
}
