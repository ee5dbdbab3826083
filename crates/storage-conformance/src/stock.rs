//! Stock loading, restocking, product lookup and order listing.

use std::collections::HashSet;
use std::sync::Arc;

use stockroom_domain::rules::{ReserveAnswer, ReserveDecision};
use stockroom_domain::{MAX_STOCK_PER_PRODUCT, OrderStatus, ReleaseReason};
use stockroom_storage::{InitialStock, MAX_ORDERS_PER_PAGE, OrderFilter, StorageError};

use crate::support::{
    Store, all_orders, assert_invariants, item, product, request, reserve_ok, reserve_one,
    run_concurrently, stock,
};

/// Initial stock loads once even when many instances start together;
/// restock adds to on hand and received; lookups ignore case; the stock limit
/// holds.
pub async fn stock_loading_restock_and_lookup(storage: Store) {
    assert!(storage.inventory().await.expect("inventory").is_empty());
    let loads = run_concurrently("concurrent initial stock loads", 10, |_| {
        let storage = Arc::clone(&storage);
        async move {
            storage
                .initialize_stock(vec![
                    InitialStock {
                        product: product("Laptop"),
                        quantity: 25,
                    },
                    InitialStock {
                        product: product("Phone"),
                        quantity: 50,
                    },
                ])
                .await
                .expect("initialize_stock")
        }
    })
    .await;
    assert_eq!(
        loads.iter().filter(|loaded| **loaded).count(),
        1,
        "the stock loads exactly once"
    );

    let inventory = storage.inventory().await.expect("inventory");
    let names: Vec<&str> = inventory
        .iter()
        .map(|item| item.product_name.as_str())
        .collect();
    assert_eq!(names, ["Laptop", "Phone"], "inventory is sorted by product");
    let laptop = item(&storage, "  LAPTOP ").await;
    assert_eq!(
        laptop.product_name, "Laptop",
        "lookups ignore case and spaces"
    );
    assert_eq!(
        (
            laptop.stock.on_hand(),
            laptop.stock.received_total(),
            laptop.stock.sold(),
            laptop.stock.available()
        ),
        (25, 25, 0, 25)
    );
    assert!(
        storage
            .inventory_item("Nothing")
            .await
            .expect("inventory_item")
            .is_none()
    );

    let restocks = run_concurrently("concurrent restocks", 10, |_| {
        let storage = Arc::clone(&storage);
        async move {
            storage
                .restock(product("laptop"), 5)
                .await
                .expect("restock")
        }
    })
    .await;
    assert!(
        restocks.iter().all(|item| item.product_name == "Laptop"),
        "restock keeps the first name"
    );
    let laptop = item(&storage, "Laptop").await;
    assert_eq!(
        (laptop.stock.on_hand(), laptop.stock.received_total()),
        (75, 75),
        "no restock was lost"
    );

    let created = storage
        .restock(product("Tablet"), 7)
        .await
        .expect("restock");
    assert_eq!(
        (
            created.stock.on_hand(),
            created.stock.received_total(),
            created.stock.reserved()
        ),
        (7, 7, 0)
    );

    match storage
        .restock(product("Laptop"), MAX_STOCK_PER_PRODUCT)
        .await
    {
        Err(StorageError::Refused(_)) => {}
        other => panic!("a restock past the stock limit must be refused, got {other:?}"),
    }
    match storage
        .restock(product("Huge"), MAX_STOCK_PER_PRODUCT + 1)
        .await
    {
        Err(StorageError::Refused(_)) => {}
        other => panic!("a restock past the stock limit must be refused, got {other:?}"),
    }
    assert!(
        storage
            .inventory_item("Huge")
            .await
            .expect("inventory_item")
            .is_none()
    );
    assert_eq!(item(&storage, "Laptop").await.stock.on_hand(), 75);
    assert!(
        !storage
            .initialize_stock(vec![InitialStock {
                product: product("Laptop"),
                quantity: 1_000,
            }])
            .await
            .expect("initialize_stock"),
        "the stock never loads twice"
    );
    assert_eq!(item(&storage, "Laptop").await.stock.on_hand(), 75);

    // An order id that is already taken is refused, and only that request
    // of its call: the others are decided as usual.
    let taken = reserve_ok(&storage, request("c1", &[("Laptop", 1)])).await;
    let mut duplicate = request("c2", &[("Laptop", 1)]);
    duplicate.order_id = taken.id.clone();
    let results = storage
        .reserve(vec![duplicate, request("c3", &[("Laptop", 1)])])
        .await
        .expect("reserve");
    assert_eq!(
        results[0],
        ReserveDecision::OrderIdTaken,
        "a second order with a taken id is refused"
    );
    assert!(matches!(
        results[1],
        ReserveDecision::Created(ReserveAnswer::Reserved(_))
    ));
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 2);
    assert_invariants(&storage).await;
}

