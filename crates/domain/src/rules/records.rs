//! The records the rules read and write: what storage keeps of orders,
//! stock, events and idempotency keys, and the changes a batch makes to
//! them. Plain data, with no behaviour beyond a few derived figures.

use crate::order::{EventKind, OrderStatus, PaymentStatus, Reason};
use crate::rules::Shortage;
use crate::stock::Stock;
use crate::values::Quantity;

/// One line of a stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// The product's lower-case key, by which stock is found and locked.
    pub product_key: String,
    /// The product's name as the stock spells it.
    pub product_name: String,
    pub quantity: Quantity,
}

/// An order as storage keeps it, without its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    /// Why the order ended, once it was rejected or cancelled.
    pub reason: Option<Reason>,
    pub payment: PaymentStatus,
    /// 1 when created; every change adds one (optimistic locking).
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Sorted by product key, the one global lock order.
    pub lines: Vec<OrderLine>,
    /// Until when an unpaid reservation is kept however old it is, once its
    /// customer extended it (see [`crate::rules::Book::extend`]).
    pub extended_until_ms: Option<i64>,
}

impl OrderRecord {
    pub fn total_units(&self) -> u64 {
        self.lines
            .iter()
            .map(|line| u64::from(line.quantity.get()))
            .sum()
    }
}

/// One entry of an order's history: the status it had at a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub order_id: String,
    pub version: i64,
    pub status: OrderStatus,
    pub reason: Option<Reason>,
    pub at_ms: i64,
}

/// An event to write to the outbox with the change it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event_id: String,
    pub kind: EventKind,
    pub order_id: String,
    /// The order's version right after the change.
    pub order_version: i64,
    pub total_units: u64,
    pub occurred_at_ms: i64,
    /// The W3C trace context of the call that caused the event, so that its
    /// consumer continues the same trace. The rules never set or read it;
    /// the storage layer fills it in from the call.
    pub trace_parent: Option<String>,
    /// What a notification for another system says (its webhook's data);
    /// `None` for the events of the order flow.
    pub notice: Option<Notice>,
}

/// What a notification says, as of the change that raised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An order ended: fulfilled, or cancelled for `reason`.
    Order {
        customer_id: String,
        status: OrderStatus,
        reason: Option<Reason>,
        /// (product name, units), in key order.
        lines: Vec<(String, u32)>,
    },
    /// A product's availability crossed a line: its threshold, zero, or back
    /// above zero.
    Stock {
        product_name: String,
        available: u64,
        low_stock_threshold: Option<u64>,
    },
}

/// The id of the event reporting that `order_id` reached `order_version`
/// through a change of `kind`. A version is reached once, so the id is unique.
pub fn event_id(kind: EventKind, order_id: &str, order_version: i64) -> String {
    format!("{}:{order_id}:{order_version}", kind.as_str())
}

/// Whether `event_id` is exactly the id [`event_id`] makes of the same parts.
/// The rules ask this of every payment and settlement they decide, so it
/// compares in place instead of making the id to compare with.
pub fn is_event_id(event_id: &str, kind: EventKind, order_id: &str, order_version: i64) -> bool {
    event_id
        .strip_prefix(kind.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|rest| rest.strip_prefix(order_id))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|version| is_decimal_of(version, order_version))
}

/// Whether `text` is `value` written as `format!("{value}")` writes it: an
/// optional minus sign, then its digits without leading zeros.
fn is_decimal_of(text: &str, value: i64) -> bool {
    let digits = match text.strip_prefix('-') {
        Some(digits) if value < 0 => digits,
        None if value >= 0 => text,
        _ => return false,
    };
    let mut magnitude = value.unsigned_abs();
    let mut expected = [0_u8; 20];
    let mut start = expected.len();
    loop {
        start -= 1;
        // The remainder is a single digit, so the cast cannot truncate.
        expected[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    digits.as_bytes() == &expected[start..]
}

/// What an idempotency key's first request was answered, as storage keeps
/// it: the order it created, and what was short if it was rejected. The
/// whole answer is rebuilt from the order ([`ReserveAnswer::first`]), so a
/// replay answers exactly as the first request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptAnswer {
    Reserved {
        order_id: String,
    },
    Rejected {
        order_id: String,
        shortages: Vec<Shortage>,
    },
}

impl KeptAnswer {
    /// The order the answer created.
    pub fn order_id(&self) -> &str {
        match self {
            KeptAnswer::Reserved { order_id } | KeptAnswer::Rejected { order_id, .. } => order_id,
        }
    }
}

/// An idempotency key already answered: the request's fingerprint and its
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub fingerprint: Option<String>,
    pub answer: KeptAnswer,
}

