//! The invariants of a stock-and-orders system, checked on figures anyone
//! can read: the one definition used by inventory-service's live auditor,
//! `stockroom check` (against any service that speaks the HTTP contract,
//! the original system included) and the storage conformance suite.
//!
//! The inputs are plain figures, not Stockroom's own types, because the
//! system checked may be broken in ways those types cannot represent: a
//! negative stock, a status nobody knows, a history that goes backwards.

use std::collections::BTreeMap;
use std::fmt;

use crate::order::{OrderStatus, Reason};

mod ledger;

pub use ledger::{DeltaFigures, MovementFigures, SettingsFigures, check_ledger};

/// Every invariant, by its stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// `available >= 0` for every product.
    AvailableNonNegative,
    /// `0 <= reserved <= on hand` for every product.
    ReservedWithinOnHand,
    /// `received == on hand + sold` (or, without those figures, the initial
    /// stock equals what is on hand plus what fulfilled orders took).
    Conservation,
    /// A product's reserved units are exactly those of its reserved orders.
    ReservedMatchesOrders,
    /// A product's sold units are exactly those of its fulfilled orders.
    SoldMatchesFulfilled,
    /// An order's history only moves forward and ends at its status.
    StatusesMoveForward,
    /// No order was fulfilled or charged twice.
    NoDoubleEffects,
    /// An order whose payment was taken is never cancelled: only fulfilment
    /// may follow a charge.
    ChargedOrdersNotCancelled,
    /// Replaying a product's ledger, numbered 1, 2, 3… without gaps, gives
    /// its figures.
    LedgerMatchesStock,
    /// No reservation took its customer past the product's purchase limit
    /// in force when it was made.
    WithinPurchaseLimit,
}

impl Invariant {
    pub const ALL: [Invariant; 10] = [
        Invariant::AvailableNonNegative,
        Invariant::ReservedWithinOnHand,
        Invariant::Conservation,
        Invariant::ReservedMatchesOrders,
        Invariant::SoldMatchesFulfilled,
        Invariant::StatusesMoveForward,
        Invariant::NoDoubleEffects,
        Invariant::ChargedOrdersNotCancelled,
        Invariant::LedgerMatchesStock,
        Invariant::WithinPurchaseLimit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Invariant::AvailableNonNegative => "available_non_negative",
            Invariant::ReservedWithinOnHand => "reserved_within_on_hand",
            Invariant::Conservation => "conservation",
            Invariant::ReservedMatchesOrders => "reserved_matches_orders",
            Invariant::SoldMatchesFulfilled => "sold_matches_fulfilled",
            Invariant::StatusesMoveForward => "statuses_move_forward",
            Invariant::NoDoubleEffects => "no_double_effects",
            Invariant::ChargedOrdersNotCancelled => "charged_orders_not_cancelled",
            Invariant::LedgerMatchesStock => "ledger_matches_stock",
            Invariant::WithinPurchaseLimit => "within_purchase_limit",
        }
    }

    /// What holding it means, in one line.
    pub fn expectation(self) -> &'static str {
        match self {
            Invariant::AvailableNonNegative => "available >= 0 for every product",
            Invariant::ReservedWithinOnHand => {
                "0 <= reservedQuantity <= quantity for every product"
            }
            Invariant::Conservation => "received == quantity + sold, per product",
            Invariant::ReservedMatchesOrders => {
                "reservedQuantity == units of orders with status reserved, per product"
            }
            Invariant::SoldMatchesFulfilled => "sold == units of fulfilled orders, per product",
            Invariant::StatusesMoveForward => {
                "each order's history only moves forward (pending→reserved→final)"
            }
            Invariant::NoDoubleEffects => "no order fulfilled or charged more than once",
            Invariant::ChargedOrdersNotCancelled => {
                "no order cancelled after its payment was taken"
            }
            Invariant::LedgerMatchesStock => {
                "replaying a product's movements gives quantity, reservedQuantity and sold"
            }
            Invariant::WithinPurchaseLimit => {
                "no reservation takes its customer past maxPerCustomer"
            }
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One broken invariant: what it concerns (a product or an order), and the
/// figures that show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub invariant: Invariant,
    /// The product's name or the order's id.
    pub subject: String,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}: expected {}, actual {}",
            self.subject, self.expected, self.actual
        )
    }
}

