//! The original system's services as actors.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use stateright::actor::{Actor, Id, Out, model_timeout};
use stockroom_domain::OrderStatus;

use super::{DATA, ORDER, WORKER};

/// A write of a whole file, as the original data-service made it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Write {
    /// Appends a new, pending order to the orders file.
    Create,
    /// Sets an order's status (`updateOrderStatus`).
    SetStatus(Status),
    /// Writes the caller's copy of the order back, as cancelled.
    ReplaceCancelled,
    /// `reserved += 1`, no check (the caller checked).
    Hold,
    /// `on hand -= 1, reserved -= 1, sold += 1`.
    Commit,
    /// `reserved -= 1`.
    Release,
}

/// An order status the model's messages carry (ordered, unlike the
/// domain's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Pending,
    Reserved,
    Rejected,
    Fulfilled,
    Cancelled,
}

impl Status {
    pub fn domain(self) -> OrderStatus {
        match self {
            Status::Pending => OrderStatus::Pending,
            Status::Reserved => OrderStatus::Reserved,
            Status::Rejected => OrderStatus::Rejected,
            Status::Fulfilled => OrderStatus::Fulfilled,
            Status::Cancelled => OrderStatus::Cancelled,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NaiveMsg {
    Place {
        client: u8,
    },
    Cancel {
        client: u8,
    },
    /// The order's event, published to the worker (at least once).
    Event {
        order: u8,
    },
    /// A call to data-service about order `order`, by the caller's flow
    /// `flow`.
    GetOrder {
        order: u8,
        flow: u8,
    },
    CheckStock {
        flow: u8,
    },
    Charge {
        order: u8,
        flow: u8,
    },
    Write {
        order: u8,
        flow: u8,
        write: Write,
        copy: Option<Status>,
    },
    /// data-service saves a write it loaded the file for.
    Save {
        slot: u8,
    },
    /// data-service's answer to flow `flow`: the order's status, whether
    /// there is stock, or done.
    Answer {
        flow: u8,
        status: Option<Status>,
        enough: bool,
    },
}

impl fmt::Display for NaiveMsg {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NaiveMsg::Place { client } => write!(formatter, "POST /api/orders (order n{client})"),
            NaiveMsg::Cancel { client } => write!(formatter, "cancel n{client}"),
            NaiveMsg::Event { order } => write!(formatter, "OrderCreated n{order}"),
            NaiveMsg::GetOrder { order, .. } => write!(formatter, "GET /orders/n{order}"),
            NaiveMsg::CheckStock { .. } => write!(formatter, "is there stock?"),
            NaiveMsg::Charge { order, .. } => write!(formatter, "charge n{order}"),
            NaiveMsg::Write {
                order, write, copy, ..
            } => match copy {
                Some(copy) => write!(
                    formatter,
                    "write n{order}: {write:?} (its copy says {copy:?})"
                ),
                None => write!(formatter, "write n{order}: {write:?}"),
            },
            NaiveMsg::Save { slot } => write!(formatter, "save the file loaded for write {slot}"),
            NaiveMsg::Answer {
                status: Some(status),
                ..
            } => write!(formatter, "order is {status:?}"),
            NaiveMsg::Answer { enough: true, .. } => write!(formatter, "ok"),
            NaiveMsg::Answer { enough: false, .. } => write!(formatter, "not enough stock"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NaiveTimer {
    /// A client cancels its order.
    Cancel,
}

/// One order in the orders file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NaiveOrder {
    pub status: Status,
    pub history: Vec<Status>,
}

/// The two files: `orders.json` (the orders) and `inventory.json` (the
/// figures). A write loads and saves only the file it touches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Files {
    pub on_hand: i64,
    pub reserved: i64,
    pub sold: i64,
    pub orders: BTreeMap<u8, NaiveOrder>,
}

/// A write whose file was loaded, waiting to be saved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Loaded {
    pub loaded: Files,
    pub order: u8,
    pub write: Write,
    pub copy: Option<Status>,
    pub caller: Id,
    pub flow: u8,
}

/// data-service's files, its loaded writes, and what the model watches: the
/// provider's charges and every status each order was ever seen in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NaiveData {
    pub files: Files,
    pub loaded: BTreeMap<u8, Loaded>,
    pub next_slot: u8,
    pub charges: BTreeMap<u8, u8>,
    /// Per order, the statuses it was seen in, in order.
    pub seen: BTreeMap<u8, Vec<Status>>,
}

/// Where one flow of the worker, or the cancel, is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowStep {
    Reading,
    Checking,
    Holding,
    MarkingReserved,
    Paying,
    Committing,
    Fulfilling,
    Done,
    /// The cancel: reading, releasing, writing its copy back.
    CancelReading,
    CancelReleasing(Status),
    CancelWriting,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NaiveState {
    Data(Box<NaiveData>),
    Order(BTreeMap<u8, (u8, FlowStep)>),
    Worker(Vec<(u8, FlowStep)>),
    Client,
}

#[derive(Clone, Debug)]
pub enum NaiveService {
    Data { stock: u8 },
    Order,
    Worker,
    Client { client: u8, cancels: bool },
}

fn call(o: &mut Out<NaiveService>, msg: NaiveMsg) {
    o.send(Id::from(DATA), msg);
}

impl NaiveData {
    fn apply(files: &mut Files, order: u8, write: &Write, copy: Option<Status>) {
        let set = |files: &mut Files, status: Status| {
            let entry = files.orders.entry(order).or_insert(NaiveOrder {
                status,
                history: Vec::new(),
            });
            entry.status = status;
            entry.history.push(status);
        };
        match write {
            Write::Create => set(files, Status::Pending),
            Write::SetStatus(status) => set(files, *status),
            Write::ReplaceCancelled => {
                let history = vec![
                    Status::Pending,
                    copy.unwrap_or(Status::Pending),
                    Status::Cancelled,
                ];
                files.orders.insert(
                    order,
                    NaiveOrder {
                        status: Status::Cancelled,
                        history,
                    },
                );
            }
            Write::Hold => files.reserved += 1,
            Write::Commit => {
                files.on_hand -= 1;
                files.reserved -= 1;
                files.sold += 1;
            }
            Write::Release => files.reserved -= 1,
        }
    }

