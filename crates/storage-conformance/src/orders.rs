//! Order status changes: versioned, forward only, recorded in the history,
//! and idempotent per event id.

use std::sync::Arc;

use stockroom_domain::rules::{ReserveAnswer, ReserveDecision, Settle, SweepDecision};
use stockroom_domain::{Consumer, EventKind, OrderStatus, PaymentStatus, Reason, ReleaseReason};
use stockroom_storage::ReleaseOutcome;
use stockroom_storage::batch::{PaymentVerdict, SettlementCall};

use crate::support::{
    Outcome, Store, assert_invariants, assert_order_consistent, item, order, outcome, payment,
    request, reserve_ok, run_concurrently, settlement, stock,
};

/// How long a lease lasts where the test does not want it to end.
const LONG_LEASE_MS: u64 = 60_000;

/// How many concurrent callers deliver the same event, or race to cancel and
/// pay the same order.
const RACERS: usize = 20;

async fn pay(storage: &Store, record: PaymentVerdict) -> Outcome {
    let results = storage
        .record_payments(vec![record])
        .await
        .expect("record_payments");
    assert_eq!(results.len(), 1);
    outcome(&results[0]).0
}

async fn settle_one(storage: &Store, record: SettlementCall) -> (Outcome, Option<OrderStatus>) {
    let results = storage.settle(vec![record]).await.expect("settle");
    assert_eq!(results.len(), 1);
    outcome(&results[0])
}

