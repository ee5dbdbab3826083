//! The ledger's invariants: replaying a product's movements gives its
//! figures, and no reservation in it took a customer past the purchase limit
//! in force at that point of the ledger.
//!
//! The limit is checked per reservation, not on today's holdings: an
//! operator may lower a limit below what a customer already holds, and that
//! customer keeps those units (but may buy no more). Walking the ledger in
//! commit order with the orders' customers gives each customer's holding at
//! every reservation exactly, whatever happened since.

use std::collections::BTreeMap;

use super::{Invariant, StockFigures, Violation};

/// How a movement changed the figures, as a service reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DeltaFigures {
    #[serde(rename = "onHand")]
    pub on_hand: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// The settings a settings movement (or a creation) put in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct SettingsFigures {
    #[serde(rename = "maxPerCustomer", default)]
    pub max_per_customer: Option<i64>,
}

/// One movement of a product's ledger, as an item of
/// `GET /inventory/{product}/movements` reports it. The kind stays text, so
/// that a kind the checker does not know is reported, not skipped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct MovementFigures {
    pub seq: i64,
    pub kind: String,
    #[serde(rename = "orderId", default)]
    pub order_id: Option<String>,
    pub delta: DeltaFigures,
    #[serde(default)]
    pub settings: Option<SettingsFigures>,
}

impl From<&crate::rules::Movement> for MovementFigures {
    fn from(movement: &crate::rules::Movement) -> MovementFigures {
        MovementFigures {
            seq: movement.seq as i64,
            kind: movement.kind.as_str().to_owned(),
            order_id: movement.order_id.clone(),
            delta: DeltaFigures {
                on_hand: movement.delta.on_hand,
                reserved: movement.delta.reserved,
                sold: movement.delta.sold,
            },
            settings: movement.settings.map(|settings| SettingsFigures {
                max_per_customer: settings.max_per_customer.map(i64::from),
            }),
        }
    }
}

/// Checks one product's ledger against its figures. Only the movements up
/// to the figures' `movement_seq` count (later ones committed after the
/// figures were read); without a `movement_seq`, all of them.
/// `customer_of` maps order ids to their customers; a reservation of an
/// order it does not know (pruned since) is not checked against the limit.
pub fn check_ledger(
    stock: &StockFigures,
    movements: &[MovementFigures],
    customer_of: &BTreeMap<String, String>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let upto = stock.movement_seq.unwrap_or(i64::MAX);
    let movements: Vec<&MovementFigures> = movements
        .iter()
        .filter(|movement| movement.seq <= upto)
        .collect();
    let ledger_violation = |expected: String, actual: String| Violation {
        invariant: Invariant::LedgerMatchesStock,
        subject: stock.product.clone(),
        expected,
        actual,
    };
    if let Some((index, movement)) = movements
        .iter()
        .enumerate()
        .find(|(index, movement)| movement.seq != *index as i64 + 1)
    {
        violations.push(ledger_violation(
            format!("movement {} next", index + 1),
            format!("movement {}", movement.seq),
        ));
        return violations;
    }
    if let Some(upto) = stock.movement_seq
        && movements.len() as i64 != upto
    {
        violations.push(ledger_violation(
            format!("{upto} movements"),
            format!("{} movements", movements.len()),
        ));
    }
    let mut sum = DeltaFigures::default();
    for movement in &movements {
        sum.on_hand += movement.delta.on_hand;
        sum.reserved += movement.delta.reserved;
        sum.sold += movement.delta.sold;
    }
    let sold_matches = stock.sold.is_none_or(|sold| sold == sum.sold);
    if sum.on_hand != stock.on_hand || sum.reserved != stock.reserved || !sold_matches {
        violations.push(ledger_violation(
            format!(
                "quantity {}, reservedQuantity {}, sold {} (the figures)",
                stock.on_hand,
                stock.reserved,
                stock
                    .sold
                    .map_or("unreported".to_owned(), |sold| sold.to_string())
            ),
            format!(
                "quantity {}, reservedQuantity {}, sold {} (the ledger replayed)",
                sum.on_hand, sum.reserved, sum.sold
            ),
        ));
    }
    violations.extend(check_limits(&stock.product, &movements, customer_of));
    violations
}

