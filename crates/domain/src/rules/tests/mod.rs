//! Tests of the rules: examples of each decision, and property tests that run
//! random batches through a book, write the changes to an in-memory store the
//! way a backend would, and check every invariant after each batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use crate::invariants::{self, OrderFigures, StockFigures};
use crate::rules::*;
use crate::{
    Consumer, CustomerId, EventKind, OrderItem, OrderItems, OrderStatus, PaymentStatus,
    ProductName, Quantity, Reason, ReleaseReason, Stock,
};

fn items(lines: &[(&str, u32)]) -> OrderItems {
    OrderItems::new(
        lines
            .iter()
            .map(|(name, units)| OrderItem {
                product: ProductName::new(name).unwrap(),
                quantity: Quantity::new(i128::from(*units)).unwrap(),
            })
            .collect(),
    )
    .unwrap()
}

fn customer() -> CustomerId {
    CustomerId::new("c1").unwrap()
}

fn input<'a>(
    order_id: &'a str,
    customer: &'a CustomerId,
    items: &'a OrderItems,
) -> ReserveInput<'a> {
    ReserveInput {
        order_id,
        customer_id: customer,
        items,
        idempotency_key: None,
        fingerprint: None,
    }
}

fn book_with(stock: &[(&str, u64)]) -> Book {
    let mut book = Book::new(1_000);
    for (name, units) in stock {
        book.load_stock(
            name.to_lowercase(),
            (*name).into(),
            Stock::received(*units).unwrap(),
        );
    }
    book
}

