//! Stockroom as a model: data-service deciding with the real rules,
//! order-service, payment-service and inventory-service (with its sweeper)
//! consuming the outbox, and the clients.

use stateright::actor::{ActorModel, LossyNetwork, Network};
use stockroom_domain::rules::event_id;
use stockroom_domain::{Consumer, EventKind};

use crate::bounds::Bounds;
use crate::mutants::Mutant;
use crate::properties::{self, StockroomSystem};
use crate::service::{
    ClientScript, ConsumerService, DataService, INVENTORY, ORDER, OrderService, PAYMENT,
    PRODUCT_KEY, PRODUCT_NAME, Service,
};
use crate::store::{EventRow, Store};
use crate::system::{FaultBudget, System};

/// The version the poison event claims: any; no order has its blank id.
const POISON_VERSION: i64 = 2;

/// An event no consumer can handle: a payment for an order with a blank id,
/// which data-service refuses outright.
fn poison_event() -> EventRow {
    let kind = EventKind::PaymentSucceeded;
    EventRow {
        event_id: event_id(kind, "", POISON_VERSION),
        kind,
        order_id: String::new(),
        order_version: POISON_VERSION,
        total_units: 1,
    }
}

/// Stockroom within `bounds`, or one of its broken variants.
pub fn system(bounds: &Bounds, mutant: Option<Mutant>) -> StockroomSystem {
    let mut initial = Store::stocked(PRODUCT_KEY, PRODUCT_NAME, u64::from(bounds.stock));
    if bounds.poison {
        initial.enqueue(poison_event());
    }
    let consumer = |consumer, sweeper| {
        Service::Consumer(ConsumerService {
            consumer,
            workers: bounds.workers,
            sweeper,
        })
    };
    let mut actors = ActorModel::new((), ())
        .actor(Service::Data(DataService { initial, mutant }))
        .actor(Service::Order(OrderService { mutant }))
        .actor(consumer(Consumer::Payment, false))
        .actor(consumer(Consumer::Inventory, true))
        .init_network(Network::new_unordered_nonduplicating([]))
        .lossy_network(LossyNetwork::No)
        .max_crashes(usize::from(bounds.crashes));
    for client in 0..bounds.clients {
        actors = actors.actor(Service::Client(ClientScript {
            client,
            orders: bounds.orders,
            attempts: bounds.attempts,
            cancels: bounds.cancels && client + 1 == bounds.clients,
        }));
    }
    System {
        actors,
        budget: FaultBudget {
            crashes: bounds.crashes,
            duplicates: bounds.duplicates,
            timeouts: bounds.timeouts,
        },
        crashable: vec![ORDER, PAYMENT, INVENTORY],
        properties: properties::all(),
        timer_fault: crate::service::timer_fault,
        worth_crashing: crate::service::worth_crashing,
        worth_duplicating: crate::service::worth_duplicating,
    }
}
