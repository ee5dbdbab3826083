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

use std::path::PathBuf;
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
}

/// One child process of the cluster.
pub struct Instance {
    pub service: &'static str,
    pub index: u16,
    pub url: String,
    child: Child,
    /// Set once the launcher has reported this process's death.
    exited: bool,
}

impl Instance {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
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

/// Starts every process and waits until each is healthy.
pub async fn start(config: &ClusterConfig) -> anyhow::Result<Cluster> {
    anyhow::ensure!(
        (1..=MAX_INSTANCES).contains(&config.instances),
        "--instances must be from 1 to {MAX_INSTANCES}"
    );
    let executable = std::env::current_exe().context("cannot find the stockroom executable")?;
    let port = |base: u16, index: u16| base + config.port_offset + PORT_STRIDE * index;
    let url = |base: u16, index: u16| format!("http://{}:{}", config.host, port(base, index));
    let all = |base: u16| {
        (0..config.instances)
            .map(|index| url(base, index))
            .collect::<Vec<_>>()
            .join(",")
    };
    let client = reqwest::Client::new();
    let mut cluster = Cluster {
        instances: Vec::new(),
    };
    let mut bus_args = Vec::new();
    if let Some(bus_url) = &config.bus_url {
        bus_args = vec!["--bus-url".to_owned(), bus_url.clone()];
    }
    // Data-service 0 first and alone: it applies the migrations and loads
    // the stock, so the others find both done.
    for (service, base) in [
        ("data", DATA_PORT),
        ("inventory", INVENTORY_PORT),
        ("payment", PAYMENT_PORT),
        ("order", ORDER_PORT),
    ] {
        for index in 0..config.instances {
            let mut arguments = vec![
                "serve".to_owned(),
                service.to_owned(),
                "--host".to_owned(),
                config.host.clone(),
                "--port".to_owned(),
                port(base, index).to_string(),
            ];
            match service {
                "data" => {
                    arguments.extend(["--database-url".to_owned(), config.database_url.clone()]);
                    arguments.extend(bus_args.clone());
                    arguments.extend(config.data_args.iter().cloned());
                    if let Some(file) = &config.inventory_file {
                        arguments.extend(["--inventory".to_owned(), file.display().to_string()]);
                    }
                }
                "inventory" | "payment" => {
                    arguments.extend(["--data-url".to_owned(), all(DATA_PORT)]);
                    arguments.extend(bus_args.clone());
                    let extra = if service == "payment" {
                        &config.payment_args
                    } else {
                        &config.inventory_args
                    };
                    arguments.extend(extra.iter().cloned());
                }
                _ => {
                    arguments.extend(["--inventory-url".to_owned(), all(INVENTORY_PORT)]);
                    arguments.extend(["--data-url".to_owned(), all(DATA_PORT)]);
                }
            }
            let child = Command::new(&executable)
                .args(&arguments)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {service}-service #{index}"))?;
            let instance = Instance {
                service: match service {
                    "data" => "data",
                    "inventory" => "inventory",
                    "payment" => "payment",
                    _ => "order",
                },
                index,
                url: url(base, index),
                child,
                exited: false,
            };
            if service == "data" && index == 0 {
                let healthy =
                    stockroom_http_kit::wait_for_health(&client, "data-service #0", &instance.url)
                        .await;
                cluster.instances.push(instance);
                healthy?;
            } else {
                cluster.instances.push(instance);
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
