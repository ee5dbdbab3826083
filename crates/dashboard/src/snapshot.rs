//! The snapshot: everything the page shows at one moment, as one JSON
//! document (`GET /api/snapshot`, and each event of `GET /api/stream`).
//!
//! Each part carries its own `error` when its source could not be read, so a
//! service that is down blanks its own panel and nothing else.

use serde::Serialize;
use serde_json::Value;
use stockroom_audit::{InvariantReport, Violation};
use stockroom_contract::StatusCount;
use stockroom_domain::invariants::{self, StockFigures};

use crate::lab::LabStatus;
use crate::movements::MovementPanel;
use crate::sale::SaleStatus;
use crate::traffic::Point;
use crate::webhooks::WebhookPanel;

/// The most distinct violations the page lists as seen since the dashboard
/// started; later ones are counted but not listed.
pub const MAX_SEEN_VIOLATIONS: usize = 50;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Counts up by one with every snapshot.
    pub sequence: u64,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    pub stock: StockPanel,
    pub orders: OrdersPanel,
    pub traffic: TrafficPanel,
    pub audit: AuditPanel,
    pub services: Vec<ServicePanel>,
    pub movements: MovementPanel,
    pub webhooks: WebhookPanel,
    pub sale: SaleStatus,
    pub lab: LabStatus,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StockPanel {
    pub products: Vec<ProductRow>,
    /// Whether any product is oversold right now.
    pub oversold: bool,
    pub error: Option<String>,
}

/// One product's figures, and what is wrong with them, if anything.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductRow {
    pub product: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub sold: Option<i64>,
    pub received: Option<i64>,
    /// The most units one customer may hold; `None` for no limit.
    pub max_per_customer: Option<u64>,
    /// Availability at or below which the product counts as low.
    pub low_stock_threshold: Option<u64>,
    /// Available at or below the threshold (and not oversold).
    pub low: bool,
    /// Available below zero or more reserved than on hand.
    pub oversold: bool,
    /// Each broken stock invariant, as a sentence.
    pub problems: Vec<String>,
}

impl ProductRow {
    /// A product's row, judged by the invariants of
    /// [`stockroom_domain::invariants`], the same ones the auditor checks.
    pub fn judge(figures: &StockFigures) -> ProductRow {
        let violations = invariants::check_stock(figures);
        let available = figures.available();
        ProductRow {
            product: figures.product.clone(),
            on_hand: figures.on_hand,
            reserved: figures.reserved,
            available,
            sold: figures.sold,
            received: figures.received,
            max_per_customer: None,
            low_stock_threshold: None,
            low: false,
            oversold: available < 0 || figures.reserved > figures.on_hand,
            problems: violations
                .into_iter()
                .map(|violation| violation.to_string())
                .collect(),
        }
    }
}

impl ProductRow {
    /// The row of an item that has settings: its purchase limit and its
    /// low-stock threshold, and whether it is low now.
    pub fn with_settings(mut self, settings: &ProductSettings) -> ProductRow {
        self.max_per_customer = settings.max_per_customer;
        self.low_stock_threshold = settings.low_stock_threshold;
        self.low = settings.low_stock_threshold.is_some_and(|threshold| {
            !self.oversold
                && u64::try_from(self.available).is_ok_and(|available| available <= threshold)
        });
        self
    }
}