    /// Saves the write loaded in `slot`: its copy of the file it touches,
    /// changed, over the current one.
    fn save(&mut self, slot: u8, o: &mut Out<NaiveService>) -> Option<()> {
        let mut write = self.loaded.remove(&slot)?;
        NaiveData::apply(&mut write.loaded, write.order, &write.write, write.copy);
        // The whole file the write touches is saved over the
        // current one: orders.json or inventory.json.
        match write.write {
            Write::Create | Write::SetStatus(_) | Write::ReplaceCancelled => {
                self.files.orders = write.loaded.orders;
            }
            Write::Hold | Write::Commit | Write::Release => {
                self.files.on_hand = write.loaded.on_hand;
                self.files.reserved = write.loaded.reserved;
                self.files.sold = write.loaded.sold;
            }
        }
        for (order, file) in &self.files.orders {
            let seen = self.seen.entry(*order).or_default();
            if seen.last() != Some(&file.status) {
                seen.push(file.status);
            }
        }
        o.send(
            write.caller,
            NaiveMsg::Answer {
                flow: write.flow,
                status: None,
                enough: true,
            },
        );
        Some(())
    }

    fn serve(&self, src: Id, msg: NaiveMsg, o: &mut Out<NaiveService>) -> Option<NaiveData> {
        let mut next = self.clone();
        match msg {
            NaiveMsg::GetOrder { order, flow } => {
                let status = self.files.orders.get(&order).map(|order| order.status);
                o.send(
                    src,
                    NaiveMsg::Answer {
                        flow,
                        status,
                        enough: false,
                    },
                );
            }
            NaiveMsg::CheckStock { flow } => {
                let enough = self.files.on_hand - self.files.reserved >= 1;
                o.send(
                    src,
                    NaiveMsg::Answer {
                        flow,
                        status: None,
                        enough,
                    },
                );
            }
            NaiveMsg::Charge { order, flow } => {
                *next.charges.entry(order).or_insert(0) += 1;
                o.send(
                    src,
                    NaiveMsg::Answer {
                        flow,
                        status: None,
                        enough: true,
                    },
                );
            }
            NaiveMsg::Write {
                order,
                flow,
                write,
                copy,
            } => {
                let slot = next.next_slot;
                next.next_slot += 1;
                let loaded = Loaded {
                    loaded: self.files.clone(),
                    order,
                    write,
                    copy,
                    caller: src,
                    flow,
                };
                next.loaded.insert(slot, loaded);
                o.send(Id::from(DATA), NaiveMsg::Save { slot });
            }
            NaiveMsg::Save { slot } => next.save(slot, o)?,
            _ => return None,
        }
        Some(next)
    }
}

/// The worker's next call after `step`'s answer; `None` when the flow ends.
fn worker_next(
    order: u8,
    flow: u8,
    step: FlowStep,
    status: Option<Status>,
    enough: bool,
) -> (FlowStep, Option<NaiveMsg>) {
    let write = |write| {
        Some(NaiveMsg::Write {
            order,
            flow,
            write,
            copy: None,
        })
    };
    match step {
        FlowStep::Reading => (FlowStep::Checking, Some(NaiveMsg::CheckStock { flow })),
        FlowStep::Checking if !enough => {
            (FlowStep::Done, write(Write::SetStatus(Status::Rejected)))
        }
        FlowStep::Checking => (FlowStep::Holding, write(Write::Hold)),
        FlowStep::Holding => (
            FlowStep::MarkingReserved,
            write(Write::SetStatus(Status::Reserved)),
        ),
        FlowStep::MarkingReserved => (FlowStep::Paying, Some(NaiveMsg::Charge { order, flow })),
        FlowStep::Paying => (FlowStep::Committing, write(Write::Commit)),
        FlowStep::Committing => (
            FlowStep::Fulfilling,
            write(Write::SetStatus(Status::Fulfilled)),
        ),
        _ => {
            let _ = status;
            (FlowStep::Done, None)
        }
    }
}

/// The cancel's next call: read the order, release if the copy says
/// reserved, write the copy back as cancelled.
fn cancel_next(order: u8, step: FlowStep, status: Option<Status>) -> (FlowStep, Option<NaiveMsg>) {
    let flow = order;
    match (step, status) {
        (FlowStep::CancelReading, Some(Status::Reserved)) => (
            FlowStep::CancelReleasing(Status::Reserved),
            Some(NaiveMsg::Write {
                order,
                flow,
                write: Write::Release,
                copy: None,
            }),
        ),
        (FlowStep::CancelReading, Some(copy))
            if copy != Status::Pending && copy != Status::Reserved =>
        {
            (FlowStep::Done, None)
        }
        (FlowStep::CancelReading, copy) => (
            FlowStep::CancelWriting,
            Some(NaiveMsg::Write {
                order,
                flow,
                write: Write::ReplaceCancelled,
                copy,
            }),
        ),
        (FlowStep::CancelReleasing(copy), _) => (
            FlowStep::CancelWriting,
            Some(NaiveMsg::Write {
                order,
                flow,
                write: Write::ReplaceCancelled,
                copy: Some(copy),
            }),
        ),
        _ => (FlowStep::Done, None),
    }
}

impl NaiveService {
    fn on_answer(
        &self,
        state: &NaiveState,
        flow: u8,
        status: Option<Status>,
        enough: bool,
        o: &mut Out<Self>,
    ) -> Option<NaiveState> {
        match state {
            NaiveState::Worker(flows) => {
                let mut flows = flows.clone();
                let (order, step) = *flows.get(usize::from(flow))?;
                let (next, msg) = worker_next(order, flow, step, status, enough);
                flows[usize::from(flow)].1 = next;
                if let Some(msg) = msg {
                    call(o, msg);
                }
                Some(NaiveState::Worker(flows))
            }
            NaiveState::Order(flows) => {
                let mut flows = flows.clone();
                let (order, step) = *flows.get(&flow)?;
                let (next, msg) = match step {
                    FlowStep::Reading => {
                        o.send(Id::from(WORKER), NaiveMsg::Event { order });
                        (FlowStep::Done, None)
                    }
                    step => cancel_next(order, step, status),
                };
                flows.insert(flow, (order, next));
                if let Some(msg) = msg {
                    call(o, msg);
                }
                Some(NaiveState::Order(flows))
            }
            _ => None,
        }
    }
}

impl Actor for NaiveService {
    type Msg = NaiveMsg;
    type State = NaiveState;
    type Timer = NaiveTimer;
    type Random = ();
    type Storage = ();

