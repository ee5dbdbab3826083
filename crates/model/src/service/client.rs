//! A client: places its orders, each under its own idempotency key, tries
//! again with the same key when an answer is late (or gives up after its
//! last attempt), and, if its script says so, cancels what was reserved.

use std::collections::BTreeSet;

use stateright::actor::{Id, Out, model_timeout};

use super::{ORDER, Service, Timer};
use crate::messages::{Msg, PlaceAnswer};

#[derive(Clone, Debug)]
pub struct ClientScript {
    pub client: u8,
    pub orders: u8,
    /// How many times the client sends one order before it gives up.
    pub attempts: u8,
    /// Whether the client cancels its reserved orders.
    pub cancels: bool,
}

/// One order of a client, as the client knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OrderProgress {
    pub attempts: u8,
    /// Every order id answered 201 under this order's key (one, unless
    /// idempotency is broken).
    pub acknowledged: BTreeSet<String>,
    /// The client has its answer, or gave up waiting.
    pub settled: bool,
    /// The client sent its cancel.
    pub cancel_sent: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientState {
    /// Whether this client cancels what was reserved (its script's, kept
    /// here so that its properties can tell when it is done).
    pub cancels: bool,
    pub orders: Vec<OrderProgress>,
}

impl ClientState {
    /// Whether the client has done all it will do: every order answered or
    /// given up, every cancel it meant to send sent.
    pub fn is_done(&self) -> bool {
        self.orders.iter().all(|order| {
            order.settled && (!self.cancels || order.acknowledged.is_empty() || order.cancel_sent)
        })
    }
}

impl ClientScript {
    fn place(&self, order: u8, attempt: u8, o: &mut Out<Service>) {
        let place = Msg::Place {
            client: self.client,
            order,
            attempt,
        };
        o.send(Id::from(ORDER), place);
        o.set_timer(Timer::Retry { order }, model_timeout());
    }

    pub(super) fn start(&self, o: &mut Out<Service>) -> ClientState {
        for order in 0..self.orders {
            self.place(order, 1, o);
        }
        ClientState {
            cancels: self.cancels,
            orders: (0..self.orders)
                .map(|_| OrderProgress {
                    attempts: 1,
                    ..OrderProgress::default()
                })
                .collect(),
        }
    }

    pub(super) fn on_msg(
        &self,
        state: &ClientState,
        msg: Msg,
        o: &mut Out<Service>,
    ) -> Option<ClientState> {
        let Msg::Placed { order, answer, .. } = msg else {
            return None;
        };
        let mut next = state.clone();
        let progress = next.orders.get_mut(usize::from(order))?;
        let first = !progress.settled;
        match answer {
            PlaceAnswer::Reserved(id) => {
                progress.acknowledged.insert(id);
                if first && self.cancels {
                    o.set_timer(Timer::Cancel { order }, model_timeout());
                }
            }
            PlaceAnswer::Rejected(_) | PlaceAnswer::Refused => {}
            PlaceAnswer::Failed => return None,
        }
        progress.settled = true;
        if first {
            o.cancel_timer(Timer::Retry { order });
        }
        (next != *state).then_some(next)
    }

    pub(super) fn on_timeout(
        &self,
        state: &ClientState,
        timer: Timer,
        o: &mut Out<Service>,
    ) -> Option<ClientState> {
        let mut next = state.clone();
        match timer {
            Timer::Retry { order } => {
                let progress = next.orders.get_mut(usize::from(order))?;
                if progress.settled {
                    return None;
                }
                if progress.attempts < self.attempts {
                    progress.attempts += 1;
                    self.place(order, progress.attempts, o);
                } else {
                    progress.settled = true;
                }
            }
            Timer::Cancel { order } => {
                let progress = next.orders.get_mut(usize::from(order))?;
                let order_id = progress.acknowledged.iter().next()?.clone();
                progress.cancel_sent = true;
                let cancel = Msg::Cancel {
                    client: self.client,
                    order,
                    order_id,
                };
                o.send(Id::from(ORDER), cancel);
            }
            _ => return None,
        }
        Some(next)
    }
}