/// An idempotency key to store with the answer its request was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    pub customer_id: String,
    pub key: String,
    pub fingerprint: Option<String>,
    pub answer: KeptAnswer,
}

/// A product's stock and settings before and after the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    pub product_key: String,
    pub product_name: String,
    /// `None` for a product the batch created.
    pub before: Option<ProductState>,
    pub after: ProductState,
}

/// What a product's row holds besides its name: its figures, what the
/// operator set, and how many movements its ledger has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductState {
    pub stock: Stock,
    pub settings: ProductSettings,
    /// The sequence number of its last movement (0 before the first).
    pub movements: u64,
}

/// What an operator sets on a product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProductSettings {
    /// The most units of the product one customer may hold in reserved and
    /// fulfilled orders together; `None` for no limit.
    pub max_per_customer: Option<u32>,
    /// Availability at or below which a `stock.low` notice goes out.
    pub low_stock_threshold: Option<u64>,
}

/// One change of a product's figures or settings: the ledger's entry.
/// Replaying a product's movements from zero gives its figures, and the
/// limit in force at each of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub product_key: String,
    /// 1 for the product's first movement, then one more for each: the
    /// order in which they committed, since every change of a product holds
    /// its row.
    pub seq: u64,
    pub kind: MovementKind,
    pub reason: Option<MovementReason>,
    /// What the operator gave (a delivery note, a count sheet).
    pub reference: Option<String>,
    /// The order that moved the units, for order-driven movements.
    pub order_id: Option<String>,
    pub delta: FiguresDelta,
    /// The settings from this movement on: given for a
    /// [`MovementKind::Settings`] movement (and its product's creation),
    /// `None` for the others, which leave them as they were.
    pub settings: Option<ProductSettings>,
    pub at_ms: i64,
}

/// How a movement changed the figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FiguresDelta {
    pub on_hand: i64,
    pub reserved: i64,
    pub sold: i64,
}

impl FiguresDelta {
    /// The change from `before` to `after`.
    pub fn between(before: &Stock, after: &Stock) -> FiguresDelta {
        // Stock never exceeds MAX_STOCK_PER_PRODUCT, far inside i64.
        let signed = |value: u64| value as i64;
        FiguresDelta {
            on_hand: signed(after.on_hand()) - signed(before.on_hand()),
            reserved: signed(after.reserved()) - signed(before.reserved()),
            sold: signed(after.sold()) - signed(before.sold()),
        }
    }
}

/// What kind of change a movement was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovementKind {
    /// The figures a product had when its ledger began (stores made before
    /// the ledger existed).
    Opening,
    /// The product was created with its first units.
    Created,
    /// Units received through the internal restock.
    Received,
    /// An operator's adjustment.
    Adjusted,
    /// An order held units.
    Reserved,
    /// An order's units went back on sale.
    Released,
    /// An order's units were sold.
    Sold,
    /// An operator changed the limit or the threshold; no figure moved.
    Settings,
}

impl MovementKind {
    pub const ALL: [MovementKind; 8] = [
        MovementKind::Opening,
        MovementKind::Created,
        MovementKind::Received,
        MovementKind::Adjusted,
        MovementKind::Reserved,
        MovementKind::Released,
        MovementKind::Sold,
        MovementKind::Settings,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Opening => "opening",
            MovementKind::Created => "created",
            MovementKind::Received => "received",
            MovementKind::Adjusted => "adjusted",
            MovementKind::Reserved => "reserved",
            MovementKind::Released => "released",
            MovementKind::Sold => "sold",
            MovementKind::Settings => "settings",
        }
    }
}

