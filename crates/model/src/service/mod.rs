//! The model's services, as stateright actors: data-service, order-service,
//! the two consumers (payment-service and inventory-service, whose sweeper
//! runs beside its consumer) and the clients.
//!
//! Each is a small state machine over the messages of [`crate::messages`];
//! only data-service decides anything, and it decides with the real rules.

mod client;
mod consumer;
mod data;
mod order;

use std::borrow::Cow;

use stateright::actor::{Actor, ActorModelState, Id, Out};

pub use client::{ClientScript, ClientState, OrderProgress};
pub use consumer::{ConsumerService, ConsumerState, Step, WorkerState};
pub use data::{AppliedEvent, Audit, DataService, DataState};
pub use order::OrderService;

use crate::messages::Msg;

/// Where each service sits in the model's list of actors.
pub const DATA: usize = 0;
pub const ORDER: usize = 1;
pub const PAYMENT: usize = 2;
pub const INVENTORY: usize = 3;
pub const FIRST_CLIENT: usize = 4;

/// The product every order asks for, one unit a time.
pub const PRODUCT_NAME: &str = "Laptop";
pub const PRODUCT_KEY: &str = "laptop";
pub const UNITS_PER_ORDER: u32 = 1;

/// The id order-service gives a request: unique per request, as the real
/// service's v7 UUIDs are, and readable in a trace.
pub fn order_id(client: u8, order: u8, attempt: u8) -> String {
    format!("o{client}.{order}.{attempt}")
}

/// The customer of client `client`.
pub fn customer_id(client: u8) -> String {
    format!("c{client}")
}

/// The idempotency key of a client's order number `order`.
pub fn idempotency_key(order: u8) -> String {
    format!("k{order}")
}

/// Timers: time passing, and the moments a service acts on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The clock ticks (data-service ages its stored times).
    Tick,
    /// data-service commits a call it read earlier (broken variants only).
    Commit,
    /// A worker's call got no answer in time: a fault (a cut or slow link).
    CallTimeout { worker: u8 },
    /// The sweeper's interval.
    Sweep,
    /// A client's order got no answer in time: it tries again, or gives up.
    Retry { order: u8 },
    /// A client cancels its order.
    Cancel { order: u8 },
}

/// Whether `timer` of actor `index` firing now is a fault: a worker's call
/// timing out (its answer is never lost but by a crash, which restarts the
/// worker anyway), or a client giving up on an answer still on its way. A
/// client whose answer was lost (order-service restarted meanwhile) times
/// out for free: that is the only way on.
pub fn timer_fault(state: &ActorModelState<Service>, index: usize, timer: &Timer) -> bool {
    match *timer {
        Timer::CallTimeout { .. } => true,
        Timer::Retry { order } => {
            let client = (index - FIRST_CLIENT) as u8;
            let order_boot = match state.actor_states[ORDER].as_ref() {
                ServiceState::Order(boot) => *boot,
                _ => 0,
            };
            state.network.iter_all().any(|envelope| match envelope.msg {
                Msg::Place {
                    client: c,
                    order: o,
                    ..
                }
                | Msg::Reserve {
                    client: c,
                    order: o,
                    ..
                } => *c == client && *o == order,
                Msg::ReserveAnswered {
                    client: c,
                    order: o,
                    boot,
                    ..
                } => *c == client && *o == order && *boot == order_boot,
                Msg::Placed { order: o, .. } => usize::from(envelope.dst) == index && *o == order,
                _ => false,
            })
        }
        _ => false,
    }
}

/// A provider's verdict drawn by one worker of payment-service: (worker,
/// approved).
pub type Verdict = (u8, bool);

/// What a service keeps across a restart: only its incarnation number. The
/// consumers, order-service and the clients' sessions keep nothing else;
/// everything committed lives in data-service's store, which never loses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Boots(pub u8);

impl Boots {
    /// The incarnation after a (re)start.
    pub fn next(saved: &Option<Boots>) -> u8 {
        saved.map_or(1, |boots| boots.0 + 1)
    }
}

/// Every service of the model.
#[derive(Clone, Debug)]
pub enum Service {
    Data(DataService),
    Order(OrderService),
    Consumer(ConsumerService),
    Client(ClientScript),
}