#[test]
fn a_reservation_holds_every_item_or_none() {
    let mut book = book_with(&[("Laptop", 2), ("Phone", 1)]);
    let customer = customer();
    let both = items(&[("laptop", 2), ("Phone", 1)]);
    let too_many = items(&[("Laptop", 1), ("Phone", 1)]);
    assert!(matches!(
        book.reserve(input("a", &customer, &both)),
        ReserveDecision::Created(ReserveAnswer::Reserved(order)) if order.lines[0].product_name == "Laptop"
    ));
    match book.reserve(input("b", &customer, &too_many)) {
        ReserveDecision::Created(ReserveAnswer::Rejected { order, shortages }) => {
            assert_eq!(order.reason, Some(Reason::InsufficientStock));
            assert_eq!(shortages.len(), 2);
            assert_eq!(shortages[0].available, 0);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let changes = book.into_changes();
    assert_eq!(changes.new_orders.len(), 2);
    assert_eq!(changes.events.len(), 1, "only the reservation is an event");
    assert_eq!(changes.history.len(), 2);
    let laptop = &changes.stock[0];
    assert_eq!(
        (
            laptop.after.stock.reserved(),
            laptop.after.stock.available()
        ),
        (2, 0)
    );
}

#[test]
fn unknown_products_and_taken_ids_create_nothing() {
    let mut book = book_with(&[("Laptop", 2)]);
    let customer = customer();
    let unknown = items(&[("Laptop", 1), ("Tablet", 1)]);
    assert_eq!(
        book.reserve(input("a", &customer, &unknown)),
        ReserveDecision::UnknownProduct("Tablet".into())
    );
    let known = items(&[("Laptop", 1)]);
    assert!(matches!(
        book.reserve(input("b", &customer, &known)),
        ReserveDecision::Created(ReserveAnswer::Reserved(_))
    ));
    assert_eq!(
        book.reserve(input("b", &customer, &known)),
        ReserveDecision::OrderIdTaken
    );
    let changes = book.into_changes();
    assert_eq!(changes.new_orders.len(), 1);
    assert_eq!(changes.stock[0].after.stock.reserved(), 1);
}

#[test]
fn idempotency_keys_replay_within_and_across_batches() {
    let mut book = book_with(&[("Laptop", 5)]);
    let customer = customer();
    let one = items(&[("Laptop", 1)]);
    let keyed = |order_id, fingerprint| ReserveInput {
        idempotency_key: Some("k"),
        fingerprint: Some(fingerprint),
        ..input(order_id, &customer, &one)
    };
    let first = match book.reserve(keyed("a", "f1")) {
        ReserveDecision::Created(answer) => answer,
        other => panic!("expected a new order, got {other:?}"),
    };
    assert_eq!(
        book.reserve(keyed("b", "f1")),
        ReserveDecision::Replay(first.clone()),
        "a retry within the batch gets the first answer"
    );
    assert_eq!(book.reserve(keyed("c", "f2")), ReserveDecision::KeyReused);
    let other_customer = CustomerId::new("c2").unwrap();
    let theirs = ReserveInput {
        idempotency_key: Some("k"),
        fingerprint: Some("f1"),
        ..input("d", &other_customer, &one)
    };
    assert!(
        matches!(
            book.reserve(theirs),
            ReserveDecision::Created(ReserveAnswer::Reserved(_))
        ),
        "keys are scoped to their customer"
    );
    let changes = book.into_changes();
    assert_eq!(changes.keys.len(), 2);
    assert_eq!(changes.stock[0].after.stock.reserved(), 2);

    let mut next = book_with(&[("Laptop", 5)]);
    next.load_order(first.order().clone());
    next.load_key(
        "c1".into(),
        "k".into(),
        StoredKey {
            fingerprint: Some("f1".into()),
            answer: first.kept(),
        },
    );
    assert_eq!(
        next.reserve(keyed("e", "f1")),
        ReserveDecision::Replay(first.clone()),
        "a retry in a later batch gets the first answer"
    );
    assert_eq!(next.reserve(keyed("f", "f2")), ReserveDecision::KeyReused);
    assert!(next.into_changes().is_empty());
}

#[test]
fn a_replay_answers_as_the_first_request_was_answered_whatever_happened_since() {
    let mut book = book_with(&[("Laptop", 1)]);
    let customer = customer();
    let two = items(&[("Laptop", 2)]);
    let keyed = ReserveInput {
        idempotency_key: Some("k"),
        fingerprint: Some("f"),
        ..input("a", &customer, &two)
    };
    let ReserveDecision::Created(first) = book.reserve(keyed) else {
        panic!("a new order");
    };
    assert!(matches!(first, ReserveAnswer::Rejected { .. }));
    let mut later = first.order().clone();
    later.version = 7;
    later.updated_at_ms += 5_000;
    assert_eq!(ReserveAnswer::first(&first.kept(), &later), first);

    let mut gone = book_with(&[("Laptop", 1)]);
    gone.load_key(
        "c1".into(),
        "k".into(),
        StoredKey {
            fingerprint: Some("f".into()),
            answer: first.kept(),
        },
    );
    assert_eq!(
        gone.reserve(keyed),
        ReserveDecision::AnswerGone {
            order_id: "a".into()
        },
        "a key whose order is gone creates nothing"
    );
    assert!(gone.into_changes().is_empty());
}

fn reserved_book() -> Book {
    let mut book = book_with(&[("Laptop", 3)]);
    let customer = customer();
    let two = items(&[("Laptop", 2)]);
    assert!(matches!(
        book.reserve(input("a", &customer, &two)),
        ReserveDecision::Created(ReserveAnswer::Reserved(_))
    ));
    book
}

#[test]
fn a_paid_order_is_fulfilled_once() {
    let mut book = reserved_book();
    let reserved_event = event_id(EventKind::OrderReserved, "a", 1);
    assert_eq!(
        book.record_payment("a", &reserved_event, true),
        Effect::Applied(OrderStatus::Reserved)
    );
    assert_eq!(
        book.record_payment("a", &reserved_event, true),
        Effect::Duplicate(OrderStatus::Reserved)
    );
    assert_eq!(book.order("a").unwrap().payment, PaymentStatus::Charged);
    let paid_event = event_id(EventKind::PaymentSucceeded, "a", 2);
    assert_eq!(
        book.release("a", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::NotCancellable),
        "a charged order cannot be cancelled"
    );
    assert_eq!(
        book.settle("a", &paid_event, Settle::Release),
        Ok(Effect::NotApplicable(OrderStatus::Reserved)),
        "a charged order is never released"
    );
    assert_eq!(
        book.settle("a", &paid_event, Settle::Commit),
        Ok(Effect::Applied(OrderStatus::Fulfilled))
    );
    assert_eq!(
        book.settle("a", &paid_event, Settle::Commit),
        Ok(Effect::Duplicate(OrderStatus::Fulfilled))
    );
    let (_, stock) = book.stock("laptop").unwrap();
    assert_eq!((stock.on_hand(), stock.reserved(), stock.sold()), (1, 0, 2));
    let changes = book.into_changes();
    assert_eq!(
        changes.changed_orders.len(),
        0,
        "the order is new in this batch"
    );
    let order = &changes.new_orders[0];
    assert_eq!((order.status, order.version), (OrderStatus::Fulfilled, 3));
    let kinds: Vec<EventKind> = changes.events.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::OrderReserved, EventKind::PaymentSucceeded]
    );
}

