//! The documents of the operator's routes: creating a product, changing its
//! limit and threshold, adjusting its units, and reading its ledger.
//!
//! Every request refuses unknown fields, so that a misspelt field (say
//! `maxPerCustommer`) is an error the operator sees, not a change silently
//! left out.

use serde::{Deserialize, Deserializer, Serialize};
use stockroom_domain::rules::{
    AdjustReason, MAX_PER_CUSTOMER_LIMIT, MAX_REFERENCE_LENGTH, Movement, MovementReason,
};
use stockroom_domain::{MAX_STOCK_PER_PRODUCT, ProductName};
use utoipa::ToSchema;

use crate::{InventoryItem, whole};

/// A new product and its first units.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProductRequest {
    #[schema(value_type = crate::Name)]
    pub product_name: ProductName,
    #[serde(deserialize_with = "whole::whole")]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub quantity: u64,
    #[serde(default, deserialize_with = "whole::optional_whole")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub max_per_customer: Option<u32>,
    #[serde(default, deserialize_with = "whole::optional_whole")]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub low_stock_threshold: Option<u64>,
}

/// A change of a product's settings: a field left out stays as it is, a
/// field set to `null` is removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(
        default,
        deserialize_with = "present_whole",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1_000_000, nullable)]
    pub max_per_customer: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present_whole",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 1_000_000_000_000_i64, nullable)]
    pub low_stock_threshold: Option<Option<u64>>,
}

/// A field that is present (`Some`), as a whole number or `null`; an absent
/// field is `None` through `#[serde(default)]`.
fn present_whole<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    whole::optional_whole(deserializer).map(Some)
}

/// An operator's change of a product's units, with the reason.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdjustmentRequest {
    /// Units added (positive) or written off (negative); never 0.
    #[serde(deserialize_with = "whole::integer")]
    #[schema(minimum = -1_000_000_000_000_i64, maximum = 1_000_000_000_000_i64)]
    pub delta: i64,
    #[serde(
        deserialize_with = "adjust_reason",
        serialize_with = "adjust_reason_name"
    )]
    #[schema(value_type = AdjustReasonName)]
    pub reason: AdjustReason,
    /// What the operator goes by: a delivery note, a count sheet.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub reference: Option<String>,
    /// The on-hand figure the operator saw: the adjustment applies only if
    /// it still is, so that two operators' counts never overwrite each
    /// other.
    #[serde(default, deserialize_with = "whole::optional_whole")]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub expected_on_hand: Option<u64>,
}

fn adjust_reason<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AdjustReason, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn adjust_reason_name<S: serde::Serializer>(
    reason: &AdjustReason,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(reason.as_str())
}

/// Why an operator adjusted a product.
#[derive(ToSchema)]
#[schema(as = AdjustReasonName)]
#[allow(dead_code)]
pub enum AdjustReasonName {
    #[schema(rename = "received")]
    Received,
    #[schema(rename = "returned")]
    Returned,
    #[schema(rename = "correction")]
    Correction,
    #[schema(rename = "damaged")]
    Damaged,
    #[schema(rename = "shrinkage")]
    Shrinkage,
    #[schema(rename = "cycle_count")]
    CycleCount,
}

impl AdjustmentRequest {
    /// Why the request cannot be applied to any product, if it cannot. The
    /// reason is a sentence for the client: data-service answers it as the
    /// message of a `422 invalid_request`, and nothing branches on it.
    pub fn check(&self) -> Result<(), String> {
        if self.delta == 0 {
            return Err("delta must not be 0".into());
        }
        if self.delta.unsigned_abs() > stockroom_domain::rules::MAX_ADJUSTMENT_UNITS {
            return Err(format!(
                "delta may move at most {} units",
                stockroom_domain::rules::MAX_ADJUSTMENT_UNITS
            ));
        }
        if let Some(reference) = &self.reference {
            if reference.chars().count() > MAX_REFERENCE_LENGTH {
                return Err(format!(
                    "reference may be at most {MAX_REFERENCE_LENGTH} characters"
                ));
            }
            if reference.chars().any(char::is_control) {
                return Err("reference may not hold control characters".into());
            }
        }
        Ok(())
    }
}

/// Why a limit or a threshold is out of range, if one is: a sentence for
/// the client's `422 invalid_request`, as [`AdjustmentRequest::check`].
pub fn check_settings(
    max_per_customer: Option<u32>,
    low_stock_threshold: Option<u64>,
) -> Result<(), String> {
    if let Some(limit) = max_per_customer
        && !(1..=MAX_PER_CUSTOMER_LIMIT).contains(&limit)
    {
        return Err(format!(
            "maxPerCustomer must be from 1 to {MAX_PER_CUSTOMER_LIMIT}, or null for no limit"
        ));
    }
    if let Some(threshold) = low_stock_threshold
        && threshold > MAX_STOCK_PER_PRODUCT
    {
        return Err(format!(
            "lowStockThreshold must be from 0 to {MAX_STOCK_PER_PRODUCT}, or null for none"
        ));
    }
    Ok(())
}

