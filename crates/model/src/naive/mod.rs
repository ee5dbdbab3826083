//! The original system's protocol as a model, so that the checker finds its
//! races by itself: the same steps as `crates/naive` and the original
//! write-ups, modelled the way Stockroom is.
//!
//! - data-service rewrites whole files: each write loads the file when the
//!   call arrives and saves the changed copy over it at a later step, with
//!   no lock and no version check, so two writes in between overwrite each
//!   other;
//! - order-service answers `pending`, publishes the order's event to the
//!   worker, and cancels by reading the order, releasing its stock, and
//!   writing its (by then possibly stale) copy back as cancelled;
//! - the inventory worker asks "is there stock?" and then reserves in a
//!   second call, pays, commits the stock and fulfils, and runs the whole
//!   flow again for a redelivered event: nothing records what it handled;
//! - the provider charges every request it gets.

mod actors;
mod properties;

pub use actors::Status;
pub use actors::{NaiveMsg, NaiveService, NaiveState, NaiveTimer};
pub use properties::RACES;

use stateright::actor::{ActorModel, ActorModelState, LossyNetwork, Network};

use crate::bounds::Bounds;
use crate::run::Recipe;
use crate::system::{FaultBudget, System, SystemState};

pub type NaiveSystem = System<NaiveService>;

/// Where each service of the original system sits among the actors.
pub const DATA: usize = 0;
pub const ORDER: usize = 1;
pub const WORKER: usize = 2;
pub const FIRST_CLIENT: usize = 3;

/// One run of the original system's model and the races it looks for.
#[derive(Clone, Copy, Debug)]
pub struct NaiveRun {
    pub name: &'static str,
    pub clients: u8,
    pub stock: u8,
    pub cancels: bool,
    pub duplicates: u8,
    /// The races this run looks for; it stops once it found them all.
    pub races: &'static [&'static str],
}

/// Each race shows with the fewest clients and faults it needs: two
/// customers for the last laptop (oversell, lost status update), one order
/// whose event is delivered twice (double processing), one order cancelled
/// while it is being fulfilled (stale order status).
pub const NAIVE_RUNS: [NaiveRun; 3] = [
    NaiveRun {
        name: "two customers, one laptop",
        clients: 2,
        stock: 1,
        cancels: false,
        duplicates: 0,
        races: &["oversell", "lost_update"],
    },
    NaiveRun {
        name: "a redelivered event",
        clients: 1,
        stock: 1,
        cancels: false,
        duplicates: 1,
        races: &["double_processing"],
    },
    NaiveRun {
        name: "a cancel during fulfilment",
        clients: 1,
        stock: 1,
        cancels: true,
        duplicates: 0,
        races: &["stale_order_status"],
    },
];

fn never(_: &ActorModelState<NaiveService>, _: usize, _: &NaiveTimer) -> bool {
    false
}

fn nothing_to_lose(_: &ActorModelState<NaiveService>, _: usize) -> bool {
    false
}

/// The original system within `run`'s bounds.
pub fn system(run: &NaiveRun) -> NaiveSystem {
    let mut actors = ActorModel::new((), ())
        .actor(NaiveService::Data { stock: run.stock })
        .actor(NaiveService::Order)
        .actor(NaiveService::Worker)
        .init_network(Network::new_unordered_nonduplicating([]))
        .lossy_network(LossyNetwork::No);
    for client in 0..run.clients {
        let cancels = run.cancels && client + 1 == run.clients;
        actors = actors.actor(NaiveService::Client { client, cancels });
    }
    System {
        actors,
        budget: FaultBudget {
            duplicates: run.duplicates,
            ..FaultBudget::default()
        },
        crashable: Vec::new(),
        properties: properties::all(),
        timer_fault: never,
        worth_crashing: nothing_to_lose,
        worth_duplicating: |msg| matches!(msg, NaiveMsg::Event { .. }),
    }
}

/// The original system's model, ready to check.
pub fn recipe(run: NaiveRun, bounds: &Bounds) -> Recipe<NaiveService> {
    Recipe {
        build: Box::new(move || system(&run)),
        summary,
        depth: bounds.depth,
    }
}

/// Runs each of [`NAIVE_RUNS`] until it found its races, and reports
/// every race with its shortest counterexample.
pub fn check(bounds: &Bounds) -> crate::Report {
    let reports = NAIVE_RUNS
        .iter()
        .map(|run| recipe(*run, bounds).hunt("naive", run.name, run.races))
        .collect();
    crate::Report::merge("naive", reports)
}

fn summary(state: &SystemState<NaiveService>) -> String {
    properties::files(state).summary()
}
