//! How both backends store a notice with its outbox entry (the `notice`
//! column): `["order", customer id, status, reason or null, [[name, units],
//! …]]` or `["stock", product name, available, threshold or null]`.

use stockroom_domain::rules::Notice;
use stockroom_domain::{OrderStatus, Reason};

use crate::StorageError;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Stored {
    Order(String, String, String, Option<String>, Vec<(String, u32)>),
    Stock(String, String, u64, Option<u64>),
}

/// The column value of a notice.
pub fn encode(notice: &Notice) -> String {
    let stored = match notice {
        Notice::Order {
            customer_id,
            status,
            reason,
            lines,
        } => Stored::Order(
            "order".into(),
            customer_id.clone(),
            status.as_str().into(),
            reason.map(|reason| reason.as_str().to_owned()),
            lines.clone(),
        ),
        Notice::Stock {
            product_name,
            available,
            low_stock_threshold,
        } => Stored::Stock(
            "stock".into(),
            product_name.clone(),
            *available,
            *low_stock_threshold,
        ),
    };
    serde_json::to_string(&stored).expect("plain values always serialise")
}

/// The notice of a stored column value.
pub fn decode(event_id: &str, text: &str) -> Result<Notice, StorageError> {
    let damaged = |why: String| StorageError::Inconsistent(format!("notice {event_id}: {why}"));
    let stored: Stored = serde_json::from_str(text).map_err(|error| damaged(error.to_string()))?;
    match stored {
        Stored::Order(tag, customer_id, status, reason, lines) if tag == "order" => {
            Ok(Notice::Order {
                customer_id,
                status: status
                    .parse::<OrderStatus>()
                    .map_err(|error| damaged(error.to_string()))?,
                reason: reason
                    .as_deref()
                    .map(str::parse::<Reason>)
                    .transpose()
                    .map_err(|error| damaged(error.to_string()))?,
                lines,
            })
        }
        Stored::Stock(tag, product_name, available, low_stock_threshold) if tag == "stock" => {
            Ok(Notice::Stock {
                product_name,
                available,
                low_stock_threshold,
            })
        }
        _ => Err(damaged("unknown kind of notice".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let notices = [
            Notice::Order {
                customer_id: "c1".into(),
                status: OrderStatus::Cancelled,
                reason: Some(Reason::ReservationExpired),
                lines: vec![("Laptop".into(), 2)],
            },
            Notice::Stock {
                product_name: "Laptop".into(),
                available: 0,
                low_stock_threshold: Some(3),
            },
        ];
        for notice in notices {
            assert_eq!(decode("e", &encode(&notice)).unwrap(), notice);
        }
        assert!(decode("e", "[\"other\"]").is_err());
    }
}
