//! Counterexamples as a person reads them: one line per step, who did what,
//! and what the stored data became whenever it changed.

use std::fmt::{Debug, Display};

use stateright::Model;
use stateright::actor::{Actor, ActorModelAction};

use crate::system::{PathOf, Step, System, SystemState};

/// One step of the system, in words.
pub fn describe<A>(system: &System<A>, step: &Step<A::Msg, A::Timer, A::Random>) -> String
where
    A: Actor,
    A::Msg: Ord + Display,
    A::Timer: Ord,
{
    let name = |id: stateright::actor::Id| system.actor_name(usize::from(id));
    match step {
        Step::Actor(ActorModelAction::Deliver { src, dst, msg }) => {
            format!("{} → {}: {msg}", name(*src), name(*dst))
        }
        Step::Actor(ActorModelAction::Timeout(id, timer)) => {
            format!("{}: timer {timer:?} fires", name(*id))
        }
        Step::Actor(ActorModelAction::Crash(id)) => format!("{} crashes", name(*id)),
        Step::Actor(ActorModelAction::Recover(id)) => format!("{} restarts", name(*id)),
        Step::Actor(ActorModelAction::SelectRandom { actor, random, .. }) => {
            format!("{}: the provider draws {random:?}", name(*actor))
        }
        Step::Actor(ActorModelAction::Drop(envelope)) => format!(
            "the network loses {} → {}: {}",
            name(envelope.src),
            name(envelope.dst),
            envelope.msg
        ),
        Step::Duplicate(envelope) => format!(
            "the network duplicates {} → {}: {}",
            name(envelope.src),
            name(envelope.dst),
            envelope.msg
        ),
        Step::FaultsStop => "faults stop".into(),
    }
}

/// A path as numbered lines: each step, and after it the stored data in
/// `summary`'s words whenever they changed.
pub fn readable<A>(
    system: &System<A>,
    path: PathOf<A>,
    summary: fn(&SystemState<A>) -> String,
) -> Vec<String>
where
    A: Actor,
    A::Msg: Ord + Display,
    A::Timer: Ord,
    A::Random: Debug,
    System<A>: Model<State = SystemState<A>, Action = Step<A::Msg, A::Timer, A::Random>>,
{
    let steps = path.into_vec();
    let mut lines = Vec::with_capacity(steps.len() * 2);
    let mut shown = steps.first().map(|(state, _)| summary(state));
    if let Some(first) = &shown {
        lines.push(format!("   start: {first}"));
    }
    for (index, pair) in steps.windows(2).enumerate() {
        let (_, Some(action)) = &pair[0] else {
            continue;
        };
        lines.push(format!("{:>3}. {}", index + 1, describe(system, action)));
        let now = summary(&pair[1].0);
        if shown.as_ref() != Some(&now) {
            lines.push(format!("        ⇒ {now}"));
            shown = Some(now);
        }
    }
    lines
}
