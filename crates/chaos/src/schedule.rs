//! The fault schedule of a chaos campaign: which fault strikes what, when,
//! and for how long, decided from a seed and the campaign's plan alone.
//!
//! The schedule is pure (no clock, no I/O), so `--seed` replays a campaign
//! exactly and its properties are tested without a system: every fault
//! starts inside the campaign, a kind gets its share of the slots, kills
//! visit every service, and no fault ever takes down the last healthy
//! instance of a service (a campaign checks recovery, not a total outage of
//! one service, which no deployment survives).

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A service a process fault can strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Order,
    Inventory,
    Payment,
    Data,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Order,
        Service::Inventory,
        Service::Payment,
        Service::Data,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Inventory => "inventory",
            Service::Payment => "payment",
            Service::Data => "data",
        }
    }
}

/// A connection between services that the campaign routes through a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// order-service's calls to inventory-service.
    OrderToInventory,
    /// The consumers' (inventory-service and payment-service) calls to
    /// data-service.
    ConsumersToData,
}

impl Link {
    pub const ALL: [Link; 2] = [Link::OrderToInventory, Link::ConsumersToData];

    pub fn name(self) -> &'static str {
        match self {
            Link::OrderToInventory => "order->inventory",
            Link::ConsumersToData => "consumers->data",
        }
    }
}

/// What a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One process of a cluster.
    Process {
        service: Service,
        index: u16,
    },
    /// The one process of an `up` system.
    System,
    Broker,
    Database,
    Link(Link),
}

impl std::fmt::Display for Target {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Process { service, index } => {
                write!(formatter, "{}-service #{index}", service.name())
            }
            Target::System => formatter.write_str("the system process"),
            Target::Broker => formatter.write_str("the broker"),
            Target::Database => formatter.write_str("the database"),
            Target::Link(link) => write!(formatter, "the {} link", link.name()),
        }
    }
}

/// The kinds of fault, named as the report counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `kill -9` of a process, restarted after the hold.
    Kill,
    /// SIGSTOP of a process for the hold (longer than the lease), then SIGCONT.
    Pause,
    /// The broker stopped for the hold, then started.
    BrokerOutage,
    /// Every connection to the broker closed at once.
    BrokerConnectionsClosed,
    /// The database server restarted.
    DatabaseRestart,
    /// Every session of the system's database user terminated at once.
    DatabaseSessionsTerminated,
    /// A link refuses and drops every connection for the hold.
    LinkCut,
    /// A link delays every chunk of data for the hold.
    LinkSlow,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::BrokerOutage,
        FaultKind::BrokerConnectionsClosed,
        FaultKind::DatabaseRestart,
        FaultKind::DatabaseSessionsTerminated,
        FaultKind::LinkCut,
        FaultKind::LinkSlow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::BrokerOutage => "broker_outage",
            FaultKind::BrokerConnectionsClosed => "broker_connections_closed",
            FaultKind::DatabaseRestart => "database_restart",
            FaultKind::DatabaseSessionsTerminated => "database_sessions_terminated",
            FaultKind::LinkCut => "link_cut",
            FaultKind::LinkSlow => "link_slow",
        }
    }

    /// The share of the regular slots this kind gets, in percent. The broker
    /// outage and the database restart are not drawn: each campaign has
    /// exactly one of each, placed on its own.
    fn share_percent(self) -> u64 {
        match self {
            FaultKind::Kill => 45,
            FaultKind::Pause => 25,
            FaultKind::DatabaseSessionsTerminated => 8,
            FaultKind::BrokerConnectionsClosed => 6,
            FaultKind::LinkCut => 8,
            FaultKind::LinkSlow => 8,
            FaultKind::BrokerOutage | FaultKind::DatabaseRestart => 0,
        }
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// When it strikes, from the start of the storm.
    pub at_ms: u64,
    pub kind: FaultKind,
    pub target: Target,
    /// How long it lasts before it is undone (for a kill: the time the
    /// process stays dead).
    pub hold_ms: u64,
}

