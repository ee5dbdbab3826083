//! Runs the storage conformance suite against the PostgreSQL backend.
//!
//! The database is the one named by `STOCKROOM_TEST_POSTGRES_URL`, for
//! example `postgres://postgres@127.0.0.1:5432/test`. Each test gets a fresh
//! schema with a unique name, created by the backend itself and dropped when
//! the test ends, so tests run in parallel without seeing each other's data.
//! Without the variable the tests are skipped, except under CI (`CI` set),
//! where a skipped database suite would hide exactly the bugs it exists for.

use std::future::Future;
use std::sync::Arc;

use stockroom_storage::testing::TestStorage;
use stockroom_storage::{EventOutbox, OrderFlow};
use stockroom_storage_postgres::{GroupCommitConfig, PostgresConfig, PostgresStorage};
use tokio_postgres::NoTls;

/// The environment variable naming the test database.
const URL_VARIABLE: &str = "STOCKROOM_TEST_POSTGRES_URL";

/// Connections per test. Two tests run at once on the project's machines,
/// which keeps the suite far below PostgreSQL's default of 100 connections
/// while still giving every test many connections that race each other.
const TEST_POOL_SIZE: usize = 12;

/// The longest part of a test's name kept in its schema's name, which
/// PostgreSQL truncates at 63 bytes.
const SCHEMA_NAME_TEST_PART_LENGTH: usize = 32;

/// The test database's URL, or `None` when the suite is to be skipped.
fn test_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{URL_VARIABLE} is not set, and under CI the PostgreSQL conformance suite must run: \
             set it to a reachable database, for example postgres://postgres@127.0.0.1:5432/test"
        ),
        _ => {
            eprintln!("skipped: {URL_VARIABLE} is not set");
            None
        }
    }
}

/// A schema name no other test, run or process uses: the test's name, plus
/// the random tail of a UUIDv7.
fn unique_schema(test_name: &str) -> String {
    let test_part: String = test_name
        .chars()
        .take(SCHEMA_NAME_TEST_PART_LENGTH)
        .collect();
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("conformance_{test_part}_{}", &random[random.len() - 12..])
}

/// A plain connection for creating and dropping test schemas, apart from the
/// pool under test.
struct Admin {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Admin {
    async fn connect(url: &str) -> Admin {
        // The URL may carry a password, so messages name the variable, not it.
        let (client, connection) =
            tokio_postgres::connect(url, NoTls)
                .await
                .unwrap_or_else(|error| {
                    let cause = std::error::Error::source(&error)
                        .map_or_else(String::new, |cause| format!(": {cause}"));
                    panic!(
                        "{URL_VARIABLE} is set but the database cannot be reached: {error}{cause}"
                    )
                });
        Admin {
            client,
            connection: tokio::spawn(connection),
        }
    }

    async fn drop_schema(&self, schema: &str) {
        self.client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap_or_else(|error| panic!("cannot drop the test schema {schema}: {error}"));
    }

