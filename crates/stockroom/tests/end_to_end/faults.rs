//! Faults: every acknowledged order settles through a broker outage longer
//! than any delivery limit, PostgreSQL sessions terminated mid-storm, a
//! data-service that starts two minutes after the rest, a payment slower
//! than the lease on two payment-service instances, and a full disk; and
//! `stockroom chaos --smoke` passes.
//!
//! The tests that stop a shared server hold the shared-servers lock for
//! writing, so no other test of this binary sees their fault.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockroom_bus_rabbitmq::{RabbitAdmin, Topology};
use stockroom_lab::{CheckConfig, HistorySource, RetryPolicy, StormConfig};
use stockroom_launcher::system::{BusChoice, DatabaseChoice};

use crate::bus::rabbit_url;
use crate::harness::{
    TestSystem, all_orders, faulting_shared_servers, get, laptops, postgres_url, stock,
    unique_name, using_shared_servers,
};

/// How long a test waits for orders to settle after a fault is healed: a
/// consumer reconnecting to a restarted broker backs off up to 5 s, and the
/// broker itself takes a few seconds to start.
const RECOVERY_TIMEOUT_MS: u64 = 90_000;

/// The delivery limit the queues once had: after this many failed publishes
/// the relay dead-lettered an event. An outage now costs no attempt at all.
const OLD_DELIVERY_LIMIT: u64 = 10;

/// Waits until `predicate` holds for the order.
async fn wait_for_status(test: &TestSystem, id: &str, timeout_ms: u64, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let order = test.order(id).await;
        if order["status"] == status {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} never became {status}: {order}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times an order's history says it was charged.
fn charges(order: &Value) -> usize {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["reason"] == "payment_charged")
        .count()
}

/// The broker stopped for as long as this lives; started again on drop,
/// even when the test fails.
struct StoppedBroker;

impl StoppedBroker {
    fn stop() -> StoppedBroker {
        let status = Command::new("rabbitmqctl")
            .arg("stop_app")
            .stdout(Stdio::null())
            .status()
            .expect("rabbitmqctl runs (the broker tests need it on PATH)");
        assert!(status.success(), "rabbitmqctl stop_app failed: {status}");
        StoppedBroker
    }
}

