//! The document a webhook carries, made of the event the rules wrote.

use stockroom_contract::webhooks::{
    NoticeItem, OrderNotice, StockNotice, WebhookData, WebhookEvent,
};
use stockroom_domain::rules::{EventRecord, Notice};

/// The webhook of an event, or `None` for an event that is not one (no
/// notice, or a kind of the order flow): such an event is refused as
/// poison.
pub fn webhook_event(event: &EventRecord) -> Option<WebhookEvent> {
    let kind = event.kind.webhook_type()?;
    let data = match event.notice.as_ref()? {
        Notice::Order {
            customer_id,
            status,
            reason,
            lines,
        } => WebhookData::Order(OrderNotice {
            order_id: event.order_id.clone(),
            customer_id: customer_id.clone(),
            status: status.as_str().to_owned(),
            reason: reason.map(|reason| reason.as_str().to_owned()),
            items: lines
                .iter()
                .map(|(product_name, quantity)| NoticeItem {
                    product_name: product_name.clone(),
                    quantity: *quantity,
                })
                .collect(),
        }),
        Notice::Stock {
            product_name,
            available,
            low_stock_threshold,
        } => WebhookData::Stock(StockNotice {
            product_name: product_name.clone(),
            available: *available,
            low_stock_threshold: *low_stock_threshold,
        }),
    };
    Some(WebhookEvent {
        id: event.event_id.clone(),
        kind: kind.to_owned(),
        created_at_ms: event.occurred_at_ms,
        data,
    })
}