/// Listing filters by status and customer and pages by id without gaps or
/// repeats; the counts per status agree with the listings exactly.
pub async fn order_listing_filters_and_pages(storage: Store) {
    crate::support::stock(&storage, &[("Laptop", 12)]).await;
    let mut ids = Vec::new();
    for index in 0..15 {
        let customer = if index % 3 == 0 { "alice" } else { "bob" };
        let result = reserve_one(&storage, request(customer, &[("Laptop", 1)])).await;
        let id = match result {
            ReserveDecision::Created(answer) => answer.order().id.clone(),
            other => panic!("unexpected outcome {other:?}"),
        };
        ids.push(id);
    }
    storage
        .release(&ids[0], ReleaseReason::CancelledByCustomer)
        .await
        .expect("release");

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = storage
            .orders(OrderFilter {
                status: None,
                customer_id: None,
                after: after.take(),
                limit: 4,
            })
            .await
            .expect("orders");
        assert!(page.orders.len() <= 4);
        seen.extend(page.orders.into_iter().map(|order| order.order.id));
        match page.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages cover every order once, in id order");

    let reserved = all_orders(&storage, Some(OrderStatus::Reserved)).await;
    let rejected = all_orders(&storage, Some(OrderStatus::Rejected)).await;
    let cancelled = all_orders(&storage, Some(OrderStatus::Cancelled)).await;
    assert_eq!(
        (reserved.len(), rejected.len(), cancelled.len()),
        (11, 3, 1)
    );
    let counts: Vec<(&str, u64)> = storage
        .order_counts()
        .await
        .expect("order_counts")
        .into_iter()
        .map(|count| (count.status.as_str(), count.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("pending", 0),
            ("reserved", 11),
            ("rejected", 3),
            ("fulfilled", 0),
            ("cancelled", 1)
        ],
        "counts agree with the listings"
    );
    let alice = storage
        .orders(OrderFilter {
            status: None,
            customer_id: Some("alice".into()),
            after: None,
            limit: MAX_ORDERS_PER_PAGE + 100,
        })
        .await
        .expect("orders");
    assert_eq!(alice.orders.len(), 5);
    assert!(alice.next_cursor.is_none());
    assert!(
        alice
            .orders
            .iter()
            .all(|order| order.order.customer_id == "alice")
    );
    let distinct: HashSet<_> = alice.orders.iter().map(|order| &order.order.id).collect();
    assert_eq!(distinct.len(), 5);
    let none = storage
        .orders(OrderFilter {
            status: Some(OrderStatus::Fulfilled),
            customer_id: None,
            after: None,
            limit: 0,
        })
        .await
        .expect("orders");
    assert!(none.orders.is_empty() && none.next_cursor.is_none());
    assert_invariants(&storage).await;
}

/// A write the schema's constraints refuse is the same error kind on every
/// backend, keeps the driver's error as its cause, and changes nothing.
pub async fn constraint_violations_are_one_error_kind(storage: Store) {
    stock(&storage, &[("Laptop", 5)]).await;
    reserve_ok(&storage, request("c1", &[("Laptop", 2)])).await;
    let error = storage
        .execute_unchecked(
            "UPDATE inventory SET reserved = quantity + 1 WHERE product_key = 'laptop'",
        )
        .await
        .expect_err("reserving more than on hand breaks a CHECK constraint");
    assert!(
        matches!(error, StorageError::ConstraintViolated { .. }),
        "a CHECK violation is ConstraintViolated, got {error:?}"
    );
    assert!(
        !error.is_retryable(),
        "a broken constraint is a bug, not a pause"
    );
    let causes = crate::support::causes(&error);
    assert!(
        !causes.is_empty(),
        "the driver's error is kept as the cause"
    );
    assert!(
        causes.to_lowercase().contains("check"),
        "the causes name the constraint{causes}"
    );
    assert_eq!(item(&storage, "Laptop").await.stock.reserved(), 2);
    reserve_ok(&storage, request("c2", &[("Laptop", 3)])).await;
    assert_invariants(&storage).await;
}