    async fn close(self) {
        drop(self.client);
        let _ = self.connection.await;
    }
}

/// Makes a fresh schema, runs one conformance test on it with reservations
/// group-committed (the default), then closes the pool and drops the schema
/// (also when the test fails).
async fn run<F, Fut>(name: &'static str, test: F)
where
    F: FnOnce(Arc<dyn TestStorage>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_with(name, test, GroupCommitConfig::default()).await;
}

/// [`run`] with one transaction per `reserve` call.
async fn run_without_group_commit<F, Fut>(name: &'static str, test: F)
where
    F: FnOnce(Arc<dyn TestStorage>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_with(name, test, GroupCommitConfig::OFF).await;
}

/// [`run`] with every batch's stock locked before the rules decide it.
async fn run_locking_first<F, Fut>(name: &'static str, test: F)
where
    F: FnOnce(Arc<dyn TestStorage>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_with(name, test, GroupCommitConfig::default().locking_first()).await;
}

async fn run_with<F, Fut>(name: &'static str, test: F, group_commit: GroupCommitConfig)
where
    F: FnOnce(Arc<dyn TestStorage>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema(name);
    let storage = PostgresStorage::connect_with_group_commit(
        &url,
        PostgresConfig {
            schema: Some(schema.clone()),
            pool_size: TEST_POOL_SIZE,
            ..PostgresConfig::default()
        },
        group_commit,
    )
    .await
    .unwrap_or_else(|error| panic!("cannot open the postgres storage in schema {schema}: {error}"));
    let storage = Arc::new(storage);
    // The test runs as its own task so that a panic in it still lets the
    // schema be dropped before the failure is reported.
    let outcome = tokio::spawn(test(Arc::clone(&storage) as Arc<dyn TestStorage>)).await;
    storage.close_pool();
    drop(storage);
    admin.drop_schema(&schema).await;
    admin.close().await;
    if let Err(error) = outcome {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        panic!("conformance test {name} was cancelled: {error}");
    }
}

/// A migration run twice, or by several instances at once, leaves one schema
/// with one recorded version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_idempotent_and_safe_to_run_concurrently() {
    /// How many instances start at the same moment.
    const INSTANCES: usize = 4;
    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema("migrations");
    let config = PostgresConfig {
        schema: Some(schema.clone()),
        pool_size: 2,
        ..PostgresConfig::default()
    };
    let connects: Vec<_> = (0..INSTANCES)
        .map(|_| {
            let url = url.clone();
            let config = config.clone();
            tokio::spawn(async move { PostgresStorage::connect(&url, config).await })
        })
        .collect();
    let mut results = Vec::new();
    for connect in connects {
        results.push(connect.await.expect("connect task"));
    }
    results.push(PostgresStorage::connect(&url, config).await);
    for storage in results.iter().flatten() {
        storage.close_pool();
    }
    let versions = admin
        .client
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|row| row.get::<_, i32>(0))
                .collect::<Vec<_>>()
        });
    admin.drop_schema(&schema).await;
    admin.close().await;
    for result in &results {
        if let Err(error) = result {
            panic!("a concurrent or repeated connect failed: {error}");
        }
    }
    assert_eq!(
        versions.expect("read schema_migrations"),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    );
}

/// The start of a script that makes `schema` as an old version of
/// Stockroom left it: the schema, made the session's, and the table of
/// applied migrations.
fn old_schema_script(schema: &str) -> String {
    format!(
        "CREATE SCHEMA \"{schema}\"; SET search_path = \"{schema}\";
         CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                         applied_at_ms BIGINT NOT NULL);"
    )
}

/// Every migration in order, to build a schema as an older build left it.
const MIGRATIONS: [&str; 10] = [
    include_str!("../src/migrations/0001_initial_schema.sql"),
    include_str!("../src/migrations/0002_rules_engine.sql"),
    include_str!("../src/migrations/0003_outbox_trace_context.sql"),
    include_str!("../src/migrations/0004_history_in_order_row.sql"),
    include_str!("../src/migrations/0005_keys_keep_decisions.sql"),
    include_str!("../src/migrations/0006_counters_and_retention.sql"),
    include_str!("../src/migrations/0007_shop_operations.sql"),
    include_str!("../src/migrations/0008_room_for_updates.sql"),
    include_str!("../src/migrations/0009_fewer_order_index_entries.sql"),
    include_str!("../src/migrations/0010_outbox_rows_by_batch.sql"),
];

/// The script that creates `schema` at schema version `version` (each
/// migration up to it applied and recorded), leaving `search_path` on it.
fn schema_at_version_script(schema: &str, version: usize) -> String {
    let mut script = old_schema_script(schema);
    for (index, sql) in MIGRATIONS[..version].iter().enumerate() {
        script.push_str(sql);
        script.push_str(&format!(
            "\nINSERT INTO schema_migrations VALUES ({}, 'version {}', 0);\n",
            index + 1,
            index + 1
        ));
    }
    script
}

/// Opens the storage of `schema`, migrating it to the newest version.
async fn open_schema(url: &str, schema: &str) -> PostgresStorage {
    PostgresStorage::connect(
        url,
        PostgresConfig {
            schema: Some(schema.to_owned()),
            pool_size: 2,
            ..PostgresConfig::default()
        },
    )
    .await
    .expect("migrate")
}

