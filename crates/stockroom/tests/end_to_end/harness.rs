//! Starting a system for one test, and small HTTP helpers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockroom_contract::StockLine;
use stockroom_domain::ProductName;
use stockroom_launcher::system::{self, Ports, RunningSystem, SystemConfig};

/// The longest a test waits for the order flow to settle.
pub const SETTLE_TIMEOUT_MS: u64 = 20_000;

pub struct TestSystem {
    pub system: RunningSystem,
    pub client: reqwest::Client,
    pub directory: tempfile::TempDir,
}

pub fn stock(lines: &[(&str, u64)]) -> Vec<StockLine> {
    lines
        .iter()
        .map(|(name, quantity)| StockLine {
            product_name: ProductName::new(name).unwrap(),
            quantity: *quantity,
        })
        .collect()
}

impl TestSystem {
    /// A fresh system on ephemeral ports with the built-in stock, adjusted by
    /// `configure`.
    pub async fn start(configure: impl FnOnce(&mut SystemConfig)) -> TestSystem {
        let directory = tempfile::tempdir().unwrap();
        let mut config = SystemConfig::new(directory.path());
        config.ports = Ports::EPHEMERAL;
        configure(&mut config);
        let system = system::start(config).await.expect("system starts");
        TestSystem {
            client: authorized_client(&system.internal_token),
            system,
            directory,
        }
    }

    pub fn order_url(&self, path: &str) -> String {
        format!("{}{path}", self.system.urls.order)
    }

    pub fn data_url(&self, path: &str) -> String {
        format!("{}{path}", self.system.urls.data)
    }

    pub async fn place(&self, body: Value) -> (u16, Value) {
        post(&self.client, &self.order_url("/api/orders"), body).await
    }

    /// Places an order with an `Idempotency-Key`.
    pub async fn place_keyed(&self, body: Value, key: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.order_url("/api/orders"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn item(&self, product: &str) -> Value {
        get(
            &self.client,
            &self.data_url(&format!("/inventory/{product}")),
        )
        .await
        .1["item"]
            .clone()
    }

    pub async fn order(&self, id: &str) -> Value {
        get(&self.client, &self.order_url(&format!("/api/orders/{id}")))
            .await
            .1["order"]
            .clone()
    }

    /// Waits until `predicate` holds for the order, or fails the test.
    pub async fn wait_for_order(&self, id: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
        loop {
            let order = self.order(id).await;
            if predicate(&order) {
                return order;
            }
            assert!(
                Instant::now() < deadline,
                "order never reached the expected state: {order}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until no order holds a reservation any more.
    pub async fn wait_until_settled(&self) {
        let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
        loop {
            let (_, page) = get(
                &self.client,
                &self.order_url("/api/orders?status=reserved&limit=1"),
            )
            .await;
            if page["orders"].as_array().unwrap().is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "orders stayed reserved: {page}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every order, all pages.
    pub async fn all_orders(&self) -> Vec<Value> {
        all_orders(&self.client, &self.system.urls.data).await
    }

    pub async fn stop(self) {
        self.system.stop().await.expect("clean stop");
    }
}

/// A client that sends the system's internal token with every request, as
/// the services do among themselves (public routes ignore it).
pub fn authorized_client(token: &stockroom_http_kit::InternalToken) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, token.header_value());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub async fn all_orders(client: &reqwest::Client, data_url: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(cursor) => format!("{data_url}/orders?limit=500&after={cursor}"),
            None => format!("{data_url}/orders?limit=500"),
        };
        let (status, page) = get(client, &url).await;
        assert_eq!(status, 200, "{page}");
        orders.extend(page["orders"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(cursor) => after = Some(cursor.to_owned()),
            None => return orders,
        }
    }
}

pub async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub fn laptops(quantity: u32) -> Value {
    json!({"productName": "Laptop", "quantity": quantity, "customerId": "c1"})
}

/// Checks the stock invariants of every product against every order:
/// nothing negative, reserved equals what reserved orders hold, and
/// conservation (received = on hand + sold, sold = what fulfilled orders hold).
pub fn assert_stock_reconciles(inventory: &[Value], orders: &[Value]) {
    for item in inventory {
        let name = item["productName"].as_str().unwrap();
        let quantity = item["quantity"].as_i64().unwrap();
        let reserved = item["reservedQuantity"].as_i64().unwrap();
        let sold = item["sold"].as_i64().unwrap();
        let held_by = |status: &str| -> i64 {
            orders
                .iter()
                .filter(|order| order["status"] == status)
                .flat_map(|order| order["items"].as_array().unwrap().iter())
                .filter(|line| line["product"]["name"] == name)
                .map(|line| line["quantity"].as_i64().unwrap())
                .sum()
        };
        assert!(item["available"].as_i64().unwrap() >= 0, "{item}");
        assert!(reserved <= quantity, "{item}");
        assert_eq!(reserved, held_by("reserved"), "reserved of {name}");
        assert_eq!(sold, held_by("fulfilled"), "sold of {name}");
        assert_eq!(
            item["received"].as_i64().unwrap(),
            quantity + sold,
            "conservation of {name}"
        );
    }
}

/// Tests that stop or restart a server the whole test binary shares (the
/// broker, the database server) hold this for writing; tests that use those
/// servers hold it for reading, so that no test sees another's fault.
static SHARED_SERVERS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by a test that uses PostgreSQL or RabbitMQ.
pub async fn using_shared_servers() -> tokio::sync::RwLockReadGuard<'static, ()> {
    SHARED_SERVERS.read().await
}

/// Held by a test that stops or restarts PostgreSQL or RabbitMQ.
pub async fn faulting_shared_servers() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    SHARED_SERVERS.write().await
}

/// The URL in the environment variable `variable`, or `None` when the tests
/// that need it are to be skipped. Under CI a missing URL fails the test:
/// those tests must never pass by skipping.
pub fn server_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{variable} is not set, and CI must run the tests that need it")
        }
        _ => {
            eprintln!("skipped: {variable} is not set");
            None
        }
    }
}

