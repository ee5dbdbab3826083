//! The documents Stockroom sends to a shop's other systems by webhook.
//!
//! Each is `{"id","type","createdAtMs","data"}`: `id` is the event's own id
//! (the same on every retry, so a receiver keeps the first and drops the
//! rest), `type` one of [`WEBHOOK_TYPES`], and `data` what happened.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every webhook type, as `type` names it.
pub const WEBHOOK_TYPES: [&str; 5] = [
    "order.fulfilled",
    "order.cancelled",
    "stock.low",
    "stock.sold_out",
    "stock.back_in_stock",
];

/// One notice to another system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// The event's id: the same on every delivery of it.
    pub id: String,
    /// One of `order.fulfilled`, `order.cancelled`, `stock.low`,
    /// `stock.sold_out`, `stock.back_in_stock`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened, in milliseconds since the epoch.
    pub created_at_ms: i64,
    pub data: WebhookData,
}

/// What a webhook tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WebhookData {
    /// An order ended: fulfilled (paid and its units sold) or cancelled
    /// (by its customer, its payment declined, or its reservation expired).
    Order(OrderNotice),
    /// A product's availability crossed a line.
    Stock(StockNotice),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderNotice {
    pub order_id: String,
    pub customer_id: String,
    pub status: String,
    /// Why it was cancelled, when it was.
    pub reason: Option<String>,
    pub items: Vec<NoticeItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoticeItem {
    pub product_name: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockNotice {
    pub product_name: String,
    /// Units available when the line was crossed.
    pub available: u64,
    pub low_stock_threshold: Option<u64>,
}
