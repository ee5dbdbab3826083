//! Striking the system: each fault of the schedule applied to the running
//! stage, held, and undone; a supervisor that restarts a process that died
//! on its own (as systemd or Kubernetes would) and counts it; and the heal
//! that undoes everything at the end.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use stockroom_launcher::cluster::CHILD_CHECK_INTERVAL_MS;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::proxy::LinkState;
use crate::schedule::{Fault, FaultKind, Target};
use crate::stage::Stage;

/// The longest an operator command (`rabbitmqctl`, `pg_ctlcluster`) may take.
pub const COMMAND_TIMEOUT_MS: u64 = 120_000;

/// The shell commands that stop, start and cut the servers. The defaults
/// are those of a Debian machine with RabbitMQ and PostgreSQL installed as
/// packages; a campaign against containers passes its own.
#[derive(Debug, Clone)]
pub struct Commands {
    pub broker_stop: String,
    pub broker_start: String,
    pub broker_close_connections: String,
    pub database_restart: String,
}

impl Default for Commands {
    fn default() -> Self {
        Commands {
            broker_stop: "rabbitmqctl stop_app".to_owned(),
            broker_start: "rabbitmqctl start_app".to_owned(),
            broker_close_connections: "rabbitmqctl close_all_connections 'stockroom chaos'"
                .to_owned(),
            database_restart:
                "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"
                    .to_owned(),
        }
    }
}

/// What a process fault does to its process.
enum Action {
    Kill,
    Restart,
    Signal(&'static str),
}

/// One fault as it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct Struck {
    /// When it struck, in seconds from the start of the storm.
    pub at_s: f64,
    pub kind: FaultKind,
    pub target: String,
    pub hold_ms: u64,
    /// Why it could not be carried out, if it could not.
    pub error: Option<String>,
}

pub struct Injector {
    stage: Stage,
    commands: Commands,
    began: Instant,
    /// Targets a fault holds now: the supervisor leaves them alone.
    struck: Mutex<BTreeSet<Target>>,
    log: Mutex<Vec<Struck>>,
    unexpected_exits: AtomicU64,
    /// Print each fault as it strikes (not with `--json`).
    verbose: bool,
}

impl Injector {
    pub fn new(stage: Stage, commands: Commands, began: Instant, verbose: bool) -> Injector {
        Injector {
            stage,
            commands,
            began,
            struck: Mutex::new(BTreeSet::new()),
            log: Mutex::new(Vec::new()),
            unexpected_exits: AtomicU64::new(0),
            verbose,
        }
    }

    /// The stage back, once every fault is over.
    pub fn into_stage(self) -> Stage {
        self.stage
    }

    /// Applies `fault`, holds it, undoes it, and records what happened.
    pub async fn strike(&self, fault: Fault) {
        let at_s = self.began.elapsed().as_secs_f64();
        if self.verbose {
            eprintln!(
                "chaos: +{at_s:7.1} s  {:<28} {} for {} ms",
                fault.kind.name(),
                fault.target,
                fault.hold_ms
            );
        }
        self.struck.lock().await.insert(fault.target);
        let result = self.apply(fault).await;
        self.struck.lock().await.remove(&fault.target);
        if let Err(error) = &result {
            eprintln!(
                "chaos: {} of {} failed: {error:#}",
                fault.kind.name(),
                fault.target
            );
        }
        self.log.lock().await.push(Struck {
            at_s,
            kind: fault.kind,
            target: fault.target.to_string(),
            hold_ms: fault.hold_ms,
            error: result.err().map(|error| format!("{error:#}")),
        });
    }

