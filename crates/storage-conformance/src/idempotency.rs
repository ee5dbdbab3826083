//! Idempotency keys: the same key and request give the first answer again,
//! the same key with a different request is refused, and concurrent requests
//! with one key create one order.

use std::sync::Arc;

use stockroom_domain::OrderStatus;
use stockroom_domain::rules::{ReserveAnswer, ReserveDecision};

use crate::support::{
    Outcome, Store, all_orders, assert_invariants, item, keyed_request, outcome, payment, product,
    reserve_one, run_concurrently, stock,
};

/// How many requests with one key race each other.
const SAME_KEY_REQUESTS: usize = 50;

/// The answer a decision created or replays.
fn answer_of(decision: &ReserveDecision) -> &ReserveAnswer {
    match decision {
        ReserveDecision::Created(answer) | ReserveDecision::Replay(answer) => answer,
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn order_id_of(decision: &ReserveDecision) -> &str {
    match crate::support::answered_order(decision) {
        Some(order) => &order.id,
        None => panic!("expected an order, got {decision:?}"),
    }
}

/// (f) Replays, key reuse, stored rejections, keys in one batch, and keys of
/// requests that named an unknown product.
pub async fn idempotent_replay_and_key_reuse(storage: Store) {
    stock(&storage, &[("Laptop", 25)]).await;

    let first = reserve_one(
        &storage,
        keyed_request("c1", &[("Laptop", 2)], "key-1", Some("fp-1")),
    )
    .await;
    assert!(!matches!(first, ReserveDecision::Replay(_)));
    let first_id = order_id_of(&first).to_owned();
    assert!(matches!(
        first,
        ReserveDecision::Created(ReserveAnswer::Reserved(_))
    ));

    // A retry arrives with a new order id (order-service makes one per
    // attempt) but the same key and body: it gets the first answer.
    let retry = keyed_request("c1", &[("Laptop", 2)], "key-1", Some("fp-1"));
    let retry_id = retry.order_id.clone();
    let replay = reserve_one(&storage, retry).await;
    assert!(matches!(replay, ReserveDecision::Replay(_)));
    assert_eq!(
        answer_of(&replay),
        answer_of(&first),
        "a replay is the first answer"
    );
    assert!(
        storage.order(&retry_id).await.expect("order").is_none(),
        "a replay creates nothing"
    );
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 2);

    let reused = reserve_one(
        &storage,
        keyed_request("c1", &[("Laptop", 3)], "key-1", Some("fp-2")),
    )
    .await;
    assert!(!matches!(reused, ReserveDecision::Replay(_)));
    assert_eq!(reused, ReserveDecision::KeyReused);
    let unfingerprinted = reserve_one(
        &storage,
        keyed_request("c1", &[("Laptop", 2)], "key-1", None),
    )
    .await;
    assert_eq!(unfingerprinted, ReserveDecision::KeyReused);

    // A rejection is an answer too, and is replayed as such.
    let rejected = reserve_one(
        &storage,
        keyed_request("c2", &[("Laptop", 500)], "key-2", Some("fp-3")),
    )
    .await;
    assert!(matches!(
        rejected,
        ReserveDecision::Created(ReserveAnswer::Rejected { .. })
    ));
    let rejected_again = reserve_one(
        &storage,
        keyed_request("c2", &[("Laptop", 500)], "key-2", Some("fp-3")),
    )
    .await;
    assert!(matches!(rejected_again, ReserveDecision::Replay(_)));
    assert_eq!(answer_of(&rejected_again), answer_of(&rejected));

    // Two requests with one key in one call: the second replays the first.
    let results = storage
        .reserve(vec![
            keyed_request("c3", &[("Laptop", 1)], "key-3", Some("fp-4")),
            keyed_request("c3", &[("Laptop", 1)], "key-3", Some("fp-4")),
        ])
        .await
        .expect("reserve");
    assert!(!matches!(results[0], ReserveDecision::Replay(_)));
    assert!(matches!(results[1], ReserveDecision::Replay(_)));
    assert_eq!(answer_of(&results[0]), answer_of(&results[1]));

    // A request naming an unknown product stores nothing, not even its key:
    // once the product exists, the same key reserves.
    let unknown = reserve_one(
        &storage,
        keyed_request("c4", &[("Drone", 1)], "key-4", Some("fp-5")),
    )
    .await;
    assert_eq!(unknown, ReserveDecision::UnknownProduct("Drone".into()));
    storage.restock(product("Drone"), 3).await.expect("restock");
    let now_known = reserve_one(
        &storage,
        keyed_request("c4", &[("Drone", 1)], "key-4", Some("fp-5")),
    )
    .await;
    assert!(!matches!(now_known, ReserveDecision::Replay(_)));
    assert!(matches!(
        now_known,
        ReserveDecision::Created(ReserveAnswer::Reserved(_))
    ));

    // Keys belong to their customer: another customer's identical key and
    // request is a new order, never a replay of someone else's.
    let theirs = reserve_one(
        &storage,
        keyed_request("c5", &[("Laptop", 2)], "key-1", Some("fp-1")),
    )
    .await;
    assert!(
        !matches!(theirs, ReserveDecision::Replay(_)),
        "another customer's key never replays"
    );
    assert!(matches!(
        theirs,
        ReserveDecision::Created(ReserveAnswer::Reserved(_))
    ));

    let orders = all_orders(&storage, None).await;
    assert_eq!(
        orders.len(),
        5,
        "key-1 (twice, for two customers), key-2, key-3 and key-4 made one order each"
    );
    assert!(orders.iter().any(|order| order.order.id == first_id));
    assert_invariants(&storage).await;
}

/// (f) 50 concurrent requests with one key create exactly one order; every
/// other caller gets that order back as a replay.
pub async fn concurrent_same_key_requests_create_one_order(storage: Store) {
    stock(&storage, &[("Laptop", 25)]).await;
    let results = run_concurrently(
        "50 requests with one idempotency key",
        SAME_KEY_REQUESTS,
        |_| {
            let storage = Arc::clone(&storage);
            async move {
                reserve_one(
                    &storage,
                    keyed_request("c1", &[("Laptop", 2)], "flash-sale-key", Some("fp")),
                )
                .await
            }
        },
    )
    .await;
    let fresh: Vec<_> = results
        .iter()
        .filter(|result| !matches!(result, ReserveDecision::Replay(_)))
        .collect();
    assert_eq!(fresh.len(), 1, "exactly one request did the work");
    let winner = order_id_of(fresh[0]).to_owned();
    for result in &results {
        assert_eq!(
            order_id_of(result),
            winner,
            "every caller sees the same order"
        );
        assert!(matches!(answer_of(result), ReserveAnswer::Reserved(_)));
    }
    let orders = all_orders(&storage, None).await;
    assert_eq!(orders.len(), 1, "exactly one order exists");
    assert_eq!(orders[0].order.status, OrderStatus::Reserved);
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 2);

    // Racing requests that reuse the key with another body are all refused.
    let reused = run_concurrently("key reuse with another body", 10, |index| {
        let storage = Arc::clone(&storage);
        async move {
            reserve_one(
                &storage,
                keyed_request(
                    "c1",
                    &[("Laptop", 1)],
                    "flash-sale-key",
                    Some(&format!("other-{index}")),
                ),
            )
            .await
        }
    })
    .await;
    for result in &reused {
        assert_eq!(*result, ReserveDecision::KeyReused);
    }
    assert_eq!(all_orders(&storage, None).await.len(), 1);
    assert_invariants(&storage).await;
}