impl std::str::FromStr for MovementKind {
    type Err = crate::UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        crate::UnknownName::find(
            "movement kind",
            &MovementKind::ALL,
            MovementKind::as_str,
            text,
        )
    }
}

/// Why a movement happened: an operator's reason, or why a reservation was
/// released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovementReason {
    Adjustment(AdjustReason),
    Release(Reason),
}

impl MovementReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementReason::Adjustment(reason) => reason.as_str(),
            MovementReason::Release(reason) => reason.as_str(),
        }
    }
}

impl std::str::FromStr for MovementReason {
    type Err = crate::UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse()
            .map(MovementReason::Adjustment)
            .or_else(|_| text.parse().map(MovementReason::Release))
    }
}

/// Why an operator adjusts a product's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdjustReason {
    /// Delivered by a supplier.
    Received,
    /// Brought back by a customer and fit to sell.
    Returned,
    /// A mistake in an earlier figure.
    Correction,
    /// Broken, spoiled, unsellable.
    Damaged,
    /// Lost or stolen.
    Shrinkage,
    /// Set to what a count of the shelf found.
    CycleCount,
}

impl AdjustReason {
    pub const ALL: [AdjustReason; 6] = [
        AdjustReason::Received,
        AdjustReason::Returned,
        AdjustReason::Correction,
        AdjustReason::Damaged,
        AdjustReason::Shrinkage,
        AdjustReason::CycleCount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdjustReason::Received => "received",
            AdjustReason::Returned => "returned",
            AdjustReason::Correction => "correction",
            AdjustReason::Damaged => "damaged",
            AdjustReason::Shrinkage => "shrinkage",
            AdjustReason::CycleCount => "cycle_count",
        }
    }
}

impl std::str::FromStr for AdjustReason {
    type Err = crate::UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        crate::UnknownName::find(
            "adjustment reason",
            &AdjustReason::ALL,
            AdjustReason::as_str,
            text,
        )
    }
}

/// One customer's units of one limited product in reserved and fulfilled
/// orders, before (`None` when the row did not exist) and after the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldingChange {
    pub customer_id: String,
    pub product_key: String,
    pub before: Option<u64>,
    pub after: u64,
}

/// Every customer's holding of a product, recomputed from the orders when a
/// limit is set: the stored holdings of the product are replaced by these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldingsReset {
    pub product_key: String,
    /// (customer id, units), every customer that holds any.
    pub holdings: Vec<(String, u64)>,
}

/// An existing order's state after the batch, and the version and status it
/// was loaded with: the write is conditional on that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    pub loaded_version: i64,
    pub loaded_status: OrderStatus,
    pub order: OrderRecord,
}

/// Everything a batch writes. Each list is in a stable order (creation order,
/// or key order for stock and orders), so backends write rows in one global
/// order and concurrent batches cannot deadlock on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub new_orders: Vec<OrderRecord>,
    pub changed_orders: Vec<OrderChange>,
    pub history: Vec<HistoryRecord>,
    pub events: Vec<EventRecord>,
    pub stock: Vec<StockChange>,
    pub keys: Vec<KeyClaim>,
    /// The ledger's new entries, by product key and seq.
    pub movements: Vec<Movement>,
    /// Changed holdings of limited products, by customer and product key.
    pub holdings: Vec<HoldingChange>,
    /// Products whose holdings are replaced whole (a limit set or removed).
    pub holdings_resets: Vec<HoldingsReset>,
    /// Operators' idempotency keys answered by this batch.
    pub operator_keys: Vec<OperatorKeyClaim>,
}