/// The PostgreSQL URL for tests (see [`server_url`]).
pub fn postgres_url() -> Option<String> {
    server_url("STOCKROOM_TEST_POSTGRES_URL")
}

/// A name no other test run uses: lower-case letters, digits and `_`.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{nanos}_{}", std::process::id())
}

/// [`using_shared_servers`] for a test that is not async.
pub fn using_shared_servers_blocking() -> tokio::sync::RwLockReadGuard<'static, ()> {
    SHARED_SERVERS.blocking_read()
}

/// [`faulting_shared_servers`] for a test that is not async.
pub fn faulting_shared_servers_blocking() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    SHARED_SERVERS.blocking_write()
}

/// Every port of `stockroom up` picked free (`--…-port 0`), the order port
/// first.
pub const EPHEMERAL_UP_PORTS: [&str; 10] = [
    "--order-port",
    "0",
    "--data-port",
    "0",
    "--inventory-port",
    "0",
    "--payment-port",
    "0",
    "--dashboard-port",
    "0",
];

/// A spawned `stockroom up`, killed and reaped when dropped: a test that
/// fails part way leaves no process behind holding its ports and its data
/// directory. It is the child otherwise (`Deref`), so a test can still send
/// it a signal and wait for its exit status.
pub struct UpProcess(std::process::Child);

impl std::ops::Deref for UpProcess {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for UpProcess {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        // Both fail harmlessly when the test already ended the process.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `stockroom up --data-dir DIR` with `extra` arguments and
/// environment on free ports, and returns the process and its ready line.
pub fn spawn_up(
    data_dir: &std::path::Path,
    extra: &[&str],
    environment: &[(&str, &str)],
) -> (UpProcess, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stockroom"));
    command.args(["up", "--data-dir"]).arg(data_dir);
    spawn_ready(command, extra, environment)
}

/// [`spawn_up`] in a process whose open-file limit is `open_files`, soft
/// and hard, so that it cannot raise it: started through the shell's
/// `ulimit`, which the process then replaces (`exec`), as an operator's
/// shell would start it.
pub fn spawn_up_with_file_limit(
    data_dir: &std::path::Path,
    open_files: u64,
    extra: &[&str],
) -> (UpProcess, String) {
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_stockroom"))
        .args(["up", "--data-dir"])
        .arg(data_dir);
    spawn_ready(command, extra, &[])
}

/// Starts `command` (a `stockroom up`) on free ports and waits for its
/// ready line.
fn spawn_ready(
    mut command: std::process::Command,
    extra: &[&str],
    environment: &[(&str, &str)],
) -> (UpProcess, String) {
    use std::io::BufRead;

    let mut process = UpProcess(
        command
            .args(EPHEMERAL_UP_PORTS)
            .args(extra)
            .env("STOCKROOM_LOG", "warn")
            .envs(environment.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("stockroom starts"),
    );
    let mut line = String::new();
    std::io::BufReader::new(process.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("the ready line is read");
    assert!(
        line.starts_with("stockroom ready:"),
        "unexpected first line: {line:?}"
    );
    (process, line)
}

/// The URL a ready line gives for `name` (`order=…`).
pub fn ready_url(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in the ready line {line:?}"))
        .to_owned()
}

/// A fresh SQLite store in `directory`, opened as data-service opens it,
/// with the built-in stock.
pub async fn open_sqlite_storage(
    directory: &std::path::Path,
) -> std::sync::Arc<dyn stockroom_storage::Storage> {
    let database = system::DatabaseChoice::Sqlite {
        data_dir: directory.to_owned(),
    };
    system::open_storage(
        &database,
        false,
        None,
        stockroom_storage_sqlite::WriterConfig::default(),
        system::GroupCommitConfig::default(),
    )
    .await
    .unwrap()
}