/// Walks the ledger holding each customer's units (reserved and sold ones:
/// a sale keeps them held) and checks every reservation against the limit
/// then in force.
fn check_limits(
    product: &str,
    movements: &[&MovementFigures],
    customer_of: &BTreeMap<String, String>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut limit: Option<i64> = None;
    let mut held: BTreeMap<&str, i64> = BTreeMap::new();
    for movement in movements {
        if let Some(settings) = movement.settings {
            limit = settings.max_per_customer;
        }
        let Some(customer) = movement
            .order_id
            .as_ref()
            .and_then(|order_id| customer_of.get(order_id))
        else {
            continue;
        };
        // A sale moves units from reserved to sold: the customer still holds
        // them. A reservation adds units, a release gives them back.
        let moved = movement.delta.reserved + movement.delta.sold;
        let holding = held.entry(customer.as_str()).or_insert(0);
        *holding += moved;
        if movement.kind == "reserved"
            && let Some(limit) = limit
            && *holding > limit
        {
            violations.push(Violation {
                invariant: Invariant::WithinPurchaseLimit,
                subject: product.to_owned(),
                expected: format!("at most {limit} units per customer"),
                actual: format!(
                    "{customer} held {holding} after movement {} (order {})",
                    movement.seq,
                    movement.order_id.as_deref().unwrap_or("?")
                ),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(on_hand: i64, reserved: i64, sold: i64, movement_seq: i64) -> StockFigures {
        StockFigures {
            product: "Tablet".into(),
            on_hand,
            reserved,
            available: None,
            sold: Some(sold),
            received: Some(on_hand + sold),
            movement_seq: Some(movement_seq),
        }
    }

    fn moved(
        seq: i64,
        kind: &str,
        order: Option<&str>,
        delta: (i64, i64, i64),
        limit: Option<Option<i64>>,
    ) -> MovementFigures {
        MovementFigures {
            seq,
            kind: kind.into(),
            order_id: order.map(str::to_owned),
            delta: DeltaFigures {
                on_hand: delta.0,
                reserved: delta.1,
                sold: delta.2,
            },
            settings: limit.map(|max_per_customer| SettingsFigures { max_per_customer }),
        }
    }

    fn customers() -> BTreeMap<String, String> {
        [("o1", "ann"), ("o2", "ann"), ("o3", "bob")]
            .into_iter()
            .map(|(order, customer)| (order.to_owned(), customer.to_owned()))
            .collect()
    }

    /// Created with a limit of 2; Ann reserves 2 and buys them, Bob
    /// reserves 1 and is released; the limit goes down to 1 (Ann keeps
    /// hers); 1 more movement committed after the figures were read.
    fn ledger() -> Vec<MovementFigures> {
        vec![
            moved(1, "created", None, (10, 0, 0), Some(Some(2))),
            moved(2, "reserved", Some("o1"), (0, 2, 0), None),
            moved(3, "reserved", Some("o3"), (0, 1, 0), None),
            moved(4, "sold", Some("o1"), (-2, -2, 2), None),
            moved(5, "released", Some("o3"), (0, -1, 0), None),
            moved(6, "settings", None, (0, 0, 0), Some(Some(1))),
            moved(7, "adjusted", None, (-1, 0, 0), None),
        ]
    }

    #[test]
    fn a_ledger_that_replays_to_the_figures_passes() {
        assert_eq!(
            check_ledger(&figures(8, 0, 2, 6), &ledger(), &customers()),
            []
        );
        assert_eq!(
            check_ledger(&figures(7, 0, 2, 7), &ledger(), &customers()),
            []
        );
    }

    #[test]
    fn a_gap_or_a_figure_the_ledger_does_not_explain_is_found() {
        let mut gap = ledger();
        gap.remove(2);
        let found = check_ledger(&figures(8, 0, 2, 6), &gap, &customers());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].invariant, Invariant::LedgerMatchesStock);
        let found = check_ledger(&figures(9, 0, 2, 6), &ledger(), &customers());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].invariant, Invariant::LedgerMatchesStock);
    }

    #[test]
    fn a_reservation_past_the_limit_in_force_is_found_and_an_old_holding_is_not() {
        let mut over = ledger();
        over.push(moved(8, "reserved", Some("o2"), (0, 1, 0), None));
        let found = check_ledger(&figures(7, 1, 2, 8), &over, &customers());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].invariant, Invariant::WithinPurchaseLimit);
        assert!(
            found[0].actual.contains("ann held 3"),
            "{}",
            found[0].actual
        );
        // Bob, released, may hold the one unit the lowered limit allows.
        let mut customers = customers();
        customers.insert("o2".into(), "bob".into());
        assert_eq!(check_ledger(&figures(7, 1, 2, 8), &over, &customers), []);
    }
}