/// What the system under test is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Processes per service; 0 for an `up` system (one process for all).
    pub instances: u16,
    /// A broker the campaign may stop (RabbitMQ).
    pub broker: bool,
    /// A database server the campaign may restart (PostgreSQL).
    pub database: bool,
    /// Links routed through the campaign's proxies.
    pub links: bool,
}

impl Topology {
    fn offers(&self, kind: FaultKind) -> bool {
        match kind {
            FaultKind::Kill | FaultKind::Pause => true,
            FaultKind::BrokerOutage | FaultKind::BrokerConnectionsClosed => self.broker,
            FaultKind::DatabaseRestart | FaultKind::DatabaseSessionsTerminated => self.database,
            FaultKind::LinkCut | FaultKind::LinkSlow => self.links,
        }
    }
}

/// The campaign's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// How long the storm runs; every fault starts inside it.
    pub duration_ms: u64,
    /// The mean distance between two regular faults.
    pub fault_interval_ms: u64,
    /// The shortest pause; each pause lasts this plus up to half again.
    pub pause_ms: u64,
    /// How long the one broker outage lasts.
    pub broker_outage_ms: u64,
    /// How long a cut or slowed link stays so.
    pub link_hold_ms: u64,
    /// How long a killed process stays dead before it is restarted.
    pub dead_ms: u64,
    /// How long a restarted process is given to become healthy again before
    /// it counts as an instance another fault may strike.
    pub recovery_ms: u64,
}

/// Faults start after this share of the storm (in percent), so the report's
/// first seconds show the system healthy, …
const QUIET_START_PERCENT: u64 = 10;

/// … and before this share, so most faults end while the storm still runs.
const LAST_START_PERCENT: u64 = 85;

/// Draws the campaign's faults from `seed`, sorted by start.
pub fn schedule(seed: u64, plan: &Plan, topology: &Topology) -> Vec<Fault> {
    assert!(
        plan.fault_interval_ms > 0,
        "the fault interval must be positive"
    );
    // The phases draw from one random source in a fixed order (outages, the
    // deck, the services' order, then each slot), so a seed always gives
    // the same schedule.
    let mut draw = Draw::new(seed, plan, topology);
    let mut faults = draw.outages();
    let deck = draw.deck();
    faults.extend(draw.regular_faults(deck));
    faults.sort_by_key(|fault| (fault.at_ms, fault.kind));
    faults
}

/// One drawing of a schedule: the seeded random source, the windows already
/// taken, and the span in which faults may start.
struct Draw<'a> {
    random: ChaCha8Rng,
    busy: Busy,
    plan: &'a Plan,
    topology: &'a Topology,
    /// The earliest start of a fault.
    first_ms: u64,
    /// The latest start of a fault.
    last_ms: u64,
}

