//! The system under check: stateright's `ActorModel` of the services, and
//! the faults it may suffer, each within a bound.
//!
//! stateright's own fault switches run forever: `max_crashes` bounds how
//! many actors are down at once, not how often they go down; a duplicating
//! network keeps every message for ever; a lossy one may always lose one
//! more. An execution then never ends, and stateright checks "eventually"
//! properties only where an execution ends (a state with no next step), so
//! every liveness property would hold without being checked. This model
//! bounds faults by count instead: at most so many crashes, duplicated
//! messages and timed-out calls, and at any point the faults may stop for
//! good (the step [`Step::FaultsStop`]). After that the services run on
//! without faults, and every execution ends where nothing can happen any
//! more: there the liveness properties are checked.

use std::fmt::{self, Debug, Display};
use std::hash::{Hash, Hasher};

use stateright::actor::{Actor, ActorModel, ActorModelAction, ActorModelState, Envelope, Network};
use stateright::{Model, Path, Property};

/// How many faults of each kind an execution may suffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultBudget {
    pub crashes: u8,
    pub duplicates: u8,
    pub timeouts: u8,
}

/// The faults an execution has suffered so far, and whether they stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultsUsed {
    pub crashes: u8,
    pub duplicates: u8,
    pub timeouts: u8,
    pub stopped: bool,
}

/// One step of the system: an actor's step, a duplicated message, or the
/// end of faults.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step<Msg, Timer, Random> {
    Actor(ActorModelAction<Msg, Timer, Random>),
    Duplicate(Envelope<Msg>),
    FaultsStop,
}

/// The actors' states and the faults used.
pub struct SystemState<A: Actor> {
    pub actors: ActorModelState<A>,
    pub faults: FaultsUsed,
}

impl<A: Actor> Clone for SystemState<A> {
    fn clone(&self) -> Self {
        SystemState {
            actors: self.actors.clone(),
            faults: self.faults,
        }
    }
}

impl<A: Actor> Debug for SystemState<A> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SystemState")
            .field("actors", &self.actors)
            .field("faults", &self.faults)
            .finish()
    }
}

impl<A: Actor> Hash for SystemState<A> {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.actors.hash(hasher);
        self.faults.hash(hasher);
    }
}

impl<A: Actor> PartialEq for SystemState<A> {
    fn eq(&self, other: &Self) -> bool {
        self.actors == other.actors && self.faults == other.faults
    }
}

/// The model checked: the actors, their faults, and the properties.
pub struct System<A: Actor>
where
    A::Msg: Ord + Display,
    A::Timer: Ord,
{
    pub actors: ActorModel<A>,
    pub budget: FaultBudget,
    /// The actors that may crash (by index).
    pub crashable: Vec<usize>,
    pub properties: Vec<Property<System<A>>>,
    /// Whether actor `index`'s timer firing now is a fault (a call that
    /// times out while its answer is still coming), counted against the
    /// bound of timeouts, or the only way on (its answer was lost).
    pub timer_fault: TimerFault<A>,
    /// Whether a crash of actor `index` now could lose anything: a crash of
    /// a service holding nothing in flight is the same as a pause, which
    /// the unordered network already explores.
    pub worth_crashing: fn(&ActorModelState<A>, usize) -> bool,
    /// Whether a message is worth duplicating: one whose receiver would
    /// ignore a second copy is not.
    pub worth_duplicating: fn(&A::Msg) -> bool,
}

/// See [`System::timer_fault`].
pub type TimerFault<A> = fn(&ActorModelState<A>, usize, &<A as Actor>::Timer) -> bool;

/// The steps of a system of `A`s.
pub type StepOf<A> = Step<<A as Actor>::Msg, <A as Actor>::Timer, <A as Actor>::Random>;

/// An execution of a system of `A`s.
pub type PathOf<A> = Path<SystemState<A>, StepOf<A>>;