/// One product's figures as a service reports them, read straight from an
/// item of `GET /inventory`. `available`, `sold` and `received` are optional
/// because not every system reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct StockFigures {
    #[serde(rename = "productName")]
    pub product: String,
    #[serde(rename = "quantity")]
    pub on_hand: i64,
    #[serde(rename = "reservedQuantity")]
    pub reserved: i64,
    #[serde(default)]
    pub available: Option<i64>,
    #[serde(default)]
    pub sold: Option<i64>,
    #[serde(default)]
    pub received: Option<i64>,
    /// The number of the product's last movement, for a system that keeps
    /// a ledger: the figures are those of the ledger up to it.
    #[serde(rename = "movementSeq", default)]
    pub movement_seq: Option<i64>,
}

impl StockFigures {
    /// `available` as reported, or as it follows from on hand and reserved.
    pub fn available(&self) -> i64 {
        self.available.unwrap_or(self.on_hand - self.reserved)
    }

    /// The key products are matched by: the lower-case name.
    pub fn key(&self) -> String {
        self.product.to_lowercase()
    }
}

/// The invariants one product's figures must satisfy on their own, whatever
/// is happening elsewhere: no snapshot across products or orders is needed.
pub fn check_stock(figures: &StockFigures) -> Vec<Violation> {
    let mut violations = Vec::new();
    let available = figures.available();
    if available < 0 {
        violations.push(Violation {
            invariant: Invariant::AvailableNonNegative,
            subject: figures.product.clone(),
            expected: "available >= 0".into(),
            actual: format!("available {available}"),
        });
    }
    if figures.reserved < 0 || figures.reserved > figures.on_hand {
        violations.push(Violation {
            invariant: Invariant::ReservedWithinOnHand,
            subject: figures.product.clone(),
            expected: format!("0 <= reservedQuantity <= quantity {}", figures.on_hand),
            actual: format!("reservedQuantity {}", figures.reserved),
        });
    }
    if let (Some(received), Some(sold)) = (figures.received, figures.sold)
        && received != figures.on_hand + sold
    {
        violations.push(Violation {
            invariant: Invariant::Conservation,
            subject: figures.product.clone(),
            expected: format!("received {received} == quantity + sold"),
            actual: format!(
                "quantity {} + sold {sold} = {}",
                figures.on_hand,
                figures.on_hand + sold
            ),
        });
    }
    violations
}

/// One order as a service reports it; statuses stay text, so that a status
/// the rules do not know is reported instead of failing the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFigures {
    pub id: String,
    pub status: String,
    /// (product name, units) per line.
    pub lines: Vec<(String, i64)>,
    /// (status, reason) per history entry, oldest first.
    pub history: Vec<(String, Option<String>)>,
}

/// Units per product key held by orders in `status`.
pub fn units_by_status(orders: &[OrderFigures], status: OrderStatus) -> BTreeMap<String, i64> {
    let mut units = BTreeMap::new();
    for order in orders
        .iter()
        .filter(|order| order.status == status.as_str())
    {
        for (product, quantity) in &order.lines {
            *units.entry(product.to_lowercase()).or_insert(0) += quantity;
        }
    }
    units
}