/// A database of schema version 1, with an event waiting, one dead-lettered
/// and an idempotency key, comes up to date with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_one_database_is_migrated_without_loss() {
    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema("upgrade");
    admin
        .client
        .batch_execute(&format!(
            "{start}
             {initial}
             INSERT INTO schema_migrations VALUES (1, 'initial schema', 0);
             INSERT INTO outbox (event_id, kind, order_id, order_version, total_units, occurred_at_ms)
             VALUES ('OrderReserved:a:1', 'OrderReserved', 'a', 1, 2, 1000),
                    ('OrderReserved:b:1', 'OrderReserved', 'b', 1, 1, 1000),
                    ('OrderReserved:c:1', 'OrderReserved', 'c', 1, 1, 1000);
             INSERT INTO deliveries (consumer, seq, attempts, leased_until_ms)
             SELECT 'payment', seq, 2, 0 FROM outbox WHERE order_id = 'a';
             INSERT INTO dead_letters (consumer, seq, attempts, at_ms)
             SELECT 'payment', seq, 10, 2000 FROM outbox WHERE order_id = 'b';
             INSERT INTO idempotency_keys (key, fingerprint, result_json, created_at_ms)
             VALUES ('k1', 'f1', '{{\"outcome\":\"reserved\",\"order\":{{\"id\":\"a\",\"customerId\":\"c7\"}}}}', 1000),
                    ('k2', 'f2', NULL, 1000),
                    ('k3', 'f3', '{{\"outcome\":\"rejected\",\"order\":{{\"id\":\"r\",\"customerId\":\"c8\"}},\"shortages\":[{{\"productName\":\"Laptop\",\"requested\":3,\"available\":1}}]}}', 1000);
             INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                                 created_at_ms, updated_at_ms)
             VALUES ('a', 'c7', 'reserved', NULL, 'none', 1, 1000, 1000);
             INSERT INTO order_items (order_id, product_key, product_name, quantity)
             VALUES ('a', 'phone', 'Phone', 1), ('a', 'laptop', 'Laptop', 2);
             INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received)
             VALUES ('laptop', 'Laptop', 5, 2, 0, 5), ('phone', 'Phone', 3, 1, 0, 3);
             INSERT INTO order_history (order_id, version, status, reason, at_ms)
             VALUES ('a', 1, 'reserved', NULL, 1000);
             RESET search_path;",
            start = old_schema_script(&schema),
            initial = include_str!("../src/migrations/0001_initial_schema.sql"),
        ))
        .await
        .expect("a version 1 schema");
    let storage = open_schema(&url, &schema).await;
    let leased = storage
        .lease_events(stockroom_domain::Consumer::Payment, 10, 60_000)
        .await
        .expect("lease");
    let dead = storage
        .dead_letters(stockroom_domain::Consumer::Payment, 10)
        .await
        .expect("dead letters");
    let order = storage
        .order("a")
        .await
        .expect("read")
        .expect("the order survives");
    let keys = admin
        .client
        .query(
            &format!(
                "SELECT customer_id, key, order_id, shortages FROM \"{schema}\".idempotency_keys
                 ORDER BY key"
            ),
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    (
                        row.get::<_, String>(0),
                        row.get::<_, String>(1),
                        row.get::<_, String>(2),
                        row.get::<_, Option<String>>(3),
                    )
                })
                .collect::<Vec<_>>()
        });
    let replay = storage
        .reserve(vec![stockroom_storage_conformance::support::keyed_request(
            "c7",
            &[("Laptop", 2), ("Phone", 1)],
            "k1",
            Some("f1"),
        )])
        .await
        .expect("a replay of a key kept by the previous schema");
    stockroom_storage_conformance::support::assert_migrated_ledger(&storage).await;
    storage.close_pool();
    admin.drop_schema(&schema).await;
    admin.close().await;
    assert_eq!(leased.len(), 1, "the waiting event, and only it, is leased");
    assert_eq!(leased[0].event.order_id, "a");
    assert_eq!(leased[0].attempt, 3, "earlier deliveries are remembered");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.order_id, "b");
    assert_eq!(
        keys.expect("keys"),
        [
            ("c7".to_owned(), "k1".to_owned(), "a".to_owned(), None),
            (
                "c8".to_owned(),
                "k3".to_owned(),
                "r".to_owned(),
                Some(r#"[["Laptop", 3, 1]]"#.to_owned())
            )
        ],
        "answered keys keep their customer, order and shortages; a key never answered is dropped"
    );
    stockroom_storage_conformance::support::assert_migrated_order(&order);
    stockroom_storage_conformance::support::assert_migrated_replay(&replay);
}