impl<A> System<A>
where
    A: Actor,
    A::Msg: Ord + Display,
    A::Timer: Ord,
{
    fn faults_may_happen(&self, used: &FaultsUsed) -> bool {
        !used.stopped
            && (used.crashes < self.budget.crashes
                || used.duplicates < self.budget.duplicates
                || used.timeouts < self.budget.timeouts)
    }

    fn allowed(
        &self,
        state: &ActorModelState<A>,
        used: &FaultsUsed,
        action: &ActorModelAction<A::Msg, A::Timer, A::Random>,
    ) -> bool {
        match action {
            ActorModelAction::Crash(id) => {
                !used.stopped
                    && used.crashes < self.budget.crashes
                    && self.crashable.contains(&usize::from(*id))
                    && (self.worth_crashing)(state, usize::from(*id))
            }
            ActorModelAction::Timeout(id, timer)
                if (self.timer_fault)(state, usize::from(*id), timer) =>
            {
                !used.stopped && used.timeouts < self.budget.timeouts
            }
            ActorModelAction::Drop(_) => false,
            _ => true,
        }
    }

    /// The name of actor `index`, for traces.
    pub fn actor_name(&self, index: usize) -> String {
        self.actors
            .actors
            .get(index)
            .map_or_else(|| format!("actor {index}"), Actor::name)
    }
}

impl<A> Model for System<A>
where
    A: Actor,
    A::Msg: Ord + Display,
    A::Timer: Ord,
{
    type State = SystemState<A>;
    type Action = StepOf<A>;

    fn init_states(&self) -> Vec<Self::State> {
        self.actors
            .init_states()
            .into_iter()
            .map(|actors| {
                let mut faults = FaultsUsed::default();
                faults.stopped = !self.faults_may_happen(&faults);
                SystemState { actors, faults }
            })
            .collect()
    }

    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>) {
        let used = &state.faults;
        let mut inner = Vec::new();
        self.actors.actions(&state.actors, &mut inner);
        actions.extend(
            inner
                .into_iter()
                .filter(|action| self.allowed(&state.actors, used, action))
                .map(Step::Actor),
        );
        if !used.stopped && used.duplicates < self.budget.duplicates {
            let mut envelopes: Vec<Envelope<A::Msg>> = state
                .actors
                .network
                .iter_deliverable()
                .filter(|envelope| (self.worth_duplicating)(envelope.msg))
                .map(|envelope| envelope.to_cloned_msg())
                .collect();
            envelopes.sort();
            actions.extend(envelopes.into_iter().map(Step::Duplicate));
        }
        if self.faults_may_happen(used) {
            actions.push(Step::FaultsStop);
        }
    }

    fn next_state(&self, state: &Self::State, action: Self::Action) -> Option<Self::State> {
        let mut faults = state.faults;
        let actors = match action {
            Step::Actor(action) => {
                match &action {
                    ActorModelAction::Crash(_) => faults.crashes += 1,
                    ActorModelAction::Timeout(id, timer)
                        if (self.timer_fault)(&state.actors, usize::from(*id), timer) =>
                    {
                        faults.timeouts += 1
                    }
                    _ => {}
                }
                self.actors.next_state(&state.actors, action)?
            }
            Step::Duplicate(copy) => {
                faults.duplicates += 1;
                let mut actors = state.actors.clone();
                let envelopes = state
                    .actors
                    .network
                    .iter_all()
                    .map(|envelope| envelope.to_cloned_msg())
                    .chain([copy]);
                actors.network = Network::new_unordered_nonduplicating(envelopes);
                actors
            }
            Step::FaultsStop => {
                faults.stopped = true;
                state.actors.clone()
            }
        };
        // Once every fault is spent, faults have stopped: one state, not two.
        faults.stopped |= !self.faults_may_happen(&faults);
        Some(SystemState { actors, faults })
    }

    fn format_action(&self, action: &Self::Action) -> String {
        crate::trace::describe(self, action)
    }

    fn format_step(&self, last_state: &Self::State, action: Self::Action) -> Option<String> {
        match action {
            Step::Actor(action) => self.actors.format_step(&last_state.actors, action),
            other => self
                .next_state(last_state, other)
                .map(|next| format!("{:#?}", next.faults)),
        }
    }

    fn properties(&self) -> Vec<Property<Self>> {
        self.properties.clone()
    }
}
