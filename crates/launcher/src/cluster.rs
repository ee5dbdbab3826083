//! `stockroom cluster`: a local launcher that runs N processes of every
//! service (`stockroom serve …`) over one shared database and broker.
//!
//! Instance `i` of a service listens on its default port plus `10·i` (order
//! 3001, 3011, …; data 3002, 3012, …), shifted by `port_offset`. Every
//! order-service knows every inventory-service and data-service instance, and
//! every consumer knows every data-service instance: calls are spread
//! round-robin and skip an instance that refuses connections. Services start
//! in dependency order (data, then inventory and payment, then order), each
//! waited for until healthy.
//!
//! Each process is the running executable started again with `serve`
//! arguments, so a cluster is launched from the `stockroom` binary (its
//! `cluster` and `chaos` commands) and nowhere else. Secrets (the internal
//! token, the database's and the broker's URLs with their passwords) reach
//! each child in its environment, and only the children that use them: a
//! command line is visible to every user of the machine (`ps`), a process's
//! environment only to its owner.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::system::{DATA_PORT, INVENTORY_PORT, ORDER_PORT, PAYMENT_PORT};

/// The most instances of each service the launcher starts.
pub const MAX_INSTANCES: u16 = 9;

/// The distance between two instances' ports.
pub const PORT_STRIDE: u16 = 10;

/// How often the launcher checks whether a child has died.
pub const CHILD_CHECK_INTERVAL_MS: u64 = 500;

/// The variable a data-service child reads its database's URL from (the
/// `--database-url` of `serve data`).
pub const DATABASE_URL_ENV: &str = "STOCKROOM_DATABASE_URL";

/// The variable a child reads the broker's URL from (the `--bus-url` of
/// `serve data`, `serve inventory` and `serve payment`).
pub const BUS_URL_ENV: &str = "STOCKROOM_BUS_URL";

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub instances: u16,
    pub database_url: String,
    pub bus_url: Option<String>,
    pub inventory_file: Option<PathBuf>,
    pub port_offset: u16,
    pub host: String,
    /// Extra arguments for every payment-service (latency, decline rate).
    pub payment_args: Vec<String>,
    /// Extra arguments for every inventory-service (TTL, sweep interval).
    pub inventory_args: Vec<String>,
    /// Extra arguments for every data-service.
    pub data_args: Vec<String>,
    /// The inventory-service URLs order-service calls, when not the
    /// instances' own (a chaos campaign puts its proxies there).
    pub inventory_urls_for_order: Option<Vec<String>>,
    /// The data-service URLs the consumers call, when not the instances' own.
    pub data_urls_for_consumers: Option<Vec<String>>,
    /// Variables set in every child's environment.
    pub environment: Vec<(String, String)>,
    /// Variables set in data-service children's environment only: the
    /// webhooks' settings, which no other service needs to hold.
    pub data_environment: Vec<(String, String)>,
    /// The operator's secret, handed to data-service children (which serve
    /// the operator's routes) and inventory-service children (whose auditor
    /// replays the ledger) in their environment.
    pub operator_token: Option<stockroom_http_kit::OperatorToken>,
    /// The secret of the services' internal routes, handed to every child
    /// in its environment (never on its command line, which every user of
    /// the machine can read).
    pub internal_token: stockroom_http_kit::InternalToken,
    /// When set, each child's standard error is appended to
    /// `<service>-<index>.log` there instead of the launcher's.
    pub log_directory: Option<PathBuf>,
}

impl ClusterConfig {
    /// The port of instance `index` of the service whose first instance's
    /// default port is `base`.
    pub fn port(&self, base: u16, index: u16) -> u16 {
        base + self.port_offset + PORT_STRIDE * index
    }

    /// The URL instance `index` listens on.
    pub fn url(&self, base: u16, index: u16) -> String {
        format!("http://{}:{}", self.host, self.port(base, index))
    }

    /// Every instance's URL of the service whose default port is `base`.
    pub fn urls(&self, base: u16) -> Vec<String> {
        (0..self.instances)
            .map(|index| self.url(base, index))
            .collect()
    }
}

/// One child process of the cluster, with what it takes to start it again.
pub struct Instance {
    pub service: &'static str,
    pub index: u16,
    pub url: String,
    program: PathBuf,
    arguments: Vec<String>,
    environment: Vec<(String, String)>,
    log: Option<PathBuf>,
    child: Child,
    /// Set once the launcher has reported this process's death.
    exited: bool,
}

