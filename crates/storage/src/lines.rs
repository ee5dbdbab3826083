//! How both backends store an order's lines: in the order's own row, as one
//! JSON array of `[product key, product name, units]`, sorted by product key.
//!
//! An order's lines never change after it is created and are always read with
//! it, so they live with it: one row written per order instead of one per
//! line, and no join when the rules load an order or a reader lists a page.

use stockroom_domain::Quantity;
use stockroom_domain::rules::OrderLine;

use crate::StorageError;

/// The column value of `lines`.
pub fn encode(lines: &[OrderLine]) -> String {
    let rows: Vec<(&str, &str, u32)> = lines
        .iter()
        .map(|line| {
            (
                line.product_key.as_str(),
                line.product_name.as_str(),
                line.quantity.get(),
            )
        })
        .collect();
    serde_json::to_string(&rows).expect("plain values always serialise")
}

/// The lines of a stored column value, checked.
pub fn decode(order_id: &str, text: &str) -> Result<Vec<OrderLine>, StorageError> {
    let damaged = |why: String| StorageError::Inconsistent(format!("order {order_id}: {why}"));
    let rows: Vec<(String, String, i64)> = serde_json::from_str(text)
        .map_err(|error| damaged(format!("unreadable lines: {error}")))?;
    let mut lines = Vec::with_capacity(rows.len());
    for (product_key, product_name, units) in rows {
        lines.push(OrderLine {
            product_key,
            product_name,
            quantity: Quantity::new(i128::from(units))
                .map_err(|error| damaged(error.to_string()))?,
        });
    }
    if lines.is_empty() {
        return Err(damaged("no lines".into()));
    }
    lines.sort_by(|a, b| a.product_key.cmp(&b.product_key));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_damage_is_reported() {
        let lines = vec![
            OrderLine {
                product_key: "laptop".into(),
                product_name: "Laptop".into(),
                quantity: Quantity::new(2).unwrap(),
            },
            OrderLine {
                product_key: "phone".into(),
                product_name: "Phone \"X\"".into(),
                quantity: Quantity::new(1).unwrap(),
            },
        ];
        assert_eq!(decode("o", &encode(&lines)).unwrap(), lines);
        assert!(decode("o", "[]").is_err());
        assert!(decode("o", "[[\"laptop\",\"Laptop\",0]]").is_err());
        assert!(decode("o", "not json").is_err());
    }
}