impl<'a> Draw<'a> {
    fn new(seed: u64, plan: &'a Plan, topology: &'a Topology) -> Draw<'a> {
        Draw {
            random: ChaCha8Rng::seed_from_u64(seed),
            busy: Busy::default(),
            plan,
            topology,
            first_ms: plan.duration_ms * QUIET_START_PERCENT / 100,
            last_ms: plan.duration_ms * LAST_START_PERCENT / 100,
        }
    }

    /// The one long outage of each server, each at its own random time.
    fn outages(&mut self) -> Vec<Fault> {
        let mut faults = Vec::new();
        for (offered, kind, target, hold_ms) in [
            (
                self.topology.broker,
                FaultKind::BrokerOutage,
                Target::Broker,
                self.plan.broker_outage_ms,
            ),
            (
                self.topology.database,
                FaultKind::DatabaseRestart,
                Target::Database,
                0,
            ),
        ] {
            if !offered {
                continue;
            }
            let latest = self.last_ms.saturating_sub(hold_ms).max(self.first_ms);
            let at_ms = self.random.random_range(self.first_ms..=latest);
            // The server takes a while to stop and to start again around the
            // hold; nothing else strikes it meanwhile.
            self.busy
                .hold(target, at_ms, at_ms + hold_ms + self.plan.recovery_ms);
            faults.push(Fault {
                at_ms,
                kind,
                target,
                hold_ms,
            });
        }
        faults
    }

    /// The kinds of the regular slots, one per slot, shuffled. The shares
    /// are counted out before shuffling so that every seed has the same mix.
    fn deck(&mut self) -> Vec<FaultKind> {
        let slots =
            (self.last_ms.saturating_sub(self.first_ms) / self.plan.fault_interval_ms) as usize;
        let kinds: Vec<FaultKind> = FaultKind::ALL
            .into_iter()
            .filter(|kind| self.topology.offers(*kind) && kind.share_percent() > 0)
            .collect();
        let mut deck = Vec::with_capacity(slots);
        for (kind, count) in shares(slots, &kinds) {
            deck.extend(std::iter::repeat_n(kind, count));
        }
        deck.resize(slots, FaultKind::Kill);
        deck.shuffle(&mut self.random);
        deck
    }

    /// Each slot of the deck at its time, on a target free then; a slot
    /// that finds none is left out.
    fn regular_faults(&mut self, deck: Vec<FaultKind>) -> Vec<Fault> {
        // Kills go round the services in a shuffled order, so every kind of
        // service is killed about as often.
        let mut services = Service::ALL;
        services.shuffle(&mut self.random);
        let mut next_service = 0;
        let mut faults = Vec::new();
        for (slot, kind) in deck.into_iter().enumerate() {
            let at_ms = self.first_ms
                + slot as u64 * self.plan.fault_interval_ms
                + self
                    .random
                    .random_range(0..self.plan.fault_interval_ms / 2 + 1);
            let hold_ms = self.hold_ms(kind);
            let (at_ms, target) = match kind {
                FaultKind::Kill | FaultKind::Pause => (
                    at_ms,
                    self.process_target(kind, at_ms, &services, &mut next_service),
                ),
                _ => self.server_or_link_target(kind, at_ms),
            };
            let Some(target) = target else {
                continue;
            };
            let recovery_ms = match kind {
                FaultKind::Kill => self.plan.recovery_ms,
                _ => 0,
            };
            self.busy.hold(target, at_ms, at_ms + hold_ms + recovery_ms);
            faults.push(Fault {
                at_ms,
                kind,
                target,
                hold_ms,
            });
        }
        faults
    }

    /// How long a regular fault of `kind` lasts.
    fn hold_ms(&mut self, kind: FaultKind) -> u64 {
        match kind {
            FaultKind::Pause => {
                self.plan.pause_ms + self.random.random_range(0..=self.plan.pause_ms / 2)
            }
            FaultKind::Kill => self.plan.dead_ms,
            FaultKind::LinkCut | FaultKind::LinkSlow => self.plan.link_hold_ms,
            _ => 0,
        }
    }

    /// The process a kill or a pause at `at_ms` strikes: the one process of
    /// an `up` system, or a free instance of the next service in turn (kills)
    /// or of a random one (pauses) that leaves another instance unharmed.
    fn process_target(
        &mut self,
        kind: FaultKind,
        at_ms: u64,
        services: &[Service; 4],
        next_service: &mut usize,
    ) -> Option<Target> {
        if self.topology.instances == 0 {
            return Some(Target::System).filter(|target| self.busy.is_free(*target, at_ms));
        }
        let start = if kind == FaultKind::Kill {
            *next_service += 1;
            *next_service - 1
        } else {
            self.random.random_range(0..services.len())
        };
        (0..services.len())
            .map(|step| services[(start + step) % services.len()])
            .find_map(|service| {
                self.busy
                    .free_instance(&mut self.random, service, self.topology.instances, at_ms)
            })
    }

    /// The server or link a fault strikes, and when: a server or a link
    /// struck already is struck again once that fault is over, if the
    /// campaign is not.
    fn server_or_link_target(&mut self, kind: FaultKind, at_ms: u64) -> (u64, Option<Target>) {
        let target = match kind {
            FaultKind::LinkCut | FaultKind::LinkSlow => {
                Target::Link(Link::ALL[self.random.random_range(0..Link::ALL.len())])
            }
            FaultKind::BrokerConnectionsClosed => Target::Broker,
            _ => Target::Database,
        };
        let free_ms = self.busy.free_from(target, at_ms);
        (free_ms, Some(target).filter(|_| free_ms <= self.last_ms))
    }
}