impl Instance {
    /// Starts one `stockroom` process with `arguments` (a launcher of its
    /// own, such as a chaos campaign's `up` target).
    pub fn start(
        service: &'static str,
        index: u16,
        url: String,
        arguments: Vec<String>,
        environment: Vec<(String, String)>,
        log: Option<PathBuf>,
    ) -> anyhow::Result<Instance> {
        let program = std::env::current_exe().context("cannot find the stockroom executable")?;
        let child = spawn(&program, &arguments, &environment, log.as_deref())
            .with_context(|| format!("cannot start {service} #{index}"))?;
        Ok(Instance {
            service,
            index,
            url,
            program,
            arguments,
            environment,
            log,
            child,
            exited: false,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `signal` (a `kill` signal name such as `KILL`, `STOP`, `CONT`)
    /// to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("{}-service #{} is not running", self.service, self.index))?;
        send_signal(pid, signal)
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills the process (SIGKILL, no chance to finish anything) and waits
    /// for it to be gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill().ok();
        self.child
            .wait()
            .await
            .with_context(|| format!("cannot reap {}-service #{}", self.service, self.index))?;
        Ok(())
    }

    /// Starts the process again with the arguments it first had. The old
    /// one must be gone.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(
            &self.program,
            &self.arguments,
            &self.environment,
            self.log.as_deref(),
        )
        .with_context(|| format!("cannot restart {}-service #{}", self.service, self.index))?;
        self.exited = false;
        Ok(())
    }
}

/// Sends a signal by name to a process.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .context("cannot run kill")?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed: {status}");
    Ok(())
}

fn spawn(
    program: &Path,
    arguments: &[String],
    environment: &[(String, String)],
    log: Option<&Path>,
) -> std::io::Result<Child> {
    let stderr = match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => Stdio::inherit(),
    };
    Command::new(program)
        .args(arguments)
        // A secret this launcher inherited goes only to the children it
        // hands it to (`environment`), never to all of them.
        .env_remove(DATABASE_URL_ENV)
        .env_remove(BUS_URL_ENV)
        .envs(environment.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
}

/// The running cluster.
pub struct Cluster {
    pub instances: Vec<Instance>,
}

impl Cluster {
    pub fn urls(&self, service: &str) -> Vec<String> {
        self.instances
            .iter()
            .filter(|instance| instance.service == service)
            .map(|instance| instance.url.clone())
            .collect()
    }

    /// Sends SIGTERM to every child (order-services first) and waits for each.
    pub async fn stop(mut self) {
        for service in ["order", "inventory", "payment", "data"] {
            for instance in self
                .instances
                .iter_mut()
                .filter(|instance| instance.service == service)
            {
                terminate(&mut instance.child).await;
            }
        }
    }

    /// Waits for Ctrl-C or SIGTERM, reporting children that die meanwhile.
    pub async fn supervise(&mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(Duration::from_millis(CHILD_CHECK_INTERVAL_MS)) => {}
            }
            for instance in &mut self.instances {
                if instance.exited {
                    continue;
                }
                if let Ok(Some(status)) = instance.child.try_wait() {
                    tracing::error!(
                        service = instance.service,
                        index = instance.index,
                        url = %instance.url,
                        %status,
                        "a cluster process died; the other instances keep serving"
                    );
                    eprintln!(
                        "stockroom cluster: {}-service #{} ({}) exited with {status}",
                        instance.service, instance.index, instance.url
                    );
                    instance.exited = true;
                }
            }
        }
    }
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SIGTERM lets the service finish its requests in flight.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// The services in the order they start: data-service first (its first
/// instance alone, since it applies the migrations and loads the stock, so
/// the others find both done), then the consumers, then order-service.
const START_ORDER: [(&str, u16); 4] = [
    ("data", DATA_PORT),
    ("inventory", INVENTORY_PORT),
    ("payment", PAYMENT_PORT),
    ("order", ORDER_PORT),
];

/// Starts every process and waits until each is healthy.
pub async fn start(config: &ClusterConfig) -> anyhow::Result<Cluster> {
    anyhow::ensure!(
        (1..=MAX_INSTANCES).contains(&config.instances),
        "--instances must be from 1 to {MAX_INSTANCES}"
    );
    let wiring = Wiring::of(config)?;
    let client = stockroom_http_kit::direct_client()
        .build()
        .context("cannot build the health-check client")?;
    let mut cluster = Cluster {
        instances: Vec::new(),
    };
    for (service, base) in START_ORDER {
        for index in 0..config.instances {
            let instance = start_instance(config, &wiring, service, base, index)?;
            let url = instance.url.clone();
            // Pushed before the wait, so that a failure stops it with the rest.
            cluster.instances.push(instance);
            if service == "data" && index == 0 {
                stockroom_http_kit::wait_for_health(&client, "data-service #0", &url).await?;
            }
        }
        for instance in cluster
            .instances
            .iter()
            .filter(|instance| instance.service == service)
        {
            stockroom_http_kit::wait_for_health(&client, service, &instance.url).await?;
        }
    }
    Ok(cluster)
}