/// (d) The happy path and its refusals: reserved → charged → fulfilled, each
/// step one version with a history entry, the events on the outbox carrying
/// the versions, every duplicate ignored, and no step backwards.
pub async fn payment_and_settlement_move_forward_only(storage: Store) {
    stock(&storage, &[("Laptop", 10)]).await;
    let reserved = reserve_ok(&storage, request("c1", &[("Laptop", 2)])).await;
    let id = reserved.id.clone();
    assert_eq!(reserved.version, 1);
    assert_eq!(reserved.payment, PaymentStatus::None);

    let leased = storage
        .lease_events(Consumer::Payment, 10, LONG_LEASE_MS)
        .await
        .expect("lease_events");
    assert_eq!(leased.len(), 1);
    let reserved_event = &leased[0].event;
    assert_eq!(reserved_event.kind, EventKind::OrderReserved);
    assert_eq!(reserved_event.event_id, format!("OrderReserved:{id}:1"));
    assert_eq!(reserved_event.order_version, 1);
    assert_eq!(reserved_event.total_units, 2);

    assert_eq!(
        pay(&storage, payment(&id, &reserved_event.event_id, true)).await,
        Outcome::Applied
    );
    let charged = order(&storage, &id).await;
    assert_eq!(charged.order.status, OrderStatus::Reserved);
    assert_eq!(charged.order.payment, PaymentStatus::Charged);
    assert_eq!(charged.order.version, 2);
    assert_eq!(
        charged.order.reason, None,
        "a payment note does not become the order's reason"
    );
    assert_eq!(charged.history[1].reason, Some(Reason::PaymentCharged));
    assert_eq!(
        pay(&storage, payment(&id, &reserved_event.event_id, true)).await,
        Outcome::Duplicate,
        "the same event id has no second effect"
    );
    assert_eq!(
        pay(&storage, payment(&id, "another-payment-event", false)).await,
        Outcome::NotApplicable,
        "a second verdict cannot replace the first"
    );
    assert_eq!(order(&storage, &id).await.order.version, 2);

    // Paid reservations can be neither cancelled nor expired.
    match storage
        .release(&id, ReleaseReason::CancelledByCustomer)
        .await
        .expect("release")
    {
        ReleaseOutcome::NotCancellable(order) => assert_eq!(order.order.version, 2),
        other => panic!("a charged order must not be cancellable, got {other:?}"),
    }
    assert!(
        storage
            .sweep(LONG_LEASE_MS, 100)
            .await
            .expect("sweep")
            .is_empty(),
        "a charged reservation is not overdue a moment after its payment"
    );

    let to_inventory = storage
        .lease_events(Consumer::Inventory, 10, LONG_LEASE_MS)
        .await
        .expect("lease_events");
    assert_eq!(to_inventory.len(), 1);
    let paid_event = &to_inventory[0].event;
    assert_eq!(paid_event.kind, EventKind::PaymentSucceeded);
    assert_eq!(paid_event.event_id, format!("PaymentSucceeded:{id}:2"));
    assert_eq!(paid_event.order_version, 2);
    assert_eq!(paid_event.total_units, 2);

    assert_eq!(
        settle_one(
            &storage,
            settlement(&id, &paid_event.event_id, Settle::Release)
        )
        .await,
        (Outcome::NotApplicable, Some(OrderStatus::Reserved)),
        "a charged order's stock is never released"
    );
    assert_eq!(
        settle_one(
            &storage,
            settlement(&id, &paid_event.event_id, Settle::Commit)
        )
        .await,
        (Outcome::Applied, Some(OrderStatus::Fulfilled))
    );
    assert_eq!(
        settle_one(
            &storage,
            settlement(&id, &paid_event.event_id, Settle::Commit)
        )
        .await,
        (Outcome::Duplicate, Some(OrderStatus::Fulfilled))
    );
    assert_eq!(
        settle_one(&storage, settlement(&id, "late-commit", Settle::Commit)).await,
        (Outcome::NotApplicable, Some(OrderStatus::Fulfilled)),
        "a fulfilled order is not fulfilled twice"
    );
    let fulfilled = order(&storage, &id).await;
    assert_eq!(fulfilled.order.status, OrderStatus::Fulfilled);
    assert_eq!(fulfilled.order.version, 3);
    assert_eq!(fulfilled.order.reason, None);
    assert!(matches!(
        storage
            .release(&id, ReleaseReason::CancelledByCustomer)
            .await
            .expect("release"),
        ReleaseOutcome::NotCancellable(_)
    ));
    let laptop = item(&storage, "Laptop").await;
    assert_eq!(
        (
            laptop.stock.on_hand(),
            laptop.stock.reserved(),
            laptop.stock.sold()
        ),
        (8, 0, 2)
    );

    // A declined payment releases the stock and cancels with its reason.
    let declined = reserve_ok(&storage, request("c2", &[("Laptop", 3)])).await;
    assert_eq!(
        pay(
            &storage,
            payment(
                &declined.id,
                &stockroom_domain::rules::event_id(EventKind::OrderReserved, &declined.id, 1),
                false
            )
        )
        .await,
        Outcome::Applied
    );
    assert_eq!(
        settle_one(
            &storage,
            settlement(&declined.id, "declined-commit", Settle::Commit)
        )
        .await,
        (Outcome::NotApplicable, Some(OrderStatus::Reserved)),
        "a declined order is never committed"
    );
    assert_eq!(
        settle_one(
            &storage,
            settlement(
                &declined.id,
                &stockroom_domain::rules::event_id(EventKind::PaymentFailed, &declined.id, 2),
                Settle::Release
            )
        )
        .await,
        (Outcome::Applied, Some(OrderStatus::Cancelled))
    );
    let cancelled = order(&storage, &declined.id).await;
    assert_eq!(cancelled.order.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.order.payment, PaymentStatus::Declined);
    assert_eq!(cancelled.order.reason, Some(Reason::PaymentDeclined));
    assert_eq!(cancelled.order.version, 3);

    // Nothing is known about an order that does not exist.
    assert_eq!(
        pay(&storage, payment("no-such-order", "e1", true)).await,
        Outcome::UnknownOrder
    );
    assert_eq!(
        settle_one(&storage, settlement("no-such-order", "e2", Settle::Commit)).await,
        (Outcome::UnknownOrder, None)
    );
    assert_eq!(
        storage
            .release("no-such-order", ReleaseReason::CancelledByCustomer)
            .await
            .expect("release"),
        ReleaseOutcome::UnknownOrder
    );
    assert_invariants(&storage).await;
}

/// (d) The same event delivered by many callers at once is applied exactly
/// once; the others see `Duplicate`.
pub async fn duplicate_events_have_no_second_effect(storage: Store) {
    stock(&storage, &[("Laptop", 10)]).await;
    let id = reserve_ok(&storage, request("c1", &[("Laptop", 4)]))
        .await
        .id;

    let event_id = format!("OrderReserved:{id}:1");
    let outcomes = run_concurrently("concurrent duplicate payments", RACERS, |_| {
        let storage = Arc::clone(&storage);
        let record = payment(&id, &event_id, true);
        async move { pay(&storage, record).await }
    })
    .await;
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Applied).count(),
        1
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Duplicate)
            .count(),
        RACERS - 1
    );

    let event_id = format!("PaymentSucceeded:{id}:2");
    let outcomes = run_concurrently("concurrent duplicate settlements", RACERS, |_| {
        let storage = Arc::clone(&storage);
        let record = settlement(&id, &event_id, Settle::Commit);
        async move { settle_one(&storage, record).await.0 }
    })
    .await;
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Applied).count(),
        1
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Duplicate)
            .count(),
        RACERS - 1
    );

    let fulfilled = order(&storage, &id).await;
    assert_eq!(fulfilled.order.status, OrderStatus::Fulfilled);
    assert_eq!(
        fulfilled.order.version, 3,
        "one payment and one commit, nothing more"
    );
    let laptop = item(&storage, "Laptop").await;
    assert_eq!(
        (
            laptop.stock.on_hand(),
            laptop.stock.reserved(),
            laptop.stock.sold()
        ),
        (6, 0, 4)
    );
    let paid_events = storage
        .lease_events(Consumer::Inventory, 100, LONG_LEASE_MS)
        .await
        .expect("lease_events");
    assert_eq!(
        paid_events.len(),
        1,
        "one payment, one PaymentSucceeded event"
    );
    assert_invariants(&storage).await;
}