/// Reserved units per product equal the units of the reserved orders. Only
/// meaningful when the stock and the orders were read as one snapshot.
pub fn check_reserved_sums(
    stock: &[StockFigures],
    reserved_units: &BTreeMap<String, i64>,
) -> Vec<Violation> {
    stock
        .iter()
        .filter_map(|item| {
            let held = reserved_units.get(&item.key()).copied().unwrap_or(0);
            (held != item.reserved).then(|| Violation {
                invariant: Invariant::ReservedMatchesOrders,
                subject: item.product.clone(),
                expected: format!("reservedQuantity {held} (sum of reserved orders)"),
                actual: format!("reservedQuantity {}", item.reserved),
            })
        })
        .collect()
}

/// Sold units per product equal the units of the fulfilled orders, for the
/// products that report `sold`.
pub fn check_sold_sums(
    stock: &[StockFigures],
    fulfilled_units: &BTreeMap<String, i64>,
) -> Vec<Violation> {
    stock
        .iter()
        .filter_map(|item| {
            let sold = item.sold?;
            let by_orders = fulfilled_units.get(&item.key()).copied().unwrap_or(0);
            (sold != by_orders).then(|| Violation {
                invariant: Invariant::SoldMatchesFulfilled,
                subject: item.product.clone(),
                expected: format!("sold {by_orders} (sum of fulfilled orders)"),
                actual: format!("sold {sold}"),
            })
        })
        .collect()
}

/// Conservation for a system that does not report `received` and `sold`:
/// the initial stock equals what is on hand plus what fulfilled orders took.
pub fn check_against_initial(
    stock: &[StockFigures],
    initial: &BTreeMap<String, i64>,
    fulfilled_units: &BTreeMap<String, i64>,
) -> Vec<Violation> {
    stock
        .iter()
        .filter(|item| item.received.is_none() || item.sold.is_none())
        .filter_map(|item| {
            let initial = *initial.get(&item.key())?;
            let sold = fulfilled_units.get(&item.key()).copied().unwrap_or(0);
            (initial != item.on_hand + sold).then(|| Violation {
                invariant: Invariant::Conservation,
                subject: item.product.clone(),
                expected: format!("initial {initial} == quantity + fulfilled units"),
                actual: format!(
                    "quantity {} + fulfilled {sold} = {}",
                    item.on_hand,
                    item.on_hand + sold
                ),
            })
        })
        .collect()
}

/// An order's history moves forward only, ends at the order's status, and
/// shows at most one fulfilment and one charge.
pub fn check_order(order: &OrderFigures) -> Vec<Violation> {
    let mut violations = Vec::new();
    let backwards = |actual: String| Violation {
        invariant: Invariant::StatusesMoveForward,
        subject: order.id.clone(),
        expected: "a history that only moves forward".into(),
        actual,
    };
    let mut statuses = Vec::with_capacity(order.history.len() + 1);
    for text in order
        .history
        .iter()
        .map(|(status, _)| status)
        .chain([&order.status])
    {
        match text.parse::<OrderStatus>() {
            Ok(status) => statuses.push(status),
            Err(error) => {
                violations.push(backwards(error.to_string()));
                break;
            }
        }
    }
    if let Some((last, _)) = order.history.last()
        && *last != order.status
    {
        violations.push(backwards(format!(
            "status {} but the history ends with {last}",
            order.status
        )));
    }
    if let Some(pair) = statuses
        .windows(2)
        .find(|pair| !pair[0].may_be_followed_by(pair[1]))
    {
        violations.push(backwards(format!("status went {}→{}", pair[0], pair[1])));
    }
    let fulfilled = order
        .history
        .iter()
        .filter(|(status, _)| status == OrderStatus::Fulfilled.as_str())
        .count();
    let charged = order
        .history
        .iter()
        .filter(|(_, reason)| reason.as_deref() == Some(Reason::PaymentCharged.as_str()))
        .count();
    if charged > 0 && order.status == OrderStatus::Cancelled.as_str() {
        violations.push(Violation {
            invariant: Invariant::ChargedOrdersNotCancelled,
            subject: order.id.clone(),
            expected: "fulfilled after its payment was taken".into(),
            actual: "cancelled after its payment was taken".into(),
        });
    }
    for (what, count) in [("fulfilled", fulfilled), ("charged", charged)] {
        if count > 1 {
            violations.push(Violation {
                invariant: Invariant::NoDoubleEffects,
                subject: order.id.clone(),
                expected: format!("{what} at most once"),
                actual: format!("{what} {count} times"),
            });
        }
    }
    violations
}

