//! Checked value types: quantities, product names, customer ids and item lists.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The most units of one product a single order item may ask for.
///
/// A flash-sale buyer never needs more; the limit keeps sums of many items far
/// away from integer overflow and turns a typo like `quantity: 1e9` into a clear
/// client error instead of a rejection for "insufficient stock".
pub const MAX_QUANTITY_PER_ITEM: u32 = 1_000;

/// The most distinct products one order may contain.
pub const MAX_ITEMS_PER_ORDER: usize = 50;

/// The longest product name accepted, in characters.
pub const MAX_PRODUCT_NAME_LENGTH: usize = 100;

/// The longest customer id accepted, in characters.
pub const MAX_CUSTOMER_ID_LENGTH: usize = 100;

/// The most units of one product the stock may hold (on hand), so that every
/// sum the storage computes stays inside `i64`.
pub const MAX_STOCK_PER_PRODUCT: u64 = 1_000_000_000_000;

/// Why a value was refused. The messages are shown to API clients as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("quantity must be a whole number from 1 to {MAX_QUANTITY_PER_ITEM}, got {0}")]
    QuantityOutOfRange(String),
    #[error("productName must be 1 to {MAX_PRODUCT_NAME_LENGTH} characters and not blank")]
    InvalidProductName,
    #[error("customerId must be 1 to {MAX_CUSTOMER_ID_LENGTH} characters and not blank")]
    InvalidCustomerId,
    #[error("an order needs at least one item")]
    NoItems,
    #[error("an order may contain at most {MAX_ITEMS_PER_ORDER} items, got {0}")]
    TooManyItems(usize),
    #[error("product {0} appears more than once in the order")]
    DuplicateProduct(String),
}