    async fn apply(&self, fault: Fault) -> anyhow::Result<()> {
        let hold = Duration::from_millis(fault.hold_ms);
        match fault.kind {
            FaultKind::Kill => {
                self.process(fault.target, Action::Kill).await?;
                tokio::time::sleep(hold).await;
                self.process(fault.target, Action::Restart).await
            }
            FaultKind::Pause => {
                self.process(fault.target, Action::Signal("STOP")).await?;
                tokio::time::sleep(hold).await;
                self.process(fault.target, Action::Signal("CONT")).await
            }
            FaultKind::BrokerOutage => {
                let stopped = run_command(&self.commands.broker_stop).await;
                tokio::time::sleep(hold).await;
                // Started whatever the stop did: a half-stopped broker is
                // worse than one that was never stopped.
                run_command(&self.commands.broker_start).await?;
                stopped
            }
            FaultKind::BrokerConnectionsClosed => {
                run_command(&self.commands.broker_close_connections).await
            }
            FaultKind::DatabaseRestart => run_command(&self.commands.database_restart).await,
            FaultKind::DatabaseSessionsTerminated => {
                let database = self
                    .stage
                    .database
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("this system has no database server"))?;
                stockroom_storage_postgres::terminate_sessions(
                    &database.url,
                    &database.application_name,
                )
                .await?;
                Ok(())
            }
            FaultKind::LinkCut | FaultKind::LinkSlow => {
                let Target::Link(link) = fault.target else {
                    anyhow::bail!("a link fault needs a link");
                };
                let proxies = self
                    .stage
                    .proxies
                    .get(&link)
                    .ok_or_else(|| anyhow::anyhow!("no proxy on {}", link.name()))?;
                let state = if fault.kind == FaultKind::LinkCut {
                    LinkState::Cut
                } else {
                    LinkState::Slow
                };
                proxies.iter().for_each(|proxy| proxy.set(state));
                tokio::time::sleep(hold).await;
                proxies
                    .iter()
                    .for_each(|proxy| proxy.set(LinkState::Healthy));
                Ok(())
            }
        }
    }

    async fn process(&self, target: Target, action: Action) -> anyhow::Result<()> {
        let mut processes = self.stage.processes.lock().await;
        let index = Stage::process_index(&processes, target)
            .ok_or_else(|| anyhow::anyhow!("no process is {target}"))?;
        let instance = &mut processes[index];
        match action {
            Action::Kill => instance.kill().await,
            Action::Restart => instance.restart(),
            Action::Signal(signal) => instance.signal(signal),
        }
    }

    /// Until `stop`: restarts any process that exited while no fault held
    /// it, and counts it.
    pub async fn supervise(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(CHILD_CHECK_INTERVAL_MS)) => {}
            }
            self.restart_the_dead(true).await;
        }
    }

    async fn restart_the_dead(&self, unexpected: bool) {
        let struck = self.struck.lock().await.clone();
        let mut processes = self.stage.processes.lock().await;
        for instance in processes.iter_mut() {
            let target = match instance.service {
                "system" => Target::System,
                name => match crate::schedule::Service::ALL
                    .into_iter()
                    .find(|service| service.name() == name)
                {
                    Some(service) => Target::Process {
                        service,
                        index: instance.index,
                    },
                    None => continue,
                },
            };
            if struck.contains(&target) || !instance.has_exited() {
                continue;
            }
            if unexpected {
                self.unexpected_exits.fetch_add(1, Ordering::Relaxed);
                eprintln!("chaos: {target} exited on its own; restarting it");
            }
            if let Err(error) = instance.restart() {
                eprintln!("chaos: {error:#}");
            }
        }
    }

    /// Undoes everything: links healed, the broker started, every process
    /// resumed and running.
    pub async fn heal(&self) -> anyhow::Result<()> {
        for proxies in self.stage.proxies.values() {
            proxies
                .iter()
                .for_each(|proxy| proxy.set(LinkState::Healthy));
        }
        if self.stage.broker.is_some() {
            run_command(&self.commands.broker_start).await?;
        }
        {
            let processes = self.stage.processes.lock().await;
            for instance in processes.iter() {
                let _ = instance.signal("CONT");
            }
        }
        self.restart_the_dead(true).await;
        Ok(())
    }

    pub async fn log(&self) -> Vec<Struck> {
        self.log.lock().await.clone()
    }

    pub fn unexpected_exits(&self) -> u64 {
        self.unexpected_exits.load(Ordering::Relaxed)
    }
}

/// Runs an operator command through `sh -c`, bounded by
/// [`COMMAND_TIMEOUT_MS`].
pub async fn run_command(command: &str) -> anyhow::Result<()> {
    let output = tokio::time::timeout(
        Duration::from_millis(COMMAND_TIMEOUT_MS),
        tokio::process::Command::new("sh")
            .args(["-c", command])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("`{command}` took longer than {COMMAND_TIMEOUT_MS} ms"))?
    .map_err(|error| anyhow::anyhow!("cannot run `{command}`: {error}"))?;
    anyhow::ensure!(
        output.status.success(),
        "`{command}` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