/// Every invariant over one consistent snapshot of stock and orders.
pub fn check_snapshot(stock: &[StockFigures], orders: &[OrderFigures]) -> Vec<Violation> {
    let mut violations: Vec<Violation> = stock.iter().flat_map(check_stock).collect();
    violations.extend(check_reserved_sums(
        stock,
        &units_by_status(orders, OrderStatus::Reserved),
    ));
    violations.extend(check_sold_sums(
        stock,
        &units_by_status(orders, OrderStatus::Fulfilled),
    ));
    violations.extend(orders.iter().flat_map(check_order));
    violations.sort();
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock(product: &str, on_hand: i64, reserved: i64, sold: i64, received: i64) -> StockFigures {
        StockFigures {
            product: product.into(),
            on_hand,
            reserved,
            available: None,
            sold: Some(sold),
            received: Some(received),
            movement_seq: None,
        }
    }

    fn order(
        id: &str,
        status: &str,
        lines: &[(&str, i64)],
        history: &[(&str, Option<&str>)],
    ) -> OrderFigures {
        OrderFigures {
            id: id.into(),
            status: status.into(),
            lines: lines
                .iter()
                .map(|(name, units)| ((*name).into(), *units))
                .collect(),
            history: history
                .iter()
                .map(|(status, reason)| ((*status).into(), reason.map(str::to_owned)))
                .collect(),
        }
    }

    #[test]
    fn a_consistent_snapshot_passes() {
        let stock = [stock("Laptop", 8, 3, 2, 10)];
        let orders = [
            order("a", "reserved", &[("Laptop", 3)], &[("reserved", None)]),
            order(
                "b",
                "fulfilled",
                &[("laptop", 2)],
                &[
                    ("reserved", None),
                    ("reserved", Some("payment_charged")),
                    ("fulfilled", None),
                ],
            ),
        ];
        assert_eq!(check_snapshot(&stock, &orders), []);
    }

    #[test]
    fn each_broken_invariant_is_named() {
        let broken = [stock("Laptop", 2, 5, 0, 3)];
        let orders = [order(
            "a",
            "reserved",
            &[("Laptop", 1)],
            &[
                ("fulfilled", None),
                ("reserved", Some("payment_charged")),
                ("fulfilled", Some("payment_charged")),
            ],
        )];
        let found: Vec<Invariant> = check_snapshot(&broken, &orders)
            .into_iter()
            .map(|violation| violation.invariant)
            .collect();
        for invariant in [
            Invariant::AvailableNonNegative,
            Invariant::ReservedWithinOnHand,
            Invariant::Conservation,
            Invariant::ReservedMatchesOrders,
            Invariant::StatusesMoveForward,
            Invariant::NoDoubleEffects,
        ] {
            assert!(
                found.contains(&invariant),
                "{invariant} not found in {found:?}"
            );
        }
    }

    #[test]
    fn conservation_without_sold_uses_the_initial_stock() {
        let figures = StockFigures {
            product: "Laptop".into(),
            on_hand: 20,
            reserved: 0,
            available: Some(20),
            sold: None,
            received: None,
            movement_seq: None,
        };
        let initial = BTreeMap::from([("laptop".to_owned(), 25)]);
        let fulfilled = BTreeMap::from([("laptop".to_owned(), 5)]);
        assert_eq!(
            check_against_initial(std::slice::from_ref(&figures), &initial, &fulfilled),
            []
        );
        let fulfilled = BTreeMap::from([("laptop".to_owned(), 6)]);
        assert_eq!(
            check_against_initial(&[figures], &initial, &fulfilled).len(),
            1
        );
    }
}
