//! A shop's own operations: purchase limits, the ledger, adjustments with a
//! compare-and-swap and a key, products and their settings, and reservation
//! extension, each under real concurrency.

use std::num::NonZeroI64;
use std::sync::Arc;

use stockroom_domain::ReleaseReason;
use stockroom_domain::rules::{
    AdjustDecision, AdjustReason, CreateDecision, ExtendDecision, LimitExceeded, MovementKind,
    MovementReason, ProductSettings, ReserveAnswer, ReserveDecision, SettingsChange,
    SettingsDecision,
};
use stockroom_domain::{OrderStatus, Reason};
use stockroom_storage::ReleaseOutcome;
use stockroom_storage::batch::Adjustment;

use crate::support::{
    Store, all_movements, assert_invariants, item, order, product, request, reserve_ok,
    reserve_one, run_concurrently, stock,
};

/// How many orders one customer fires at once at a limited product.
const STORM_ORDERS: usize = 60;

/// The purchase limit of the storm.
const STORM_LIMIT: u32 = 3;

/// How many operators adjust one figure at once.
const CONCURRENT_ADJUSTMENTS: usize = 30;

/// How many reservations race an extension against the sweep.
const EXTENSION_RACES: usize = 40;

async fn limit(storage: &Store, product: &str, max_per_customer: Option<u32>) {
    let change = SettingsChange {
        max_per_customer: Some(max_per_customer),
        low_stock_threshold: None,
    };
    match storage
        .change_settings(product, change)
        .await
        .expect("change_settings")
    {
        SettingsDecision::Changed(record) => {
            assert_eq!(record.settings.max_per_customer, max_per_customer);
        }
        other => panic!("expected the limit set, got {other:?}"),
    }
}

fn adjustment(delta: i64, expected_on_hand: Option<u64>, key: Option<&str>) -> Adjustment {
    Adjustment {
        product_key: "tablet".into(),
        delta: NonZeroI64::new(delta).expect("test deltas are not zero"),
        reason: if delta > 0 {
            AdjustReason::Received
        } else {
            AdjustReason::Shrinkage
        },
        reference: Some(format!("count sheet {delta}")),
        expected_on_hand,
        idempotency_key: key.map(str::to_owned),
        fingerprint: key.map(|_| "fingerprint".to_owned()),
    }
}

/// One customer's storm of concurrent single-unit orders at a product
/// limited to 3: exactly 3 are reserved whatever the batching, every other
/// is refused as past the limit (and creates nothing), another customer is
/// not affected, and a cancel frees a unit for one more order.
pub async fn concurrent_orders_of_one_customer_never_pass_a_limit(storage: Store) {
    stock(&storage, &[("Tablet", 100)]).await;
    limit(&storage, "Tablet", Some(STORM_LIMIT)).await;
    let results = run_concurrently("one customer's storm", STORM_ORDERS, |index| {
        let storage = Arc::clone(&storage);
        async move {
            let customer = if index % 10 == 0 { "bob" } else { "ann" };
            (
                customer,
                reserve_one(&storage, request(customer, &[("Tablet", 1)])).await,
            )
        }
    })
    .await;
    let mut reserved = Vec::new();
    for (customer, decision) in &results {
        match decision {
            ReserveDecision::Created(ReserveAnswer::Reserved(order)) => {
                reserved.push((*customer, order.id.clone()));
            }
            ReserveDecision::LimitExceeded(LimitExceeded {
                product_name,
                max_per_customer,
                already_held,
            }) => {
                assert_eq!(product_name, "Tablet");
                assert_eq!(*max_per_customer, STORM_LIMIT);
                assert_eq!(*already_held, u64::from(STORM_LIMIT));
            }
            other => panic!("expected a reservation or a refusal, got {other:?}"),
        }
    }
    let held_by = |who: &str| {
        reserved
            .iter()
            .filter(|(customer, _)| *customer == who)
            .count()
    };
    assert_eq!(
        held_by("ann"),
        STORM_LIMIT as usize,
        "ann holds exactly the limit"
    );
    assert_eq!(
        held_by("bob"),
        STORM_LIMIT as usize,
        "bob has his own limit"
    );
    assert_eq!(item(&storage, "tablet").await.stock.reserved(), 6);

    let (_, first) = reserved
        .iter()
        .find(|(customer, _)| *customer == "ann")
        .expect("ann holds some");
    assert!(matches!(
        storage
            .release(first, ReleaseReason::CancelledByCustomer)
            .await
            .expect("release"),
        ReleaseOutcome::Released(_)
    ));
    reserve_ok(&storage, request("ann", &[("Tablet", 1)])).await;
    assert!(matches!(
        reserve_one(&storage, request("ann", &[("Tablet", 1)])).await,
        ReserveDecision::LimitExceeded(_)
    ));
    // Removing the limit lets her buy again; setting it again counts what
    // she holds, from the orders.
    limit(&storage, "Tablet", None).await;
    reserve_ok(&storage, request("ann", &[("Tablet", 2)])).await;
    limit(&storage, "tablet", Some(4)).await;
    assert!(matches!(
        reserve_one(&storage, request("ann", &[("Tablet", 1)])).await,
        ReserveDecision::LimitExceeded(LimitExceeded {
            already_held: 5,
            ..
        })
    ));
    assert_invariants(&storage).await;
}

