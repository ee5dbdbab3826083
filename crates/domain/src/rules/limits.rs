//! Purchase limits: what one customer may hold of a limited product.
//!
//! A customer's holding of a product is the units of it in their reserved
//! and fulfilled orders. It is kept, per customer and limited product, by the
//! same batches that reserve, release and sell, so a limit is checked against
//! a stored figure in the same decision that holds the stock: exact under any
//! concurrency, since every batch that changes a holding of a product also
//! holds that product's row. A cancelled or expired order frees its units; a
//! fulfilled one keeps counting.

use std::collections::BTreeMap;

use crate::order::OrderStatus;
use crate::rules::{Book, HoldingsReset, OrderRecord};

/// An order that would take its customer past a product's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    pub product_name: String,
    pub max_per_customer: u32,
    /// What the customer already holds in reserved and fulfilled orders.
    pub already_held: u64,
}

/// Every customer's holding of `product_key` in `orders` (reserved and
/// fulfilled ones count), for a product that gets a limit.
pub fn holdings_of<'a>(
    product_key: &str,
    orders: impl IntoIterator<Item = &'a OrderRecord>,
) -> Vec<(String, u64)> {
    let mut holdings: BTreeMap<&str, u64> = BTreeMap::new();
    for order in orders {
        if !matches!(order.status, OrderStatus::Reserved | OrderStatus::Fulfilled) {
            continue;
        }
        for line in order
            .lines
            .iter()
            .filter(|line| line.product_key == product_key)
        {
            *holdings.entry(order.customer_id.as_str()).or_default() +=
                u64::from(line.quantity.get());
        }
    }
    holdings
        .into_iter()
        .map(|(customer, units)| (customer.to_owned(), units))
        .collect()
}

impl Book {
    /// The first item of an order (product key, units) that would take
    /// `customer_id` past its product's limit.
    pub(crate) fn limit_exceeded(
        &self,
        customer_id: &str,
        items: &[(String, u64)],
    ) -> Option<LimitExceeded> {
        for (product_key, units) in items {
            let Some(slot) = self.stock.get(product_key) else {
                continue;
            };
            let Some(max) = slot
                .current
                .and_then(|state| state.settings.max_per_customer)
            else {
                continue;
            };
            let held = self.holding(customer_id, product_key);
            if held.saturating_add(*units) > u64::from(max) {
                return Some(LimitExceeded {
                    product_name: slot.name.clone(),
                    max_per_customer: max,
                    already_held: held,
                });
            }
        }
        None
    }

    /// What `customer_id` holds of a product. A limited product's holdings
    /// are always loaded for the customers a batch touches.
    fn holding(&self, customer_id: &str, product_key: &str) -> u64 {
        self.holdings
            .get(&(customer_id.to_owned(), product_key.to_owned()))
            .map_or_else(
                || panic!("the holding of {customer_id} in {product_key} was not loaded"),
                |slot| slot.current,
            )
    }

    /// Adds (or, negative, removes) units to a customer's holdings of the
    /// limited products among `items`; unlimited products keep none.
    pub(crate) fn hold_for(&mut self, customer_id: &str, items: &[(String, u64)], sign: i8) {
        for (product_key, units) in items {
            let limited = self
                .stock
                .get(product_key)
                .and_then(|slot| slot.current)
                .is_some_and(|state| state.settings.max_per_customer.is_some());
            if !limited {
                continue;
            }
            let slot = self
                .holdings
                .get_mut(&(customer_id.to_owned(), product_key.clone()))
                .unwrap_or_else(|| {
                    panic!("the holding of {customer_id} in {product_key} was not loaded")
                });
            slot.current = if sign >= 0 {
                slot.current.saturating_add(*units)
            } else {
                slot.current.saturating_sub(*units)
            };
        }
    }

    /// Replaces every holding of a product, when its limit is set or removed
    /// (`holdings` empty): held figures of the batch's own loaded pairs
    /// follow, so later decisions of the batch see them.
    pub(crate) fn reset_holdings(&mut self, product_key: &str, holdings: Vec<(String, u64)>) {
        for ((customer, key), slot) in self.holdings.iter_mut() {
            if key == product_key {
                slot.current = holdings
                    .iter()
                    .find(|(holder, _)| holder == customer)
                    .map_or(0, |(_, units)| *units);
                // The reset writes the product's holdings whole (a row for
                // each holder, none for the others); a later change of the
                // batch is written over what the reset wrote.
                slot.loaded = (slot.current > 0).then_some(slot.current);
            }
        }
        self.holdings_resets
            .retain(|reset| reset.product_key != product_key);
        self.holdings_resets.push(HoldingsReset {
            product_key: product_key.to_owned(),
            holdings,
        });
    }
}

/// The (product key, units) of an order's lines.
pub(crate) fn units_of(order: &OrderRecord) -> Vec<(String, u64)> {
    order
        .lines
        .iter()
        .map(|line| (line.product_key.clone(), u64::from(line.quantity.get())))
        .collect()
}
