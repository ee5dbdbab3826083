//! The purchase limit, as the write-ups would have added it to the naive
//! order-service: read the product's `maxPerCustomer`, read the customer's
//! orders, sum the units they hold of the product, refuse past the limit,
//! and otherwise go on to create the order.
//!
//! WRONG ON PURPOSE. The check and the creation are two steps with a pause
//! between them (the limit-check window): one customer's concurrent orders
//! all sum the same orders, all pass, and together take the customer past
//! the limit (limit bypass). Stockroom decides the limit in the same atomic
//! step as the reservation. Only the lab turns it on
//! ([`crate::RaceWindows::with_limit_check`]): the original system had none.

use std::time::Duration;

use stockroom_contract::{InventoryItemDocument, Order, OrderList};
use stockroom_domain::{OrderItems, OrderStatus};
use stockroom_http_kit::ServiceClient;

use crate::NaiveError;

/// Whether `order` still holds its units: not refused and not cancelled.
fn holds_units(order: &Order) -> bool {
    !matches!(order.status, OrderStatus::Rejected | OrderStatus::Cancelled)
}

/// The units of `product` that `customer` holds in live orders.
fn units_held(orders: &[Order], customer: &str, product: &str) -> i64 {
    orders
        .iter()
        .filter(|order| order.customer_id == customer && holds_units(order))
        .flat_map(|order| &order.items)
        .filter(|line| line.product.name.eq_ignore_ascii_case(product))
        .map(|line| i64::from(line.quantity))
        .sum()
}

/// Refuses the order when it would take `customer` past a product's limit,
/// then pauses for `window_ms` before the caller creates it; no pause when
/// no product of the order is limited.
pub(crate) async fn check_limits(
    data: &ServiceClient,
    customer: &str,
    items: &OrderItems,
    window_ms: u64,
) -> Result<(), NaiveError> {
    let mut orders: Option<Vec<Order>> = None;
    for item in items.iter() {
        let product = item.product.to_string();
        let InventoryItemDocument { item: stock } =
            data.get(&format!("/inventory/{product}")).await?;
        let Some(limit) = stock.max_per_customer else {
            continue;
        };
        if orders.is_none() {
            let list: OrderList = data.get("/orders").await?;
            orders = Some(list.orders);
        }
        let held = units_held(orders.as_deref().unwrap_or_default(), customer, &product);
        let wanted = i64::from(item.quantity.get());
        if held + wanted > i64::from(limit) {
            return Err(NaiveError::LimitExceeded(format!(
                "customer {customer} holds {held} of {product}; {wanted} more would pass the limit of {limit}"
            )));
        }
    }
    if orders.is_some() {
        tokio::time::sleep(Duration::from_millis(window_ms)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(customer: &str, status: OrderStatus, product: &str, quantity: u32) -> Order {
        let mut order: Order = serde_json::from_value(serde_json::json!({
            "id": format!("{customer}-{status}-{product}"),
            "customerId": customer,
            "status": "pending",
            "paymentStatus": "none",
            "version": 1,
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
            "items": [{"product": {"name": product}, "quantity": quantity}],
            "history": [],
        }))
        .expect("a valid order document");
        order.status = status;
        order
    }

    #[test]
    fn only_the_customers_live_orders_of_the_product_count() {
        let orders = [
            order("c1", OrderStatus::Pending, "Laptop", 1),
            order("c1", OrderStatus::Fulfilled, "laptop", 2),
            order("c1", OrderStatus::Cancelled, "Laptop", 4),
            order("c1", OrderStatus::Rejected, "Laptop", 8),
            order("c1", OrderStatus::Reserved, "Phone", 16),
            order("c2", OrderStatus::Reserved, "Laptop", 32),
        ];
        assert_eq!(units_held(&orders, "c1", "Laptop"), 3);
        assert_eq!(units_held(&orders, "c3", "Laptop"), 0);
    }
}
