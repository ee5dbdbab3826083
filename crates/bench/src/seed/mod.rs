//! Filling a database with a long history of finished orders, for the growth
//! benchmark (`stockroom bench --growth`), which shows that reads cost the
//! same with ten thousand orders stored as with a million.
//!
//! Going through the storage's own calls would take hours for a million
//! orders, so the rows are written here, straight into the tables the
//! backends created, in the stored format the backends read: an order's
//! lines as `stockroom_storage::lines` encodes them and its history as
//! `stockroom_storage::history` lays it out. A test below decodes both with
//! the storage's own decoders, so the two cannot drift apart unnoticed.

pub mod postgres;
pub mod sqlite;

use stockroom_domain::rules::OrderLine;
use stockroom_domain::{ProductName, Quantity};

/// The history seeded for a fulfilled order (reserved, the payment's note,
/// fulfilled), with `AT` standing for the order's creation time.
pub const SEEDED_FULFILLED: &str =
    r#"[[1,"reserved",null,AT],[2,"reserved","payment_charged",AT],[3,"fulfilled",null,AT]]"#;

/// The history seeded for an open reservation, `AT` as above.
pub const SEEDED_RESERVED: &str = r#"[[1,"reserved",null,AT]]"#;

/// The customers the seeded orders are spread over (`c0` to `c999`).
pub const SEEDED_CUSTOMERS: u64 = 1_000;

/// Units on hand beyond what the seeded orders hold or sold, so the stock
/// is never sold out.
pub const SEEDED_SPARE_UNITS: i64 = 1_000;

/// The stored `lines` value of every seeded order: one unit of `product`.
pub fn seeded_lines(product: &ProductName) -> String {
    stockroom_storage::lines::encode(&[OrderLine {
        product_key: product.key(),
        product_name: product.as_str().to_owned(),
        quantity: Quantity::new(1).expect("one unit is a valid quantity"),
    }])
}

#[cfg(test)]
mod tests {
    use stockroom_domain::OrderStatus;
    use stockroom_storage::{history, lines};

    use super::*;

    #[test]
    fn seeded_rows_read_back_with_the_storage_decoders() {
        let product = ProductName::new("Laptop").unwrap();
        let decoded = lines::decode("o", &seeded_lines(&product)).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].product_key, product.key());
        assert_eq!(decoded[0].quantity.get(), 1);
        let fulfilled = history::decode("o", &SEEDED_FULFILLED.replace("AT", "42")).unwrap();
        assert_eq!(
            fulfilled
                .iter()
                .map(|entry| (entry.version, entry.status))
                .collect::<Vec<_>>(),
            [
                (1, OrderStatus::Reserved),
                (2, OrderStatus::Reserved),
                (3, OrderStatus::Fulfilled)
            ]
        );
        let reserved = history::decode("o", &SEEDED_RESERVED.replace("AT", "42")).unwrap();
        assert_eq!(reserved.len(), 1);
        assert_eq!(reserved[0].status, OrderStatus::Reserved);
    }
}
