//! order-service: the public API. It gives each request its order id and
//! forwards placing and cancelling to data-service. It keeps nothing but its
//! incarnation, so an answer that comes back after it restarted is dropped,
//! as the connection it belonged to is gone; the client then tries again.

use stateright::actor::{Id, Out};

use super::{Boots, DATA, FIRST_CLIENT, Service, order_id};
use crate::messages::{CallTag, Msg, Request};
use crate::mutants::Mutant;

/// The worker number order-service's own calls carry (broken variant only).
const ORDER_SERVICE_WORKER: u8 = 0;

#[derive(Clone, Debug)]
pub struct OrderService {
    pub mutant: Option<Mutant>,
}

fn client_id(client: u8) -> Id {
    Id::from(FIRST_CLIENT + usize::from(client))
}

impl OrderService {
    pub(super) fn start(&self, storage: &Option<Boots>, o: &mut Out<Service>) -> u8 {
        let boot = Boots::next(storage);
        o.save(Boots(boot));
        boot
    }

    pub(super) fn on_msg(&self, boot: u8, msg: Msg, o: &mut Out<Service>) {
        let data = Id::from(DATA);
        match msg {
            Msg::Place {
                client,
                order,
                attempt,
            } => {
                if self.mutant == Some(Mutant::ChargeBeforeReservation) {
                    let tag = CallTag {
                        worker: ORDER_SERVICE_WORKER,
                        boot,
                        seq: attempt,
                    };
                    let request = Request::Charge {
                        order_id: order_id(client, order, attempt),
                        approved: true,
                    };
                    o.send(data, Msg::Call { tag, request });
                }
                o.send(
                    data,
                    Msg::Reserve {
                        client,
                        order,
                        attempt,
                        boot,
                    },
                );
            }
            Msg::ReserveAnswered {
                client,
                order,
                attempt,
                boot: sent_by,
                answer,
            } if sent_by == boot => o.send(
                client_id(client),
                Msg::Placed {
                    order,
                    attempt,
                    answer,
                },
            ),
            Msg::Cancel {
                client,
                order,
                order_id,
            } => o.send(
                data,
                Msg::Release {
                    client,
                    order,
                    order_id,
                    boot,
                },
            ),
            Msg::ReleaseAnswered {
                client,
                order,
                boot: sent_by,
                answer,
            } if sent_by == boot => {
                o.send(client_id(client), Msg::CancelAnswered { order, answer })
            }
            _ => {}
        }
    }
}