/// (d) Many callers cancelling and paying the same orders at once: for each
/// order exactly one of them wins, the version moves exactly once, and the
/// loser is told why.
pub async fn concurrent_cancel_and_payment_pick_one_winner(storage: Store) {
    const ORDERS: usize = 5;
    stock(&storage, &[("Laptop", 100)]).await;
    let mut ids = Vec::with_capacity(ORDERS);
    for index in 0..ORDERS {
        ids.push(
            reserve_ok(&storage, request(&format!("c{index}"), &[("Laptop", 2)]))
                .await
                .id,
        );
    }
    let ids = Arc::new(ids);
    // Even racers cancel, odd racers pay, each with its own event id.
    let outcomes = run_concurrently(
        "concurrent cancels and payments",
        RACERS * ORDERS,
        |index| {
            let storage = Arc::clone(&storage);
            let ids = Arc::clone(&ids);
            async move {
                let id = &ids[index % ORDERS];
                if index % 2 == 0 {
                    match storage
                        .release(id, ReleaseReason::CancelledByCustomer)
                        .await
                        .expect("release")
                    {
                        ReleaseOutcome::Released(_) => (index % ORDERS, "released"),
                        ReleaseOutcome::AlreadyCancelled(_) => {
                            (index % ORDERS, "already_cancelled")
                        }
                        ReleaseOutcome::NotCancellable(_) => (index % ORDERS, "not_cancellable"),
                        ReleaseOutcome::UnknownOrder => panic!("order {id} vanished"),
                    }
                } else {
                    let reserved =
                        stockroom_domain::rules::event_id(EventKind::OrderReserved, id, 1);
                    match pay(&storage, payment(id, &reserved, true)).await {
                        Outcome::Applied => (index % ORDERS, "paid"),
                        Outcome::Duplicate => (index % ORDERS, "duplicate"),
                        Outcome::NotApplicable => (index % ORDERS, "not_applicable"),
                        other => panic!("unexpected payment outcome {other:?}"),
                    }
                }
            }
        },
    )
    .await;
    for (slot, id) in ids.iter().enumerate() {
        let count = |label: &str| {
            outcomes
                .iter()
                .filter(|(which, outcome)| *which == slot && *outcome == label)
                .count()
        };
        let (released, paid) = (count("released"), count("paid"));
        assert_eq!(
            released + paid,
            1,
            "order {id}: exactly one winner, got {released} releases and {paid} payments"
        );
        let final_order = order(&storage, id).await;
        assert_eq!(
            final_order.order.version, 2,
            "order {id} changed exactly once"
        );
        if released == 1 {
            assert_eq!(final_order.order.status, OrderStatus::Cancelled);
            assert_eq!(final_order.order.payment, PaymentStatus::None);
            assert_eq!(count("not_cancellable"), 0);
        } else {
            assert_eq!(final_order.order.status, OrderStatus::Reserved);
            assert_eq!(final_order.order.payment, PaymentStatus::Charged);
            assert_eq!(count("already_cancelled"), 0);
        }
        assert_order_consistent(&final_order);
    }
    assert_invariants(&storage).await;
}

