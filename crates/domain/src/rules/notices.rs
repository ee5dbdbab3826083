//! Notices for other systems: an order ended, a product's stock is low, sold
//! out, or back in stock. Each is an event of the outbox, written with the
//! change that raised it and sent by data-service's webhook dispatcher, so a
//! notice is never sent for a change that did not commit, nor lost for one
//! that did. A book raises them only when webhooks are configured.

use crate::order::{EventKind, OrderStatus};
use crate::rules::{Book, EventRecord, Notice, OrderRecord, ProductSettings, event_id};
use crate::stock::Stock;

/// Which availability lines a change of figures crossed, in the order their
/// notices go out.
pub(crate) fn crossings(
    settings: ProductSettings,
    before: &Stock,
    after: &Stock,
) -> Vec<EventKind> {
    let (was, is) = (before.available(), after.available());
    let mut kinds = Vec::new();
    if let Some(threshold) = settings.low_stock_threshold
        && was > threshold
        && is <= threshold
    {
        kinds.push(EventKind::StockLow);
    }
    if was > 0 && is == 0 {
        kinds.push(EventKind::StockSoldOut);
    }
    if was == 0 && is > 0 {
        kinds.push(EventKind::StockBackInStock);
    }
    kinds
}

impl Book {
    /// Raises the notices a change of a product's figures calls for.
    pub(crate) fn notice_stock(
        &mut self,
        product_key: &str,
        product_name: &str,
        movement_seq: u64,
        settings: ProductSettings,
        before: &Stock,
        after: &Stock,
    ) {
        if !self.notify {
            return;
        }
        for kind in crossings(settings, before, after) {
            // One movement of a product crosses each line at most once, so
            // the product and the movement's number name the notice.
            let version = i64::try_from(movement_seq).unwrap_or(i64::MAX);
            self.events.push(EventRecord {
                event_id: event_id(kind, product_key, version),
                kind,
                order_id: product_key.to_owned(),
                order_version: version,
                total_units: after.available(),
                occurred_at_ms: self.now_ms,
                trace_parent: None,
                notice: Some(Notice::Stock {
                    product_name: product_name.to_owned(),
                    available: after.available(),
                    low_stock_threshold: settings.low_stock_threshold,
                }),
            });
        }
    }

    /// Raises the notice of an order that has just ended (fulfilled or
    /// cancelled).
    pub(crate) fn notice_order(&mut self, order: &OrderRecord) {
        let kind = match order.status {
            OrderStatus::Fulfilled => EventKind::OrderFulfilled,
            OrderStatus::Cancelled => EventKind::OrderCancelled,
            _ => return,
        };
        if !self.notify {
            return;
        }
        let notice = Notice::Order {
            customer_id: order.customer_id.clone(),
            status: order.status,
            reason: order.reason,
            lines: order
                .lines
                .iter()
                .map(|line| (line.product_name.clone(), line.quantity.get()))
                .collect(),
        };
        self.emit_with(kind, order, Some(notice));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock(on_hand: u64, reserved: u64) -> Stock {
        Stock::received(on_hand).unwrap().hold(reserved).unwrap()
    }

    #[test]
    fn each_line_is_crossed_once_and_only_going_its_way() {
        let low = ProductSettings {
            max_per_customer: None,
            low_stock_threshold: Some(3),
        };
        assert_eq!(
            crossings(low, &stock(10, 0), &stock(10, 7)),
            [EventKind::StockLow]
        );
        assert_eq!(
            crossings(low, &stock(10, 0), &stock(10, 10)),
            [EventKind::StockLow, EventKind::StockSoldOut]
        );
        assert!(
            crossings(low, &stock(10, 8), &stock(10, 9)).is_empty(),
            "already low"
        );
        assert_eq!(
            crossings(low, &stock(10, 10), &stock(10, 9)),
            [EventKind::StockBackInStock]
        );
        assert!(
            crossings(ProductSettings::default(), &stock(10, 0), &stock(10, 9)).is_empty(),
            "no threshold, no low notice"
        );
    }
}
