//! Examples of a shop's own rules: purchase limits, settings, adjustments
//! with a compare-and-swap and a key, reservation extension and the notices
//! a product's availability raises.

use std::num::NonZeroI64;

use super::*;

fn limited(stock: u64, limit: u32) -> Book {
    let mut book = Book::new(1_000).notifying(true);
    book.load_product(
        "tablet".into(),
        "Tablet".into(),
        ProductState {
            stock: Stock::received(stock).unwrap(),
            settings: ProductSettings {
                max_per_customer: Some(limit),
                low_stock_threshold: Some(3),
            },
            movements: 1,
        },
    );
    book
}

fn order_of(book: &mut Book, id: &str, customer: &str, units: u32) -> ReserveDecision {
    let customer = CustomerId::new(customer).unwrap();
    let items = items(&[("Tablet", units)]);
    book.reserve(input(id, &customer, &items))
}

#[test]
fn a_limit_counts_reserved_and_fulfilled_units_and_a_cancel_frees_them() {
    let mut book = limited(10, 2);
    book.load_holding("ann".into(), "tablet".into(), Some(1));
    book.load_holding("bob".into(), "tablet".into(), None);
    assert!(matches!(
        order_of(&mut book, "a", "ann", 1),
        ReserveDecision::Created(ReserveAnswer::Reserved(_))
    ));
    assert_eq!(
        order_of(&mut book, "b", "ann", 1),
        ReserveDecision::LimitExceeded(LimitExceeded {
            product_name: "Tablet".into(),
            max_per_customer: 2,
            already_held: 2,
        })
    );
    assert!(matches!(
        order_of(&mut book, "c", "bob", 2),
        ReserveDecision::Created(ReserveAnswer::Reserved(_))
    ));
    assert_eq!(
        book.release("a", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::Released)
    );
    assert!(
        matches!(
            order_of(&mut book, "d", "ann", 1),
            ReserveDecision::Created(ReserveAnswer::Reserved(_))
        ),
        "a cancelled order frees its units"
    );
    let changes = book.into_changes();
    let held: Vec<(&str, Option<u64>, u64)> = changes
        .holdings
        .iter()
        .map(|change| (change.customer_id.as_str(), change.before, change.after))
        .collect();
    assert_eq!(held, [("ann", Some(1), 2), ("bob", None, 2)]);
    assert!(
        changes.new_orders.iter().all(|order| order.id != "b"),
        "an order past the limit creates nothing"
    );
}

#[test]
fn lowering_a_limit_is_a_movement_and_recounts_holdings_from_the_orders() {
    let mut book = limited(10, 5);
    book.load_holding("ann".into(), "tablet".into(), Some(0));
    let stored = OrderRecord {
        id: "old".into(),
        customer_id: "ann".into(),
        status: OrderStatus::Fulfilled,
        reason: None,
        payment: PaymentStatus::Charged,
        version: 3,
        created_at_ms: 1,
        updated_at_ms: 1,
        lines: vec![OrderLine {
            product_key: "tablet".into(),
            product_name: "Tablet".into(),
            quantity: Quantity::new(4).unwrap(),
        }],
        extended_until_ms: None,
    };
    let change = SettingsChange {
        max_per_customer: Some(Some(2)),
        low_stock_threshold: None,
    };
    assert!(matches!(
        book.change_settings("tablet", change, [&stored]),
        SettingsDecision::Changed(record) if record.settings.max_per_customer == Some(2)
    ));
    assert!(
        matches!(
            order_of(&mut book, "a", "ann", 1),
            ReserveDecision::LimitExceeded(LimitExceeded {
                already_held: 4,
                ..
            })
        ),
        "ann keeps her four but may buy no more"
    );
    let changes = book.into_changes();
    assert_eq!(changes.holdings_resets[0].holdings, [("ann".to_owned(), 4)]);
    let movement = &changes.movements[0];
    assert_eq!((movement.kind, movement.seq), (MovementKind::Settings, 2));
    assert_eq!(movement.delta, FiguresDelta::default());
    assert_eq!(
        movement
            .settings
            .and_then(|settings| settings.max_per_customer),
        Some(2)
    );
}

fn adjustment(delta: i64, expected: Option<u64>, key: Option<&str>) -> AdjustInput<'_> {
    AdjustInput {
        product_key: "tablet",
        delta: NonZeroI64::new(delta).unwrap(),
        reason: if delta > 0 {
            AdjustReason::Received
        } else {
            AdjustReason::Damaged
        },
        reference: Some("sheet 7"),
        expected_on_hand: expected,
        idempotency_key: key,
        fingerprint: key.map(|_| "f"),
    }
}

