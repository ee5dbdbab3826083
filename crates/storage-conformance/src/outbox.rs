//! The outbox: events are leased to their consumer under a secret token,
//! handed out again after an unsettled lease ends or is released (at least
//! once, and without limit), never after an acknowledgement, dead-lettered
//! only when a consumer rejects them as poison, redriven with a clean slate,
//! and never leased to two callers at the same time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use stockroom_domain::outbox::{Delivery, DeliveryOutcome, MAX_REJECTIONS, MIN_LEASE_MS, Receipt};
use stockroom_domain::rules::EventRecord;
use stockroom_domain::{Consumer, EventKind};
use stockroom_storage::Charge;

use crate::support::{
    Store, assert_invariants, payment, request, reserve_ok, run_concurrently, stock,
};

/// A lease short enough to wait out in a test.
const SHORT_LEASE_MS: u64 = 200;

/// How long to wait for a short lease to end, with margin for a slow clock.
const SHORT_LEASE_WAIT_MS: u64 = 300;

/// A lease that outlasts the test.
const LONG_LEASE_MS: u64 = 60_000;

/// Leases of payment-service's events.
async fn lease(storage: &Store, lease_ms: u64) -> Vec<Delivery> {
    storage
        .lease_events(Consumer::Payment, 10, lease_ms)
        .await
        .expect("lease_events")
}

async fn finish(storage: &Store, outcome: DeliveryOutcome, deliveries: &[&Delivery]) -> u64 {
    storage
        .finish_deliveries(
            Consumer::Payment,
            outcome,
            deliveries
                .iter()
                .map(|delivery| delivery.receipt())
                .collect(),
        )
        .await
        .expect("finish_deliveries")
}

/// (e) `OrderReserved` goes to `payment` (and only there); a leased event is
/// not handed out again while leased, is handed out again once its lease
/// ends unacknowledged, and never once acknowledged; only the lease's own
/// token settles it.
pub async fn reserved_orders_are_leased_until_acknowledged(storage: Store) {
    stock(&storage, &[("Laptop", 10)]).await;
    let mut ids = Vec::new();
    for (index, units) in [1, 2, 3].into_iter().enumerate() {
        ids.push(
            reserve_ok(
                &storage,
                request(&format!("c{index}"), &[("Laptop", units)]),
            )
            .await
            .id,
        );
    }
    assert!(
        storage
            .lease_events(Consumer::Inventory, 10, LONG_LEASE_MS)
            .await
            .expect("lease_events")
            .is_empty(),
        "reservations concern payment-service only"
    );

    let first = lease(&storage, SHORT_LEASE_MS).await;
    assert_eq!(first.len(), 3);
    for (delivery, (id, units)) in first.iter().zip(ids.iter().zip([1u64, 2, 3])) {
        assert_eq!(delivery.attempt, 1);
        assert_eq!(delivery.event.kind, EventKind::OrderReserved);
        assert_eq!(
            &delivery.event.order_id, id,
            "events come in the order they were written"
        );
        assert_eq!(delivery.event.order_version, 1);
        assert_eq!(delivery.event.total_units, units);
        assert!(!delivery.event.event_id.is_empty());
        assert!(
            delivery.token.len() >= 16,
            "a lease token is a secret, not a counter"
        );
        assert!(
            delivery.event.occurred_at_ms > 0,
            "an event carries the time it happened"
        );
    }
    assert!(
        lease(&storage, SHORT_LEASE_MS).await.is_empty(),
        "leased events are not handed out twice while leased"
    );
    // A receipt with another token (a forged one, or a lease that ran out)
    // settles nothing.
    let forged = Receipt {
        seq: first[0].seq,
        token: "not-the-token".into(),
    };
    assert_eq!(
        storage
            .finish_deliveries(
                Consumer::Payment,
                DeliveryOutcome::Acknowledge,
                vec![forged]
            )
            .await
            .expect("finish_deliveries"),
        0
    );
    assert_eq!(
        finish(
            &storage,
            DeliveryOutcome::Acknowledge,
            &[&first[0], &first[2]]
        )
        .await,
        2
    );

    tokio::time::sleep(Duration::from_millis(SHORT_LEASE_WAIT_MS)).await;
    let again = lease(&storage, SHORT_LEASE_MS).await;
    assert_eq!(again.len(), 1, "only the unacknowledged event comes back");
    assert_eq!(again[0].seq, first[1].seq);
    assert_eq!(again[0].attempt, 2);
    assert_ne!(again[0].token, first[1].token);
    assert_eq!(
        again[0].event, first[1].event,
        "a redelivery is the same event"
    );
    assert_eq!(
        finish(&storage, DeliveryOutcome::Acknowledge, &[&first[1]]).await,
        0,
        "the first lease's token no longer settles the event"
    );
    assert_eq!(
        finish(&storage, DeliveryOutcome::Acknowledge, &[&again[0]]).await,
        1
    );
    // Acknowledging twice is harmless.
    assert_eq!(
        finish(&storage, DeliveryOutcome::Acknowledge, &[&again[0]]).await,
        0
    );

    tokio::time::sleep(Duration::from_millis(SHORT_LEASE_WAIT_MS)).await;
    assert!(
        lease(&storage, SHORT_LEASE_MS).await.is_empty(),
        "acknowledged events are never handed out again"
    );
    assert_eq!(
        storage
            .dead_letter_count(Consumer::Payment)
            .await
            .expect("count"),
        0
    );
    assert_invariants(&storage).await;
}