impl Drop for StoppedBroker {
    fn drop(&mut self) {
        for command in [&["start_app"][..], &["await_startup"][..]] {
            let _ = Command::new("rabbitmqctl")
                .args(command)
                .stdout(Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_longer_than_the_old_give_up_loses_nothing() {
    let Some(url) = rabbit_url() else { return };
    let _servers = faulting_shared_servers().await;
    let topology = Topology::with_prefix(&unique_name("stockroom_test_outage"));
    let test = TestSystem::start(|config| {
        config.bus = BusChoice::RabbitMq {
            url: url.clone(),
            topology: topology.clone(),
        };
        // The relay retries every 100 ms: in the outage below it fails far
        // more often than the old delivery limit allowed.
        config.relay.max_backoff_ms = 100;
        config.stock = Some(stock(&[("Laptop", 1_000)]));
    })
    .await;
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        let (status, body) = test.place(laptops(1)).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(body["order"]["id"].as_str().unwrap().to_owned());
    }
    for id in &acknowledged {
        wait_for_status(&test, id, RECOVERY_TIMEOUT_MS, "fulfilled").await;
    }

    let broker = StoppedBroker::stop();
    // The outbox keeps accepting orders while the broker is away.
    for _ in 0..10 {
        let (status, body) = test.place(laptops(1)).await;
        assert_eq!(status, 201, "an order during the outage: {body}");
        acknowledged.push(body["order"]["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    let health = loop {
        let (code, health) = get(&test.client, &test.data_url("/health")).await;
        let failed = health["parts"]["relay"]["detail"]["failedRounds"]
            .as_u64()
            .unwrap_or(0);
        if code == 503 && failed >= OLD_DELIVERY_LIMIT * 3 {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never reported the outage: {code} {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health["parts"]["relay"]["status"], "down", "{health}");
    drop(broker);

    for id in &acknowledged {
        let order = wait_for_status(&test, id, RECOVERY_TIMEOUT_MS, "fulfilled").await;
        assert_eq!(charges(&order), 1, "{order}");
    }
    for consumer in [
        stockroom_domain::Consumer::Payment,
        stockroom_domain::Consumer::Inventory,
    ] {
        let dead = test
            .system
            .storage
            .dead_letter_count(consumer)
            .await
            .unwrap();
        assert_eq!(dead, 0, "an outage dead-lettered events of {consumer:?}");
    }
    test.stop().await;
    if let Ok(admin) = RabbitAdmin::connect(&url).await {
        let _ = admin.delete(&topology).await;
    }
}

/// A storm with idempotency keys and retries, as the campaigns run it.
fn storm(order_url: &str, duration: Duration, products: &[&str]) -> StormConfig {
    let mut config = StormConfig::new(order_url, 0);
    config.orders = None;
    config.duration = Some(duration);
    config.concurrency = 16;
    config.products = products.iter().map(|name| (*name).to_owned()).collect();
    config.hot_share = 0.5;
    config.idempotency = true;
    config.retry = RetryPolicy {
        max_attempts: stockroom_lab::storm::MAX_RETRY_ATTEMPTS,
        backoff_ms: 100,
    };
    config.keep_history = true;
    config
}

/// Checks every invariant against the storm's history once the system is
/// quiet, and fails the test with the checker's report otherwise.
async fn assert_settled_once(
    test: &TestSystem,
    history: Vec<stockroom_lab::HistoryEvent>,
    initial: &[(&str, i64)],
) {
    let quiet = stockroom_chaos::settle::wait_quiet(
        std::slice::from_ref(&test.system.urls.data),
        RECOVERY_TIMEOUT_MS,
    )
    .await;
    assert!(quiet.is_some(), "orders stayed pending or reserved");
    let mut check = CheckConfig::new(&test.system.urls.order, &test.system.urls.data);
    check.history = HistorySource::Events(history);
    check.initial_stock = Some(
        initial
            .iter()
            .map(|(name, units)| (name.to_lowercase(), *units))
            .collect(),
    );
    check.stuck_after_ms = 0;
    let report = stockroom_lab::run_check(&check).await.unwrap();
    assert!(report.passed, "{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sessions_terminated_mid_storm_lose_nothing() {
    let Some(postgres) = postgres_url() else {
        return;
    };
    let _servers = using_shared_servers().await;
    let name = unique_name("sessions");
    let application_name = format!("stockroom_{name}");
    let separator = if postgres.contains('?') { '&' } else { '?' };
    let database_url =
        format!("{postgres}{separator}schema={name}&application_name={application_name}");
    let directory = tempfile::tempdir().unwrap();
    let initial = [("Laptop", 300), ("Phone", 1_000_000)];
    let test = TestSystem::start(|config| {
        config.database = DatabaseChoice::from_url(Some(&database_url), directory.path());
        config.stock = Some(stock(&[("Laptop", 300), ("Phone", 1_000_000)]));
    })
    .await;

    let terminator = tokio::spawn({
        let postgres = postgres.clone();
        let application_name = application_name.clone();
        async move {
            let mut terminated = 0;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(700)).await;
                terminated +=
                    stockroom_storage_postgres::terminate_sessions(&postgres, &application_name)
                        .await
                        .unwrap();
            }
            terminated
        }
    });
    let report = stockroom_lab::run_storm(storm(
        &test.system.urls.order,
        Duration::from_secs(9),
        &["Laptop", "Phone"],
    ))
    .await
    .unwrap();
    let terminated = terminator.await.unwrap();
    assert!(terminated > 0, "no session was ever terminated");
    assert!(report.summary.reserved > 0, "{}", report.summary.render());
    assert_settled_once(&test, report.history, &initial).await;
    test.stop().await;
    let _ = stockroom_storage_postgres::drop_schema(&postgres, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_slower_than_the_lease_is_charged_once_by_two_instances() {
    const LATENCY_MS: u64 = 1_500;
    const LEASE_MS: u64 = 400;
    const ORDERS: usize = 6;
    let test = TestSystem::start(|config| {
        config.payment_latency_ms = LATENCY_MS;
        config.lease_ms = LEASE_MS;
    })
    .await;
    let (listener, _) =
        stockroom_launcher::system::bind("payment-service", [127, 0, 0, 1].into(), 0)
            .await
            .unwrap();
    let second = stockroom_launcher::system::payment_service(
        listener,
        stockroom_payment_service::PaymentConfig {
            data_url: test.system.urls.data.clone(),
            latency_ms: LATENCY_MS,
            decline_rate: 0.0,
            internal_token: test.system.internal_token.clone(),
        },
        &BusChoice::Embedded,
        LEASE_MS,
    );
    let mut ids = Vec::new();
    for _ in 0..ORDERS {
        let (status, body) = test.place(laptops(1)).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["order"]["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let order = wait_for_status(&test, id, RECOVERY_TIMEOUT_MS, "fulfilled").await;
        assert_eq!(charges(&order), 1, "{order}");
    }
    let (_, stats) = get(&test.client, &test.data_url("/provider/stats")).await;
    assert_eq!(stats["charged"], ORDERS, "{stats}");
    assert_eq!(stats["ordersChargedTwice"], 0, "{stats}");
    assert!(
        stats["repeatedRequests"].as_u64().unwrap() >= 1,
        "the lease never ran out under a charge, so the test proved nothing: {stats}"
    );
    second.stop().await.unwrap();
    test.stop().await;
}

/// The processes of a test, killed when it ends however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(service: &str, port: u16, arguments: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stockroom"))
        .args(["serve", service, "--port", &port.to_string()])
        .args(arguments)
        // The services log every 10 s that they still wait; that is the
        // behaviour under test, not news for the test's output.
        .env("STOCKROOM_LOG", "error")
        .env(
            "STOCKROOM_INTERNAL_TOKEN",
            "test-token-for-the-late-start-test-0123456789",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("stockroom serve starts")
}

/// How late data-service starts after the services that need it.
const DATA_SERVICE_DELAY_MS: u64 = 120_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_started_before_data_service_wait_for_it_and_work() {
    let client = reqwest::Client::new();
    let directory = tempfile::tempdir().unwrap();
    let [data, inventory, payment, order] = [free_port(), free_port(), free_port(), free_port()];
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let data_url = url(data);
    let mut processes = Processes(vec![
        serve("inventory", inventory, &["--data-url", &data_url]),
        serve("payment", payment, &["--data-url", &data_url]),
        serve(
            "order",
            order,
            &["--data-url", &data_url, "--inventory-url", &url(inventory)],
        ),
    ]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for port in [inventory, payment, order] {
        let (status, health) = get(&client, &format!("{}/health", url(port))).await;
        assert_eq!(status, 503, "healthy without data-service: {health}");
    }
    let (status, body) =
        crate::harness::post(&client, &format!("{}/api/orders", url(order)), laptops(1)).await;
    assert_eq!(status, 503, "an order without data-service: {body}");

    tokio::time::sleep(Duration::from_millis(DATA_SERVICE_DELAY_MS)).await;
    for child in &mut processes.0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "a service gave up waiting"
        );
    }
    let data_directory = directory.path().display().to_string();
    processes
        .0
        .push(serve("data", data, &["--data-dir", &data_directory]));
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    for port in [data, inventory, payment, order] {
        loop {
            let healthy = client
                .get(format!("{}/health", url(port)))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the service on port {port} never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (status, body) =
        crate::harness::post(&client, &format!("{}/api/orders", url(order)), laptops(1)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["order"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    loop {
        let (_, body) = get(&client, &format!("{data_url}/orders/{id}")).await;
        if body["order"]["status"] == "fulfilled" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late order was never paid: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(processes);
}

/// A small tmpfs mounted for one test; unmounted on drop.
struct SmallDisk {
    directory: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let directory = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(directory.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "cannot mount a tmpfs: {status}");
        SmallDisk { directory }
    }

    fn path(&self) -> &std::path::Path {
        self.directory.path()
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.directory.path())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_and_writes_resume_when_space_returns() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the full-disk test, which mounts a tmpfs and so needs root"
        );
        eprintln!("skipped: mounting a small disk needs root");
        return;
    }
    let disk = SmallDisk::mount("4m");
    let test = TestSystem::start(|config| {
        config.database = DatabaseChoice::Sqlite {
            data_dir: disk.path().to_owned(),
        };
    })
    .await;
    let (status, body) = test.place(laptops(1)).await;
    assert_eq!(status, 201, "{body}");
    let first = body["order"]["id"].as_str().unwrap().to_owned();
    wait_for_status(&test, &first, RECOVERY_TIMEOUT_MS, "fulfilled").await;

    let filler = disk.fill();
    // Writes fail as soon as the database needs a page it does not have;
    // every answer is a 201 or a 503 naming the cause, never a 500. A batch
    // whose COMMIT failed may yet be found complete by SQLite's recovery, so
    // its orders answer `outcome_unknown`, and the client retries with the
    // same key.
    let mut acknowledged = vec![first.clone()];
    let mut refused = None;
    for attempt in 0..200 {
        let key = format!("full-disk-{attempt}");
        let (status, body) = test.place_keyed(laptops(1), &key).await;
        match status {
            201 => acknowledged.push(body["order"]["id"].as_str().unwrap().to_owned()),
            503 => {
                refused = Some((key, body));
                break;
            }
            other => panic!("a full disk answered {other}: {body}"),
        }
    }
    let (refused_key, refused) = refused.expect("a full disk never refused an order");
    assert_eq!(
        refused["error"], "outcome_unknown",
        "a failed commit must not say nothing was written: {refused}"
    );
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    loop {
        let (status, health) = get(&test.client, &test.data_url("/health")).await;
        if status == 503 && health["parts"]["storage"]["status"] == "down" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed green on a full disk: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    loop {
        let (status, _) = get(&test.client, &test.data_url("/health")).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never recovered after space returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = test.place(laptops(1)).await;
    assert_eq!(status, 201, "writes did not resume: {body}");
    acknowledged.push(body["order"]["id"].as_str().unwrap().to_owned());
    // The retry of the order whose outcome was unknown is answered with one
    // order, created now or replayed, and a second retry is that same order.
    let (status, retried) = test.place_keyed(laptops(1), &refused_key).await;
    assert_eq!(status, 201, "the retry with the same key failed: {retried}");
    let retried_id = retried["order"]["id"].as_str().unwrap().to_owned();
    let (status, again) = test.place_keyed(laptops(1), &refused_key).await;
    assert_eq!((status, &again["order"]["id"]), (201, &json!(retried_id)));
    acknowledged.push(retried_id);
    let orders = all_orders(&test.client, &test.system.urls.data).await;
    for id in &acknowledged {
        assert!(
            orders.iter().any(|order| order["id"] == json!(id)),
            "acknowledged order {id} is gone"
        );
    }
    test.stop().await;
    drop(disk);
}

#[test]
fn the_chaos_smoke_campaign_passes() {
    if postgres_url().is_none() || rabbit_url().is_none() {
        return;
    }
    let _servers = crate::harness::faulting_shared_servers_blocking();
    let output = Command::new(env!("CARGO_BIN_EXE_stockroom"))
        .args([
            "chaos",
            "--smoke",
            "--seed",
            "20261122",
            "--json",
            "--port-offset",
            "26000",
        ])
        .env("STOCKROOM_DATABASE_URL", postgres_url().unwrap())
        .env("STOCKROOM_BUS_URL", rabbit_url().unwrap())
        .stderr(Stdio::inherit())
        .output()
        .expect("stockroom chaos runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "chaos printed no report ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert!(output.status.success(), "{report:#}");
    assert_eq!(report["passed"], true, "{report:#}");
    for figure in ["lost", "duplicated", "charged_twice", "oversold", "stuck"] {
        assert_eq!(report[figure], 0, "{figure}: {report:#}");
    }
    for kind in [
        "broker_outage",
        "broker_connections_closed",
        "database_restart",
        "database_sessions_terminated",
        "link_cut",
        "link_slow",
        "kill",
        "pause",
    ] {
        assert!(
            report["faults"][kind].as_u64().unwrap() >= 1,
            "no {kind} was injected: {report:#}"
        );
    }
    assert!(report["acknowledged"].as_u64().unwrap() > 0);
}
