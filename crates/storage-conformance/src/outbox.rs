//! The outbox: events are leased to their consumer, handed out again after an
//! unacknowledged lease ends (at least once), never after an acknowledgement,
//! dead-lettered after too many attempts, and never leased to two callers at
//! the same time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use stockroom_domain::{CONSUMER_INVENTORY, CONSUMER_PAYMENT, EventKind};
use stockroom_storage::{MAX_DELIVERY_ATTEMPTS, Storage};

use crate::support::{
    assert_invariants, assert_timestamp, request, reserve_ok, run_concurrently, stock,
};

/// A lease short enough to wait out in a test.
const SHORT_LEASE_MS: u64 = 200;

/// How long to wait for a short lease to end, with margin for a slow clock.
const SHORT_LEASE_WAIT_MS: u64 = 300;

/// A lease that outlasts the test.
const LONG_LEASE_MS: u64 = 60_000;

/// (e) `OrderReserved` goes to `payment` (and only there); a leased event is
/// not handed out again while leased, is handed out again once its lease
/// ends unacknowledged, and never once acknowledged.
pub async fn reserved_orders_are_leased_until_acknowledged(storage: Arc<dyn Storage>) {
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
            .lease_events(CONSUMER_INVENTORY, 10, LONG_LEASE_MS)
            .await
            .expect("lease_events")
            .is_empty(),
        "reservations concern payment-service only"
    );

    let first = storage
        .lease_events(CONSUMER_PAYMENT, 10, SHORT_LEASE_MS)
        .await
        .expect("lease_events");
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
        assert_eq!(delivery.event.event_id, format!("OrderReserved:{id}:1"));
        assert_timestamp(&delivery.event.occurred_at);
    }
    assert!(
        storage
            .lease_events(CONSUMER_PAYMENT, 10, SHORT_LEASE_MS)
            .await
            .expect("lease_events")
            .is_empty(),
        "leased events are not handed out twice while leased"
    );
    storage
        .acknowledge_events(
            CONSUMER_PAYMENT,
            vec![first[0].delivery_id, first[2].delivery_id],
        )
        .await
        .expect("acknowledge_events");

    tokio::time::sleep(Duration::from_millis(SHORT_LEASE_WAIT_MS)).await;
    let again = storage
        .lease_events(CONSUMER_PAYMENT, 10, SHORT_LEASE_MS)
        .await
        .expect("lease_events");
    assert_eq!(again.len(), 1, "only the unacknowledged event comes back");
    assert_eq!(again[0].delivery_id, first[1].delivery_id);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(
        again[0].event, first[1].event,
        "a redelivery is the same event"
    );
    storage
        .acknowledge_events(CONSUMER_PAYMENT, vec![again[0].delivery_id])
        .await
        .expect("acknowledge_events");
    // Acknowledging twice, or something unknown, is harmless.
    storage
        .acknowledge_events(CONSUMER_PAYMENT, vec![again[0].delivery_id, i64::MAX])
        .await
        .expect("acknowledge_events");

    tokio::time::sleep(Duration::from_millis(SHORT_LEASE_WAIT_MS)).await;
    assert!(
        storage
            .lease_events(CONSUMER_PAYMENT, 10, SHORT_LEASE_MS)
            .await
            .expect("lease_events")
            .is_empty(),
        "acknowledged events are never handed out again"
    );
    assert_eq!(
        storage
            .dead_letter_count(CONSUMER_PAYMENT)
            .await
            .expect("count"),
        0
    );
    assert_invariants(&storage).await;
}

/// (e) An event leased [`MAX_DELIVERY_ATTEMPTS`] times without an
/// acknowledgement is dead-lettered and not handed out again; the others are
/// unaffected.
pub async fn unacknowledged_events_are_dead_lettered(storage: Arc<dyn Storage>) {
    stock(&storage, &[("Laptop", 10)]).await;
    let poison = reserve_ok(&storage, request("c1", &[("Laptop", 1)]))
        .await
        .id;
    let healthy = reserve_ok(&storage, request("c2", &[("Laptop", 1)]))
        .await
        .id;

    // A lease of zero milliseconds ends at once, so each call is a new attempt.
    let first = storage
        .lease_events(CONSUMER_PAYMENT, 10, 0)
        .await
        .expect("lease_events");
    assert_eq!(first.len(), 2);
    let healthy_delivery = first
        .iter()
        .find(|delivery| delivery.event.order_id == healthy)
        .expect("the healthy event is leased");
    storage
        .acknowledge_events(CONSUMER_PAYMENT, vec![healthy_delivery.delivery_id])
        .await
        .expect("acknowledge_events");

    for attempt in 2..=MAX_DELIVERY_ATTEMPTS {
        let leased = storage
            .lease_events(CONSUMER_PAYMENT, 10, 0)
            .await
            .expect("lease_events");
        assert_eq!(
            leased.len(),
            1,
            "attempt {attempt}: only the poison event is left"
        );
        assert_eq!(leased[0].event.order_id, poison);
        assert_eq!(leased[0].attempt, attempt);
    }
    assert!(
        storage
            .lease_events(CONSUMER_PAYMENT, 10, 0)
            .await
            .expect("lease_events")
            .is_empty(),
        "after {MAX_DELIVERY_ATTEMPTS} attempts the event is dead-lettered"
    );
    assert_eq!(
        storage
            .dead_letter_count(CONSUMER_PAYMENT)
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        storage
            .dead_letter_count(CONSUMER_INVENTORY)
            .await
            .expect("count"),
        0
    );
    assert!(
        storage
            .lease_events(CONSUMER_PAYMENT, 10, 0)
            .await
            .expect("lease_events")
            .is_empty(),
        "a dead-lettered event stays dead"
    );
    assert_eq!(
        storage
            .dead_letter_count(CONSUMER_PAYMENT)
            .await
            .expect("count"),
        1
    );
    assert_invariants(&storage).await;
}

/// (e) Many leasers at once, acknowledging as they go: every event is handed
/// out exactly once while the leases last.
pub async fn concurrent_leasers_never_share_a_delivery(storage: Arc<dyn Storage>) {
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
                    .lease_events(CONSUMER_PAYMENT, BATCH, LONG_LEASE_MS)
                    .await
                    .expect("lease_events");
                if batch.is_empty() {
                    return mine;
                }
                // Half the leasers acknowledge what they took, so that
                // acknowledgements race with leases too.
                if leaser % 2 == 0 {
                    storage
                        .acknowledge_events(
                            CONSUMER_PAYMENT,
                            batch.iter().map(|delivery| delivery.delivery_id).collect(),
                        )
                        .await
                        .expect("acknowledge_events");
                }
                mine.extend(batch.into_iter().map(|delivery| delivery.delivery_id));
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
            .lease_events(CONSUMER_PAYMENT, 100, LONG_LEASE_MS)
            .await
            .expect("lease_events")
            .is_empty(),
        "nothing is left to lease while the leases last"
    );
    assert_invariants(&storage).await;
}