/// The orders of `deliveries`' events, in order.
fn order_ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|delivery| delivery.event.order_id.clone())
        .collect()
}

/// payment-service's waiting and dead events.
async fn payment_counts(storage: &Store) -> (u64, u64) {
    storage
        .outbox_counts()
        .await
        .expect("counts")
        .into_iter()
        .find(|counts| counts.consumer == Consumer::Payment)
        .map(|counts| (counts.pending, counts.dead))
        .expect("payment's counts")
}

/// Rejects `poison` as often as it takes to dead-letter it, leasing it again
/// between rejections.
async fn reject_until_dead(storage: &Store, mut poison: Delivery) {
    for rejection in 1..=MAX_REJECTIONS {
        assert_eq!(
            finish(storage, DeliveryOutcome::Reject, &[&poison]).await,
            1
        );
        if rejection < MAX_REJECTIONS {
            poison = lease(storage, LONG_LEASE_MS)
                .await
                .into_iter()
                .find(|delivery| delivery.event.order_id == poison.event.order_id)
                .expect("a rejected event comes back until it is dead");
        }
    }
}

/// (e) The events one batch raised (stored together on a backend that packs
/// them) are still leased, settled and dead-lettered one by one: a lease
/// takes some of them and the next lease the rest, one is acknowledged,
/// one released, one rejected as poison, each with its own effect, and the
/// counts follow each.
pub async fn a_batchs_events_are_settled_one_by_one(storage: Store) {
    stock(&storage, &[("Laptop", 10)]).await;
    let requests: Vec<_> = (1..=4)
        .map(|index| request(&format!("c{index}"), &[("Laptop", index)]))
        .collect();
    let ids: Vec<String> = requests
        .iter()
        .map(|request| request.order_id.clone())
        .collect();
    storage.reserve(requests).await.expect("reserve");

    let first = storage
        .lease_events(Consumer::Payment, 3, LONG_LEASE_MS)
        .await
        .expect("lease");
    assert_eq!(order_ids(&first), ids[..3], "a lease takes part of a batch");
    let rest = lease(&storage, LONG_LEASE_MS).await;
    assert_eq!(order_ids(&rest), ids[3..], "and the next lease the rest");

    assert_eq!(
        finish(&storage, DeliveryOutcome::Acknowledge, &[&first[0]]).await,
        1
    );
    assert_eq!(
        finish(&storage, DeliveryOutcome::Release, &[&first[1]]).await,
        1
    );
    reject_until_dead(&storage, first[2].clone()).await;
    assert_eq!(
        payment_counts(&storage).await,
        (2, 1),
        "the released and the leased event wait, the poison is dead"
    );

    let again = lease(&storage, LONG_LEASE_MS).await;
    assert_eq!(order_ids(&again), [ids[1].clone()], "only the released one");
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].event, first[1].event);
    assert_eq!(
        finish(&storage, DeliveryOutcome::Acknowledge, &[&first[0]]).await,
        0,
        "an acknowledged event stays acknowledged"
    );

    let letters = storage
        .dead_letters(Consumer::Payment, 10)
        .await
        .expect("dead_letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event, first[2].event);
    assert_eq!(
        storage
            .redrive(Consumer::Payment, vec![letters[0].seq])
            .await
            .expect("redrive"),
        1
    );
    let redriven = lease(&storage, LONG_LEASE_MS).await;
    assert_eq!(order_ids(&redriven), [ids[2].clone()]);
    assert_eq!(
        finish(
            &storage,
            DeliveryOutcome::Acknowledge,
            &[&again[0], &rest[0], &redriven[0]]
        )
        .await,
        3
    );
    assert_eq!(payment_counts(&storage).await, (0, 0));
    assert!(lease(&storage, 10).await.is_empty());
    assert_invariants(&storage).await;
}