/// How many of the `slots` each of `kinds` gets: its share, and every kind
/// at least once when there are slots enough, so that even a short campaign
/// exercises each; the largest shares give way first.
fn shares(slots: usize, kinds: &[FaultKind]) -> Vec<(FaultKind, usize)> {
    let offered_percent: u64 = kinds.iter().map(|kind| kind.share_percent()).sum();
    let mut shares: Vec<(FaultKind, usize)> = kinds
        .iter()
        .map(|kind| {
            let share = slots as u64 * kind.share_percent() / offered_percent.max(1);
            (*kind, (share as usize).max(1))
        })
        .collect();
    while shares.iter().map(|(_, count)| count).sum::<usize>() > slots {
        let Some(largest) = shares.iter_mut().max_by_key(|(_, count)| *count) else {
            break;
        };
        if largest.1 == 0 {
            break;
        }
        largest.1 -= 1;
    }
    shares
}

/// When each target is struck, so that a target is never struck twice at
/// once and a service always keeps one instance unharmed.
#[derive(Default)]
struct Busy {
    windows: BTreeMap<Target, Vec<(u64, u64)>>,
}

impl Busy {
    fn hold(&mut self, target: Target, from_ms: u64, until_ms: u64) {
        self.windows
            .entry(target)
            .or_default()
            .push((from_ms, until_ms));
    }

    /// Free from `at_ms` on: no window of it ends after that. Windows only
    /// ever end later than earlier ones start, since slots go in order; the
    /// outages placed first are the exception, and they count too.
    fn is_free(&self, target: Target, at_ms: u64) -> bool {
        self.windows.get(&target).is_none_or(|windows| {
            windows
                .iter()
                .all(|(from_ms, until_ms)| *until_ms <= at_ms || *from_ms > at_ms)
        })
    }

    /// The earliest time from `at_ms` on when `target` is free.
    fn free_from(&self, target: Target, mut at_ms: u64) -> u64 {
        while let Some(until_ms) = self.windows.get(&target).and_then(|windows| {
            windows
                .iter()
                .filter(|(from_ms, until_ms)| *from_ms <= at_ms && at_ms < *until_ms)
                .map(|(_, until_ms)| *until_ms)
                .max()
        }) {
            at_ms = until_ms;
        }
        at_ms
    }

    /// A free instance of `service` whose fault leaves another instance of
    /// it free, or `None`.
    fn free_instance(
        &self,
        random: &mut ChaCha8Rng,
        service: Service,
        instances: u16,
        at_ms: u64,
    ) -> Option<Target> {
        let free: Vec<Target> = (0..instances)
            .map(|index| Target::Process { service, index })
            .filter(|target| self.is_free(*target, at_ms))
            .collect();
        if free.len() < 2 {
            return None;
        }
        Some(free[random.random_range(0..free.len())])
    }
}