/// What every process of a cluster is started with besides its own service
/// and port: the executable, its environment, and where the others are.
struct Wiring {
    executable: PathBuf,
    /// What every child's environment holds (the internal token with it).
    environment: Vec<(String, String)>,
    /// The database's URL, for data-service children only.
    database_url: (String, String),
    /// The other variables of data-service children only.
    data_environment: Vec<(String, String)>,
    /// The operator token's variable, for data and inventory children.
    operator_token: Option<(String, String)>,
    /// The broker's URL, for the children that use the broker.
    bus_url: Option<(String, String)>,
    /// The inventory-service URLs order-service calls, comma-separated.
    inventory_for_order: String,
    /// The data-service URLs the consumers call, comma-separated.
    data_for_consumers: String,
    /// The data-service URLs order-service calls, comma-separated.
    data_for_order: String,
}

impl Wiring {
    fn of(config: &ClusterConfig) -> anyhow::Result<Wiring> {
        let mut environment = config.environment.clone();
        environment.push((
            stockroom_http_kit::INTERNAL_TOKEN_ENV.to_owned(),
            config.internal_token.expose().to_owned(),
        ));
        Ok(Wiring {
            executable: std::env::current_exe().context("cannot find the stockroom executable")?,
            environment,
            database_url: (DATABASE_URL_ENV.to_owned(), config.database_url.clone()),
            data_environment: config.data_environment.clone(),
            operator_token: config.operator_token.as_ref().map(|token| {
                (
                    stockroom_http_kit::OPERATOR_TOKEN_ENV.to_owned(),
                    token.expose().to_owned(),
                )
            }),
            bus_url: config
                .bus_url
                .as_ref()
                .map(|url| (BUS_URL_ENV.to_owned(), url.clone())),
            inventory_for_order: config
                .inventory_urls_for_order
                .clone()
                .unwrap_or_else(|| config.urls(INVENTORY_PORT))
                .join(","),
            data_for_consumers: config
                .data_urls_for_consumers
                .clone()
                .unwrap_or_else(|| config.urls(DATA_PORT))
                .join(","),
            data_for_order: config.urls(DATA_PORT).join(","),
        })
    }

    /// The environment of a `service` child: everyone's, and the secrets
    /// that service needs.
    fn environment_of(&self, service: &str) -> Vec<(String, String)> {
        let mut environment = self.environment.clone();
        if service == "data" {
            environment.push(self.database_url.clone());
            environment.extend(self.data_environment.iter().cloned());
        }
        if matches!(service, "data" | "inventory" | "payment") {
            environment.extend(self.bus_url.clone());
        }
        if matches!(service, "data" | "inventory") {
            environment.extend(self.operator_token.clone());
        }
        environment
    }
}

/// Starts instance `index` of `service`, whose first instance listens on
/// `base`, logging to its own file when the cluster has a log directory.
fn start_instance(
    config: &ClusterConfig,
    wiring: &Wiring,
    service: &'static str,
    base: u16,
    index: u16,
) -> anyhow::Result<Instance> {
    let arguments = serve_arguments(config, wiring, service, base, index);
    let environment = wiring.environment_of(service);
    let log = config
        .log_directory
        .as_ref()
        .map(|directory| directory.join(format!("{service}-{index}.log")));
    let child = spawn(&wiring.executable, &arguments, &environment, log.as_deref())
        .with_context(|| format!("cannot start {service}-service #{index}"))?;
    Ok(Instance {
        service,
        index,
        url: config.url(base, index),
        program: wiring.executable.clone(),
        arguments,
        environment,
        log,
        child,
        exited: false,
    })
}

/// The `stockroom serve <service>` command line of one instance: no secret
/// on it (see [`Wiring::environment_of`]).
fn serve_arguments(
    config: &ClusterConfig,
    wiring: &Wiring,
    service: &str,
    base: u16,
    index: u16,
) -> Vec<String> {
    let mut arguments = vec![
        "serve".to_owned(),
        service.to_owned(),
        "--host".to_owned(),
        config.host.clone(),
        "--port".to_owned(),
        config.port(base, index).to_string(),
    ];
    match service {
        "data" => {
            arguments.extend(config.data_args.iter().cloned());
            if let Some(file) = &config.inventory_file {
                arguments.extend(["--inventory".to_owned(), file.display().to_string()]);
            }
        }
        "inventory" | "payment" => {
            arguments.extend(["--data-url".to_owned(), wiring.data_for_consumers.clone()]);
            let extra = if service == "payment" {
                &config.payment_args
            } else {
                &config.inventory_args
            };
            arguments.extend(extra.iter().cloned());
        }
        _ => {
            arguments.extend([
                "--inventory-url".to_owned(),
                wiring.inventory_for_order.clone(),
            ]);
            arguments.extend(["--data-url".to_owned(), wiring.data_for_order.clone()]);
        }
    }
    arguments
}