impl Changes {
    /// How many orders each status gains (or loses) with this batch: new
    /// orders count in their status, a changed order moves from the status
    /// it was loaded in to its new one. Statuses that do not change are left
    /// out; the others come in [`OrderStatus::ALL`] order.
    pub fn status_deltas(&self) -> Vec<(OrderStatus, i64)> {
        let mut deltas = OrderStatus::ALL.map(|status| (status, 0_i64));
        let mut add = |status: OrderStatus, delta: i64| {
            if let Some(entry) = deltas.iter_mut().find(|(each, _)| *each == status) {
                entry.1 += delta;
            }
        };
        for order in &self.new_orders {
            add(order.status, 1);
        }
        for change in &self.changed_orders {
            if change.loaded_status != change.order.status {
                add(change.loaded_status, -1);
                add(change.order.status, 1);
            }
        }
        deltas
            .into_iter()
            .filter(|(_, delta)| *delta != 0)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.is_empty_of_flow()
            && self.movements.is_empty()
            && self.holdings.is_empty()
            && self.holdings_resets.is_empty()
            && self.operator_keys.is_empty()
    }

    fn is_empty_of_flow(&self) -> bool {
        self.new_orders.is_empty()
            && self.changed_orders.is_empty()
            && self.history.is_empty()
            && self.events.is_empty()
            && self.stock.is_empty()
            && self.keys.is_empty()
    }
}

/// A product's stock as storage keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRecord {
    /// The product's lower-case key, by which stock is found and locked.
    pub product_key: String,
    /// The product's name as it was first stocked.
    pub product_name: String,
    pub stock: Stock,
    pub settings: ProductSettings,
    /// The number of the product's last movement: its figures are those of
    /// its ledger up to this movement.
    pub movement_seq: u64,
}

/// What an operator's adjustment was answered, as kept for its key: the
/// movement it made and the product's figures right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustAnswer {
    pub movement: Movement,
    pub stock: Stock,
    pub settings: ProductSettings,
}

/// An operator's idempotency key and the answer it was first given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorKeyClaim {
    pub key: String,
    pub fingerprint: Option<String>,
    pub answer: AdjustAnswer,
}

/// An order with its history, oldest entry first, as readers get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    pub order: OrderRecord,
    pub history: Vec<HistoryRecord>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{EventKind, event_id, is_event_id};

    fn kind() -> impl Strategy<Value = EventKind> {
        proptest::sample::select(EventKind::ALL.to_vec())
    }

    /// Versions near the edges of their digits, and any version at all.
    fn version() -> impl Strategy<Value = i64> {
        prop_oneof![
            -12_i64..12,
            proptest::sample::select(vec![i64::MIN, i64::MIN + 1, i64::MAX, 9, 10, 99, 100]),
            any::<i64>(),
        ]
    }

    proptest! {
        /// The comparison in place agrees with making the id and comparing
        /// strings, for the id itself and for ids a character away from it.
        #[test]
        fn an_id_compared_in_place_matches_the_id_made(
            kind in kind(),
            order_id in "[a-z0-9:-]{0,6}",
            version in version(),
            other_kind in kind(),
            other_order_id in "[a-z0-9:-]{0,6}",
            other_version in version(),
            cut in 0_usize..40,
            extra in "[0-9:+-]{0,2}",
        ) {
            let id = event_id(kind, &order_id, version);
            prop_assert!(is_event_id(&id, kind, &order_id, version));
            let other = event_id(other_kind, &other_order_id, other_version);
            prop_assert_eq!(is_event_id(&other, kind, &order_id, version), other == id);
            let mut changed = id.clone();
            changed.truncate(cut.min(id.len()));
            changed.push_str(&extra);
            prop_assert_eq!(is_event_id(&changed, kind, &order_id, version), changed == id);
        }
    }

    #[test]
    fn a_version_written_otherwise_is_another_id() {
        let kind = EventKind::OrderReserved;
        let id = |version: &str| format!("{}:o-1:{version}", kind.as_str());
        assert!(is_event_id(&id("1"), kind, "o-1", 1));
        for written in ["01", "+1", "1 ", "", "-1", "1.0"] {
            assert!(!is_event_id(&id(written), kind, "o-1", 1), "{written}");
        }
        assert!(is_event_id(&id("0"), kind, "o-1", 0));
        assert!(!is_event_id(&id("-0"), kind, "o-1", 0));
        assert!(is_event_id(&id("-7"), kind, "o-1", -7));
    }
}
