//! Running the checker: every property of a model over every execution
//! within the bounds, each failure's shortest counterexample, and the
//! report `stockroom model` prints.

use std::collections::BTreeSet;
use std::fmt::{Debug, Display};
use std::time::Instant;

use serde::Serialize;
use stateright::actor::Actor;
use stateright::{Checker, Expectation, HasDiscoveries, Model};

use crate::system::{PathOf, Step, System, SystemState};

/// One property's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct PropertyVerdict {
    pub name: &'static str,
    /// `always`, `eventually` or `sometimes`.
    pub kind: &'static str,
    /// For `sometimes`: an example was found; else: no counterexample was.
    pub holds: bool,
    /// The shortest counterexample of a property that does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Vec<String>>,
}

/// One broken variant's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct MutantVerdict {
    pub name: &'static str,
    pub caught: bool,
    /// The property whose counterexample caught it.
    pub property: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Vec<String>>,
}

/// What one bounded run explored.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub name: &'static str,
    pub states: usize,
    pub max_depth: usize,
    pub seconds: f64,
}

/// What a check found, over all its runs.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: &'static str,
    /// Distinct states explored, over all runs.
    pub states: usize,
    pub max_depth: usize,
    pub seconds: f64,
    pub properties: Vec<PropertyVerdict>,
    pub mutants: Vec<MutantVerdict>,
    pub runs: Vec<RunSummary>,
}

impl Report {
    /// One report of several runs of one model: an `always` or `eventually`
    /// property holds if it held in every run (the first counterexample
    /// kept), a `sometimes` property if any run reached it.
    pub fn merge(model: &'static str, reports: Vec<Report>) -> Report {
        let mut merged = Report {
            model,
            states: 0,
            max_depth: 0,
            seconds: 0.0,
            properties: Vec::new(),
            mutants: Vec::new(),
            runs: Vec::new(),
        };
        for report in reports {
            merged.states += report.states;
            merged.max_depth = merged.max_depth.max(report.max_depth);
            merged.seconds += report.seconds;
            merged.runs.extend(report.runs);
            for verdict in report.properties {
                match merged
                    .properties
                    .iter_mut()
                    .find(|v| v.name == verdict.name)
                {
                    None => merged.properties.push(verdict),
                    Some(kept) if kept.kind == "sometimes" => kept.holds |= verdict.holds,
                    Some(kept) => {
                        if kept.holds && !verdict.holds {
                            *kept = verdict;
                        }
                    }
                }
            }
        }
        merged
    }

    /// Whether every property holds and every broken variant was caught.
    pub fn passed(&self) -> bool {
        self.properties.iter().all(|verdict| verdict.holds)
            && self.mutants.iter().all(|mutant| mutant.caught)
    }
}

/// How to build a model afresh (each checker run owns its model), and how
/// to summarise its stored data in a trace.
pub struct Recipe<A: Actor>
where
    A::Msg: Ord + Display,
    A::Timer: Ord,
{
    pub build: Box<dyn Fn() -> System<A>>,
    pub summary: fn(&SystemState<A>) -> String,
    pub depth: Option<usize>,
}

fn kind(expectation: &Expectation) -> &'static str {
    match expectation {
        Expectation::Always => "always",
        Expectation::Eventually => "eventually",
        Expectation::Sometimes => "sometimes",
    }
}

