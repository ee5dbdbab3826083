//! The operator's side of the shop's scenarios: setting the hot product's
//! purchase limit before a storm, two operators adjusting its stock at once,
//! and the probes of what each promised: no customer holds more than the
//! limit, and every acknowledged adjustment is in the final figure.
//!
//! Both systems take the same requests (`PATCH /inventory/{product}`,
//! `POST /inventory/{product}/adjustments` with an `Idempotency-Key`); only
//! Stockroom asks for the operator's token, which the naive system ignores.

use std::collections::BTreeMap;

use stockroom_contract::{InventoryItem, InventoryItemDocument, OrderList};
use stockroom_domain::OrderStatus;

use super::drive::futures_join_all;
use super::probes::get_json;
use super::{
    ADJUSTMENTS_PER_OPERATOR, Anomaly, DAMAGED_UNITS, HOT_PRODUCT, RECEIVED_UNITS, SystemUrls,
};
use crate::history::{EventType, HistoryEvent};

/// The error code of an order refused for the customer's purchase limit.
const LIMIT_EXCEEDED: &str = "limit_exceeded";

/// The most orders the limit probe reads: one page, far more than a
/// scenario's storm places.
const PROBE_ORDER_PAGE: u32 = 500;

/// The operator's client: every request carries the operator's token when
/// the system has one.
pub(super) fn operator_client(urls: &SystemUrls) -> reqwest::Client {
    super::drive::bearer_client(urls.operator_token.as_deref())
}

/// Sets the hot product's `maxPerCustomer`.
pub(super) async fn set_limit(
    http: &reqwest::Client,
    urls: &SystemUrls,
    limit: u32,
) -> Result<(), reqwest::Error> {
    http.patch(format!("{}/inventory/{HOT_PRODUCT}", urls.data))
        .json(&serde_json::json!({ "maxPerCustomer": limit }))
        .send()
        .await?
        .error_for_status()
        .map(|_| ())
}

/// The hot product's figures as data-service reports them.
async fn hot_item(
    http: &reqwest::Client,
    urls: &SystemUrls,
) -> Result<InventoryItem, reqwest::Error> {
    let document: InventoryItemDocument =
        get_json(http, &format!("{}/inventory/{HOT_PRODUCT}", urls.data)).await?;
    Ok(document.item)
}

/// What the operators' adjustments were told, and the figures before them.
pub(super) struct Adjusted {
    before: InventoryItem,
    /// The sum of the deltas answered with a 2xx.
    acknowledged_units: i64,
    acknowledged: usize,
    refused: usize,
}

impl Adjusted {
    pub(super) fn note(&self) -> String {
        format!(
            "{} adjustments acknowledged ({:+} units), {} refused",
            self.acknowledged, self.acknowledged_units, self.refused
        )
    }
}

/// Two operators adjust the hot product at once, [`ADJUSTMENTS_PER_OPERATOR`]
/// times each: one receives [`RECEIVED_UNITS`], the other writes off
/// [`DAMAGED_UNITS`] as damaged. Each request has a key of its own.
pub(super) async fn adjust_concurrently(
    http: &reqwest::Client,
    urls: &SystemUrls,
) -> Result<Adjusted, reqwest::Error> {
    let before = hot_item(http, urls).await?;
    let run: u64 = rand::random();
    let requests = (0..ADJUSTMENTS_PER_OPERATOR).flat_map(|round| {
        [(RECEIVED_UNITS, "received"), (-DAMAGED_UNITS, "damaged")]
            .map(|(delta, reason)| (round, delta, reason))
    });
    let sends = requests.map(|(round, delta, reason)| {
        let http = http.clone();
        let url = format!("{}/inventory/{HOT_PRODUCT}/adjustments", urls.data);
        let key = format!("lab-adjustment-{run:016x}-{reason}-{round}");
        async move {
            let status = http
                .post(url)
                .header("Idempotency-Key", key)
                .json(&serde_json::json!({ "delta": delta, "reason": reason }))
                .send()
                .await
                .map(|response| response.status());
            (delta, status)
        }
    });
    let mut adjusted = Adjusted {
        before,
        acknowledged_units: 0,
        acknowledged: 0,
        refused: 0,
    };
    for (delta, status) in futures_join_all(sends).await {
        match status {
            Ok(status) if status.is_success() => {
                adjusted.acknowledged += 1;
                adjusted.acknowledged_units += delta;
            }
            _ => adjusted.refused += 1,
        }
    }
    Ok(adjusted)
}

