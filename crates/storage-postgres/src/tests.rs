//! The crate's unit tests that need the whole storage: the test database's
//! set-up, schema names, session options and the list filters' plans.

use super::*;

/// The test database's URL, or `None` to skip a test that needs one
/// (never under CI, where the database must be there).
pub(crate) fn database_url() -> Option<String> {
    let url = std::env::var("STOCKROOM_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    assert!(
        url.is_some() || std::env::var_os("CI").is_none(),
        "STOCKROOM_TEST_POSTGRES_URL is required under CI"
    );
    url
}

/// A storage of the test database in a schema of its own.
pub(crate) struct TestSchema {
    pub url: String,
    pub schema: String,
    pub storage: PostgresStorage,
}

impl TestSchema {
    /// Connects with `pool_size` connections to a new schema named
    /// `name` and this process's id, or `None` to skip the test.
    pub(crate) async fn open(name: &str, pool_size: usize) -> Option<TestSchema> {
        let url = database_url()?;
        let schema = format!("{name}_{}", std::process::id());
        let config = PostgresConfig {
            schema: Some(schema.clone()),
            pool_size,
            ..PostgresConfig::default()
        };
        let storage = PostgresStorage::connect(&url, config)
            .await
            .expect("connect");
        Some(TestSchema {
            url,
            schema,
            storage,
        })
    }

    /// Closes the storage and drops its schema.
    pub(crate) async fn remove(self) {
        self.storage.close_pool();
        drop_schema(&self.url, &self.schema)
            .await
            .expect("drop the test schema");
    }
}

#[test]
fn schema_names_are_checked() {
    assert!(check_schema_name("stockroom").is_ok());
    assert!(check_schema_name("_test_1").is_ok());
    assert!(check_schema_name("").is_err());
    assert!(check_schema_name("1abc").is_err());
    assert!(check_schema_name("Upper").is_err());
    assert!(check_schema_name("a b").is_err());
    assert!(check_schema_name("a;drop").is_err());
    assert!(check_schema_name(&"a".repeat(MAX_SCHEMA_NAME_LENGTH + 1)).is_err());
}

#[test]
fn the_urls_options_override_the_defaults_but_not_what_is_required() {
    let required = ["-c search_path=\"s\"".to_owned()];
    assert_eq!(
        session_options(None, &required),
        "-c random_page_cost=1.1 -c search_path=\"s\""
    );
    assert_eq!(
        session_options(Some("  "), &required),
        "-c random_page_cost=1.1 -c search_path=\"s\""
    );
    assert_eq!(
        session_options(Some("-c random_page_cost=4"), &required),
        "-c random_page_cost=1.1 -c random_page_cost=4 -c search_path=\"s\""
    );
}

/// Every list filter's statement can be served by an index: with
/// sequential scans switched off, the plan never falls back to one.
#[tokio::test]
async fn every_list_filter_uses_an_index() {
    let Some(test) = TestSchema::open("plans", 1).await else {
        return;
    };
    let client = test.storage.pool.get().await.expect("a connection");
    let cost: String = client
        .query_one("SHOW random_page_cost", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(cost, RANDOM_PAGE_COST.to_string(), "the session's default");
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .expect("set");
    for filter in OrderFilter::every_shape() {
        // The statement with its parameters written in, in order.
        let mut values: Vec<String> = Vec::new();
        values.extend(filter.customer_id.clone());
        values.extend(filter.after.clone());
        let mut explained = read::list_sql(&filter);
        explained = explained.replace(&format!("${}", values.len() + 1), "11");
        for (index, value) in values.iter().enumerate().rev() {
            explained = explained.replace(&format!("${}", index + 1), &format!("'{value}'"));
        }
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {explained}"), &[])
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan on orders"),
            "{filter:?} scans the orders:\n{plan}"
        );
        match filter.status {
            Some(stockroom_domain::OrderStatus::Reserved) if filter.customer_id.is_none() => {
                assert!(plan.contains("open_orders"), "{filter:?}:\n{plan}");
            }
            Some(
                stockroom_domain::OrderStatus::Rejected | stockroom_domain::OrderStatus::Cancelled,
            ) if filter.customer_id.is_none() => {
                assert!(
                    plan.contains("orders_by_other_status"),
                    "{filter:?}:\n{plan}"
                );
            }
            _ => {}
        }
    }
    drop(client);
    test.remove().await;
}

/// The outbox vacuum keeps the table's pages after every event was
/// acknowledged: the next events fill them again (see
/// [`vacuum::OUTBOX_VACUUM`]).
#[tokio::test]
async fn the_outbox_vacuum_keeps_the_pages_a_queue_fills_again() {
    let Some(test) = TestSchema::open("vacuum", 1).await else {
        return;
    };
    let client = test.storage.pool.get().await.expect("a connection");
    client
        .batch_execute(
            "INSERT INTO outbox (consumer, events, states, live, due_at_ms)
             SELECT 'payment', '[[\"OrderReserved\",\"o' || n || '\",1,1,0,null,null,null]]',
                    '[[1,0,0,null,0,null]]', 1, 0
             FROM generate_series(1, 500) AS n;
             DELETE FROM outbox;",
        )
        .await
        .expect("events written and acknowledged");
    let pages = || async {
        client
            .query_one(
                "SELECT pg_relation_size('outbox') / current_setting('block_size')::bigint",
                &[],
            )
            .await
            .expect("the outbox's size")
            .get::<_, i64>(0)
    };
    let before = pages().await;
    assert!(before > 0, "the events took pages");
    client
        .batch_execute(vacuum::OUTBOX_VACUUM)
        .await
        .expect("the vacuum runs");
    assert_eq!(pages().await, before, "the vacuum kept every page");
    drop(client);
    test.remove().await;
}