impl<A> Recipe<A>
where
    A: Actor + Send + Sync + 'static,
    A::Msg: Ord + Display + Send + Sync,
    A::Timer: Ord + Send + Sync,
    A::State: Send + Sync,
    A::Random: Send + Sync,
    A::Storage: Send + Sync,
    System<A>: Model<State = SystemState<A>, Action = Step<A::Msg, A::Timer, A::Random>>,
{
    /// Explores every execution within the bounds on `threads` threads and
    /// gives every property's verdict, with the shortest counterexample of
    /// each that fails.
    pub fn check(&self, model: &'static str, run: &'static str, threads: usize) -> Report {
        let started = Instant::now();
        let mut builder = (self.build)().checker().threads(threads);
        if let Some(depth) = self.depth {
            builder = builder.target_max_depth(depth + 1);
        }
        let checker = builder.spawn_bfs().join();
        let (states, max_depth) = (checker.unique_state_count(), checker.max_depth());
        let properties = checker
            .model()
            .properties()
            .into_iter()
            .map(|property| {
                let found = checker.discovery(property.name);
                let holds = match property.expectation {
                    Expectation::Sometimes => found.is_some(),
                    _ => found.is_none(),
                };
                let counterexample = match (&property.expectation, found) {
                    (Expectation::Sometimes, _) | (_, None) => None,
                    (_, Some(path)) => Some(self.shortest_trace(property.name, path)),
                };
                PropertyVerdict {
                    name: property.name,
                    kind: kind(&property.expectation),
                    holds,
                    counterexample,
                }
            })
            .collect();
        let seconds = started.elapsed().as_secs_f64();
        Report {
            model,
            states,
            max_depth,
            seconds,
            properties,
            mutants: Vec::new(),
            runs: vec![RunSummary {
                name: run,
                states,
                max_depth,
                seconds,
            }],
        }
    }

    /// Explores until every property in `targets` failed (or everything
    /// was explored), single-threaded, and reports those properties: each
    /// with its shortest counterexample, or holding.
    pub fn hunt(&self, model: &'static str, run: &'static str, targets: &[&'static str]) -> Report {
        let started = Instant::now();
        let mut builder = (self.build)()
            .checker()
            .finish_when(HasDiscoveries::AllOf(targets.iter().copied().collect()));
        if let Some(depth) = self.depth {
            builder = builder.target_max_depth(depth + 1);
        }
        let checker = builder.spawn_bfs().join();
        let (states, max_depth) = (checker.unique_state_count(), checker.max_depth());
        let properties = targets
            .iter()
            .map(|name| {
                let found = checker.discovery(name);
                PropertyVerdict {
                    name,
                    kind: "always",
                    holds: found.is_none(),
                    counterexample: found.map(|path| self.shortest_trace(name, path)),
                }
            })
            .collect();
        let seconds = started.elapsed().as_secs_f64();
        Report {
            model,
            states,
            max_depth,
            seconds,
            properties,
            mutants: Vec::new(),
            runs: vec![RunSummary {
                name: run,
                states,
                max_depth,
                seconds,
            }],
        }
    }

    /// The first property that fails, in breadth-first order, with its
    /// shortest counterexample; `None` when every property holds.
    pub fn first_failure(&self) -> Option<(&'static str, Vec<String>)> {
        let mut builder = (self.build)()
            .checker()
            .finish_when(HasDiscoveries::AnyFailures);
        if let Some(depth) = self.depth {
            builder = builder.target_max_depth(depth + 1);
        }
        let checker = builder.spawn_bfs().join();
        let model = checker.model();
        let (name, path) = model
            .properties()
            .into_iter()
            .filter(|property| property.expectation != Expectation::Sometimes)
            .find_map(|property| Some((property.name, checker.discovery(property.name)?)))?;
        Some((name, self.shortest_trace(name, path)))
    }

    /// The shortest counterexample of `name`, starting from one found.
    /// stateright's breadth-first search may report a longer one than the
    /// shortest (a later discovery replaces an earlier one), so the search
    /// is run again, single-threaded, below each length found until none is
    /// shorter.
    fn shortest_trace(&self, name: &'static str, found: PathOf<A>) -> Vec<String> {
        let mut best = found;
        loop {
            let steps = best.clone().into_actions().len();
            if steps == 0 {
                break;
            }
            let checker = (self.build)()
                .checker()
                .target_max_depth(steps + 1)
                .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([name])))
                .spawn_bfs()
                .join();
            match checker.discovery(name) {
                Some(path) if path.clone().into_actions().len() < steps => best = path,
                _ => break,
            }
        }
        crate::trace::readable(&(self.build)(), best, self.summary)
    }
}