#[test]
fn a_declined_order_is_released_and_a_late_payment_voided() {
    let mut book = reserved_book();
    assert_eq!(
        book.record_payment("a", &event_id(EventKind::OrderReserved, "a", 1), false),
        Effect::Applied(OrderStatus::Reserved)
    );
    assert_eq!(
        book.settle(
            "a",
            &event_id(EventKind::PaymentFailed, "a", 2),
            Settle::Commit
        ),
        Ok(Effect::NotApplicable(OrderStatus::Reserved))
    );
    assert_eq!(
        book.settle(
            "a",
            &event_id(EventKind::PaymentFailed, "a", 2),
            Settle::Release
        ),
        Ok(Effect::Applied(OrderStatus::Cancelled))
    );
    assert_eq!(
        book.order("a").unwrap().reason,
        Some(Reason::PaymentDeclined)
    );
    // A late approval of the same reservation is the event already
    // answered: it changes nothing.
    assert_eq!(
        book.record_payment("a", &event_id(EventKind::OrderReserved, "a", 1), true),
        Effect::Duplicate(OrderStatus::Cancelled)
    );
    assert_eq!(book.stock("laptop").unwrap().1.available(), 3);
    assert_eq!(book.record_payment("zzz", "e4", true), Effect::UnknownOrder);
}

#[test]
fn a_verdict_or_settlement_naming_another_event_changes_nothing() {
    let mut book = reserved_book();
    for forged in ["anything", "OrderReserved:a:7", "OrderReserved:b:1"] {
        assert_eq!(
            book.record_payment("a", forged, true),
            Effect::NotApplicable(OrderStatus::Reserved),
            "{forged}"
        );
    }
    assert_eq!(
        book.record_payment("a", &event_id(EventKind::OrderReserved, "a", 1), true),
        Effect::Applied(OrderStatus::Reserved)
    );
    assert_eq!(
        book.settle("a", "PaymentSucceeded:a:9", Settle::Commit),
        Ok(Effect::NotApplicable(OrderStatus::Reserved))
    );
    assert_eq!(
        book.settle("a", "PaymentSucceeded:a:2", Settle::Commit),
        Ok(Effect::Applied(OrderStatus::Fulfilled))
    );
    for forged in [
        "PaymentSucceeded:a:3",
        "PaymentFailed:a:2",
        "PaymentSucceeded:b:2",
    ] {
        assert_eq!(
            book.settle("a", forged, Settle::Commit),
            Ok(Effect::NotApplicable(OrderStatus::Fulfilled)),
            "{forged} did not settle the order"
        );
    }
}

#[test]
fn a_settlement_the_sweep_made_is_the_event_already_applied() {
    let mut book = reserved_book();
    let reserved_event = event_id(EventKind::OrderReserved, "a", 1);
    assert_eq!(
        book.record_payment("a", &reserved_event, false),
        Effect::Applied(OrderStatus::Reserved)
    );
    assert_eq!(book.sweep("a", i64::MAX), Ok(SweepDecision::Declined));
    // The late event finds its effect in place: the stock went back once.
    assert_eq!(
        book.settle(
            "a",
            &event_id(EventKind::PaymentFailed, "a", 2),
            Settle::Release
        ),
        Ok(Effect::Duplicate(OrderStatus::Cancelled))
    );
    assert_eq!(book.stock("laptop").unwrap().1.available(), 3);
    // A customer's cancel is no settlement: the event did not take effect.
    let mut book = reserved_book();
    book.record_payment("a", &reserved_event, false);
    assert_eq!(
        book.release("a", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::Released)
    );
    assert_eq!(
        book.settle(
            "a",
            &event_id(EventKind::PaymentFailed, "a", 2),
            Settle::Release
        ),
        Ok(Effect::NotApplicable(OrderStatus::Cancelled))
    );
}