/// How a movement changed the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementDelta {
    pub on_hand: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// The settings a `settings` (or `created`) movement put in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementSettings {
    pub max_per_customer: Option<u32>,
    pub low_stock_threshold: Option<u64>,
}

/// One entry of a product's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementDocument {
    /// 1 for the product's first movement, then one more for each, in
    /// commit order.
    pub seq: u64,
    /// opening, created, received, adjusted, reserved, released, sold or
    /// settings.
    pub kind: String,
    /// The operator's reason of an adjustment, or why a reservation was
    /// released.
    pub reason: Option<String>,
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub delta: MovementDelta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<MovementSettings>,
    pub at_ms: i64,
}

impl MovementDocument {
    pub fn from_record(movement: &Movement) -> MovementDocument {
        MovementDocument {
            seq: movement.seq,
            kind: movement.kind.as_str().to_owned(),
            reason: movement
                .reason
                .map(|reason| MovementReason::as_str(reason).to_owned()),
            reference: movement.reference.clone(),
            order_id: movement.order_id.clone(),
            delta: MovementDelta {
                on_hand: movement.delta.on_hand,
                reserved: movement.delta.reserved,
                sold: movement.delta.sold,
            },
            settings: movement.settings.map(|settings| MovementSettings {
                max_per_customer: settings.max_per_customer,
                low_stock_threshold: settings.low_stock_threshold,
            }),
            at_ms: movement.at_ms,
        }
    }
}

/// A page of a product's ledger, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementList {
    pub movements: Vec<MovementDocument>,
    /// The `after` of the next page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// What an adjustment did: its movement, and the product after it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdjustmentDocument {
    pub movement: MovementDocument,
    pub item: InventoryItem,
}

/// A refused operator request that a figure explains: a stale
/// `expectedOnHand` (with the on-hand figure now) or a write-off past what
/// is available (with what is).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockConflict {
    /// `stale_quantity`, `insufficient_stock`, `product_exists` or
    /// `stock_limit`.
    pub error: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_hand: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    /// The product as it stands, for `product_exists`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<InventoryItem>,
}

/// A page of movements, as asked for.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MovementQuery {
    /// The `nextCursor` of the previous page (0 or absent for the first).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub after: Option<u64>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The default page of movements.
pub const DEFAULT_MOVEMENTS_PER_PAGE: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_tells_a_field_left_out_from_one_set_to_null() {
        let patch: SettingsPatch = serde_json::from_str(r#"{"maxPerCustomer":null}"#).unwrap();
        assert_eq!(patch.max_per_customer, Some(None));
        assert_eq!(patch.low_stock_threshold, None);
        let patch: SettingsPatch = serde_json::from_str(r#"{"lowStockThreshold":4.0}"#).unwrap();
        assert_eq!(patch.low_stock_threshold, Some(Some(4)));
        assert!(serde_json::from_str::<SettingsPatch>(r#"{"maxPerCustommer":1}"#).is_err());
        assert!(serde_json::from_str::<SettingsPatch>(r#"{"maxPerCustomer":-1}"#).is_err());
        assert!(serde_json::from_str::<SettingsPatch>(r#"{"maxPerCustomer":"2"}"#).is_err());
    }

    #[test]
    fn an_adjustment_is_checked_before_it_reaches_any_product() {
        let parse = |text: &str| serde_json::from_str::<AdjustmentRequest>(text);
        let request = parse(r#"{"delta":-3,"reason":"damaged","reference":"crate 4"}"#).unwrap();
        assert_eq!(request.check(), Ok(()));
        assert!(parse(r#"{"delta":1,"reason":"stolen"}"#).is_err());
        assert!(parse(r#"{"delta":1.5,"reason":"received"}"#).is_err());
        assert!(parse(r#"{"delta":"1","reason":"received"}"#).is_err());
        assert!(parse(r#"{"reason":"received"}"#).is_err());
        assert!(
            parse(r#"{"delta":0,"reason":"received"}"#)
                .unwrap()
                .check()
                .is_err()
        );
        let long = format!(
            r#"{{"delta":1,"reason":"received","reference":"{}"}}"#,
            "x".repeat(201)
        );
        assert!(parse(&long).unwrap().check().is_err());
        assert!(
            parse(r#"{"delta":1,"reason":"received","reference":"a\u0000b"}"#)
                .unwrap()
                .check()
                .is_err()
        );
        assert!(
            parse(r#"{"delta":-1000000000001,"reason":"received"}"#)
                .unwrap()
                .check()
                .is_err()
        );
    }
}