/// A number of units, from 1 to [`MAX_QUANTITY_PER_ITEM`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// Checks a raw number. Takes `i128` so that any JSON integer a client sends,
    /// negative or huge, reaches this check instead of failing earlier with a
    /// less helpful message.
    pub fn new(raw: i128) -> Result<Quantity, DomainError> {
        if raw < 1 || raw > i128::from(MAX_QUANTITY_PER_ITEM) {
            return Err(DomainError::QuantityOutOfRange(raw.to_string()));
        }
        Ok(Quantity(raw as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// Accepts any JSON value and explains what is wrong with it, so that
    /// `"2"`, `2.5`, `-3` and `1e30` all get the same clear message instead of
    /// a parser error.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl QuantityVisitor {
    fn refuse<E: serde::de::Error>(shown: impl fmt::Display) -> E {
        E::custom(DomainError::QuantityOutOfRange(shown.to_string()))
    }
}

impl serde::de::Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "a whole number from 1 to {MAX_QUANTITY_PER_ITEM}"
        )
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Quantity, E> {
        Quantity::new(i128::from(value)).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Quantity, E> {
        Quantity::new(i128::from(value)).map_err(E::custom)
    }

    fn visit_i128<E: serde::de::Error>(self, value: i128) -> Result<Quantity, E> {
        Quantity::new(value).map_err(E::custom)
    }

    fn visit_u128<E: serde::de::Error>(self, value: u128) -> Result<Quantity, E> {
        Quantity::new(i128::try_from(value).unwrap_or(i128::MAX)).map_err(E::custom)
    }

    /// `2.0` is the whole number 2, as JSON Schema counts integers; `2.5`
    /// is refused.
    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Quantity, E> {
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e30 {
            return Quantity::new(value as i128).map_err(E::custom);
        }
        Err(Self::refuse(value))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Quantity, E> {
        Err(Self::refuse(format!("the string {value:?}")))
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Quantity, E> {
        Err(Self::refuse(value))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Quantity, E> {
        Err(Self::refuse("null"))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// A product's name as the client wrote it, trimmed. Products are matched
/// without regard to case (`laptop` finds `Laptop`), which the storage does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ProductName(String);

impl ProductName {
    pub fn new(raw: &str) -> Result<ProductName, DomainError> {
        let trimmed = raw.trim();
        let length = trimmed.chars().count();
        if length == 0 || length > MAX_PRODUCT_NAME_LENGTH || trimmed.chars().any(char::is_control)
        {
            return Err(DomainError::InvalidProductName);
        }
        Ok(ProductName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key products are compared and locked by: the lower-case name.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl<'de> Deserialize<'de> for ProductName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ProductName::new(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ProductName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// The id of the customer placing an order, opaque to Stockroom.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CustomerId(String);

impl CustomerId {
    pub fn new(raw: &str) -> Result<CustomerId, DomainError> {
        let trimmed = raw.trim();
        let length = trimmed.chars().count();
        if length == 0 || length > MAX_CUSTOMER_ID_LENGTH || trimmed.chars().any(char::is_control) {
            return Err(DomainError::InvalidCustomerId);
        }
        Ok(CustomerId(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CustomerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        CustomerId::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// One line of an order: a product and how many units of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderItem {
    pub product: ProductName,
    pub quantity: Quantity,
}

/// The items of one order: 1 to [`MAX_ITEMS_PER_ORDER`] lines, each product at
/// most once, kept sorted by product key.
///
/// The sorting is what prevents deadlocks: every reservation locks its
/// products in this one global order, so two orders naming the same products in
/// opposite order can never wait on each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OrderItems(Vec<OrderItem>);

impl OrderItems {
    pub fn new(mut items: Vec<OrderItem>) -> Result<OrderItems, DomainError> {
        if items.is_empty() {
            return Err(DomainError::NoItems);
        }
        if items.len() > MAX_ITEMS_PER_ORDER {
            return Err(DomainError::TooManyItems(items.len()));
        }
        let mut seen = BTreeSet::new();
        for item in &items {
            if !seen.insert(item.product.key()) {
                return Err(DomainError::DuplicateProduct(item.product.to_string()));
            }
        }
        items.sort_by_key(|item| item.product.key());
        Ok(OrderItems(items))
    }

    pub fn iter(&self) -> impl Iterator<Item = &OrderItem> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn total_units(&self) -> u64 {
        self.0
            .iter()
            .map(|item| u64::from(item.quantity.get()))
            .sum()
    }
}

impl<'de> Deserialize<'de> for OrderItems {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<OrderItem>::deserialize(deserializer)?;
        OrderItems::new(items).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_rejects_zero_negative_and_huge() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert!(Quantity::new(i128::from(MAX_QUANTITY_PER_ITEM) + 1).is_err());
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(1_000).unwrap().get(), 1_000);
    }

    #[test]
    fn quantity_from_json_explains_every_refusal() {
        let parse = |json: &str| serde_json::from_str::<Quantity>(json);
        assert_eq!(parse("7").unwrap().get(), 7);
        for bad in [
            "\"2\"",
            "2.5",
            "-3",
            "0",
            "1e30",
            "99999999999999999999999",
            "null",
            "true",
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(
                error.contains("quantity must be a whole number"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn product_names_are_trimmed_and_checked() {
        assert_eq!(ProductName::new("  Laptop ").unwrap().as_str(), "Laptop");
        assert_eq!(ProductName::new("LapTop").unwrap().key(), "laptop");
        assert!(ProductName::new("   ").is_err());
        assert!(ProductName::new(&"x".repeat(MAX_PRODUCT_NAME_LENGTH + 1)).is_err());
        assert!(ProductName::new("a\nb").is_err());
    }

    fn item(name: &str, quantity: i128) -> OrderItem {
        OrderItem {
            product: ProductName::new(name).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
        }
    }

    #[test]
    fn items_are_sorted_so_locks_are_taken_in_one_order() {
        let items = OrderItems::new(vec![item("Phone", 1), item("laptop", 2)]).unwrap();
        let names: Vec<_> = items.iter().map(|item| item.product.key()).collect();
        assert_eq!(names, ["laptop", "phone"]);
        assert_eq!(items.total_units(), 3);
    }

    #[test]
    fn items_reject_empty_duplicates_and_too_many() {
        assert_eq!(OrderItems::new(vec![]), Err(DomainError::NoItems));
        assert!(matches!(
            OrderItems::new(vec![item("Laptop", 1), item("LAPTOP", 1)]),
            Err(DomainError::DuplicateProduct(_))
        ));
        let many = (0..=MAX_ITEMS_PER_ORDER)
            .map(|index| item(&format!("p{index}"), 1))
            .collect();
        assert!(matches!(
            OrderItems::new(many),
            Err(DomainError::TooManyItems(_))
        ));
    }
}
