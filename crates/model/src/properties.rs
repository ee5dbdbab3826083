//! What must hold of Stockroom, as the model checks it. Each property that
//! `stockroom check` also checks has the same name and the same definition:
//! the figures are built from the model's store and handed to
//! `stockroom_domain::invariants`.
//!
//! - always: nothing oversold, stock conserved, reservations and sales
//!   matching the orders, statuses moving forward, at most one charge and
//!   one fulfilment per order, no charged order cancelled, every event
//!   taking effect at most once and recognised by its order's state ever
//!   after, one order per
//!   idempotency key, every acknowledged order stored, no charge before its
//!   reservation;
//! - eventually (once faults stop): every order ends final, every
//!   acknowledged one fulfilled or cancelled for a business reason, and
//!   every event leaves the outbox (acknowledged, or dead-lettered);
//! - sometimes (so that the model is not vacuous): a fulfilled order, a
//!   sell-out, an expiry, a declined payment, a redelivered event
//!   recognised, a dead letter.

use stateright::Property;
use stockroom_domain::invariants::{
    self, Invariant, OrderFigures, StockFigures, Violation, units_by_status,
};
use stockroom_domain::rules;
use stockroom_domain::{OrderStatus, Reason};

use crate::messages::Msg;
use crate::service::{
    AppliedEvent, ClientState, DATA, DataState, FIRST_CLIENT, Service, ServiceState,
};
use crate::store::Store;
use crate::system::{System, SystemState};

pub type StockroomSystem = System<Service>;
pub type StockroomState = SystemState<Service>;

/// data-service's state.
pub fn data(state: &StockroomState) -> &DataState {
    match state.actors.actor_states[DATA].as_ref() {
        ServiceState::Data(data) => data,
        _ => unreachable!("actor {DATA} is data-service"),
    }
}

/// The clients' states.
pub fn clients(state: &StockroomState) -> impl Iterator<Item = &ClientState> {
    state.actors.actor_states[FIRST_CLIENT..]
        .iter()
        .filter_map(|actor| match actor.as_ref() {
            ServiceState::Client(client) => Some(client),
            _ => None,
        })
}

/// The store's stock as `GET /inventory` reports it.
pub fn stock_figures(store: &Store) -> Vec<StockFigures> {
    store
        .stock
        .values()
        .map(|row| StockFigures {
            product: row.name.clone(),
            on_hand: row.on_hand,
            reserved: row.reserved,
            available: None,
            sold: Some(row.sold),
            received: Some(row.received),
            // The model keeps no ledger (see docs/model.md).
            movement_seq: None,
        })
        .collect()
}

