//! The open-orders rows that name the reserved orders for the expiry sweep
//! (`stockroom_storage_postgres::open`): what a sweep's rewrite keeps of
//! them, and that the sweep still finds an overdue order through it.

use std::sync::Arc;

use stockroom_storage_conformance::support::{Store, request, reserve_ok, stock};

use super::{Admin, open_schema, test_url, unique_schema};

/// Two rows, each naming one reserved order, are rewritten by a sweep into
/// one row that keeps the older order's creation time; a sweep for orders
/// that old then ends both, and one for older orders ends neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewritten_row_keeps_its_oldest_order_for_the_sweep() {
    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema("open_orders_oldest");
    let storage: Store = Arc::new(open_schema(&url, &schema).await);
    stock(&storage, &[("Widget", 10)]).await;
    let first = reserve_ok(&storage, request("c1", &[("Widget", 1)])).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = reserve_ok(&storage, request("c2", &[("Widget", 1)])).await;
    let rows = async || -> Vec<(i32, Option<i64>)> {
        admin
            .client
            .query(
                &format!(
                    "SELECT cardinality(ids), oldest_created_at_ms
                     FROM \"{schema}\".open_orders ORDER BY seq"
                ),
                &[],
            )
            .await
            .expect("the open-orders rows")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    };
    assert_eq!(
        rows().await,
        [
            (1, Some(first.created_at_ms)),
            (1, Some(second.created_at_ms))
        ]
    );
    // Both rows due for their first look now, rather than in two seconds.
    admin
        .client
        .batch_execute(&format!(
            "UPDATE \"{schema}\".open_orders SET due_at_ms = 0"
        ))
        .await
        .expect("the rows made due");
    let none_an_hour_old = storage.sweep(3_600_000, 10).await.expect("a sweep");
    assert!(none_an_hour_old.is_empty(), "{none_an_hour_old:?}");
    assert_eq!(rows().await, [(2, Some(first.created_at_ms))]);
    let ended = storage.sweep(0, 10).await.expect("a sweep");
    let mut ended: Vec<String> = ended.into_iter().map(|swept| swept.order_id).collect();
    ended.sort();
    let mut expected = vec![first.id.clone(), second.id.clone()];
    expected.sort();
    assert_eq!(ended, expected);
    drop(storage);
    admin.drop_schema(&schema).await;
    admin.close().await;
}