#[test]
fn an_adjustment_applies_only_to_the_figure_the_operator_saw_and_never_below_reserved() {
    let mut book = limited(10, 5);
    book.load_holding("ann".into(), "tablet".into(), None);
    assert!(matches!(
        order_of(&mut book, "a", "ann", 4),
        ReserveDecision::Created(_)
    ));
    assert_eq!(
        book.adjust(adjustment(-1, Some(9), None)),
        AdjustDecision::StaleQuantity { on_hand: 10 }
    );
    assert_eq!(
        book.adjust(adjustment(-7, None, None)),
        AdjustDecision::InsufficientStock { available: 6 }
    );
    let AdjustDecision::Adjusted(answer) = book.adjust(adjustment(-6, Some(10), Some("k1"))) else {
        panic!("a write-off of what is available applies");
    };
    assert_eq!((answer.stock.on_hand(), answer.stock.reserved()), (4, 4));
    assert_eq!(answer.movement.delta.on_hand, -6);
    assert_eq!(answer.movement.reference.as_deref(), Some("sheet 7"));
    assert_eq!(
        book.adjust(adjustment(-6, Some(10), Some("k1"))),
        AdjustDecision::Replay(answer.clone()),
        "a retry replays the first answer, though the figure has moved"
    );
    assert_eq!(
        book.adjust(AdjustInput {
            fingerprint: Some("other"),
            ..adjustment(-6, Some(10), Some("k1"))
        }),
        AdjustDecision::KeyReused
    );
    let changes = book.into_changes();
    assert_eq!(changes.operator_keys.len(), 1);
    let kinds: Vec<MovementKind> = changes.movements.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [MovementKind::Reserved, MovementKind::Adjusted]);
}

#[test]
fn a_creation_starts_the_ledger_even_with_nothing_on_hand() {
    let mut book = Book::new(1_000);
    let name = ProductName::new("Kettle").unwrap();
    let settings = ProductSettings {
        max_per_customer: Some(1),
        low_stock_threshold: None,
    };
    assert!(matches!(
        book.create_product(&name, 0, settings),
        Ok(CreateDecision::Created(_))
    ));
    assert!(matches!(
        book.create_product(&ProductName::new("KETTLE").unwrap(), 5, settings),
        Ok(CreateDecision::Exists(record)) if record.stock.on_hand() == 0
    ));
    let changes = book.into_changes();
    assert_eq!(changes.movements.len(), 1);
    assert_eq!(changes.movements[0].kind, MovementKind::Created);
    assert_eq!(changes.movements[0].settings, Some(settings));
}

#[test]
fn an_extension_keeps_an_unpaid_reservation_from_the_sweep_for_its_customer_only() {
    let mut book = limited(10, 5);
    book.load_holding("ann".into(), "tablet".into(), None);
    assert!(matches!(
        order_of(&mut book, "a", "ann", 1),
        ReserveDecision::Created(_)
    ));
    assert_eq!(book.extend("a", "bob", 5_000), ExtendDecision::NotYours);
    assert_eq!(
        book.extend("zz", "ann", 5_000),
        ExtendDecision::UnknownOrder
    );
    assert!(matches!(
        book.extend("a", "ann", 5_000),
        ExtendDecision::Extended(order) if order.extended_until_ms == Some(5_000)
    ));
    assert!(
        matches!(book.extend("a", "ann", 2_000), ExtendDecision::Extended(order) if order.extended_until_ms == Some(5_000)),
        "an extension never shortens"
    );
    // Past its time to live (cutoff after creation) but not its extension.
    assert_eq!(book.sweep("a", 1_000), Ok(SweepDecision::Kept));
    let mut later = Book::new(6_000);
    later.load_order(book.order("a").unwrap().clone());
    later.load_product(
        "tablet".into(),
        "Tablet".into(),
        ProductState {
            stock: Stock::received(10).unwrap().hold(1).unwrap(),
            settings: ProductSettings::default(),
            movements: 2,
        },
    );
    assert_eq!(later.sweep("a", 1_000), Ok(SweepDecision::Expired));
    assert!(matches!(
        later.extend("a", "ann", 9_000),
        ExtendDecision::NotExtendable(order) if order.status == OrderStatus::Cancelled
    ));
}

#[test]
fn availability_crossing_a_line_raises_one_notice_each_way() {
    let mut book = limited(5, 5);
    book.load_holding("ann".into(), "tablet".into(), None);
    assert!(matches!(
        order_of(&mut book, "a", "ann", 2),
        ReserveDecision::Created(_)
    ));
    assert!(matches!(
        order_of(&mut book, "b", "ann", 3),
        ReserveDecision::Created(_)
    ));
    assert_eq!(
        book.release("b", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::Released)
    );
    let kinds: Vec<EventKind> = book
        .into_changes()
        .events
        .iter()
        .map(|event| event.kind)
        .filter(|kind| kind.consumer_group() == Consumer::Webhooks)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::StockLow,
            EventKind::StockSoldOut,
            EventKind::StockBackInStock,
            EventKind::OrderCancelled,
        ]
    );
}