/// Retention deletes, oldest first and a bounded number at a time, the keys,
/// rejected orders (and their count), provider charges and dead letters older
/// than its cutoffs, and nothing else; no processed-event record is written
/// (the table holds only what earlier versions wrote), and an event delivered
/// again after everything else was pruned is still recognised, by its
/// order's state, and has no second effect.
pub async fn retention_prunes_only_what_is_old(storage: Store) {
    use stockroom_storage::Prune;
    stock(&storage, &[("Laptop", 10)]).await;
    let keyed = reserve_one(
        &storage,
        keyed_request("c1", &[("Laptop", 2)], "key-1", Some("fp-1")),
    )
    .await;
    let ReserveDecision::Created(ReserveAnswer::Reserved(order)) = keyed else {
        panic!("the keyed order is reserved");
    };
    for customer in ["c2", "c3"] {
        let rejected = reserve_one(
            &storage,
            crate::support::request(customer, &[("Laptop", 50)]),
        )
        .await;
        assert!(matches!(
            rejected,
            ReserveDecision::Created(ReserveAnswer::Rejected { .. })
        ));
    }
    let payment = payment(
        &order.id,
        &stockroom_domain::rules::event_id(
            stockroom_domain::EventKind::OrderReserved,
            &order.id,
            1,
        ),
        true,
    );
    storage
        .record_payments(vec![payment.clone()])
        .await
        .expect("record_payments");
    for key in ["charge-a", "charge-b"] {
        storage
            .provider_charge(vec![stockroom_storage::Charge {
                charge_key: key.into(),
                order_id: order.id.clone(),
                units: 2,
                approved: true,
            }])
            .await
            .expect("provider_charge");
    }
    // One dead letter, and one event still waiting, which is never pruned.
    let leased = storage
        .lease_events(stockroom_domain::Consumer::Inventory, 10, 60_000)
        .await
        .expect("lease_events");
    storage
        .finish_deliveries(
            stockroom_domain::Consumer::Inventory,
            stockroom_domain::outbox::DeliveryOutcome::Reject,
            leased.iter().map(|delivery| delivery.receipt()).collect(),
        )
        .await
        .expect("reject");
    assert_eq!(
        storage
            .dead_letter_count(stockroom_domain::Consumer::Inventory)
            .await
            .expect("count"),
        1
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64;
    let before = |ms: i64| Prune {
        idempotency_keys_before_ms: ms,
        processed_events_before_ms: ms,
        rejected_orders_before_ms: ms,
        provider_charges_before_ms: ms,
        dead_letters_before_ms: ms,
        limit: 1,
    };
    let nothing = storage.prune(before(now - 3_600_000)).await.expect("prune");
    assert_eq!(nothing, Default::default(), "nothing is an hour old");
    let first = storage.prune(before(now + 3_600_000)).await.expect("prune");
    assert_eq!(
        first.by_kind().map(|(_, count)| count),
        [1, 0, 1, 1, 1],
        "at most the limit per table, and no processed-event record"
    );
    assert!(first.hit_limit(1));
    let rest = storage
        .prune(Prune {
            limit: 100,
            ..before(now + 3_600_000)
        })
        .await
        .expect("prune");
    assert_eq!(rest.by_kind().map(|(_, count)| count), [0, 0, 1, 1, 0]);
    let counts = storage.order_counts().await.expect("order_counts");
    let rejected = counts
        .iter()
        .find(|count| count.status == OrderStatus::Rejected)
        .map(|count| count.count);
    assert_eq!(rejected, Some(0), "pruned orders leave the counts");

    let orders = all_orders(&storage, None).await;
    assert_eq!(orders.len(), 1, "only the rejected orders are gone");
    assert_eq!(orders[0].order.id, order.id);
    // The order's state is the record: the payment is still known.
    let again = storage
        .record_payments(vec![payment])
        .await
        .expect("record_payments");
    assert_eq!(outcome(&again[0]).0, Outcome::Duplicate);
    assert_eq!(
        crate::support::order(&storage, &order.id)
            .await
            .order
            .version,
        2
    );
    assert_invariants(&storage).await;
}