/// A URL that points nowhere fails as unavailable, with a message, instead of
/// hanging or panicking. Needs no database, so it always runs.
#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    // Port 1 on the loopback interface refuses connections at once.
    let result = PostgresStorage::connect(
        "postgres://stockroom@127.0.0.1:1/none",
        PostgresConfig::default(),
    )
    .await;
    match result {
        Err(error @ stockroom_storage::StorageError::Unavailable { .. }) => {
            let mut chain = error.to_string();
            let mut cause = std::error::Error::source(&error);
            while let Some(next) = cause {
                chain.push_str(&format!(": {next}"));
                cause = next.source();
            }
            assert!(
                chain.contains("refused"),
                "the error's causes must say why: {chain}"
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

stockroom_storage_conformance::conformance_tests!(run);

#[path = "conformance/two_instances.rs"]
mod two_instances;

/// The reservation and event tests again with every batch's stock locked
/// before the rules decide it, the protocol a batch falls back to when its
/// stock moved, so that both keep every guarantee.
mod locking_first {
    stockroom_storage_conformance::conformance_tests!(@each super::run_locking_first;
        concurrent_single_unit_orders_never_oversell,
        concurrent_batches_never_oversell,
        batched_requests_each_get_their_own_result,
        multi_item_reservation_is_all_or_nothing,
        opposite_lock_orders_never_deadlock,
        concurrent_same_key_requests_create_one_order,
        duplicate_events_have_no_second_effect,
    );
}

/// The reservation tests again with group commit off, the mode a benchmark
/// compares against, so that both paths keep every guarantee.
mod without_group_commit {
    stockroom_storage_conformance::conformance_tests!(@each super::run_without_group_commit;
        concurrent_single_unit_orders_never_oversell,
        concurrent_batches_never_oversell,
        batched_requests_each_get_their_own_result,
        multi_item_reservation_is_all_or_nothing,
        opposite_lock_orders_never_deadlock,
        concurrent_same_key_requests_create_one_order,
    );
}

/// The outbox's events and the open orders' ids are compressed with LZ4
/// where the server has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_values_are_compressed_with_lz4_where_the_server_has_it() {
    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema("outbox_lz4");
    let storage = open_schema(&url, &schema).await;
    let compression = admin
        .client
        .query_one(
            "SELECT array_agg(attcompression::text ORDER BY attname),
                    EXISTS (SELECT 1 FROM pg_settings
                            WHERE name = 'default_toast_compression'
                              AND 'lz4' = ANY(enumvals))
             FROM pg_attribute
             WHERE (attrelid, attname)
                   IN ((format('%I.outbox', $1::text)::regclass, 'events'),
                       (format('%I.open_orders', $1::text)::regclass, 'ids'))",
            &[&schema],
        )
        .await
        .map(|row| (row.get::<_, Vec<String>>(0), row.get::<_, bool>(1)));
    storage.close_pool();
    admin.drop_schema(&schema).await;
    admin.close().await;
    let (compression, server_has_lz4) = compression.expect("the column's compression");
    let expected = if server_has_lz4 { "l" } else { "" };
    assert_eq!(compression, [expected, expected]);
}

/// An outbox stored by schema version 9 (a row per event) comes up to date
/// with every event and its state, and new events are numbered after every
/// one it ever handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_nine_outbox_keeps_every_event_and_its_state() {
    use stockroom_storage_conformance::support;

    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema("outbox_v9");
    let mut script = schema_at_version_script(&schema, 9);
    script.push_str(support::VERSION_NINE_OUTBOX);
    script.push_str(&format!(
        "SELECT setval(pg_get_serial_sequence('outbox', 'seq'), {});
         RESET search_path;",
        support::VERSION_NINE_LAST_SEQ
    ));
    admin
        .client
        .batch_execute(&script)
        .await
        .expect("a version 9 schema with events in every state");
    let storage = Arc::new(open_schema(&url, &schema).await);
    let outcome = tokio::spawn(support::assert_migrated_outbox_owned(
        Arc::clone(&storage) as Arc<dyn TestStorage>
    ))
    .await;
    storage.close_pool();
    admin.drop_schema(&schema).await;
    admin.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Orders stored by schema version 10 (the status indexed, the history
/// oldest first) come up to date: each is listed by its status, the
/// reservation is swept through the open-orders row the migration names it
/// in, and its history keeps every entry, old and new.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn version_ten_orders_keep_their_status_history_and_expiry() {
    use stockroom_domain::OrderStatus;
    use stockroom_storage::OrderFilter;

    let Some(url) = test_url() else {
        return;
    };
    let admin = Admin::connect(&url).await;
    let schema = unique_schema("orders_v10");
    let mut script = schema_at_version_script(&schema, 10);
    script.push_str(
        r#"INSERT INTO inventory (product_key, product_name, quantity, reserved, sold, received,
                                 movements)
           VALUES ('laptop', 'Laptop', 4, 1, 1, 5, 4);
           INSERT INTO stock_ledger (product_key, first_seq, last_seq, entries)
           VALUES ('laptop', 1, 1, '[["opening",null,null,null,5,0,0,900,null]]'),
                  ('laptop', 2, 4, '[["reserved",null,null,"o1",0,1,0,1000,null],["reserved",null,null,"o2",0,1,0,1000,null],["sold",null,null,"o2",-1,-1,1,1200,null]]');
           INSERT INTO orders (id, customer_id, status, reason, payment_status, version,
                               created_at_ms, updated_at_ms, lines, history)
           VALUES ('o1', 'c1', 'reserved', NULL, 'none', 1, 1000, 1000,
                   '[["laptop","Laptop",1]]', '[[1,"reserved",null,1000]]'),
                  ('o2', 'c2', 'fulfilled', NULL, 'charged', 3, 1000, 1200,
                   '[["laptop","Laptop",1]]',
                   '[[1,"reserved",null,1000],[2,"reserved","payment_charged",1100],[3,"fulfilled",null,1200]]'),
                  ('o3', 'c3', 'rejected', 'insufficient_stock', 'none', 1, 1000, 1000,
                   '[["laptop","Laptop",9]]', '[[1,"rejected","insufficient_stock",1000]]'),
                  ('o4', 'c4', 'cancelled', 'payment_declined', 'declined', 3, 1000, 1200,
                   '[["laptop","Laptop",1]]',
                   '[[1,"reserved",null,1000],[2,"reserved","payment_declined",1100],[3,"cancelled","payment_declined",1200]]');
           INSERT INTO order_counts (status, shard, count)
           VALUES ('reserved', 0, 1), ('fulfilled', 0, 1), ('rejected', 0, 1), ('cancelled', 0, 1);
           RESET search_path;"#,
    );
    admin
        .client
        .batch_execute(&script)
        .await
        .expect("a version 10 schema with an order of every status");
    let storage = open_schema(&url, &schema).await;
    let listed = async |status: OrderStatus| -> Vec<String> {
        let page = storage
            .orders(OrderFilter {
                status: Some(status),
                customer_id: None,
                after: None,
                limit: 10,
            })
            .await
            .expect("a listing");
        page.orders
            .into_iter()
            .map(|stored| stored.order.id)
            .collect()
    };
    let before = [
        listed(OrderStatus::Reserved).await,
        listed(OrderStatus::Fulfilled).await,
        listed(OrderStatus::Rejected).await,
        listed(OrderStatus::Cancelled).await,
    ];
    let swept = storage.sweep(0, 10).await.expect("a sweep");
    let after = [
        listed(OrderStatus::Reserved).await,
        listed(OrderStatus::Cancelled).await,
    ];
    let expired = storage.order("o1").await.expect("read").expect("o1");
    let fulfilled = storage.order("o2").await.expect("read").expect("o2");
    let movements = storage
        .movements("laptop", 0, 10)
        .await
        .expect("the ledger")
        .expect("the product");
    let ledger_rows = admin
        .client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".stock_ledger"),
            &[],
        )
        .await
        .map(|row| row.get::<_, i64>(0));
    let stored = admin
        .client
        .query_one(
            &format!("SELECT other_status, history FROM \"{schema}\".orders WHERE id = 'o1'"),
            &[],
        )
        .await
        .map(|row| (row.get::<_, Option<String>>(0), row.get::<_, String>(1)));
    storage.close_pool();
    admin.drop_schema(&schema).await;
    admin.close().await;
    assert_eq!(
        before,
        [
            vec!["o1".to_owned()],
            vec!["o2".to_owned()],
            vec!["o3".to_owned()],
            vec!["o4".to_owned()]
        ]
    );
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].order_id, "o1");
    assert_eq!(
        after,
        [Vec::<String>::new(), vec!["o1".to_owned(), "o4".to_owned()]]
    );
    assert_eq!(expired.order.status, OrderStatus::Cancelled);
    let versions: Vec<i64> = expired.history.iter().map(|entry| entry.version).collect();
    assert_eq!(versions, [1, 2], "the migrated entry and the sweep's");
    assert_eq!(fulfilled.history.len(), 3);
    let (other_status, history) = stored.expect("the stored row");
    assert_eq!(other_status.as_deref(), Some("cancelled"));
    assert!(history.starts_with("[[2,"), "newest first: {history}");
    let moved: Vec<(u64, &str, Option<&str>)> = movements
        .movements
        .iter()
        .map(|movement| {
            (
                movement.seq,
                movement.kind.as_str(),
                movement.order_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        moved,
        [
            (1, "opening", None),
            (2, "reserved", Some("o1")),
            (3, "reserved", Some("o2")),
            (4, "sold", Some("o2")),
            (5, "released", Some("o1")),
        ]
    );
    assert_eq!(
        ledger_rows.expect("the ledger's rows"),
        2,
        "the release joined the product's last row"
    );
}

#[path = "conformance/instances.rs"]
mod instances;

#[path = "conformance/open_orders.rs"]
mod open_orders;