#[test]
fn cancel_is_idempotent() {
    let mut book = reserved_book();
    assert_eq!(
        book.release("a", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::Released)
    );
    assert_eq!(
        book.release("a", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::AlreadyCancelled)
    );
    assert_eq!(
        book.release("nope", ReleaseReason::CancelledByCustomer),
        Ok(ReleaseDecision::UnknownOrder)
    );
    assert_eq!(
        book.order("a").unwrap().reason,
        Some(Reason::CancelledByCustomer)
    );
}

#[test]
fn the_sweep_ends_every_overdue_reservation() {
    let customer = customer();
    let one = items(&[("Laptop", 1)]);
    let mut book = book_with(&[("Laptop", 10)]);
    for id in ["unpaid", "declined", "charged", "young"] {
        assert!(matches!(
            book.reserve(input(id, &customer, &one)),
            ReserveDecision::Created(ReserveAnswer::Reserved(_))
        ));
    }
    book.record_payment(
        "declined",
        &event_id(EventKind::OrderReserved, "declined", 1),
        false,
    );
    book.record_payment(
        "charged",
        &event_id(EventKind::OrderReserved, "charged", 1),
        true,
    );
    let now = book.now_ms();
    assert_eq!(
        book.sweep("unpaid", now - 1),
        Ok(SweepDecision::Kept),
        "not due yet"
    );
    assert_eq!(book.sweep("unpaid", now), Ok(SweepDecision::Expired));
    assert_eq!(book.sweep("declined", now), Ok(SweepDecision::Declined));
    assert_eq!(book.sweep("charged", now), Ok(SweepDecision::Fulfilled));
    assert_eq!(
        book.sweep("charged", now),
        Ok(SweepDecision::Kept),
        "already fulfilled"
    );
    assert_eq!(
        book.order("unpaid").unwrap().reason,
        Some(Reason::ReservationExpired)
    );
    let (_, stock) = book.stock("laptop").unwrap();
    assert_eq!((stock.on_hand(), stock.reserved(), stock.sold()), (9, 1, 1));
}

#[test]
fn restock_creates_and_limits_products() {
    let mut book = Book::new(0);
    let tablet = ProductName::new("Tablet").unwrap();
    assert_eq!(book.restock(&tablet, 5).unwrap().on_hand(), 5);
    assert_eq!(book.restock(&tablet, 2).unwrap().received_total(), 7);
    assert!(book.restock(&tablet, crate::MAX_STOCK_PER_PRODUCT).is_err());
    let changes = book.into_changes();
    assert_eq!(changes.stock.len(), 1);
    assert_eq!(changes.stock[0].before, None);
    assert_eq!(changes.stock[0].product_name, "Tablet");
}

#[test]
fn a_settlement_of_stock_that_is_not_reserved_changes_nothing() {
    // Damaged data: the order holds two laptops, the stock shows none
    // reserved. The rules refuse instead of storing a negative reservation.
    let mut book = Book::new(0);
    book.load_stock(
        "laptop".into(),
        "Laptop".into(),
        Stock::received(5).unwrap(),
    );
    book.load_order(OrderRecord {
        id: "a".into(),
        customer_id: "c".into(),
        status: OrderStatus::Reserved,
        reason: None,
        payment: PaymentStatus::Charged,
        version: 2,
        created_at_ms: 0,
        updated_at_ms: 0,
        lines: vec![OrderLine {
            product_key: "laptop".into(),
            product_name: "Laptop".into(),
            quantity: Quantity::new(2).unwrap(),
        }],
        extended_until_ms: None,
    });
    assert!(matches!(
        book.settle(
            "a",
            &event_id(EventKind::PaymentSucceeded, "a", 2),
            Settle::Commit
        ),
        Err(RuleError::Stock { .. })
    ));
    assert!(book.into_changes().is_empty());
}

mod properties;
mod shop;