/// Every change of a product's figures or settings is one movement, numbered
/// in commit order, paged by cursor, and replaying them gives the figures.
pub async fn the_ledger_records_every_change_in_commit_order(storage: Store) {
    let settings = ProductSettings {
        max_per_customer: Some(5),
        low_stock_threshold: Some(2),
    };
    match storage
        .create_product(product("Tablet"), 10, settings)
        .await
        .expect("create")
    {
        CreateDecision::Created(record) => {
            assert_eq!((record.stock.on_hand(), record.settings), (10, settings));
            assert_eq!(record.movement_seq, 1);
        }
        other => panic!("expected the product created, got {other:?}"),
    }
    assert!(matches!(
        storage
            .create_product(product("TABLET"), 3, ProductSettings::default())
            .await
            .expect("create again"),
        CreateDecision::Exists(record) if record.stock.on_hand() == 10
    ));
    let kept = reserve_ok(&storage, request("ann", &[("Tablet", 2)])).await;
    let cancelled = reserve_ok(&storage, request("bob", &[("Tablet", 1)])).await;
    storage
        .release(&cancelled.id, ReleaseReason::CancelledByCustomer)
        .await
        .expect("release");
    match storage
        .adjust(adjustment(-3, Some(10), None))
        .await
        .expect("adjust")
    {
        AdjustDecision::Adjusted(answer) => {
            assert_eq!(answer.movement.seq, 5);
            assert_eq!(answer.stock.on_hand(), 7);
        }
        other => panic!("expected the adjustment, got {other:?}"),
    }
    limit(&storage, "Tablet", Some(1)).await;
    storage
        .restock(product("Tablet"), 4)
        .await
        .expect("restock");
    let movements = all_movements(&storage, "Tablet").await;
    let kinds: Vec<MovementKind> = movements.iter().map(|movement| movement.kind).collect();
    assert_eq!(
        kinds,
        [
            MovementKind::Created,
            MovementKind::Reserved,
            MovementKind::Reserved,
            MovementKind::Released,
            MovementKind::Adjusted,
            MovementKind::Settings,
            MovementKind::Received,
        ]
    );
    let seqs: Vec<u64> = movements.iter().map(|movement| movement.seq).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert_eq!(movements[1].order_id.as_deref(), Some(kept.id.as_str()));
    assert_eq!(
        movements[3].reason,
        Some(MovementReason::Release(Reason::CancelledByCustomer))
    );
    assert_eq!(
        movements[4].reason,
        Some(MovementReason::Adjustment(AdjustReason::Shrinkage))
    );
    assert_eq!(movements[4].reference.as_deref(), Some("count sheet -3"));
    assert_eq!(
        movements[5]
            .settings
            .and_then(|settings| settings.max_per_customer),
        Some(1)
    );
    // Paged two at a time, the cursor gives the same ledger.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = storage
            .movements("tablet", after, 2)
            .await
            .expect("movements")
            .expect("the product exists");
        assert!(page.movements.len() <= 2);
        paged.extend(page.movements);
        match page.next_cursor {
            Some(cursor) => after = cursor,
            None => break,
        }
    }
    assert_eq!(paged, movements);
    assert!(
        storage
            .movements("nothing", 0, 10)
            .await
            .expect("movements")
            .is_none()
    );
    assert_invariants(&storage).await;
}