/// A product's settings as `GET /inventory` lists them (absent on a system
/// that has none).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductSettings {
    #[serde(default)]
    pub max_per_customer: Option<u64>,
    #[serde(default)]
    pub low_stock_threshold: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrdersPanel {
    pub counts: Vec<StatusCount>,
    /// All orders counted (a lower bound when a count is capped).
    pub total: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPanel {
    /// One point per poll, oldest first, over the last minutes.
    pub points: Vec<Point>,
    pub error: Option<String>,
}

/// The auditor's last verdict, and every violation it has seen.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPanel {
    pub report: InvariantReport,
    /// Distinct violations seen since the dashboard started, first seen
    /// first, so that one that came and went stays on the page.
    pub seen: Vec<SeenViolation>,
    /// Distinct violations seen, listed or not.
    pub seen_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeenViolation {
    pub violation: Violation,
    pub first_seen_at: String,
    pub last_seen_at: String,
    /// Whether the last audit still found it.
    pub current: bool,
}

impl AuditPanel {
    /// Takes the auditor's latest report, adding what it found to the
    /// violations seen.
    pub fn update(&mut self, report: InvariantReport, now: &str) {
        for seen in &mut self.seen {
            seen.current = false;
        }
        for violation in &report.violations {
            // The figures of a violation change as the system moves on; the
            // same invariant broken for the same product is the same finding.
            let existing = self.seen.iter_mut().find(|seen| {
                seen.violation.invariant == violation.invariant
                    && seen.violation.product == violation.product
            });
            match existing {
                Some(seen) => {
                    seen.violation = violation.clone();
                    seen.last_seen_at = now.to_owned();
                    seen.current = true;
                }
                None => {
                    self.seen_count += 1;
                    if self.seen.len() < MAX_SEEN_VIOLATIONS {
                        self.seen.push(SeenViolation {
                            violation: violation.clone(),
                            first_seen_at: now.to_owned(),
                            last_seen_at: now.to_owned(),
                            current: true,
                        });
                    }
                }
            }
        }
        self.report = report;
    }
}

/// One service instance's health, part by part.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePanel {
    pub name: String,
    pub url: String,
    /// `ok`, `degraded`, `starting`, `down`, or `unreachable`.
    pub status: String,
    pub parts: Vec<PartRow>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartRow {
    pub name: String,
    pub status: String,
    /// What shows the part's state, as `name: value` phrases.
    pub details: Vec<String>,
}

impl ServicePanel {
    /// The panel of a `/health` document (`{"status","parts":{name:
    /// {"status","detail"}}}`); a service without parts shows none.
    pub fn from_health(name: &str, url: &str, status: &str, document: &Value) -> ServicePanel {
        let parts = document["parts"]
            .as_object()
            .map(|parts| {
                parts
                    .iter()
                    .map(|(part, value)| PartRow {
                        name: part.clone(),
                        status: value["status"].as_str().unwrap_or("unknown").to_owned(),
                        details: flatten("", &value["detail"]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ServicePanel {
            name: name.to_owned(),
            url: url.to_owned(),
            status: status.to_owned(),
            parts,
            error: document["error"].as_str().map(str::to_owned),
        }
    }
}

/// `{"payment":{"pending":3}}` → `["payment pending: 3"]`.
fn flatten(prefix: &str, value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Object(fields) => fields
            .iter()
            .flat_map(|(name, value)| {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix} {name}")
                };
                flatten(&path, value)
            })
            .collect(),
        Value::String(text) => vec![labelled(prefix, text)],
        other => vec![labelled(prefix, &other.to_string())],
    }
}

fn labelled(prefix: &str, value: &str) -> String {
    if prefix.is_empty() {
        value.to_owned()
    } else {
        format!("{prefix}: {value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn figures(on_hand: i64, reserved: i64) -> StockFigures {
        serde_json::from_value(json!({
            "productName": "Laptop", "quantity": on_hand, "reservedQuantity": reserved,
            "available": on_hand - reserved, "sold": 0, "received": on_hand
        }))
        .unwrap()
    }

    #[test]
    fn an_oversold_product_is_flagged_with_its_broken_invariants() {
        let fine = ProductRow::judge(&figures(25, 5));
        assert!(!fine.oversold);
        assert!(fine.problems.is_empty());
        assert_eq!(fine.available, 20);
        let oversold = ProductRow::judge(&figures(25, 32));
        assert!(oversold.oversold);
        assert_eq!(oversold.available, -7);
        assert!(!oversold.problems.is_empty(), "{:?}", oversold.problems);
    }

    #[test]
    fn a_product_at_or_below_its_threshold_is_low() {
        let settings = ProductSettings {
            max_per_customer: Some(2),
            low_stock_threshold: Some(5),
        };
        let low = ProductRow::judge(&figures(10, 5)).with_settings(&settings);
        assert!(low.low);
        assert_eq!(low.max_per_customer, Some(2));
        assert!(
            !ProductRow::judge(&figures(10, 4))
                .with_settings(&settings)
                .low
        );
        let oversold = ProductRow::judge(&figures(10, 12)).with_settings(&settings);
        assert!(!oversold.low, "oversold is shown as such, not as low");
        let none = ProductRow::judge(&figures(0, 0)).with_settings(&ProductSettings::default());
        assert!(!none.low, "no threshold, never low");
        assert_eq!(none.max_per_customer, None);
    }

    #[test]
    fn violations_seen_stay_listed_after_they_clear() {
        let violation = |actual: &str| Violation {
            invariant: "available_non_negative".into(),
            product: "Laptop".into(),
            expected: ">= 0".into(),
            actual: actual.into(),
        };
        let report = |violations: Vec<Violation>| InvariantReport {
            healthy: violations.is_empty(),
            violations,
            ..InvariantReport::default()
        };
        let mut panel = AuditPanel::default();
        panel.update(report(vec![violation("-2")]), "t1");
        panel.update(report(vec![violation("-3")]), "t2");
        assert_eq!(panel.seen.len(), 1, "the same finding, figures updated");
        assert_eq!(panel.seen[0].violation.actual, "-3");
        assert_eq!(panel.seen[0].first_seen_at, "t1");
        panel.update(report(vec![]), "t3");
        assert!(!panel.seen[0].current);
        assert_eq!(panel.seen_count, 1);
        assert!(panel.report.healthy);
    }

    #[test]
    fn health_parts_become_rows_of_phrases() {
        let document = json!({"status": "degraded", "service": "data-service", "parts": {
            "storage": {"status": "ok", "detail": {"backend": "sqlite", "writable": true}},
            "outbox": {"status": "ok", "detail": {"payment": {"pending": 3, "oldestAgeMs": 12}}},
            "deadLetters": {"status": "degraded", "detail": {"payment": 2}},
            "dependencies": {"status": "ok"}
        }});
        let panel = ServicePanel::from_health("data-service", "http://d", "degraded", &document);
        let part = |name: &str| panel.parts.iter().find(|part| part.name == name).unwrap();
        assert_eq!(
            part("storage").details,
            ["backend: sqlite", "writable: true"]
        );
        assert_eq!(
            part("outbox").details,
            ["payment oldestAgeMs: 12", "payment pending: 3"]
        );
        assert_eq!(part("deadLetters").status, "degraded");
        assert!(part("dependencies").details.is_empty());
        let naive = ServicePanel::from_health("x", "u", "ok", &json!({"status": "ok"}));
        assert!(naive.parts.is_empty());
    }
}