/// An anomaly when the hot product's on-hand figure is not what it was
/// before the adjustments plus every acknowledged delta (less what was sold
/// meanwhile), and one when any adjustment was refused: each was valid
/// against ample stock, so a refusal would hide an update, not lose it.
pub(super) async fn lost_adjustments(
    http: &reqwest::Client,
    urls: &SystemUrls,
    adjusted: &Adjusted,
) -> Result<Vec<Anomaly>, reqwest::Error> {
    let after = hot_item(http, urls).await?;
    let sold_meanwhile = after.sold - adjusted.before.sold;
    let expected = adjusted.before.quantity + adjusted.acknowledged_units - sold_meanwhile;
    let refused = (adjusted.refused > 0).then(|| Anomaly {
        kind: "adjustment_refused".into(),
        text: format!("{} of the operators' adjustments refused", adjusted.refused),
    });
    let lost = (after.quantity != expected).then(|| Anomaly {
        kind: "adjustment_lost".into(),
        text: format!(
            "{HOT_PRODUCT} on hand {}, expected {} {} {} acknowledged = {expected}: {} units of adjustments lost",
            after.quantity,
            adjusted.before.quantity - sold_meanwhile,
            if adjusted.acknowledged_units < 0 { '-' } else { '+' },
            adjusted.acknowledged_units.abs(),
            (expected - after.quantity).abs()
        ),
    });
    Ok(lost.into_iter().chain(refused).collect())
}

/// An anomaly for every customer holding more than `limit` units of the hot
/// product in reserved and fulfilled orders.
pub(super) async fn customers_over_limit(
    http: &reqwest::Client,
    urls: &SystemUrls,
    limit: u32,
) -> Result<Vec<Anomaly>, reqwest::Error> {
    let url = format!("{}/orders?limit={PROBE_ORDER_PAGE}", urls.data);
    let page: OrderList = get_json(http, &url).await?;
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for order in page
        .orders
        .iter()
        .filter(|order| matches!(order.status, OrderStatus::Reserved | OrderStatus::Fulfilled))
    {
        let units: i64 = order
            .items
            .iter()
            .filter(|line| line.product.name.eq_ignore_ascii_case(HOT_PRODUCT))
            .map(|line| i64::from(line.quantity))
            .sum();
        *held.entry(order.customer_id.clone()).or_insert(0) += units;
    }
    Ok(held
        .into_iter()
        .filter(|(_, units)| *units > i64::from(limit))
        .map(|(customer, units)| Anomaly {
            kind: "customer_over_limit".into(),
            text: format!(
                "customer {customer} holds {units} {HOT_PRODUCT}s, limit {limit} per customer"
            ),
        })
        .collect())
}

/// Anomalies unless exactly `limit` of the storm's orders (all one
/// customer's, one unit each) were accepted and every other was refused
/// with `limit_exceeded`: a limit that refuses too much, or refuses for
/// another reason, does not hold either.
pub(super) fn limit_answers(history: &[HistoryEvent], limit: u32) -> Vec<Anomaly> {
    let completed = history
        .iter()
        .filter(|event| event.kind != EventType::Invoke);
    let mut accepted = 0_u64;
    let mut other_answers: BTreeMap<String, u64> = BTreeMap::new();
    for event in completed {
        if event.kind == EventType::Ok {
            accepted += 1;
        } else if event.value.error.as_deref() != Some(LIMIT_EXCEEDED) {
            let answer = event
                .value
                .error
                .clone()
                .or_else(|| event.value.status_code.map(|code| code.to_string()))
                .unwrap_or_else(|| "no answer".into());
            *other_answers.entry(answer).or_insert(0) += 1;
        }
    }
    let mut anomalies = Vec::new();
    if accepted != u64::from(limit) {
        anomalies.push(Anomaly {
            kind: "limit_misapplied".into(),
            text: format!("{accepted} orders accepted for one customer, limit {limit}"),
        });
    }
    if !other_answers.is_empty() {
        anomalies.push(Anomaly {
            kind: "limit_misapplied".into(),
            text: format!("orders refused for other reasons than the limit: {other_answers:?}"),
        });
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{OpValue, PLACE_ORDER};

    fn answer(kind: EventType, error: Option<&str>) -> HistoryEvent {
        HistoryEvent {
            kind,
            process: 0,
            time: 0,
            f: PLACE_ORDER.to_owned(),
            value: OpValue {
                error: error.map(str::to_owned),
                ..OpValue::default()
            },
        }
    }

    #[test]
    fn the_limit_holds_only_when_exactly_the_limit_is_accepted() {
        let refused = answer(EventType::Fail, Some(LIMIT_EXCEEDED));
        let held = [
            answer(EventType::Invoke, None),
            answer(EventType::Ok, None),
            answer(EventType::Ok, None),
            refused.clone(),
        ];
        assert!(limit_answers(&held, 2).is_empty());
        let too_strict = [answer(EventType::Ok, None), refused.clone()];
        assert_eq!(limit_answers(&too_strict, 2).len(), 1);
        let wrong_reason = [
            answer(EventType::Ok, None),
            answer(EventType::Ok, None),
            answer(EventType::Fail, Some("insufficient_stock")),
        ];
        let anomalies = limit_answers(&wrong_reason, 2);
        assert_eq!(anomalies.len(), 1);
        assert!(anomalies[0].text.contains("insufficient_stock"));
    }
}