/// (e) Released events come back at once, however often (an outage never
/// dead-letters anything); an event rejected as poison [`MAX_REJECTIONS`]
/// times is dead-lettered, listed, not handed out again, and once redriven
/// is handed out again with a clean slate.
pub async fn only_poison_is_dead_lettered_and_redrive_restores_it(storage: Store) {
    stock(&storage, &[("Laptop", 10)]).await;
    let poison = reserve_ok(&storage, request("c1", &[("Laptop", 1)]))
        .await
        .id;
    let healthy = reserve_ok(&storage, request("c2", &[("Laptop", 1)]))
        .await
        .id;

    for round in 1..=20 {
        let leased = lease(&storage, LONG_LEASE_MS).await;
        assert_eq!(
            leased.len(),
            2,
            "round {round}: released events come back at once"
        );
        let refs: Vec<&Delivery> = leased.iter().collect();
        finish(&storage, DeliveryOutcome::Release, &refs).await;
    }
    assert_eq!(
        storage
            .dead_letter_count(Consumer::Payment)
            .await
            .expect("count"),
        0,
        "giving events back never counts against them"
    );

    for rejection in 1..=MAX_REJECTIONS {
        let leased = lease(&storage, LONG_LEASE_MS).await;
        let bad = leased
            .iter()
            .find(|delivery| delivery.event.order_id == poison)
            .unwrap_or_else(|| panic!("rejection {rejection}: the poison event comes back"));
        let good: Vec<&Delivery> = leased
            .iter()
            .filter(|delivery| delivery.event.order_id != poison)
            .collect();
        finish(&storage, DeliveryOutcome::Reject, &[bad]).await;
        finish(&storage, DeliveryOutcome::Release, &good).await;
    }
    let left = lease(&storage, LONG_LEASE_MS).await;
    assert_eq!(
        left.len(),
        1,
        "the poison event is dead-lettered, the other is not"
    );
    assert_eq!(left[0].event.order_id, healthy);
    finish(&storage, DeliveryOutcome::Acknowledge, &[&left[0]]).await;

    let letters = storage
        .dead_letters(Consumer::Payment, 10)
        .await
        .expect("dead_letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.order_id, poison);
    assert_eq!(letters[0].rejections, MAX_REJECTIONS);
    assert!(letters[0].dead_at_ms > 0, "a dead letter says when it died");
    assert_eq!(
        storage
            .dead_letter_count(Consumer::Inventory)
            .await
            .expect("count"),
        0
    );
    assert!(
        lease(&storage, LONG_LEASE_MS).await.is_empty(),
        "a dead-lettered event stays dead"
    );

    assert_eq!(
        storage
            .redrive(Consumer::Payment, vec![letters[0].seq])
            .await
            .expect("redrive"),
        1
    );
    assert_eq!(
        storage
            .dead_letter_count(Consumer::Payment)
            .await
            .expect("count"),
        0
    );
    let redriven = lease(&storage, LONG_LEASE_MS).await;
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0].event, letters[0].event, "the same event, again");
    finish(&storage, DeliveryOutcome::Acknowledge, &[&redriven[0]]).await;
    assert_invariants(&storage).await;
}

