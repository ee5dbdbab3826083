//! The two consumers of the outbox, as the bus's `consume` loop drives them:
//! payment-service (an `OrderReserved` event: charge at the provider, then
//! record the verdict) and inventory-service (a payment event: settle),
//! whose sweeper runs beside its consumer on a timer.
//!
//! Each worker leases one event, handles it in calls to data-service, and
//! acknowledges it (effect committed), rejects it (poison: refused outright
//! or contradicting the stock) or releases it (a call failed, or got no
//! answer in time). A consumer keeps nothing across a restart: the events it
//! held come back when their leases run out.

use stateright::actor::{Id, Out, model_timeout};
use stockroom_domain::Consumer;

use super::{Boots, DATA, Service, Timer, Verdict};
use crate::messages::{CallTag, DeliveryNote, EffectNote, EventStep, Msg, Outcome, Reply, Request};

/// The worker number of the sweeper's calls.
pub const SWEEPER: u8 = u8::MAX;

#[derive(Clone, Debug)]
pub struct ConsumerService {
    pub consumer: Consumer,
    /// Batches a consumer handles at once (the bus's `BATCHES_IN_FLIGHT`).
    pub workers: u8,
    /// Whether the sweeper runs here (inventory-service).
    pub sweeper: bool,
}

/// Where one worker is in handling its event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Waiting for a lease (a long poll).
    Leasing,
    /// The provider is drawing its verdict.
    Choosing(DeliveryNote),
    Charging(DeliveryNote),
    Recording(DeliveryNote),
    Settling(DeliveryNote),
    Finishing,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkerState {
    /// Calls made since the consumer started; an answer to an older one is
    /// dropped.
    pub seq: u8,
    pub step: Step,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConsumerState {
    pub boot: u8,
    pub workers: Vec<WorkerState>,
    /// The sweeper's calls since the start, and whether one is out.
    pub sweeps: u8,
    pub sweeping: bool,
}

impl ConsumerService {
    pub fn name(&self) -> &'static str {
        match self.consumer {
            Consumer::Payment => "payment-service",
            Consumer::Inventory => "inventory-service",
            // The model raises no notices, so it has no webhooks consumer.
            Consumer::Webhooks => "webhooks",
        }
    }

    pub(super) fn start(&self, storage: &Option<Boots>, o: &mut Out<Service>) -> ConsumerState {
        let boot = Boots::next(storage);
        o.save(Boots(boot));
        let mut state = ConsumerState {
            boot,
            workers: Vec::new(),
            sweeps: 0,
            sweeping: false,
        };
        for worker in 0..self.workers {
            let mut idle = WorkerState {
                seq: 0,
                step: Step::Leasing,
            };
            call(boot, worker, &mut idle, Request::Lease(self.consumer), o);
            state.workers.push(idle);
        }
        if self.sweeper {
            o.set_timer(Timer::Sweep, model_timeout());
        }
        state
    }

    pub(super) fn on_msg(
        &self,
        state: &ConsumerState,
        msg: Msg,
        o: &mut Out<Service>,
    ) -> Option<ConsumerState> {
        let Msg::Answer { tag, reply } = msg else {
            return None;
        };
        if tag.boot != state.boot {
            return None;
        }
        let mut next = state.clone();
        if tag.worker == SWEEPER {
            if !state.sweeping || tag.seq != state.sweeps {
                return None;
            }
            next.sweeping = false;
            o.set_timer(Timer::Sweep, model_timeout());
            return Some(next);
        }
        let worker = next.workers.get_mut(usize::from(tag.worker))?;
        if tag.seq != worker.seq {
            return None;
        }
        self.advance(state.boot, tag.worker, worker, reply, o)?;
        Some(next)
    }

    /// The worker's next call, given the answer to its last one.
    fn advance(
        &self,
        boot: u8,
        index: u8,
        worker: &mut WorkerState,
        reply: Reply,
        o: &mut Out<Service>,
    ) -> Option<()> {
        let consumer = self.consumer;
        match (worker.step.clone(), reply) {
            (Step::Leasing, Reply::Leased(delivery)) if delivery.step == EventStep::Pay => {
                o.cancel_timer(Timer::CallTimeout { worker: index });
                o.choose_random(
                    format!("verdict {index}"),
                    vec![(index, true), (index, false)],
                );
                worker.step = Step::Choosing(delivery);
            }
            (Step::Leasing, Reply::Leased(delivery)) => {
                let request = Request::Settle {
                    order_id: delivery.order_id.clone(),
                    event_id: delivery.event_id.clone(),
                    step: delivery.step,
                };
                call(boot, index, worker, request, o);
                worker.step = Step::Settling(delivery);
            }
            (Step::Charging(delivery), Reply::Verdict(approved)) => {
                let request = Request::RecordPayment {
                    order_id: delivery.order_id.clone(),
                    event_id: delivery.event_id.clone(),
                    approved,
                };
                call(boot, index, worker, request, o);
                worker.step = Step::Recording(delivery);
            }
            (
                Step::Charging(delivery) | Step::Recording(delivery) | Step::Settling(delivery),
                reply,
            ) => {
                let outcome = match reply {
                    Reply::Refused | Reply::Effect(EffectNote::Inconsistent) => Outcome::Reject,
                    Reply::Failed => Outcome::Release,
                    _ => Outcome::Acknowledge,
                };
                finish(consumer, boot, index, worker, &delivery, outcome, o);
            }
            (Step::Leasing | Step::Finishing, _) => {
                call(boot, index, worker, Request::Lease(consumer), o);
                worker.step = Step::Leasing;
            }
            (Step::Choosing(_), _) => return None,
        }
        Some(())
    }

    /// The provider drew its verdict: charge with it.
    pub(super) fn on_verdict(
        &self,
        state: &ConsumerState,
        (index, approved): Verdict,
        o: &mut Out<Service>,
    ) -> Option<ConsumerState> {
        let mut next = state.clone();
        let worker = next.workers.get_mut(usize::from(index))?;
        let Step::Choosing(delivery) = worker.step.clone() else {
            return None;
        };
        let request = Request::Charge {
            order_id: delivery.order_id.clone(),
            approved,
        };
        call(state.boot, index, worker, request, o);
        worker.step = Step::Charging(delivery);
        Some(next)
    }

    pub(super) fn on_timeout(
        &self,
        state: &ConsumerState,
        timer: Timer,
        o: &mut Out<Service>,
    ) -> Option<ConsumerState> {
        let mut next = state.clone();
        match timer {
            Timer::Sweep if !state.sweeping => {
                next.sweeps = next.sweeps.saturating_add(1);
                next.sweeping = true;
                let tag = CallTag {
                    worker: SWEEPER,
                    boot: state.boot,
                    seq: next.sweeps,
                };
                let request = Request::Sweep;
                o.send(Id::from(DATA), Msg::Call { tag, request });
            }
            Timer::CallTimeout { worker: index } => {
                let worker = next.workers.get_mut(usize::from(index))?;
                match worker.step.clone() {
                    Step::Charging(delivery)
                    | Step::Recording(delivery)
                    | Step::Settling(delivery) => {
                        let outcome = Outcome::Release;
                        finish(
                            self.consumer,
                            state.boot,
                            index,
                            worker,
                            &delivery,
                            outcome,
                            o,
                        );
                    }
                    Step::Leasing | Step::Finishing => {
                        call(state.boot, index, worker, Request::Lease(self.consumer), o);
                        worker.step = Step::Leasing;
                    }
                    Step::Choosing(_) => return None,
                }
            }
            _ => return None,
        }
        Some(next)
    }
}

/// Sends a worker's next call, under a fresh tag and a timeout.
fn call(boot: u8, index: u8, worker: &mut WorkerState, request: Request, o: &mut Out<Service>) {
    worker.seq = worker.seq.saturating_add(1);
    let tag = CallTag {
        worker: index,
        boot,
        seq: worker.seq,
    };
    o.send(Id::from(DATA), Msg::Call { tag, request });
    o.set_timer(Timer::CallTimeout { worker: index }, model_timeout());
}

/// Settles the worker's delivery with `outcome`.
fn finish(
    consumer: Consumer,
    boot: u8,
    index: u8,
    worker: &mut WorkerState,
    delivery: &DeliveryNote,
    outcome: Outcome,
    o: &mut Out<Service>,
) {
    let request = Request::Finish {
        consumer,
        outcome,
        seq: delivery.seq,
        token: delivery.token.clone(),
    };
    call(boot, index, worker, request, o);
    worker.step = Step::Finishing;
}