/// How many faults of each kind a schedule holds, every kind named (0 when
/// absent), as the report prints them.
pub fn counts(faults: &[Fault]) -> BTreeMap<&'static str, u64> {
    let mut counts: BTreeMap<&'static str, u64> = FaultKind::ALL
        .into_iter()
        .map(|kind| (kind.name(), 0))
        .collect();
    for fault in faults {
        *counts.entry(fault.kind.name()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE_MS: u64 = 10_000;

    fn full_plan() -> Plan {
        Plan {
            duration_ms: 600_000,
            fault_interval_ms: 8_000,
            pause_ms: LEASE_MS * 3 / 2,
            broker_outage_ms: 180_000,
            link_hold_ms: 10_000,
            dead_ms: 2_000,
            recovery_ms: 10_000,
        }
    }

    fn cluster() -> Topology {
        Topology {
            instances: 2,
            broker: true,
            database: true,
            links: true,
        }
    }

    #[test]
    fn a_seed_replays_its_schedule() {
        let plan = full_plan();
        assert_eq!(
            schedule(7, &plan, &cluster()),
            schedule(7, &plan, &cluster())
        );
        assert_ne!(
            schedule(7, &plan, &cluster()),
            schedule(8, &plan, &cluster())
        );
    }

    #[test]
    fn a_full_campaign_has_every_fault_the_figures_need() {
        let plan = full_plan();
        for seed in 0..50 {
            let faults = schedule(seed, &plan, &cluster());
            let counts = counts(&faults);
            assert!(counts["kill"] >= 20, "seed {seed}: {counts:?}");
            assert!(counts["pause"] >= 10, "seed {seed}: {counts:?}");
            assert_eq!(counts["broker_outage"], 1);
            assert_eq!(counts["database_restart"], 1);
            for service in Service::ALL {
                assert!(
                    faults.iter().any(|fault| fault.kind == FaultKind::Kill
                        && matches!(fault.target, Target::Process { service: struck, .. } if struck == service)),
                    "seed {seed}: {} was never killed",
                    service.name()
                );
            }
            assert!(
                faults
                    .iter()
                    .all(|fault| fault.kind != FaultKind::Pause || fault.hold_ms > LEASE_MS)
            );
            assert!(
                faults
                    .iter()
                    .any(|fault| fault.kind == FaultKind::BrokerOutage && fault.hold_ms >= 180_000)
            );
        }
    }

    #[test]
    fn a_short_campaign_still_has_every_kind() {
        let plan = Plan {
            duration_ms: 45_000,
            fault_interval_ms: 2_500,
            pause_ms: 4_500,
            broker_outage_ms: 8_000,
            link_hold_ms: 3_000,
            dead_ms: 600,
            recovery_ms: 3_000,
        };
        for seed in 0..50 {
            let counts = counts(&schedule(seed, &plan, &cluster()));
            // Kills and pauses may find no free target; the rest always fit.
            for kind in FaultKind::ALL {
                if !matches!(kind, FaultKind::Kill | FaultKind::Pause) {
                    assert!(counts[kind.name()] >= 1, "seed {seed}: {counts:?}");
                }
            }
            assert!(
                counts["kill"] >= 1 && counts["pause"] >= 1,
                "seed {seed}: {counts:?}"
            );
        }
    }

    #[test]
    fn faults_start_inside_the_storm_in_order() {
        let plan = full_plan();
        let faults = schedule(3, &plan, &cluster());
        assert!(faults.windows(2).all(|pair| pair[0].at_ms <= pair[1].at_ms));
        assert!(faults.iter().all(|fault| fault.at_ms >= plan.duration_ms / 10
            && fault.at_ms < plan.duration_ms));
    }

    #[test]
    fn every_service_keeps_an_instance_unharmed() {
        let plan = full_plan();
        for seed in 0..50 {
            let faults = schedule(seed, &plan, &cluster());
            for fault in &faults {
                let Target::Process { service, .. } = fault.target else {
                    continue;
                };
                let struck_then = faults
                    .iter()
                    .filter(|other| {
                        matches!(other.target, Target::Process { service: s, .. } if s == service)
                            && other.at_ms <= fault.at_ms
                            && fault.at_ms < other.at_ms + other.hold_ms
                    })
                    .count();
                assert!(
                    struck_then < 2,
                    "seed {seed}: both {} instances struck at {} ms",
                    service.name(),
                    fault.at_ms
                );
            }
        }
    }

    #[test]
    fn an_up_system_gets_only_process_faults() {
        let topology = Topology {
            instances: 0,
            broker: false,
            database: false,
            links: false,
        };
        let faults = schedule(1, &full_plan(), &topology);
        assert!(!faults.is_empty());
        assert!(faults.iter().all(|fault| fault.target == Target::System
            && matches!(fault.kind, FaultKind::Kill | FaultKind::Pause)));
        // One process: two faults on it never overlap.
        assert!(
            faults
                .windows(2)
                .all(|pair| pair[0].at_ms + pair[0].hold_ms <= pair[1].at_ms)
        );
    }
}