/// (e) Many leasers at once, acknowledging as they go: every event is handed
/// out exactly once while the leases last.
pub async fn concurrent_leasers_never_share_a_delivery(storage: Store) {
    const EVENTS: usize = 60;
    const LEASERS: usize = 6;
    const BATCH: u32 = 4;
    stock(&storage, &[("Laptop", EVENTS as u64)]).await;
    for chunk in 0..EVENTS / 10 {
        let requests = (0..10)
            .map(|index| request(&format!("c{chunk}-{index}"), &[("Laptop", 1)]))
            .collect();
        storage.reserve(requests).await.expect("reserve");
    }
    let leased = run_concurrently("concurrent leasers", LEASERS, |leaser| {
        let storage = Arc::clone(&storage);
        async move {
            let mut mine = Vec::new();
            loop {
                let batch = storage
                    .lease_events(Consumer::Payment, BATCH, LONG_LEASE_MS)
                    .await
                    .expect("lease_events");
                if batch.is_empty() {
                    return mine;
                }
                // Half the leasers acknowledge what they took, so that
                // acknowledgements race with leases too.
                if leaser % 2 == 0 {
                    storage
                        .finish_deliveries(
                            Consumer::Payment,
                            DeliveryOutcome::Acknowledge,
                            batch.iter().map(Delivery::receipt).collect(),
                        )
                        .await
                        .expect("finish_deliveries");
                }
                mine.extend(batch.into_iter().map(|delivery| delivery.seq));
            }
        }
    })
    .await;
    let all: Vec<i64> = leased.into_iter().flatten().collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a delivery was leased to two callers at once"
    );
    assert_eq!(all.len(), EVENTS, "every event was leased");
    assert!(
        storage
            .lease_events(Consumer::Payment, 100, LONG_LEASE_MS)
            .await
            .expect("lease_events")
            .is_empty(),
        "nothing is left to lease while the leases last"
    );
    assert_invariants(&storage).await;
}

/// (e) Receipts race leases that ran out: the leases are so short that an
/// entry is often leased again before its first leaser acknowledges it, and
/// receipts load their entries without locking them. Every entry is deleted
/// exactly once (the acknowledged counts add up to the events), a late
/// receipt changes nothing, and no call fails: a receipt that finds its
/// entry changed under it runs again.
pub async fn late_receipts_racing_new_leases_acknowledge_each_event_once(storage: Store) {
    const EVENTS: u64 = 40;
    const LEASERS: usize = 6;
    const BATCH: u32 = 3;
    /// When to give up, far beyond what the test needs.
    const ROUNDS: usize = 1_000;
    stock(&storage, &[("Laptop", EVENTS)]).await;
    for chunk in 0..EVENTS / 10 {
        let requests = (0..10)
            .map(|index| request(&format!("c{chunk}-{index}"), &[("Laptop", 1)]))
            .collect();
        storage.reserve(requests).await.expect("reserve");
    }
    let acknowledged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let late = run_concurrently("racing receipts", LEASERS, |leaser| {
        let storage = Arc::clone(&storage);
        let acknowledged = Arc::clone(&acknowledged);
        async move {
            let mut late = 0;
            for _ in 0..ROUNDS {
                if acknowledged.load(std::sync::atomic::Ordering::SeqCst) == EVENTS {
                    break;
                }
                let batch = storage
                    .lease_events(Consumer::Payment, BATCH, MIN_LEASE_MS)
                    .await
                    .expect("lease_events");
                // Leasers wait different times, from none to twice the
                // shortest lease: some acknowledge within their lease, some
                // after it ran out and another leaser took the entries.
                let wait_ms = leaser as u64 * 2 * MIN_LEASE_MS / (LEASERS as u64 - 1);
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                let done = storage
                    .finish_deliveries(
                        Consumer::Payment,
                        DeliveryOutcome::Acknowledge,
                        batch.iter().map(Delivery::receipt).collect(),
                    )
                    .await
                    .expect("a receipt never fails for a race");
                late += batch.len() as u64 - done;
                acknowledged.fetch_add(done, std::sync::atomic::Ordering::SeqCst);
            }
            late
        }
    })
    .await;
    assert_eq!(
        acknowledged.load(std::sync::atomic::Ordering::SeqCst),
        EVENTS,
        "every event acknowledged once ({} receipts came late)",
        late.iter().sum::<u64>()
    );
    assert!(
        lease(&storage, LONG_LEASE_MS).await.is_empty(),
        "nothing is left"
    );
    assert_invariants(&storage).await;
}