/// (d) Cancelling twice is harmless, and a cancelled order takes no payment.
pub async fn cancel_is_idempotent_and_refused_after_charge(storage: Store) {
    stock(&storage, &[("Laptop", 10)]).await;
    let id = reserve_ok(&storage, request("c1", &[("Laptop", 3)]))
        .await
        .id;
    match storage
        .release(&id, ReleaseReason::CancelledByCustomer)
        .await
        .expect("release")
    {
        ReleaseOutcome::Released(order) => {
            assert_eq!(order.order.status, OrderStatus::Cancelled);
            assert_eq!(order.order.reason, Some(Reason::CancelledByCustomer));
            assert_eq!(order.order.version, 2);
        }
        other => panic!("expected a release, got {other:?}"),
    }
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 0);
    match storage
        .release(&id, ReleaseReason::CancelledByCustomer)
        .await
        .expect("release")
    {
        ReleaseOutcome::AlreadyCancelled(order) => assert_eq!(order.order.version, 2),
        other => panic!("a second cancel must be harmless, got {other:?}"),
    }
    assert_eq!(
        pay(&storage, payment(&id, "late-payment", true)).await,
        Outcome::NotApplicable,
        "a cancelled reservation is never charged"
    );
    assert_eq!(order(&storage, &id).await.order.version, 2);
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 0);

    // A rejected order can never be cancelled.
    let rejected = crate::support::reserve_one(&storage, request("c2", &[("Laptop", 50)])).await;
    let ReserveDecision::Created(ReserveAnswer::Rejected {
        order: rejected, ..
    }) = rejected
    else {
        panic!("50 of 10 laptops must be rejected");
    };
    assert!(matches!(
        storage
            .release(&rejected.id, ReleaseReason::CancelledByCustomer)
            .await
            .expect("release"),
        ReleaseOutcome::NotCancellable(_)
    ));
    assert_invariants(&storage).await;
}

/// (d) The sweep ends every overdue reservation exactly once, up to its
/// limit: unpaid ones expire, a declined one whose release never came is
/// released, a charged one whose settlement never came is fulfilled (the
/// money is taken). A second sweeper finds nothing left.
pub async fn sweep_ends_every_overdue_reservation_once(storage: Store) {
    stock(&storage, &[("Laptop", 20)]).await;
    let unpaid_a = reserve_ok(&storage, request("c1", &[("Laptop", 1)]))
        .await
        .id;
    let unpaid_b = reserve_ok(&storage, request("c2", &[("Laptop", 2)]))
        .await
        .id;
    let unpaid_c = reserve_ok(&storage, request("c3", &[("Laptop", 3)]))
        .await
        .id;
    let charged = reserve_ok(&storage, request("c4", &[("Laptop", 4)]))
        .await
        .id;
    let declined = reserve_ok(&storage, request("c5", &[("Laptop", 5)]))
        .await
        .id;
    assert_eq!(
        pay(
            &storage,
            payment(
                &charged,
                &stockroom_domain::rules::event_id(EventKind::OrderReserved, &charged, 1),
                true
            )
        )
        .await,
        Outcome::Applied
    );
    assert_eq!(
        pay(
            &storage,
            payment(
                &declined,
                &stockroom_domain::rules::event_id(EventKind::OrderReserved, &declined, 1),
                false
            )
        )
        .await,
        Outcome::Applied
    );

    assert!(
        storage
            .sweep(LONG_LEASE_MS, 100)
            .await
            .expect("sweep")
            .is_empty(),
        "nothing is a minute old yet"
    );
    let first = storage.sweep(0, 2).await.expect("sweep");
    assert_eq!(first.len(), 2, "the limit is respected");
    // Several sweepers at once: together they end the rest exactly once.
    let rest = run_concurrently("concurrent sweepers", 4, |_| {
        let storage = Arc::clone(&storage);
        async move { storage.sweep(0, 100).await.expect("sweep") }
    })
    .await;
    let mut swept: Vec<(String, SweepDecision)> = first
        .into_iter()
        .chain(rest.into_iter().flatten())
        .map(|swept| (swept.order_id, swept.outcome))
        .collect();
    swept.sort();
    let mut expected = vec![
        (unpaid_a.clone(), SweepDecision::Expired),
        (unpaid_b.clone(), SweepDecision::Expired),
        (unpaid_c.clone(), SweepDecision::Expired),
        (declined.clone(), SweepDecision::Declined),
        (charged.clone(), SweepDecision::Fulfilled),
    ];
    expected.sort();
    assert_eq!(swept, expected, "every overdue reservation ends once");
    for id in [&unpaid_a, &unpaid_b, &unpaid_c] {
        let expired_order = order(&storage, id).await;
        assert_eq!(expired_order.order.status, OrderStatus::Cancelled);
        assert_eq!(expired_order.order.reason, Some(Reason::ReservationExpired));
    }
    let declined_order = order(&storage, &declined).await;
    assert_eq!(declined_order.order.status, OrderStatus::Cancelled);
    assert_eq!(declined_order.order.reason, Some(Reason::PaymentDeclined));
    let fulfilled = order(&storage, &charged).await;
    assert_eq!(fulfilled.order.status, OrderStatus::Fulfilled);
    assert_eq!(fulfilled.order.payment, PaymentStatus::Charged);
    let laptop = item(&storage, "Laptop").await;
    assert_eq!((laptop.stock.reserved(), laptop.stock.sold()), (0, 4));
    assert!(storage.sweep(0, 100).await.expect("sweep").is_empty());
    assert_invariants(&storage).await;
}