/// Concurrent adjustments: without a compare-and-swap every one applies;
/// with the same expected figure exactly one applies and the others hear
/// the figure is stale; with one key, one applies and every retry replays
/// its answer. A write-off never takes availability below zero.
pub async fn concurrent_adjustments_lose_no_update(storage: Store) {
    stock(&storage, &[("Tablet", 50)]).await;
    let blind = run_concurrently("blind adjustments", CONCURRENT_ADJUSTMENTS, |_| {
        let storage = Arc::clone(&storage);
        async move {
            storage
                .adjust(adjustment(1, None, None))
                .await
                .expect("adjust")
        }
    })
    .await;
    assert!(
        blind
            .iter()
            .all(|decision| matches!(decision, AdjustDecision::Adjusted(_)))
    );
    let on_hand = 50 + CONCURRENT_ADJUSTMENTS as u64;
    assert_eq!(item(&storage, "tablet").await.stock.on_hand(), on_hand);

    let swapped = run_concurrently(
        "compare-and-swap adjustments",
        CONCURRENT_ADJUSTMENTS,
        |_| {
            let storage = Arc::clone(&storage);
            async move {
                storage
                    .adjust(adjustment(-1, Some(on_hand), None))
                    .await
                    .expect("adjust")
            }
        },
    )
    .await;
    let applied = swapped
        .iter()
        .filter(|decision| matches!(decision, AdjustDecision::Adjusted(_)))
        .count();
    assert_eq!(applied, 1, "one operator's count wins: {swapped:?}");
    for decision in &swapped {
        let fair = match decision {
            AdjustDecision::Adjusted(_) => true,
            AdjustDecision::StaleQuantity { on_hand: seen } => *seen == on_hand - 1,
            _ => false,
        };
        assert!(
            fair,
            "a losing operator hears the figure that won: {decision:?}"
        );
    }

    let keyed = run_concurrently("one key, many retries", CONCURRENT_ADJUSTMENTS, |_| {
        let storage = Arc::clone(&storage);
        async move {
            storage
                .adjust(adjustment(5, None, Some("delivery-42")))
                .await
                .expect("adjust")
        }
    })
    .await;
    let answers: Vec<_> = keyed
        .iter()
        .map(|decision| match decision {
            AdjustDecision::Adjusted(answer) | AdjustDecision::Replay(answer) => answer.clone(),
            other => panic!("expected the key's answer, got {other:?}"),
        })
        .collect();
    assert!(answers.iter().all(|answer| *answer == answers[0]));
    assert_eq!(
        keyed
            .iter()
            .filter(|decision| matches!(decision, AdjustDecision::Adjusted(_)))
            .count(),
        1
    );
    assert_eq!(
        storage
            .adjust(Adjustment {
                fingerprint: Some("another request".into()),
                ..adjustment(5, None, Some("delivery-42"))
            })
            .await
            .expect("adjust"),
        AdjustDecision::KeyReused
    );
    let on_hand = on_hand - 1 + 5;
    reserve_ok(&storage, request("ann", &[("Tablet", 10)])).await;
    assert_eq!(
        storage
            .adjust(adjustment(-(on_hand as i64), None, None))
            .await
            .expect("adjust"),
        AdjustDecision::InsufficientStock {
            available: on_hand - 10
        }
    );
    let record = item(&storage, "tablet").await;
    assert_eq!(
        (record.stock.on_hand(), record.stock.reserved()),
        (on_hand, 10)
    );
    assert_eq!(
        storage
            .adjust(Adjustment {
                product_key: "nothing".into(),
                ..adjustment(1, None, None)
            })
            .await
            .expect("adjust"),
        AdjustDecision::UnknownProduct
    );
    assert_invariants(&storage).await;
}

/// An extension and the sweep race for each of many overdue reservations:
/// for each, exactly one wins. An extended order stays reserved; a swept
/// one is expired, and its extension is refused.
pub async fn an_extension_never_races_the_sweep(storage: Store) {
    stock(&storage, &[("Tablet", 1_000)]).await;
    let mut orders = Vec::new();
    for index in 0..EXTENSION_RACES {
        let customer = format!("customer-{index}");
        let order = reserve_ok(&storage, request(&customer, &[("Tablet", 1)])).await;
        orders.push((customer, order.id));
    }
    let until_ms = now_ms() + 600_000;
    let sweeper = {
        let storage = Arc::clone(&storage);
        tokio::spawn(async move {
            let mut swept = Vec::new();
            for _ in 0..EXTENSION_RACES {
                swept.extend(storage.sweep(0, 2).await.expect("sweep"));
                tokio::task::yield_now().await;
            }
            swept
        })
    };
    let extended = run_concurrently("extensions", EXTENSION_RACES, |index| {
        let storage = Arc::clone(&storage);
        let (customer, order_id) = orders[index].clone();
        async move {
            storage
                .extend(&order_id, &customer, until_ms)
                .await
                .expect("extend")
        }
    })
    .await;
    sweeper.await.expect("the sweeper");
    for ((customer, order_id), decision) in orders.iter().zip(&extended) {
        let stored = order(&storage, order_id).await;
        match decision {
            ExtendDecision::Extended(_) => {
                assert_eq!(stored.order.status, OrderStatus::Reserved, "{order_id}");
                assert_eq!(stored.order.extended_until_ms, Some(until_ms));
                assert_eq!(
                    stored.history.last().and_then(|entry| entry.reason),
                    Some(Reason::ReservationExtended)
                );
            }
            ExtendDecision::NotExtendable(_) => {
                assert_eq!(stored.order.status, OrderStatus::Cancelled, "{order_id}");
                assert_eq!(stored.order.reason, Some(Reason::ReservationExpired));
            }
            other => panic!("{customer}'s extension of {order_id} answered {other:?}"),
        }
    }
    // The sweep keeps every extended reservation.
    storage.sweep(0, 1_000).await.expect("sweep");
    for ((customer, order_id), decision) in orders.iter().zip(&extended) {
        if matches!(decision, ExtendDecision::Extended(_)) {
            assert_eq!(
                order(&storage, order_id).await.order.status,
                OrderStatus::Reserved
            );
            assert_eq!(
                storage
                    .extend(order_id, "someone-else", until_ms)
                    .await
                    .expect("extend"),
                ExtendDecision::NotYours,
                "{customer}'s order"
            );
        }
    }
    assert_invariants(&storage).await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
