//! Stockroom's model checker: the real decision rules of `stockroom_domain`
//! (the `Book` and the `Outbox`), called, not copied, and driven by
//! [stateright] through every interleaving of the order protocol within
//! bounds: clients placing, retrying and cancelling orders under
//! idempotency keys, order-service, data-service deciding and writing as a
//! backend does, payment-service charging through the provider's ledger,
//! inventory-service settling and sweeping, the clock letting reservations
//! and leases run out; and the faults, each bounded: crashed services,
//! duplicated messages, calls that time out.
//!
//! [`Bounds`] says how much is explored; [`check_stockroom`] checks every
//! property and every broken variant ([`Mutant`]); [`check_naive`] checks
//! the original system's protocol and finds its races. `docs/model.md`
//! tells what is modelled, what is not, and why.

pub mod bounds;
pub mod clock;
pub mod messages;
pub mod mutants;
pub mod naive;
pub mod properties;
mod render;
pub mod run;
pub mod service;
pub mod stockroom;
pub mod store;
pub mod system;
pub mod trace;

pub use bounds::{Bounds, ChosenBounds, DEFAULT_RUNS, MUTANT_BOUNDS, Run, SMOKE_RUNS};
pub use mutants::Mutant;
pub use run::{MutantVerdict, PropertyVerdict, Recipe, Report, RunSummary};

use properties::StockroomState;

/// The Stockroom model within `bounds` (or a broken variant of it), ready
/// to check.
pub fn stockroom_recipe(bounds: Bounds, mutant: Option<Mutant>) -> Recipe<service::Service> {
    Recipe {
        build: Box::new(move || stockroom::system(&bounds, mutant)),
        summary,
        depth: bounds.depth,
    }
}

/// Checks Stockroom in each of `runs` on `threads` threads; with
/// `mutants`, runs every broken variant through the same model too, within
/// [`MUTANT_BOUNDS`], until its first counterexample.
pub fn check_stockroom(runs: &[Run], threads: usize, mutants: bool) -> Report {
    let reports = runs
        .iter()
        .map(|run| stockroom_recipe(run.bounds, None).check("stockroom", run.name, threads))
        .collect();
    let mut report = Report::merge("stockroom", reports);
    if mutants {
        let bounds = MUTANT_BOUNDS;
        report.mutants = Mutant::ALL
            .into_iter()
            .map(|mutant| {
                let failure = stockroom_recipe(bounds, Some(mutant)).first_failure();
                MutantVerdict {
                    name: mutant.name(),
                    caught: failure.is_some(),
                    property: failure.as_ref().map(|(name, _)| *name),
                    counterexample: failure.map(|(_, trace)| trace),
                }
            })
            .collect();
    }
    report
}

/// Checks the original system's protocol: each of its runs until the
/// race it looks for shows.
pub fn check_naive(bounds: &Bounds) -> Report {
    naive::check(bounds)
}

/// Serves stateright's Explorer on `address` (a web page to step through
/// any execution of the model within `bounds`, or of the original system's
/// first run): blocks until the process is stopped.
pub fn explore(bounds: Bounds, naive: bool, address: &str) {
    use stateright::Model;
    if naive {
        let _ = naive::system(&naive::NAIVE_RUNS[0])
            .checker()
            .serve(address);
    } else {
        let _ = stockroom::system(&bounds, None).checker().serve(address);
    }
}

/// The stored data in one line: the stock, each order's status, the
/// outbox.
fn summary(state: &StockroomState) -> String {
    let store = &properties::data(state).store;
    let stock: Vec<String> = store
        .stock
        .values()
        .map(|row| {
            format!(
                "{} on hand {} reserved {} sold {}",
                row.name, row.on_hand, row.reserved, row.sold
            )
        })
        .collect();
    let orders: Vec<String> = store
        .orders
        .values()
        .map(|order| {
            let reason = order
                .reason
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default();
            let history: Vec<String> = store
                .history
                .get(&order.id)
                .into_iter()
                .flatten()
                .map(|entry| format!("v{} {}", entry.version, entry.status))
                .collect();
            format!(
                "{} {}{reason} [{}]",
                order.id,
                order.status,
                history.join(", ")
            )
        })
        .collect();
    let outbox = store.outbox.len();
    format!(
        "{}; orders: [{}]; outbox {outbox}",
        stock.join(", "),
        orders.join(", ")
    )
}