/// The simulated provider keeps its charges by key: the first request's
/// verdict stands for every later request of the key, however many arrive
/// at once, and a key is charged once.
pub async fn provider_charges_are_kept_by_key(storage: Store) {
    let charge = |key: &str, approved: bool| Charge {
        charge_key: key.to_owned(),
        order_id: key.to_owned(),
        units: 2,
        approved,
    };
    let first = storage
        .provider_charge(vec![charge("order-a", true), charge("order-b", false)])
        .await
        .expect("provider_charge");
    assert_eq!(
        first
            .iter()
            .map(|verdict| (verdict.approved, verdict.requests))
            .collect::<Vec<_>>(),
        [(true, 1), (false, 1)]
    );
    let again = storage
        .provider_charge(vec![charge("order-a", false)])
        .await
        .expect("provider_charge");
    assert_eq!(
        (again[0].approved, again[0].requests),
        (true, 2),
        "the first verdict stands"
    );
    let concurrent = run_concurrently("twenty charges of one key at once", 20, |_| {
        let storage = Arc::clone(&storage);
        let request = charge("order-c", true);
        async move {
            storage
                .provider_charge(vec![request])
                .await
                .expect("provider_charge")
        }
    })
    .await;
    let mut counts: Vec<u32> = concurrent
        .iter()
        .map(|verdicts| verdicts[0].requests)
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        (1..=20).collect::<Vec<u32>>(),
        "each request counted once"
    );
    let stats = storage.provider_stats().await.expect("provider_stats");
    assert_eq!(
        (
            stats.charged,
            stats.declined,
            stats.repeated_requests,
            stats.orders_charged_twice
        ),
        (2, 1, 20, 0)
    );
}

/// The W3C trace context of a reservation rides on its `OrderReserved`
/// event, and that of a payment on its verdict's event, so that each
/// consumer continues the order's trace; an untraced call's event carries
/// none, and a dead letter keeps its context through burial and redrive.
pub async fn events_carry_their_calls_trace_context(storage: Store) {
    const ORDER_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const PAYMENT_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01";
    stock(&storage, &[("Laptop", 10)]).await;
    let traced = reserve_ok(
        &storage,
        stockroom_storage::batch::Reservation {
            trace_parent: Some(ORDER_TRACE.to_owned()),
            ..request("c1", &[("Laptop", 1)])
        },
    )
    .await;
    let untraced = reserve_ok(&storage, request("c2", &[("Laptop", 1)])).await;
    let leased = lease(&storage, LONG_LEASE_MS).await;
    let context_of = |order_id: &str| {
        leased
            .iter()
            .find(|delivery| delivery.event.order_id == order_id)
            .expect("each reservation has its event")
            .event
            .trace_parent
            .clone()
    };
    assert_eq!(context_of(&traced.id).as_deref(), Some(ORDER_TRACE));
    assert_eq!(context_of(&untraced.id), None);

    let reserved_event = leased
        .iter()
        .find(|delivery| delivery.event.order_id == traced.id)
        .expect("the traced order's event")
        .event
        .clone();
    storage
        .record_payments(vec![stockroom_storage::batch::PaymentVerdict {
            trace_parent: Some(PAYMENT_TRACE.to_owned()),
            ..payment(&traced.id, &reserved_event.event_id, true)
        }])
        .await
        .expect("record_payments");
    let verdicts = storage
        .lease_events(Consumer::Inventory, 10, LONG_LEASE_MS)
        .await
        .expect("lease_events");
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].event.kind, EventKind::PaymentSucceeded);
    assert_eq!(
        verdicts[0].event.trace_parent.as_deref(),
        Some(PAYMENT_TRACE)
    );

    // A broker's consumer buries what it cannot handle with the event itself
    // (here one the outbox does not hold, as after a relay).
    let relayed = EventRecord {
        event_id: format!("{}:relayed", reserved_event.event_id),
        ..reserved_event
    };
    storage
        .bury_events(Consumer::Payment, vec![relayed])
        .await
        .expect("bury_events");
    let dead = storage
        .dead_letters(Consumer::Payment, 10)
        .await
        .expect("dead_letters");
    assert!(
        dead.iter()
            .any(|letter| letter.event.trace_parent.as_deref() == Some(ORDER_TRACE)),
        "{dead:?}"
    );
}