    fn on_start(&self, _id: Id, _storage: &Option<()>, o: &mut Out<Self>) -> NaiveState {
        match self {
            NaiveService::Data { stock } => NaiveState::Data(Box::new(NaiveData {
                files: Files {
                    on_hand: i64::from(*stock),
                    ..Files::default()
                },
                ..NaiveData::default()
            })),
            NaiveService::Order => NaiveState::Order(BTreeMap::new()),
            NaiveService::Worker => NaiveState::Worker(Vec::new()),
            NaiveService::Client { client, cancels } => {
                o.send(Id::from(ORDER), NaiveMsg::Place { client: *client });
                if *cancels {
                    o.set_timer(NaiveTimer::Cancel, model_timeout());
                }
                NaiveState::Client
            }
        }
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<NaiveState>,
        src: Id,
        msg: NaiveMsg,
        o: &mut Out<Self>,
    ) {
        let next = match (state.as_ref(), msg) {
            (NaiveState::Data(data), msg) => data
                .serve(src, msg, o)
                .map(|data| NaiveState::Data(Box::new(data))),
            (NaiveState::Order(flows), NaiveMsg::Place { client }) => {
                // Creating the order is this flow's "reading" step; when it is
                // saved, the event goes out and the client hears `pending`.
                let mut flows = flows.clone();
                flows.insert(client, (client, FlowStep::Reading));
                call(
                    o,
                    NaiveMsg::Write {
                        order: client,
                        flow: client,
                        write: Write::Create,
                        copy: None,
                    },
                );
                Some(NaiveState::Order(flows))
            }
            (NaiveState::Order(flows), NaiveMsg::Cancel { client }) => {
                let mut flows = flows.clone();
                let flow = client + CANCEL_FLOWS;
                flows.insert(flow, (client, FlowStep::CancelReading));
                call(
                    o,
                    NaiveMsg::GetOrder {
                        order: client,
                        flow,
                    },
                );
                Some(NaiveState::Order(flows))
            }
            (NaiveState::Worker(flows), NaiveMsg::Event { order }) => {
                let mut flows = flows.clone();
                let flow = flows.len() as u8;
                flows.push((order, FlowStep::Reading));
                call(o, NaiveMsg::GetOrder { order, flow });
                Some(NaiveState::Worker(flows))
            }
            (
                current,
                NaiveMsg::Answer {
                    flow,
                    status,
                    enough,
                },
            ) => self.on_answer(current, flow, status, enough, o),
            _ => None,
        };
        if let Some(next) = next {
            *state = Cow::Owned(next);
        }
    }

    fn on_timeout(
        &self,
        _id: Id,
        _state: &mut Cow<NaiveState>,
        _timer: &NaiveTimer,
        o: &mut Out<Self>,
    ) {
        if let NaiveService::Client { client, .. } = self {
            o.send(Id::from(ORDER), NaiveMsg::Cancel { client: *client });
        }
    }

    fn name(&self) -> String {
        match self {
            NaiveService::Data { .. } => "data-service".into(),
            NaiveService::Order => "order-service".into(),
            NaiveService::Worker => "inventory worker".into(),
            NaiveService::Client { client, .. } => format!("client c{client}"),
        }
    }
}

/// order-service's cancel flows are numbered after its placing flows.
const CANCEL_FLOWS: u8 = 100;