/// The store's orders as `GET /orders` reports them.
pub fn order_figures(store: &Store) -> Vec<OrderFigures> {
    store
        .orders
        .values()
        .map(|order| OrderFigures {
            id: order.id.clone(),
            status: order.status.as_str().to_owned(),
            lines: order
                .lines
                .iter()
                .map(|line| (line.product_name.clone(), i64::from(line.quantity)))
                .collect(),
            history: store
                .history
                .get(&order.id)
                .map(|history| {
                    history
                        .iter()
                        .map(|entry| {
                            let reason = entry.reason.map(|reason| reason.as_str().to_owned());
                            (entry.status.as_str().to_owned(), reason)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn none_of(invariant: Invariant, violations: Vec<Violation>) -> bool {
    violations
        .iter()
        .all(|violation| violation.invariant != invariant)
}

fn stock_holds(state: &StockroomState, invariant: Invariant) -> bool {
    let violations = stock_figures(&data(state).store)
        .iter()
        .flat_map(invariants::check_stock)
        .collect();
    none_of(invariant, violations)
}

fn orders_hold(state: &StockroomState, invariant: Invariant) -> bool {
    let violations = order_figures(&data(state).store)
        .iter()
        .flat_map(invariants::check_order)
        .collect();
    none_of(invariant, violations)
}

fn reserved_matches_orders(_: &StockroomSystem, state: &StockroomState) -> bool {
    let store = &data(state).store;
    let reserved = units_by_status(&order_figures(store), OrderStatus::Reserved);
    invariants::check_reserved_sums(&stock_figures(store), &reserved).is_empty()
}

fn sold_matches_fulfilled(_: &StockroomSystem, state: &StockroomState) -> bool {
    let store = &data(state).store;
    let fulfilled = units_by_status(&order_figures(store), OrderStatus::Fulfilled);
    invariants::check_sold_sums(&stock_figures(store), &fulfilled).is_empty()
}

/// Histories move forward, end at the order's status, and have one entry
/// per version: no change was lost.
fn statuses_move_forward(_: &StockroomSystem, state: &StockroomState) -> bool {
    let store = &data(state).store;
    let consecutive = store.orders.values().all(|order| {
        let versions = store.history.get(&order.id).map(|history| {
            history
                .iter()
                .map(|entry| entry.version)
                .collect::<Vec<_>>()
        });
        versions == Some((1..=order.version).collect())
    });
    consecutive && orders_hold(state, Invariant::StatusesMoveForward)
}

/// No order fulfilled or charged twice, in its history or at the provider.
fn no_double_effects(_: &StockroomSystem, state: &StockroomState) -> bool {
    let store = &data(state).store;
    let mut charged = std::collections::BTreeMap::new();
    for row in store.ledger.values().filter(|row| row.approved) {
        *charged.entry(&row.order_id).or_insert(0) += 1;
    }
    charged.values().all(|count| *count <= 1) && orders_hold(state, Invariant::NoDoubleEffects)
}

/// Each event took effect at most once, and its order's state recognises
/// it ever after, so that a redelivery is answered `duplicate`: no other
/// record of processed events is kept.
fn events_applied_once(_: &StockroomSystem, state: &StockroomState) -> bool {
    let data = data(state);
    data.audit.applied.iter().all(|((_, event_id), applied)| {
        applied.times <= 1 && recognised(&data.store, event_id, applied)
    })
}

/// Whether the stored order an applied event named shows its effect.
fn recognised(store: &Store, event_id: &str, applied: &AppliedEvent) -> bool {
    let Some(order) = store.orders.get(&applied.order_id) else {
        return false;
    };
    let order = order.record();
    match applied.settlement {
        None => rules::payment_recorded(&order, event_id),
        Some(action) => rules::settlement_recorded(&order, event_id, action),
    }
}

fn one_order_per_idempotency_key(_: &StockroomSystem, state: &StockroomState) -> bool {
    data(state)
        .audit
        .orders_per_key
        .values()
        .all(|count| *count <= 1)
        && clients(state)
            .flat_map(|client| &client.orders)
            .all(|order| order.acknowledged.len() <= 1)
}

fn acknowledged_orders_exist(_: &StockroomSystem, state: &StockroomState) -> bool {
    let store = &data(state).store;
    clients(state)
        .flat_map(|client| &client.orders)
        .flat_map(|order| &order.acknowledged)
        .all(|id| store.orders.contains_key(id))
}

fn charges_follow_reservations(_: &StockroomSystem, state: &StockroomState) -> bool {
    data(state).audit.charged_unreserved.is_empty()
}

/// Nothing more will be ordered: every client is done and no order is on
/// its way to data-service.
fn ordering_over(state: &StockroomState) -> bool {
    clients(state).all(ClientState::is_done)
        && !state
            .actors
            .network
            .iter_all()
            .any(|envelope| matches!(envelope.msg, Msg::Place { .. } | Msg::Reserve { .. }))
}

fn ended_for_a_business_reason(status: OrderStatus, reason: Option<Reason>) -> bool {
    match status {
        OrderStatus::Fulfilled => true,
        OrderStatus::Rejected => reason == Some(Reason::InsufficientStock),
        OrderStatus::Cancelled => matches!(
            reason,
            Some(
                Reason::PaymentDeclined | Reason::ReservationExpired | Reason::CancelledByCustomer
            )
        ),
        OrderStatus::Pending | OrderStatus::Reserved => false,
    }
}

/// Every order ends final for a business reason, and every order answered
/// 201 is stored: what a 201 promises.
fn no_stuck_orders(_: &StockroomSystem, state: &StockroomState) -> bool {
    let store = &data(state).store;
    ordering_over(state)
        && store
            .orders
            .values()
            .all(|order| ended_for_a_business_reason(order.status, order.reason))
        && acknowledged_orders_exist_in(state, store)
}

fn acknowledged_orders_exist_in(state: &StockroomState, store: &Store) -> bool {
    clients(state)
        .flat_map(|client| &client.orders)
        .flat_map(|order| &order.acknowledged)
        .all(|id| store.orders.contains_key(id))
}

/// Every event left the outbox: acknowledged, or dead-lettered.
fn nothing_stays_leased(_: &StockroomSystem, state: &StockroomState) -> bool {
    ordering_over(state) && data(state).store.outbox.values().all(|entry| entry.dead)
}

fn some_order(state: &StockroomState, status: OrderStatus, reason: Option<Reason>) -> bool {
    data(state)
        .store
        .orders
        .values()
        .any(|order| order.status == status && (reason.is_none() || order.reason == reason))
}

/// Every property of the Stockroom model.
pub fn all() -> Vec<Property<StockroomSystem>> {
    vec![
        Property::always("available_non_negative", |_, state| {
            stock_holds(state, Invariant::AvailableNonNegative)
        }),
        Property::always("reserved_within_on_hand", |_, state| {
            stock_holds(state, Invariant::ReservedWithinOnHand)
        }),
        Property::always("conservation", |_, state| {
            stock_holds(state, Invariant::Conservation)
        }),
        Property::always("reserved_matches_orders", reserved_matches_orders),
        Property::always("sold_matches_fulfilled", sold_matches_fulfilled),
        Property::always("statuses_move_forward", statuses_move_forward),
        Property::always("no_double_effects", no_double_effects),
        Property::always("charged_orders_not_cancelled", |_, state| {
            orders_hold(state, Invariant::ChargedOrdersNotCancelled)
        }),
        Property::always("events_applied_once", events_applied_once),
        Property::always(
            "one_order_per_idempotency_key",
            one_order_per_idempotency_key,
        ),
        Property::always("acknowledged_orders_exist", acknowledged_orders_exist),
        Property::always("charges_follow_reservations", charges_follow_reservations),
        Property::eventually("no_stuck_orders", no_stuck_orders),
        Property::eventually("nothing_stays_leased", nothing_stays_leased),
        Property::sometimes("order_fulfilled", |_, state| {
            some_order(state, OrderStatus::Fulfilled, None)
        }),
        Property::sometimes("sold_out", |_, state| {
            some_order(
                state,
                OrderStatus::Rejected,
                Some(Reason::InsufficientStock),
            )
        }),
        Property::sometimes("reservation_expired", |_, state| {
            some_order(
                state,
                OrderStatus::Cancelled,
                Some(Reason::ReservationExpired),
            )
        }),
        Property::sometimes("payment_declined", |_, state| {
            some_order(state, OrderStatus::Cancelled, Some(Reason::PaymentDeclined))
        }),
        Property::sometimes("event_redelivered", |_, state| {
            data(state).audit.duplicates_recognised
        }),
        Property::sometimes("dead_letter", |_, state| {
            data(state).store.outbox.values().any(|entry| entry.dead)
        }),
    ]
}