/// Every service's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServiceState {
    Data(Box<DataState>),
    /// order-service keeps nothing but its incarnation.
    Order(u8),
    Consumer(ConsumerState),
    Client(ClientState),
}

impl Actor for Service {
    type Msg = Msg;
    type State = ServiceState;
    type Timer = Timer;
    type Random = Verdict;
    type Storage = Boots;

    fn on_start(&self, _id: Id, storage: &Option<Boots>, o: &mut Out<Self>) -> ServiceState {
        match self {
            Service::Data(data) => ServiceState::Data(Box::new(data.start(o))),
            Service::Order(order) => ServiceState::Order(order.start(storage, o)),
            Service::Consumer(consumer) => ServiceState::Consumer(consumer.start(storage, o)),
            Service::Client(client) => ServiceState::Client(client.start(o)),
        }
    }

    fn on_msg(&self, _id: Id, state: &mut Cow<ServiceState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        let next = match (self, state.as_ref()) {
            (Service::Data(data), ServiceState::Data(current)) => data
                .on_msg(current, src, msg, o)
                .map(|next| ServiceState::Data(Box::new(next))),
            (Service::Order(order), ServiceState::Order(boot)) => {
                order.on_msg(*boot, msg, o);
                None
            }
            (Service::Consumer(consumer), ServiceState::Consumer(current)) => {
                consumer.on_msg(current, msg, o).map(ServiceState::Consumer)
            }
            (Service::Client(client), ServiceState::Client(current)) => {
                client.on_msg(current, msg, o).map(ServiceState::Client)
            }
            _ => unreachable!("every service keeps its own kind of state"),
        };
        if let Some(next) = next {
            *state = Cow::Owned(next);
        }
    }

    fn on_timeout(&self, _id: Id, state: &mut Cow<ServiceState>, timer: &Timer, o: &mut Out<Self>) {
        let next = match (self, state.as_ref()) {
            (Service::Data(data), ServiceState::Data(current)) => data
                .on_timeout(current, *timer, o)
                .map(|next| ServiceState::Data(Box::new(next))),
            (Service::Consumer(consumer), ServiceState::Consumer(current)) => consumer
                .on_timeout(current, *timer, o)
                .map(ServiceState::Consumer),
            (Service::Client(client), ServiceState::Client(current)) => client
                .on_timeout(current, *timer, o)
                .map(ServiceState::Client),
            _ => None,
        };
        if let Some(next) = next {
            *state = Cow::Owned(next);
        }
    }

    fn on_random(
        &self,
        _id: Id,
        state: &mut Cow<ServiceState>,
        random: &Verdict,
        o: &mut Out<Self>,
    ) {
        if let (Service::Consumer(consumer), ServiceState::Consumer(current)) =
            (self, state.as_ref())
            && let Some(next) = consumer.on_verdict(current, *random, o)
        {
            *state = Cow::Owned(ServiceState::Consumer(next));
        }
    }

    fn name(&self) -> String {
        match self {
            Service::Data(_) => "data-service".into(),
            Service::Order(_) => "order-service".into(),
            Service::Consumer(consumer) => consumer.name().into(),
            Service::Client(client) => format!("client c{}", client.client),
        }
    }
}

/// Whether crashing service `index` now could lose anything: a consumer
/// with a worker holding an event, or order-service with an answer on its
/// way back through it.
pub fn worth_crashing(state: &ActorModelState<Service>, index: usize) -> bool {
    match state.actor_states[index].as_ref() {
        ServiceState::Consumer(consumer) => consumer
            .workers
            .iter()
            .any(|worker| !matches!(worker.step, Step::Leasing)),
        ServiceState::Order(_) => state.network.iter_all().any(|envelope| {
            usize::from(envelope.dst) == ORDER
                && matches!(
                    envelope.msg,
                    Msg::ReserveAnswered { .. } | Msg::ReleaseAnswered { .. }
                )
        }),
        _ => false,
    }
}

/// Whether a second copy of `msg` could change anything: a request (to
/// order-service or data-service) could; an answer could not, as its caller
/// has moved on by the time the copy arrives.
pub fn worth_duplicating(msg: &Msg) -> bool {
    matches!(
        msg,
        Msg::Place { .. }
            | Msg::Cancel { .. }
            | Msg::Reserve { .. }
            | Msg::Release { .. }
            | Msg::Call { .. }
    )
}
