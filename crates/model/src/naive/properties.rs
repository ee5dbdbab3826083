//! The original system's races, each as the property it breaks.

use stateright::Property;
use stockroom_domain::OrderStatus;

use super::NaiveSystem;
use super::actors::{Files, NaiveData, NaiveService, NaiveState};
use crate::system::SystemState;

/// Each race, and the property of `stockroom check` it breaks.
pub const RACES: [(&str, &str); 4] = [
    ("oversell", "available_non_negative"),
    ("lost_update", "statuses_move_forward"),
    ("double_processing", "no_double_effects"),
    ("stale_order_status", "statuses_move_forward"),
];

/// data-service's state.
pub fn data(state: &SystemState<NaiveService>) -> &NaiveData {
    match state.actors.actor_states[super::DATA].as_ref() {
        NaiveState::Data(data) => data,
        _ => unreachable!("actor 0 is data-service"),
    }
}

/// The files as data-service last saved them.
pub fn files(state: &SystemState<NaiveService>) -> &Files {
    &data(state).files
}

impl Files {
    pub fn summary(&self) -> String {
        let orders: Vec<String> = self
            .orders
            .iter()
            .map(|(id, order)| format!("n{id} {:?}", order.status))
            .collect();
        format!(
            "Laptop on hand {} reserved {} sold {}; orders: [{}]",
            self.on_hand,
            self.reserved,
            self.sold,
            orders.join(", ")
        )
    }
}

/// Whether any order was ever seen going from `earlier` to `later`.
fn seen_going(
    state: &SystemState<NaiveService>,
    went: fn(OrderStatus, OrderStatus) -> bool,
) -> bool {
    data(state).seen.values().any(|seen| {
        seen.windows(2)
            .any(|pair| went(pair[0].domain(), pair[1].domain()))
    })
}

pub fn all() -> Vec<Property<NaiveSystem>> {
    vec![
        // Check-then-reserve in two calls: both pass the check, both hold.
        Property::always("oversell", |_, state| {
            let files = files(state);
            files.on_hand - files.reserved >= 0
        }),
        // A status update saved a file loaded before another's save: an
        // order's status goes back.
        Property::always("lost_update", |_, state| {
            !seen_going(state, |from, to| to.rank() < from.rank())
        }),
        // A redelivered event runs the flow again: charged twice.
        Property::always("double_processing", |_, state| {
            data(state).charges.values().all(|charges| *charges <= 1)
        }),
        // The cancel writes its stale copy over a fulfilled order.
        Property::always("stale_order_status", |_, state| {
            !seen_going(state, |from, to| {
                from.is_final() && to != from && to.is_final()
            })
        }),
    ]
}
